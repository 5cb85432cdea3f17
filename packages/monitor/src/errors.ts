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
