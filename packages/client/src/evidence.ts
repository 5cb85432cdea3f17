/**
 * Portable evidence of a split view: two checkpoints, validly signed by one log key, that no append-only
 * history can join. Anyone holding the log's vkey can check it offline with verifyEvidence.
 *
 * JSON shape (contract section 7), plus one field for `inconsistent`:
 *   {"origin", "kind", "checkpoints": [note, note], "detail", "seen": [{"from", "at"}, {"from", "at"}],
 *    "consistency": {"proof": [b64, ...], "first_root": b64}}
 *
 * - same-size-different-root: both checkpoints have one size and different roots.
 * - inconsistent: checkpoints[0] is smaller (size m, root r1), checkpoints[1] larger (size n, root r2).
 *   `consistency.proof` is the RFC 6962 consistency proof m -> n that the log served for its tree r2, and
 *   `first_root` is the root of the first m leaves of that tree. The proof verifies from first_root to r2,
 *   which binds first_root to r2 (collision resistance), and first_root != r1: the log signed two trees
 *   that disagree about their first m leaves.
 * `seen[i]` says from whom and when checkpoints[i] came.
 */
import {
  errorMessage,
  b64decode,
  b64encode,
  bitLength,
  bytesEqual,
  checkSignatures,
  hexEncode,
  openCheckpoint,
  parseNote,
  rfc6962,
  sha256,
  utf8,
  rootsFromConsistencyProof,
  verifyConsistency,
  type Checkpoint,
  type Hash,
  type NoteVerifier,
} from '@trailmark/tlog';
import { EvidenceError } from './errors.js';

/**
 * How two checkpoints of one log key conflict: one size with two roots, or a smaller tree the larger one does not
 * extend.
 */
export type EvidenceKind = 'same-size-different-root' | 'inconsistent';

/** Where and when one checkpoint of an Evidence record was seen. */
export interface Sighting {
  /** Where the checkpoint came from: a log URL, a peer URL, `gossip from <address>`, `add-checkpoint from <address>`. */
  from: string;
  /** RFC 3339 time it was first seen. */
  at: string;
}

/** A split-view evidence record in the JSON shape of contract section 7 (see the file comment). */
export interface Evidence {
  origin: string;
  kind: EvidenceKind;
  checkpoints: [string, string];
  detail: string;
  seen: [Sighting, Sighting];
  consistency?: { proof: string[]; first_root: string };
}

/** The result of verifyEvidence: the evidence, both parsed checkpoints and what they prove. */
export interface VerifiedEvidence {
  evidence: Evidence;
  first: Checkpoint;
  second: Checkpoint;
  /** One sentence saying what the two checkpoints prove. */
  summary: string;
  /**
   * With witness keys given: the witnesses whose valid cosignature is on each checkpoint, and those on both
   * (a witness that cosigned both sides of a fork broke its promise too).
   */
  cosigners?: { first: string[]; second: string[]; both: string[] };
}

/** What verifyEvidence checks beyond the log signatures. */
export interface VerifyEvidenceOptions {
  /** Witness keys (e.g. a policy's), by the name to report them under. */
  witnesses?: ReadonlyMap<string, NoteVerifier>;
}

function cosignersOf(note: string, witnesses: ReadonlyMap<string, NoteVerifier>): string[] {
  const parsed = parseNote(note);
  const out: string[] = [];
  for (const [name, v] of witnesses) {
    const check = checkSignatures(parsed, v);
    if (check.verified.length > 0 && check.failed.length === 0) out.push(name);
  }
  return out;
}

function bad(msg: string, cause?: unknown): EvidenceError {
  return new EvidenceError('malformed-evidence', `malformed evidence: ${msg}`, { cause });
}

/** Stable identifier of a piece of evidence: SHA-256 over its kind and both checkpoint bodies, hex. Precondition: well-formed evidence. */
export function evidenceId(kind: EvidenceKind, bodies: [string, string]): string {
  const sorted = kind === 'same-size-different-root' ? [...bodies].sort() : bodies;
  return hexEncode(sha256(utf8(`${kind}\n${sorted[0]}\n${sorted[1]}`))).slice(0, 32);
}

/** The evidence's id as evidenceId computes it. Precondition: ev passed verifyEvidence (or was built here). */
export function idOfEvidence(ev: Evidence): string {
  return evidenceId(ev.kind, [parseNote(ev.checkpoints[0]).text, parseNote(ev.checkpoints[1]).text]);
}

