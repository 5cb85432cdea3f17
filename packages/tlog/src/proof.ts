import { ProofError } from './errors.js';
import { bytesEqual, hexEncode } from './encoding.js';
import { type Hash, type Hasher, HASH_SIZE, rfc6962 } from './hash.js';
import { type U64Like, bitLength, popCount, splitPoint, toU64, trailingZeros } from './u64.js';

/** A perfect subtree: the node at `level` (0 = leaves) covering leaves [index << level, (index + 1) << level). */
export interface NodeId {
  level: number;
  index: bigint;
}

/**
 * What it takes to build a proof from stored hashes: each proof element is the Merkle hash of a range of
 * leaves, which is the right fold of the perfect subtrees in `ranges[i]` (largest first). Only complete
 * (perfect) subtrees are ever asked for, which is exactly what tiles and a node store keep.
 */
export interface ProofPlan {
  ranges: NodeId[][];
  /** All nodes of all ranges, flattened in order: fetch these, then call buildProof. */
  nodes: NodeId[];
}

/** Perfect subtrees that make up leaves [begin, end), left to right. Precondition: begin <= end. */
export function rangeNodes(begin: bigint, end: bigint): NodeId[] {
  const out: NodeId[] = [];
  let pos = begin;
  while (pos < end) {
    // largest power of two that both fits the remaining range and keeps pos aligned
    let level = bitLength(end - pos) - 1;
    if (pos > 0n) level = Math.min(level, trailingZeros(pos));
    out.push({ level, index: pos >> BigInt(level) });
    pos += 1n << BigInt(level);
  }
  return out;
}

function plan(ranges: [bigint, bigint][]): ProofPlan {
  const rs = ranges.map(([b, e]) => rangeNodes(b, e));
  return { ranges: rs, nodes: rs.flat() };
}

/**
 * The nodes needed for the inclusion proof of leaf `index` in a tree of `size` leaves (RFC 9162 2.1.3.1).
 * Precondition: index < size; throws ProofError otherwise.
 */
export function inclusionProofPlan(index: U64Like, size: U64Like): ProofPlan {
  let m = toU64(index, 'leaf index');
  const n = toU64(size, 'tree size');
  if (m >= n) throw new ProofError('index-out-of-range', `leaf index ${m} is not below tree size ${n}`);
  const ranges: [bigint, bigint][] = [];
  let begin = 0n;
  let end = n;
  while (end - begin > 1n) {
    const k = splitPoint(end - begin);
    if (m < k) {
      ranges.push([begin + k, end]);
      end = begin + k;
    } else {
      ranges.push([begin, begin + k]);
      begin += k;
      m -= k;
    }
  }
  return plan(ranges.reverse());
}

/**
 * The nodes needed for the consistency proof between sizes size1 and size2 (RFC 9162 2.1.4.1).
 * Precondition: size1 <= size2; size1 = 0 or size1 = size2 give an empty proof.
 */
export function consistencyProofPlan(size1: U64Like, size2: U64Like): ProofPlan {
  let m = toU64(size1, 'first size');
  const n = toU64(size2, 'second size');
  if (m > n) throw new ProofError('size-order', `first size ${m} is greater than second size ${n}`);
  if (m === 0n || m === n) return plan([]);
  const ranges: [bigint, bigint][] = [];
  let begin = 0n;
  let end = n;
  let complete = true; // RFC 6962 SUBPROOF's b flag: m is the whole of the original old tree
  for (;;) {
    const len = end - begin;
    if (m === len) {
      if (!complete) ranges.push([begin, end]);
      break;
    }
    const k = splitPoint(len);
    if (m <= k) {
      ranges.push([begin + k, end]);
      end = begin + k;
    } else {
      ranges.push([begin, begin + k]);
      begin += k;
      m -= k;
      complete = false;
    }
  }
  return plan(ranges.reverse());
}

/** The perfect subtrees whose fold is the root of a tree of `size` leaves. */
export function rootPlan(size: U64Like): ProofPlan {
  const n = toU64(size, 'tree size');
  return plan(n === 0n ? [] : [[0n, n]]);
}

/** Right fold of perfect subtree hashes (largest first) into the hash of their range. Precondition: non-empty. */
export function foldRange(hashes: readonly Hash[], hasher: Hasher = rfc6962): Hash {
  let h = hashes[hashes.length - 1];
  for (let i = hashes.length - 2; i >= 0; i--) h = hasher.node(hashes[i], h);
  return h;
}

/**
 * Assembles a proof from the hashes of `plan.nodes` (same order and length).
 * Precondition: hashes[i] is the hash of plan.nodes[i].
 */
