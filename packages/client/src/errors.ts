import { CodedError, type ErrorDetails, type TlogErrorCode } from '@trailmark/tlog';

/** Every code a ClientError carries. */
export type ClientErrorCode =
  // requests
  | 'network' // no answer: refused, reset, timed out
  | 'http-status' // an answer with an unexpected status
  // evidence (EvidenceError)
  | 'malformed-evidence' // evidence that does not parse, or names another log
  | 'signature' // a checkpoint in the evidence is not signed by the log key
  | 'not-misbehaviour' // well-formed evidence whose checkpoints do not prove misbehaviour
  // submitting (LogUnavailableError, LogRejectedError)
  | 'unavailable' // the log cannot be reached or does not answer in time; retrying later may succeed
  | 'rejected' // the log refused the submission with a 4xx other than 429
  | 'config' // a client option (URL, key) is wrong
  // the log's receipt (ReceiptError)
  | 'malformed-receipt' // the log's answer is not a receipt
  | 'bad-receipt' // the receipt's signature does not verify
  | 'leaf-index' // the receipt names a leaf index the tree cannot hold
  | 'leaf-hash' // the receipt's leaf hash is not the hash of what was sent
  | 'tree-size' // the receipt's tree size does not fit its checkpoint
  | 'inclusion' // the inclusion proof does not verify against the signed checkpoint
  | 'tile'; // a tile read to check the receipt does not verify

/**
 * Base of every error @trailmark/client throws; `code` is stable for programs, `message` says what did not
 * match. A failed tlog check keeps its TlogError code, and the TlogError as its cause.
 */
export class ClientError extends CodedError<ClientErrorCode | TlogErrorCode> {}

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
    code: ClientErrorCode,
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
 * the log (or whatever sits between us and it); never treated as an acknowledgement.
 */
export class ReceiptError extends ClientError {}

/**
 * TlogError codes that say "this is not the log, key or file you meant", never evidence of misbehaviour: the
 * text is not a signed note (an HTML page, a file of another kind), it carries no signature by the given key
 * (a key for another log), it names another origin, or a proof file does not parse. Contract section 6: a
 * mistake is exit 2 ("could not check"), and a monitor must not raise an alert for it.
 */
const NOT_EVIDENCE: ReadonlySet<string> = new Set<TlogErrorCode>([
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
