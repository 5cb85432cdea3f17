/**
 * Errors of @trailmark/monitor. `code` is stable for programs; `message` says what did not match.
 */
import { CodedError, type TlogErrorCode } from '@trailmark/tlog';

/** Every code a MonitorError carries. */
export type MonitorErrorCode =
  | 'config' // a monitor option, URL or file is wrong
  | 'store' // the monitor's database cannot be opened
  | 'store-locked' // another monitor holds the data directory
  | 'stored-view' // the stored view does not verify under the configured log key (another log's data directory)
  | 'evidence-id' // no evidence file has that id
  | 'network' // an HTTP exchange got no answer (HttpError without a status)
  | 'http-status' // an HTTP exchange got an unexpected status
  // EvidenceError
  | 'malformed-evidence' // evidence that does not parse, or names another log
  | 'signature' // a checkpoint in the evidence is not signed by the log key
  | 'not-misbehaviour'; // well-formed evidence whose checkpoints do not prove misbehaviour

/** Base of every error @trailmark/monitor throws; `code` is stable for programs, `message` is for people. */
export class MonitorError extends CodedError<MonitorErrorCode> {}

/** An HTTP exchange failed: no answer, a timeout, or an unexpected status. `status` is absent without an answer. */
export class HttpError extends MonitorError {
  constructor(
    readonly url: string,
    readonly status: number | undefined,
    message: string,
  ) {
    super(status === undefined ? 'network' : 'http-status', message);
  }
}

/** Evidence that does not prove misbehaviour, or is malformed. Codes: 'malformed-evidence', 'signature', 'not-misbehaviour'. */
export class EvidenceError extends MonitorError {}

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