export function buildProof(p: ProofPlan, hashes: readonly Hash[], hasher: Hasher = rfc6962): Hash[] {
  if (hashes.length !== p.nodes.length) {
    throw new ProofError('plan-mismatch', `plan needs ${p.nodes.length} hashes, got ${hashes.length}`);
  }
  const out: Hash[] = [];
  let i = 0;
  for (const r of p.ranges) {
    out.push(foldRange(hashes.slice(i, i + r.length), hasher));
    i += r.length;
  }
  return out;
}

/** Reads the hashes of perfect subtrees, synchronously or not (a tile cache, LevelDB, HTTP). */
export type HashSource = (nodes: NodeId[]) => Hash[] | Promise<Hash[]>;

/** Inclusion proof of leaf `index` in a tree of `size`, from a hash source. Precondition: index < size. */
export async function inclusionProof(
  index: U64Like,
  size: U64Like,
  source: HashSource,
  hasher: Hasher = rfc6962,
): Promise<Hash[]> {
  const p = inclusionProofPlan(index, size);
  return buildProof(p, await source(p.nodes), hasher);
}

/** Consistency proof between two sizes, from a hash source. Precondition: size1 <= size2. */
export async function consistencyProof(
  size1: U64Like,
  size2: U64Like,
  source: HashSource,
  hasher: Hasher = rfc6962,
): Promise<Hash[]> {
  const p = consistencyProofPlan(size1, size2);
  return buildProof(p, await source(p.nodes), hasher);
}

/** Root of a tree of `size` leaves, from a hash source. */
export async function treeRoot(size: U64Like, source: HashSource, hasher: Hasher = rfc6962): Promise<Hash> {
  const p = rootPlan(size);
  if (p.nodes.length === 0) return hasher.empty();
  return buildProof(p, await source(p.nodes), hasher)[0];
}

function checkHash(h: Uint8Array, what: string): void {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new ProofError('hash-length', `${what} must be ${HASH_SIZE} bytes, got ${h?.length ?? typeof h}`);
  }
}

/**
 * The root that an inclusion proof implies for leafHash at index in a tree of size (RFC 9162 2.1.3.2).
 * Precondition: index < size and the proof has exactly the length that (index, size) require; throws ProofError.
 */
export function rootFromInclusionProof(
  index: U64Like,
  size: U64Like,
  leafHash: Hash,
  proof: readonly Hash[],
  hasher: Hasher = rfc6962,
): Hash {
  const idx = toU64(index, 'leaf index');
  const n = toU64(size, 'tree size');
  if (idx >= n) throw new ProofError('index-out-of-range', `leaf index ${idx} is not below tree size ${n}`);
  checkHash(leafHash, 'leaf hash');
  proof.forEach((p, i) => checkHash(p, `proof element ${i}`));
  const want = inclusionLength(idx, n);
  if (proof.length !== want) {
    throw new ProofError(
      'proof-length',
      `inclusion proof for index ${idx} in size ${n} needs ${want} hashes, got ${proof.length}`,
    );
  }
  return chain(idx, n - 1n, leafHash, proof, hasher, false).second;
}

/**
 * RFC 9162's walk up a proof path (2.1.3.2 step 4, 2.1.4.2 step 6) from node `fn`, in a tree whose last node at
 * that level is `sn`, starting at hash `seed`. `second` is the root the whole path reaches; `first`, tracked
 * only when asked (consistency proofs), folds in the left siblings alone: the old tree's root.
 * Precondition: the path has the length (fn, sn) require (checked by the callers); throws ProofError otherwise.
 */
