/** Base of every error @trailmark/proxy throws; `code` is stable for programs, `message` is for people. */
export class ProxyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** `cause`: the error underneath (a TransportError for a failed exchange with the log). */
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

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
    code: string,
    message: string,
    readonly status: number,
  ) {
    super(code, message);
  }
}

/**
 * The log answered, but its receipt does not prove what it claims: bad signature, wrong leaf hash, an
 * inclusion proof that does not verify against the signed checkpoint, a malformed answer. Evidence against
 * the log (or whatever sits between us and it); never treated as an acknowledgement.
 */
export class ReceiptError extends ProxyError {}

/** Bad proxy configuration: tokens file, rules file, keys, URLs. */
export class ConfigError extends ProxyError {}
