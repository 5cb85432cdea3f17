import { CodedError, type ErrorDetails, type TlogErrorCode } from '@trailmark/tlog';

/** Every code a ProxyError carries. */
export type ProxyErrorCode =
  // the spool (SpoolError)
  | 'locked' // another live process holds the spool
  | 'corrupt' // a damaged record that is not the torn tail of the last segment
  | 'too-large' // a record or event over the size limit
  | 'closed' // the spool or stream was closed
  | 'io' // a spool file cannot be read, written or synced
  | 'ack-order' // an acknowledgement out of the spool's order
  | 'no-sealer' // a spool record needs sealing but no stream key was given
  // the log (LogUnavailableError, LogRejectedError, StrictModeError)
  | 'unavailable' // the log cannot be reached or does not answer in time; retrying later may succeed
  | 'rejected' // the log refused the submission with a 4xx other than 429
  | 'log-unavailable' // strict mode: the event cannot be logged now, so the request is refused
  // the log's receipt (ReceiptError)
  | 'malformed-receipt' // the log's answer is not a receipt
  | 'bad-receipt' // the receipt's signature does not verify
  | 'leaf-index' // the receipt names a leaf index the tree cannot hold
  | 'leaf-hash' // the receipt's leaf hash is not the hash of what was sent
  | 'tree-size' // the receipt's tree size does not fit its checkpoint
  | 'inclusion' // the inclusion proof does not verify against the signed checkpoint
  | 'tile' // a tile read to check the receipt does not verify
  // configuration (ConfigError)
  | 'config' // a proxy option is wrong
  | 'tokens' // the tokens file is malformed
  | 'rules' // the rules file is malformed
  | 'users' // the users file is malformed (pg-proxy)
  | 'target' // the upstream target URL is wrong
  | 'tls' // a TLS certificate or key cannot be read or used (pg-proxy)
  | 'listen' // the listen address is malformed or cannot be bound
  | 'log-key' // the log's vkey is missing or malformed
  | 'log-token' // the log's bearer token file is malformed
  | 'mode' // an unknown recording mode
  | 'stream-key' // the stream key file is missing or malformed
  | 'upstream' // the upstream cannot be reached
  // worker processes
  | 'workers' // a worker count out of range, or workers that cannot start
  | 'worker' // a worker process failed
  | 'health'; // a worker's health check failed

/**
 * Base of every error @trailmark/proxy throws; `code` is stable for programs, `message` is for people.
 * `C` narrows the codes for a package built on the proxy (pg-proxy), whose errors stay ProxyErrors.
 */
export class ProxyError<C extends string = ProxyErrorCode> extends CodedError<C> {}

/**
 * Spool errors. Codes: 'locked' (another live process holds the spool), 'corrupt' (a damaged record that is not
 * the torn tail of the last segment), 'too-large' (record over the size limit), 'closed', 'io'.
 */
export class SpoolError extends ProxyError {}

/**
 * The log could not be reached or did not answer in time (network error, timeout, 429/5xx after retries).
 * Retrying later may succeed.
 */
export class LogUnavailableError extends ProxyError {}

/** The log refused the submission with a 4xx answer other than 429: retrying the same bytes will not help. */
export class LogRejectedError extends ProxyError {
  constructor(
    code: ProxyErrorCode,
    message: string,
    readonly status: number,
    details?: ErrorDetails,
  ) {
    super(code, message, details);
  }
}

/**
 * The log answered, but its receipt does not prove what it claims: bad signature, wrong leaf hash, an
 * inclusion proof that does not verify against the signed checkpoint, a malformed answer. Evidence against
 * the log (or whatever sits between us and it); never treated as an acknowledgement. A failed tlog check
 * keeps its TlogError code, and the TlogError as its cause.
 */
export class ReceiptError extends ProxyError<ProxyErrorCode | TlogErrorCode> {}

/** Bad proxy configuration: tokens file, rules file, keys, URLs. */
export class ConfigError extends ProxyError {}
