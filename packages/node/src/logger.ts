/**
 * One logging style for every daemon: JSON lines (time, level, msg first, then fields) for machines and log
 * shippers, or, when the stream is a terminal, one readable line per record. Logs go to stderr by default, so
 * stdout stays for the lines a daemon prints for scripts (its vkey, its URL).
 */

export type LogLevel = 'info' | 'warn' | 'error';

/** Structured logs: a message and fields, per level. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** `json`: one JSON object a line; `text`: readable lines; `auto`: text on a terminal, else JSON. */
export type LogFormat = 'json' | 'text' | 'auto';

function jsonSafe(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) return { name: v.name, message: v.message };
  return v;
}

/** A field value for the text form: bare when it is one plain word, else JSON (quoted, escaped: one line). */
function textValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'string') return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v, jsonSafe) ?? String(v);
}

/** One record in the readable form: `2026-01-02T03:04:05.678Z WARN  message key=value ...`. */
export function formatText(time: string, level: LogLevel, msg: string, fields: Record<string, unknown>): string {
  const kv = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${textValue(v)}`);
  // control characters from remote input must not forge lines on an operator's terminal
  // eslint-disable-next-line no-control-regex
  const clean = msg.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return `${time} ${level.toUpperCase().padEnd(5)} ${clean}${kv.length ? ' ' + kv.join(' ') : ''}`;
}

/**
 * A logger writing to `stream` (stderr by default) with `fields` on every record (such as `{component: 'log'}`).
 * Precondition: none. With format `auto`, the text form is chosen when the stream is a TTY.
 */
export function createLogger(
  stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
  fields: Record<string, unknown> = {},
  format: LogFormat = 'auto',
): Logger {
  const text = format === 'text' || (format === 'auto' && stream.isTTY === true);
  const write = (level: LogLevel, msg: string, extra?: Record<string, unknown>) => {
    const time = new Date().toISOString();
    const all = { ...fields, ...extra };
    stream.write(
      (text ? formatText(time, level, msg, all) : JSON.stringify({ time, level, msg, ...all }, jsonSafe)) + '\n',
    );
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** Discards everything (the library default: a process embedding a daemon decides where logs go). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