function chain(
  fn: bigint,
  sn: bigint,
  seed: Hash,
  path: readonly Hash[],
  hasher: Hasher,
  trackFirst: boolean,
): { first: Hash; second: Hash } {
  let fr = seed;
  let sr = seed;
  for (const c of path) {
    if (sn === 0n) throw new ProofError('proof-length', 'proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      if (trackFirst) fr = hasher.node(c, fr);
      sr = hasher.node(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = hasher.node(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofError('proof-length', 'proof is too short');
  return { first: fr, second: sr };
}

/** Number of hashes in an inclusion proof. Precondition: index < size. */
export function inclusionLength(index: bigint, size: bigint): number {
  // levels below the point where the paths to index and to the last leaf diverge, plus the right border
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  return inner + border;
}

/**
 * Checks that leafHash is at index in the tree of size with the given root.
 * Precondition: none; throws ProofError saying what did not match.
 */
export function verifyInclusion(
  index: U64Like,
  size: U64Like,
  leafHash: Hash,
  proof: readonly Hash[],
  root: Hash,
  hasher: Hasher = rfc6962,
): void {
  checkHash(root, 'root');
  const got = rootFromInclusionProof(index, size, leafHash, proof, hasher);
  if (!bytesEqual(got, root)) {
    throw new ProofError('root-mismatch', `inclusion proof gives root ${hexEncode(got)}, expected ${hexEncode(root)}`, {
      expected: hexEncode(root),
      found: hexEncode(got),
    });
  }
}

/**
 * Checks that the tree of size2 with root2 extends the tree of size1 with root1 (RFC 9162 2.1.4.2).
 * size1 = size2 needs an empty proof and equal roots; size1 = 0 needs an empty proof.
 * Precondition: none; throws ProofError saying what did not match.
 */
export function verifyConsistency(
  size1: U64Like,
  size2: U64Like,
  proof: readonly Hash[],
  root1: Hash,
  root2: Hash,
  hasher: Hasher = rfc6962,
): void {
  const m = toU64(size1, 'first size');
  const n = toU64(size2, 'second size');
  proof.forEach((p, i) => checkHash(p, `proof element ${i}`));
  if (m > n) throw new ProofError('size-order', `first size ${m} is greater than second size ${n}`);
  if (m === 0n && !bytesEqual(root1, hasher.empty())) {
    throw new ProofError('root-mismatch', `first root ${hexEncode(root1)} is not the empty tree's root`, {
      expected: hexEncode(hasher.empty()),
      found: hexEncode(root1),
    });
  }
  if (m === n) {
    if (proof.length !== 0)
      throw new ProofError(
        'proof-length',
        `consistency proof between equal sizes must be empty, got ${proof.length} hashes`,
      );
    if (!bytesEqual(root1, root2)) {
      throw new ProofError('root-mismatch', `roots differ for the same size ${m}`, {
        expected: hexEncode(root1),
        found: hexEncode(root2),
      });
    }
    return;
  }
  checkHash(root2, 'second root');
  if (m === 0n) {
    // every tree extends the empty tree
    if (proof.length !== 0)
      throw new ProofError('proof-length', `consistency proof from size 0 must be empty, got ${proof.length} hashes`);
    return;
  }
  checkHash(root1, 'first root');
  const { first, second } = rootsFromConsistencyProof(m, n, proof, root1, hasher);
  if (!bytesEqual(first, root1)) {
    throw new ProofError(
      'root-mismatch',
      `consistency proof gives first root ${hexEncode(first)}, expected ${hexEncode(root1)}`,
      { expected: hexEncode(root1), found: hexEncode(first) },
    );
  }
  if (!bytesEqual(second, root2)) {
    throw new ProofError(
      'root-mismatch',
      `consistency proof gives second root ${hexEncode(second)}, expected ${hexEncode(root2)}`,
      { expected: hexEncode(root2), found: hexEncode(second) },
    );
  }
}

/**
 * The two roots a consistency proof from size1 to size2 commits to (RFC 9162 2.1.4.2, steps 2 to 6).
 * When size1 is a power of two the proof omits the old root, so `root1` is taken as given and returned as
 * `first`; otherwise `root1` is not used and `first` is recomputed from the proof, which is what a monitor
 * needs to show which old tree a fork's proof really extends.
 * Precondition: 0 < size1 < size2; throws ProofError on a proof of the wrong length.
 */
export function rootsFromConsistencyProof(
  size1: U64Like,
  size2: U64Like,
  proof: readonly Hash[],
  root1?: Hash,
  hasher: Hasher = rfc6962,
): { first: Hash; second: Hash } {
  const m = toU64(size1, 'first size');
  const n = toU64(size2, 'second size');
  if (m === 0n || m >= n)
    throw new ProofError('size-order', `consistency roots need 0 < first size < second size, got ${m} and ${n}`);
  proof.forEach((p, i) => checkHash(p, `proof element ${i}`));
  if (proof.length === 0) throw new ProofError('proof-length', `consistency proof from ${m} to ${n} is empty`);
  const want = consistencyLength(m, n);
  if (proof.length !== want) {
    throw new ProofError(
      'proof-length',
      `consistency proof from ${m} to ${n} needs ${want} hashes, got ${proof.length}`,
    );
  }
  // from a power of two the proof starts above the old root, which the caller supplies
  const pow2 = (m & (m - 1n)) === 0n;
  if (pow2) {
    if (!root1)
      throw new ProofError(
        'root-missing',
        `a consistency proof from a power of two (${m}) does not contain the first root`,
      );
    checkHash(root1, 'first root');
  }
  // the walk starts at the largest perfect subtree m's tree ends with
  const shift = BigInt(trailingZeros(m));
  const fn = (m - 1n) >> shift;
  const sn = (n - 1n) >> shift;
  return pow2 ? chain(fn, sn, root1!, proof, hasher, true) : chain(fn, sn, proof[0], proof.slice(1), hasher, true);
}

/** Number of hashes in a consistency proof. Precondition: 0 < size1 < size2. */
export function consistencyLength(size1: bigint, size2: bigint): number {
  // the path from the old tree's last perfect subtree to the new root, plus that subtree itself unless it is
  // the whole old tree (size1 a power of two)
  const shift = trailingZeros(size1);
  return inclusionLength(size1 - 1n, size2) - shift + ((size1 & (size1 - 1n)) === 0n ? 0 : 1);
}
