/**
 * Errors of @trailmark/monitor. `code` is stable for programs; `message` says what did not match.
 */
import { CodedError } from '@trailmark/tlog';

/** Every code a MonitorError carries. */
export type MonitorErrorCode =
  | 'config' // a monitor option, URL or file is wrong
  | 'store' // the monitor's database cannot be opened
  | 'store-locked' // another monitor holds the data directory
  | 'stored-view' // the stored view does not verify under the configured log key (another log's data directory)
  | 'evidence-id' // no evidence file has that id
  | 'network' // a log or peer could not be asked
  | 'http-status'; // a log or peer answered with an unexpected status

/** Base of every error @trailmark/monitor throws; `code` is stable for programs, `message` is for people. */
export class MonitorError extends CodedError<MonitorErrorCode> {}
