/** Structured logs: one JSON object a line, with time, level and message first. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function jsonSafe(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) return { name: v.name, message: v.message };
  return v;
}

/** A logger writing JSON lines to `stream` (stderr by default, so stdout stays for the vkey/url lines). */
export function jsonLogger(stream: NodeJS.WritableStream = process.stderr, base: Record<string, unknown> = {}): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) => {
    stream.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }, jsonSafe) + '\n');
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** Discards everything (the library default: a process embedding the log decides where logs go). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
