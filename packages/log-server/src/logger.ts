// The one logging style of every daemon lives in @trailmark/node. `jsonLogger` keeps its name for callers:
// JSON lines, or readable text when the stream is a terminal.
export { createLogger as jsonLogger, silentLogger, type Logger } from '@trailmark/node';
