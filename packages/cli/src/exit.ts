/** Exit statuses fixed by the contract (section 6). */
export const EXIT_OK = 0;
/** Verification failed: evidence of misbehaviour or tampering. */
export const EXIT_FAILED = 1;
/** Usage, network or I/O error: nothing was proven either way. */
export const EXIT_ERROR = 2;

/**
 * An error that ends a command with a one-line message and a chosen exit status.
 * Commands throw it; the program prints `message` (or JSON with --json) and exits with `code`, the exit status
 * (a number, unlike the string codes of the packages' errors). `cause` keeps the library error it reports.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number = EXIT_ERROR,
    readonly details?: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/** Verification failure (exit 1): evidence of misbehaviour or tampering. */
export function failed(message: string, details?: Record<string, unknown>, cause?: unknown): CliError {
  return new CliError(message, EXIT_FAILED, details, cause);
}

/** A mistake in the command (exit 2): arguments, or a file or key of the wrong kind. */
export function usage(message: string, details?: Record<string, unknown>, cause?: unknown): CliError {
  return new CliError(message, EXIT_ERROR, details, cause);
}

/**
 * Nothing could be checked (exit 2, like a usage error): the network, a file that cannot be read or written,
 * a daemon that cannot start, a store that cannot be served. Never evidence either way.
 */
export function cannotCheck(message: string, details?: Record<string, unknown>, cause?: unknown): CliError {
  return new CliError(message, EXIT_ERROR, details, cause);
}
