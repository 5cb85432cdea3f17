/**
 * Errors of @trailmark/client. `code` is stable for programs; `message` says what did not match.
 */
export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** `cause`: the error underneath (a TransportError for a failed exchange). */
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Evidence that does not prove misbehaviour, or is malformed. Codes: 'malformed-evidence', 'signature', 'not-misbehaviour'. */
export class EvidenceError extends ClientError {}

/**
 * The log could not be reached or did not answer in time (network error, timeout, 429/5xx after retries).
 * Retrying later may succeed.
 */
export class LogUnavailableError extends ClientError {}

/** The log refused the submission with a 4xx answer other than 429: retrying the same bytes will not help. */
export class LogRejectedError extends ClientError {
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
export class ReceiptError extends ClientError {}

/**
 * TlogError codes that say "this is not the log, key or file you meant", never evidence of misbehaviour: the
 * text is not a signed note (an HTML page, a file of another kind), it carries no signature by the given key
 * (a key for another log), it names another origin, or a proof file does not parse. Contract section 6: a
 * mistake is exit 2 ("could not check"), and a monitor must not raise an alert for it.
 */
const NOT_EVIDENCE = new Set([
  'malformed-note',
  'note-too-large',
  'too-many-signatures',
  'no-log-signature',
  'no-verified-signature',
  'origin-mismatch',
  'malformed-proof',
  'log-not-in-policy',
]);

/** Whether `e` (an error with a code) is a mistake of the caller's, not evidence; see NOT_EVIDENCE. */
export function isNotEvidence(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && NOT_EVIDENCE.has(code);
}
