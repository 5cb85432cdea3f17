import { CodedError } from '@trailmark/tlog';

/** Codes of ExplorerError. */
export type ExplorerErrorCode =
  | 'filter' // a search filter, page size, cursor or bucket is malformed (HTTP 400)
  | 'explorer-read' // the explorer could not be asked: network, HTTP error, not an explorer; never evidence
  | 'explorer-mismatch'; // the explorer's answer is not the log's entry at the index it names: evidence

/**
 * Base of every error @trailmark/explorer throws; `code` is stable for programs, `message` is for people. For a
 * mismatch, `expected` is what the log holds and `found` what the explorer answered.
 */
export class ExplorerError extends CodedError<ExplorerErrorCode> {}
