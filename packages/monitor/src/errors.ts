/**
 * Errors of @trailmark/monitor. `code` is stable for programs; `message` says what did not match.
 */
export class MonitorError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
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