/** Whether x is a power of two (such a tree size's root is a single perfect subtree). Precondition: x >= 0. */
export function isPow2(x: bigint): boolean {
  return x > 0n && (x & (x - 1n)) === 0n;
}

/**
 * The root of the first m leaves that a consistency proof m -> n commits to, following RFC 9162 2.1.4.2
 * without assuming the old root. Precondition: 0 < m < n and m is not a power of two (then the proof's first
 * hash starts the fold; for a power of two the prefix root is not in the proof, see prefixRootFromInclusion).
 * Returns undefined when the proof's shape is wrong. The result is only meaningful once verifyConsistency
 * accepts it against the second root.
 */
export function prefixRootFromConsistency(m: bigint, n: bigint, proof: readonly Hash[]): Hash | undefined {
  if (m <= 0n || m >= n || isPow2(m)) return undefined;
  try {
    return rootsFromConsistencyProof(m, n, proof).first;
  } catch {
    return undefined;
  }
}

/**
 * The hash of the perfect subtree [0, m) from the inclusion path of leaf m - 1 in a larger tree: the leaf is
 * the rightmost of that subtree, so the path's first log2(m) hashes are its left siblings.
 * Precondition: m is a power of two and path is the audit path of leaf m - 1.
 */
export function prefixRootFromInclusion(m: bigint, leafHash: Hash, path: readonly Hash[]): Hash | undefined {
  if (!isPow2(m)) return undefined;
  const k = bitLength(m) - 1;
  if (path.length < k) return undefined;
  let h = leafHash;
  for (let i = 0; i < k; i++) h = rfc6962.node(path[i], h);
  return h;
}

/** Whether `firstRoot` is, per `proof`, the root of the first m leaves of the tree (n, root2). Precondition: none. */
export function proofBindsPrefix(m: bigint, n: bigint, proof: readonly Hash[], firstRoot: Hash, root2: Hash): boolean {
  try {
    verifyConsistency(m, n, proof, firstRoot, root2);
    return true;
  } catch {
    return false;
  }
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw bad(`${what} must be a string`);
  return v;
}

function hashOf(v: unknown, what: string): Hash {
  let h: Uint8Array;
  try {
    h = b64decode(str(v, what), what);
  } catch (e) {
    throw bad(errorMessage(e), e);
  }
  if (h.length !== 32) throw bad(`${what} is ${h.length} bytes, want 32`);
  return h;
}

/** Checks the JSON shape of an evidence document and returns it typed. Precondition: none (any JSON value). */
export function parseEvidence(v: unknown): Evidence {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not a JSON object');
  const o = v as Record<string, unknown>;
  const origin = str(o.origin, 'origin');
  const kind = str(o.kind, 'kind');
  if (kind !== 'same-size-different-root' && kind !== 'inconsistent') {
    throw bad(`kind ${JSON.stringify(kind)} is neither "same-size-different-root" nor "inconsistent"`);
  }
  if (!Array.isArray(o.checkpoints) || o.checkpoints.length !== 2)
    throw bad('checkpoints must be an array of two notes');
  const checkpoints = o.checkpoints.map((c, i) => str(c, `checkpoints[${i}]`)) as [string, string];
  const detail = typeof o.detail === 'string' ? o.detail : '';
  const seenRaw = Array.isArray(o.seen) ? o.seen : [];
  const seen = [0, 1].map((i) => {
    const s = (seenRaw[i] ?? {}) as Record<string, unknown>;
    return { from: typeof s.from === 'string' ? s.from : 'unknown', at: typeof s.at === 'string' ? s.at : '' };
  }) as [Sighting, Sighting];
  const ev: Evidence = { origin, kind, checkpoints, detail, seen };
  if (o.consistency !== undefined) {
    const c = o.consistency as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || !Array.isArray(c.proof)) throw bad('consistency.proof must be an array');
    ev.consistency = {
      proof: c.proof.map((p, i) => str(p, `consistency.proof[${i}]`)),
      first_root: str(c.first_root, 'consistency.first_root'),
    };
  }
  return ev;
}

/**
 * Verifies evidence offline against the log's key: both checkpoints validly signed by it (same origin), and
 * either one size with two roots, or a consistency proof that binds the larger tree's prefix to a root other
 * than the smaller checkpoint's. Precondition: none; throws EvidenceError saying what did not hold.
 */
