/**
 * c2sp.org/tlog-proof@v1: an offline-verifiable proof of inclusion.
 *
 *   c2sp.org/tlog-proof@v1
 *   [extra <base64>]
 *   index <decimal>
 *   <base64 hash>            (zero or more, leaf's sibling first)
 *   <empty line>
 *   <checkpoint note, verbatim>
 */
import { b64decode, b64encode } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';
import { openCheckpoint, type Checkpoint, type VerifiedCosignature } from './checkpoint.js';
import type { Hasher } from './hash.js';
import type { NoteVerifier } from './keys.js';
import { parseNote, type Note } from './note.js';
import type { Policy } from './policy.js';
import { verifyInclusion } from './proof.js';
import { MAX_U64, toU64, type U64Like } from './u64.js';

/** The first line of every tlog-proof. */
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
/** A proof in a tree of at most 2^64 leaves has at most 64 hashes. */
const MAX_PROOF_HASHES = 64;

/**
 * tlog-proof errors. Codes: 'malformed-proof' (syntax), 'inclusion' (the inclusion proof does not verify).
 * Checkpoint, note and proof errors (CheckpointError, NoteError, ProofError) pass through unchanged.
 */
export class TlogProofError extends TlogError {}

/** A parsed tlog-proof: leaf index, inclusion proof, checkpoint note and unauthenticated extra data. */
export interface TlogProof {
  index: bigint;
  /** Inclusion proof hashes, from the leaf's sibling up to the root's child. */
  proof: Uint8Array[];
  /** The checkpoint note text (signed, with any cosignatures), verbatim. */
  checkpoint: string;
  /** Opaque extra data: NOT authenticated, never trust it. */
  extra?: Uint8Array;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

function bad(msg: string, cause?: unknown): TlogProofError {
  return new TlogProofError('malformed-proof', `malformed tlog-proof: ${msg}`, { cause });
}

/** Formats a tlog-proof. The checkpoint must be a signed note text (it is embedded verbatim). */
export function formatTlogProof(p: {
  index: U64Like;
  proof: readonly Uint8Array[];
  checkpoint: string;
  extra?: Uint8Array;
}): string {
  const index = toU64(p.index, 'leaf index');
  if (p.proof.length > MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof hashes`);
  for (const h of p.proof)
    if (!(h instanceof Uint8Array) || h.length !== 32) throw bad('proof hashes must be 32 bytes');
  parseNote(p.checkpoint);
  const lines = [TLOG_PROOF_HEADER];
  if (p.extra !== undefined) lines.push(`extra ${b64encode(p.extra)}`);
  lines.push(`index ${index}`);
  for (const h of p.proof) lines.push(b64encode(h));
  return lines.join('\n') + '\n\n' + p.checkpoint;
}

/** Parses a tlog-proof strictly (the embedded checkpoint is parsed as a note, not verified). */
export function parseTlogProof(text: string): TlogProof {
  if (typeof text !== 'string') throw bad('not text');
  const sep = text.indexOf('\n\n');
  if (sep < 0) throw bad('no empty line before the checkpoint');
  const head = text.slice(0, sep).split('\n');
  const checkpoint = text.slice(sep + 2);
  let i = 0;
  if (head[i++] !== TLOG_PROOF_HEADER) throw bad(`first line must be ${TLOG_PROOF_HEADER}`);
  let extra: Uint8Array | undefined;
  if (head[i]?.startsWith('extra ')) {
    try {
      extra = b64decode(head[i].slice('extra '.length), 'extra data');
    } catch (e) {
      throw bad(errorMessage(e), e);
    }
    i++;
  }
  const indexLine = head[i++];
  if (indexLine === undefined || !indexLine.startsWith('index ')) throw bad('missing "index" line');
  const indexText = indexLine.slice('index '.length);
  if (!DECIMAL.test(indexText))
    throw bad(`index ${JSON.stringify(indexText.slice(0, 30))} is not a decimal without leading zeros`);
  const index = BigInt(indexText);
  if (index > MAX_U64) throw bad('index exceeds 2^64-1');
  const proof: Uint8Array[] = [];
  for (; i < head.length; i++) {
    if (proof.length >= MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof hashes`);
    let h: Uint8Array;
    try {
      h = b64decode(head[i], `proof hash ${proof.length}`);
    } catch (e) {
      throw bad(errorMessage(e), e);
    }
    if (h.length !== 32) throw bad(`proof hash ${proof.length} is ${h.length} bytes, want 32`);
    proof.push(h);
  }
  try {
    parseNote(checkpoint);
  } catch (e) {
    throw bad(`checkpoint: ${errorMessage(e)}`, e);
  }
  return { index, proof, checkpoint, ...(extra !== undefined ? { extra } : {}) };
}

/** What verifyTlogProof checks beyond the log signature and the inclusion proof. */
export interface VerifyTlogProofOptions {
  /** A tlog-policy: its quorum must be met and a known witness's bad cosignature fails the proof. */
  policy?: Policy;
  /** Additional witness keys whose cosignatures are checked (and reported). */
  witnesses?: readonly NoteVerifier[];
  hasher?: Hasher;
}

/** The result of verifyTlogProof: the leaf index and the verified checkpoint with its cosignatures. */
export interface VerifiedTlogProof {
  index: bigint;
  checkpoint: Checkpoint;
  note: Note;
  cosignatures: VerifiedCosignature[];
  /** Carried, NOT authenticated. */
  extra?: Uint8Array;
}

/**
 * Verifies a tlog-proof for the entry with `leafHash`: the checkpoint's log signature (and origin), the
 * witness cosignatures and quorum when a policy or witnesses are given, and the inclusion proof against the
 * checkpoint's root. Throws a TlogError subclass saying what failed.
 */
export function verifyTlogProof(
  text: string,
  leafHash: Uint8Array,
  logVerifier: NoteVerifier,
  opts: VerifyTlogProofOptions = {},
): VerifiedTlogProof {
  const p = parseTlogProof(text);
  const opened = openCheckpoint(p.checkpoint, logVerifier, {
    ...(opts.witnesses ? { witnesses: opts.witnesses } : {}),
    ...(opts.policy ? { policy: opts.policy } : {}),
  });
  const cp = opened.checkpoint;
  if (p.index >= cp.size)
    throw new TlogProofError('inclusion', `index ${p.index} is not below the checkpoint's tree size ${cp.size}`);
  try {
    verifyInclusion(p.index, cp.size, leafHash, p.proof, cp.root, opts.hasher);
  } catch (e) {
    throw new TlogProofError('inclusion', `inclusion proof does not verify: ${errorMessage(e)}`, { cause: e });
  }
  return {
    index: p.index,
    checkpoint: cp,
    note: opened.note,
    cosignatures: opened.cosignatures,
    ...(p.extra !== undefined ? { extra: p.extra } : {}),
  };
}
