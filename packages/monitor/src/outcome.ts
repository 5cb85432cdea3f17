/** What the monitor reports for each checkpoint, peer exchange and stream round. */
import type { Evidence } from '@trailmark/client';

/** What happened to one checkpoint. `misbehaviour` means the log (not a peer) was caught. */
export type OutcomeStatus =
  'ok' | 'advanced' | 'pending' | 'ignored' | 'rejected' | 'misbehaviour' | 'error' | 'warning';
/** What happened to one check, with a human message and the evidence id when misbehaviour was recorded. */
export interface Outcome {
  status: OutcomeStatus;
  message: string;
  /** Id of the evidence recorded, if any. */
  evidence?: string;
}

/** An outcome and what it is about ("log <url>", "peer <url>", ...). */
export interface Labelled {
  what: string;
  outcome: Outcome;
}

/** The result of a one-shot monitor run, with the exit code contract section 7 gives it. */
export interface OnceResult {
  /** 0 all consistent, 1 misbehaviour found, 2 could not check (contract section 7). */
  code: 0 | 1 | 2;
  outcomes: Labelled[];
  evidence: Evidence[];
}
