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
