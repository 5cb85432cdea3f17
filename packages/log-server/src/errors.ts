/**
 * Errors of the log server. HttpError carries the status a client sees; LogStateError means the data
 * directory cannot be served as it is (the server refuses to start rather than sign over it).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The stored log does not match what it must be (tampered, foreign key, truncated): refuse to serve it. */
export class LogStateError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'LogStateError';
  }
}

/** The log stopped accepting writes: shutting down, or a durable write failed. */
export class UnavailableError extends HttpError {
  /** `reason`: the label the rejected-requests metric counts it under. */
  constructor(
    message: string,
    retryAfterSeconds = 1,
    readonly reason: 'overload' | 'unavailable' = 'unavailable',
  ) {
    super(503, message, { 'Retry-After': String(retryAfterSeconds) });
    this.name = 'UnavailableError';
  }
}
