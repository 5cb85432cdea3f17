/** Exit statuses fixed by the contract (section 6). */
export const EXIT_OK = 0;
/** Verification failed: evidence of misbehaviour or tampering. */
export const EXIT_FAILED = 1;
/** Usage, network or I/O error: nothing was proven either way. */
export const EXIT_ERROR = 2;

/**
 * An error that ends a command with a one-line message and a chosen exit status.
 * Commands throw it; the program prints `message` (or JSON with --json) and exits with `code`.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number = EXIT_ERROR,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Verification failure (exit 1). */
export function failed(message: string, details?: Record<string, unknown>): CliError {
  return new CliError(message, EXIT_FAILED, details);
}

/** Usage, I/O or network failure (exit 2). */
export function usage(message: string, details?: Record<string, unknown>): CliError {
  return new CliError(message, EXIT_ERROR, details);
}
