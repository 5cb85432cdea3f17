import type { Command } from 'commander';
import { CliError, EXIT_ERROR, EXIT_OK } from './exit.js';
import { errorMessage } from '@trailmark/tlog';

/** Output of one command: human text by default, one JSON document with --json. */
export interface Output {
  json: boolean;
  /** Print a human line (suppressed with --json). */
  info(line: string): void;
  /** Print the machine result (with --json) or nothing. */
  result(value: unknown): void;
}

/** JSON with uint64 bigints written as numbers when exact, decimal strings otherwise. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v,
  );
}

/** The Output for one command run: human lines on stdout unless `json`, the machine result only with `json`. */
export function makeOutput(json: boolean): Output {
  return {
    json,
    info(line) {
      if (!json) process.stdout.write(line + '\n');
    },
    result(value) {
      if (json) process.stdout.write(toJson(value) + '\n');
    },
  };
}

/**
 * Wraps a command action: runs it, maps thrown errors to the contract's exit statuses and a one-line reason,
 * never a stack trace for a user's mistake. Long-running commands (serve, proxy, monitor) resolve when they stop.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command;
    const json = Boolean(cmd.optsWithGlobals?.().json);
    try {
      const code = await fn(...args);
      process.exitCode = code ?? EXIT_OK;
    } catch (err) {
      process.exitCode = reportError(err, json);
    }
  };
}

/**
 * Reports `err` (as a JSON object on stdout with `json`, else a line on stderr) and returns its exit code: a CliError's
 * own code, else EXIT_ERROR.
 */
export function reportError(err: unknown, json: boolean): number {
  const code = err instanceof CliError ? err.code : EXIT_ERROR;
  const message = err instanceof Error ? err.message : String(err);
  if (json) {
    const details = err instanceof CliError ? err.details : undefined;
    process.stdout.write(toJson({ ok: false, error: message, exit: code, ...details }) + '\n');
  } else {
    process.stderr.write(`trailmark: ${message}\n`);
  }
  if (process.env.TRAILMARK_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  return code;
}

/**
 * Keeps a daemon (serve, proxy, monitor) running until SIGTERM or SIGINT, then runs `close` (stop accepting,
 * finish what is in flight). A second signal while closing ends the process at once with exit 2.
 */
export function runUntilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.once('SIGTERM', () => process.exit(EXIT_ERROR));
      process.once('SIGINT', () => process.exit(EXIT_ERROR));
      close().then(resolve, (err) => {
        process.stderr.write(`trailmark: shutdown failed: ${errorMessage(err)}\n`);
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
