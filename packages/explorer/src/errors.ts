import type { ErrorDetails } from '@trailmark/tlog';

/** Codes of ExplorerError. */
export type ExplorerErrorCode =
  | 'filter' // a search filter, page size, cursor or bucket is malformed (HTTP 400)
  | 'explorer-read' // the explorer could not be asked: network, HTTP error, not an explorer; never evidence
  | 'explorer-mismatch'; // the explorer's answer is not the log's entry at the index it names: evidence

/** Base of every error @trailmark/explorer throws; `code` is stable for programs, `message` is for people. */
export class ExplorerError extends Error {
  /** For a mismatch: what the log holds. */
  readonly expected?: string;
  /** For a mismatch: what the explorer answered. */
  readonly found?: string;
  constructor(
    readonly code: ExplorerErrorCode,
    message: string,
    details: ErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    if (details.expected !== undefined) this.expected = details.expected;
    if (details.found !== undefined) this.found = details.found;
  }
}
