/**
 * The monitor's view decisions, as one pure function: given the verified view of a log, a checkpoint heard
 * of, and whatever proofs have been fetched so far, say what the checkpoint means (or which proof is needed
 * to know). No I/O, no clock, no state: the Monitor fetches what `decideView` asks for and acts on its answer,
 * and the unit tests drive it with real trees and signed notes.
 *
 * The view only ever advances from checkpoints served by the log itself and proven consistent with the view.
 * Any other checkpoint is checked against the view with a proof the log serves for its own (larger) tree, so
 * a failing check binds the log's tree and is evidence anyone can verify.
 */
import {
  errorMessage,
  bytesEqual,
  emptyRoot,
  openCheckpoint,
  verifyConsistency,
  type Checkpoint,
  type Hash,
  type NoteVerifier,
} from '@trailmark/tlog';
import { MonitorError } from './errors.js';
import {
  inconsistentEvidence,
  isPow2,
  prefixRootFromConsistency,
  prefixRootFromInclusion,
  proofBindsPrefix,
  sameSizeEvidence,
  type Evidence,
  type Sighting,
  isNotEvidence,
} from '@trailmark/client';

/** A signed checkpoint note and where it came from. */
export interface NoteSeen {
  note: string;
  seen: Sighting;
}

/** A checkpoint note opened under the log's key. */
export interface Seen extends NoteSeen {
  cp: Checkpoint;
}

/** What decideView is asked about. */
export interface ViewInput {
  /** The log's key (its name is the origin). */
  verifier: NoteVerifier;
  /** The stored view, undefined before the first checkpoint. It must verify under `verifier`. */
  view: NoteSeen | undefined;
  /** The checkpoint heard of. */
  got: NoteSeen;
  /** 'log' when the log itself served `got` (only then may the view advance), 'foreign' for a peer's or a witness request's. */
  from: 'log' | 'foreign';
  /** Where the log serves its proofs (named in inconsistent evidence). */
  proofSource: string;
  /** The log's consistency proof for the pair named by a previous 'need-consistency'. */
  consistency?: readonly Hash[];
  /** The log's inclusion proof of the leaf named by a previous 'need-inclusion'. */
  inclusion?: { leafHash: Hash; path: readonly Hash[] };
}

/**
 * What a checkpoint means for the view.
 * - unsigned: `got` does not verify under the key; `mistake` when that says "wrong URL or key", not misbehaviour.
 * - first: the log's first checkpoint; it becomes the view.
 * - equal: the same size and root as the view.
 * - advance: the log grew consistently; `got` becomes the view.
 * - consistent: a foreign checkpoint no larger than the view, proven consistent with it.
 * - larger: a foreign checkpoint larger than the view (or no view yet): it cannot be checked now.
 * - rollback: the log served a smaller tree than before that is consistent with the view (misbehaviour).
 * - split: two checkpoints no append-only history joins; `evidence` verifies offline.
 * - bad-proof: the log's consistency proof does not verify against its own larger checkpoint.
 * - need-consistency / need-inclusion: fetch that proof from the log and ask again. `rollback` says the log
 *   went backwards (a failure to fetch the proof is then an alert, not just an unchecked round).
 */
export type ViewDecision =
  | { kind: 'unsigned'; mistake: boolean; error: Error }
  | { kind: 'first'; cp: Checkpoint }
  | { kind: 'equal'; cp: Checkpoint }
  | { kind: 'advance'; from: bigint; cp: Checkpoint }
  | { kind: 'consistent'; view: bigint; cp: Checkpoint }
  | { kind: 'larger'; cp: Checkpoint }
  | { kind: 'rollback'; from: bigint; to: bigint }
  | { kind: 'split'; evidence: Evidence }
  | { kind: 'bad-proof'; first: bigint; second: bigint }
  | { kind: 'need-consistency'; first: bigint; second: bigint; rollback: boolean }
  | { kind: 'need-inclusion'; index: bigint; size: bigint; first: bigint };

/**
 * Decides what `input.got` means against `input.view`; see ViewDecision. Precondition: proofs given are the
 * ones the previous answer asked for. Throws MonitorError('stored-view') when the stored view does not verify
 * under the key: comparing against it would be a guess.
 */
export function decideView(input: ViewInput): ViewDecision {
  const { verifier, from } = input;
  let cp: Checkpoint;
  try {
    cp = openCheckpoint(input.got.note, verifier).checkpoint;
  } catch (e) {
    return { kind: 'unsigned', mistake: isNotEvidence(e), error: e as Error };
  }
  const got: Seen = { ...input.got, cp };
  if (!input.view) return from === 'log' ? { kind: 'first', cp } : { kind: 'larger', cp };
  const v = openView(verifier, input.view);
  if (cp.size === v.cp.size) {
    if (bytesEqual(cp.root, v.cp.root)) return { kind: 'equal', cp };
    const notes: [string, string] = [v.note, got.note];
    return { kind: 'split', evidence: sameSizeEvidence(verifier.name, notes, [v.seen, got.seen], cp.size) };
  }
  if (cp.size > v.cp.size && from === 'foreign') return { kind: 'larger', cp };
  // the smaller of the two must be a prefix of the larger
  const [small, large] = cp.size > v.cp.size ? [v, got] : [got, v];
  const rollback = from === 'log' && cp.size < v.cp.size;
  const m = small.cp.size;
  const n = large.cp.size;
  if (!input.consistency) return { kind: 'need-consistency', first: m, second: n, rollback };
  const proof = input.consistency;
  let consistent = true;
  try {
    verifyConsistency(m, n, proof, small.cp.root, large.cp.root);
  } catch {
    consistent = false;
  }
  if (consistent) {
    if (rollback) return { kind: 'rollback', from: v.cp.size, to: cp.size };
    return from === 'log' ? { kind: 'advance', from: v.cp.size, cp } : { kind: 'consistent', view: v.cp.size, cp };
  }
  // Work out the root this proof gives the first m leaves of `large`; if the proof really belongs to `large`
  // and that root differs from small's, the pair is portable evidence.
  let first: Hash | undefined;
  if (m === 0n) first = emptyRoot();
  else if (isPow2(m)) {
    // a power of two's prefix root is not in the consistency proof: the inclusion path of its last leaf has it
    if (!input.inclusion) return { kind: 'need-inclusion', index: m - 1n, size: n, first: m };
    first = prefixRootFromInclusion(m, input.inclusion.leafHash, input.inclusion.path);
  } else first = prefixRootFromConsistency(m, n, proof);
  if (first && proofBindsPrefix(m, n, proof, first, large.cp.root) && !bytesEqual(first, small.cp.root)) {
    const notes: [string, string] = [small.note, large.note];
    const seen: [Sighting, Sighting] = [small.seen, large.seen];
    return {
      kind: 'split',
      evidence: inconsistentEvidence(verifier.name, notes, seen, m, n, proof, first, input.proofSource),
    };
  }
  return { kind: 'bad-proof', first: m, second: n };
}

/** Opens the stored view under the log's key. Throws MonitorError('stored-view') when it does not verify. */
export function openView(verifier: NoteVerifier, view: NoteSeen): Seen {
  try {
    return { ...view, cp: openCheckpoint(view.note, verifier).checkpoint };
  } catch (e) {
    // the data dir holds a view this key did not sign: refuse to compare rather than guess
    throw new MonitorError(
      'stored-view',
      `the stored view of ${verifier.name} does not verify under the configured log key (was --data used with another key?): ${errorMessage(e)}`,
    );
  }
}