export function verifyEvidence(
  v: unknown,
  logVerifier: NoteVerifier,
  opts: VerifyEvidenceOptions = {},
): VerifiedEvidence {
  const r = verifyEvidenceCore(v, logVerifier);
  if (!opts.witnesses) return r;
  const first = cosignersOf(r.evidence.checkpoints[0], opts.witnesses);
  const second = cosignersOf(r.evidence.checkpoints[1], opts.witnesses);
  return { ...r, cosigners: { first, second, both: first.filter((n) => second.includes(n)) } };
}

function verifyEvidenceCore(v: unknown, logVerifier: NoteVerifier): VerifiedEvidence {
  const ev = parseEvidence(v);
  const cps = ev.checkpoints.map((note, i) => {
    try {
      return openCheckpoint(note, logVerifier).checkpoint;
    } catch (e) {
      throw new EvidenceError(
        'signature',
        `checkpoints[${i}] is not a valid checkpoint of ${logVerifier.name}: ${errorMessage(e)}`,
        { cause: e },
      );
    }
  });
  const [a, b] = cps;
  if (ev.origin !== logVerifier.name) {
    throw new EvidenceError(
      'malformed-evidence',
      `evidence origin ${JSON.stringify(ev.origin)} is not the log key's name ${JSON.stringify(logVerifier.name)}`,
    );
  }
  if (ev.kind === 'same-size-different-root') {
    if (a.size !== b.size)
      throw new EvidenceError(
        'not-misbehaviour',
        `sizes differ (${a.size} and ${b.size}); same-size-different-root needs one size`,
      );
    if (bytesEqual(a.root, b.root))
      throw new EvidenceError('not-misbehaviour', `both checkpoints have size ${a.size} and the same root`);
    return {
      evidence: ev,
      first: a,
      second: b,
      summary: `log ${ev.origin} signed two different roots for tree size ${a.size}`,
    };
  }
  if (a.size >= b.size)
    throw new EvidenceError(
      'not-misbehaviour',
      `inconsistent evidence needs checkpoints[0] smaller than checkpoints[1], got sizes ${a.size} and ${b.size}`,
    );
  if (!ev.consistency) throw bad('inconsistent evidence has no "consistency" field');
  const proof = ev.consistency.proof.map((p, i) => hashOf(p, `consistency.proof[${i}]`));
  const firstRoot = hashOf(ev.consistency.first_root, 'consistency.first_root');
  try {
    verifyConsistency(a.size, b.size, proof, firstRoot, b.root);
  } catch (e) {
    throw new EvidenceError(
      'not-misbehaviour',
      `the consistency proof does not tie first_root to the second checkpoint: ${errorMessage(e)}`,
      { cause: e },
    );
  }
  if (bytesEqual(firstRoot, a.root)) {
    throw new EvidenceError(
      'not-misbehaviour',
      `the first ${a.size} leaves of the second tree have the first checkpoint's root: the checkpoints are consistent`,
    );
  }
  return {
    evidence: ev,
    first: a,
    second: b,
    summary: `log ${ev.origin} signed tree ${b.size} whose first ${a.size} leaves have root ${b64encode(firstRoot)}, but also signed tree ${a.size} with root ${b64encode(a.root)}`,
  };
}

/** Builds same-size evidence. Precondition: both notes verified, same origin and size, different roots. */
export function sameSizeEvidence(
  origin: string,
  notes: [string, string],
  seen: [Sighting, Sighting],
  size: bigint,
): Evidence {
  return {
    origin,
    kind: 'same-size-different-root',
    checkpoints: notes,
    detail: `two checkpoints of ${origin} for tree size ${size} have different root hashes`,
    seen,
  };
}

/**
 * Builds inconsistent evidence. Precondition: notes[0] (m, r1) and notes[1] (n, r2) verified, m < n,
 * proofBindsPrefix(m, n, proof, firstRoot, r2) and firstRoot != r1.
 */
export function inconsistentEvidence(
  origin: string,
  notes: [string, string],
  seen: [Sighting, Sighting],
  m: bigint,
  n: bigint,
  proof: readonly Hash[],
  firstRoot: Hash,
  proofSource: string,
): Evidence {
  return {
    origin,
    kind: 'inconsistent',
    checkpoints: notes,
    detail:
      `consistency proof ${m} -> ${n} from ${proofSource} verifies against the second checkpoint with first root ` +
      `${b64encode(firstRoot)}, not the first checkpoint's root: the log's tree of size ${n} does not extend its tree of size ${m}`,
    seen,
    consistency: { proof: proof.map(b64encode), first_root: b64encode(firstRoot) },
  };
}
