/**
 * Errors of the log server. LogServerError is the base of those that mean "cannot serve": LogStateError
 * when the data directory or store cannot be served as it is, ConfigError when the configuration is wrong;
 * either way the server refuses to start rather than sign over it. HttpError carries the status a client sees.
 */
import { CodedError, type ErrorDetails } from '@trailmark/tlog';

/** An error answered to the client with `status`, `message` as the body and extra `headers` (e.g. Retry-After). */
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

/** Codes of LogStateError: what about the stored log (or its key) is not servable. */
export type LogStateCode =
  | 'no-state' // the database holds data, or nothing, where a log state must be
  | 'state' // the stored state is not one this code wrote, or disagrees with the signed checkpoint
  | 'checkpoint' // the stored checkpoint does not verify with the log key
  | 'entries' // a pending entry is missing, or a partial bundle holds the wrong count
  | 'tile' // a stored tile is missing, or not the width its position needs
  | 'root-mismatch' // the stored tiles and entries give another root than the signed checkpoint
  | 'compact-mismatch' // the stored compact range differs from the stored tiles
  | 'rolled-back' // the store holds less, or data beyond, what was signed
  | 'key-mismatch' // the store belongs to another log key
  | 'origin-mismatch' // --origin is not the log key's name (the origin is always the key's name)
  | 'no-log' // no log where one must be: a key without its store (a second history), a directory to audit
  | 'key-missing' // the store holds a log but its key file does not exist
  | 'key' // a vkey given to audit a store does not parse
  | 'key-read' // the log key file cannot be read
  | 'key-format' // the log key file does not parse
  | 'key-type' // the log key is not an Ed25519 note key
  | 'locked' // another process holds the database
  | 'data-dir' // the data directory cannot be created or reopened
  | 'db-open' // the LevelDB cannot be opened
  | 'store'; // the PostgreSQL store cannot be reached or opened

/** Codes of ConfigError: which part of the configuration is wrong. */
export type ConfigCode =
  | 'submit-tokens' // the submit tokens file cannot be read, lists none, or a token has spaces
  | 'listen' // --listen is not HOST:PORT, or that address cannot be bound
  | 'policy' // the witness policy file is malformed or cannot accept this log
  | 'key-name'; // a new log key cannot be named after the given origin

/** Every code a LogServerError carries. */
export type LogServerErrorCode = LogStateCode | ConfigCode;

/** Base of the errors for which the log server refuses to start or goes on refusing writes. */
export class LogServerError extends CodedError<LogServerErrorCode> {}

/** The stored log does not match what it must be (tampered, foreign key, truncated): refuse to serve it. */
export class LogStateError extends LogServerError {
  declare readonly code: LogStateCode;
  constructor(code: LogStateCode, message: string, details?: ErrorDetails) {
    super(code, message, details);
  }
}

/** The configuration is wrong (tokens file, listen address, witness policy, key name): refuse to start. */
export class ConfigError extends LogServerError {
  declare readonly code: ConfigCode;
  constructor(code: ConfigCode, message: string, details?: ErrorDetails) {
    super(code, message, details);
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
