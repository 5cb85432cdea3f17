/**
 * The storage interface the sequencer and the HTTP layer use. The LevelDB store (storage.ts) implements it;
 * another backend (PostgreSQL, contract section 9) implements the same so that neither side changes.
 *
 * Two rules every implementation keeps:
 * - reads only ever see the latest *durable* tree (an immutable snapshot swapped in by `commit`), never
 *   what `prepare` has sequenced but not yet written, so a read never fails because a write is in flight;
 * - `commit` acknowledges (resolves) only after the batch holding the entries and the signed checkpoint
 *   covering them is durable, and after checking the store is still the one that was opened.
 */
import type { UnavailableError } from './errors.js';

/** A leaf ready to sequence: its canonical data and SHA-256(0x00 || data). */
export interface Leaf {
  data: Uint8Array;
  hash: Uint8Array;
}

/** A durable, signed tree. */
export interface SignedTree {
  size: number;
  root: Buffer;
  /** Signed checkpoint note for exactly `size`. */
  checkpoint: string;
  /** STH timestamp, ms. */
  timestamp: number;
  /** RFC 6962 DigitallySigned over the TreeHeadSignature. */
  sthSignature: Buffer;
}

/** The result of committing a batch: each leaf's index, how many were new, and the signed tree covering them. */
export interface AppendResult {
  /** Index of each leaf, in order (the original index for duplicates). */
  indices: number[];
  /** Number of leaves that were new. */
  added: number;
  tree: SignedTree;
}

/** A sequenced, signed batch waiting for `commit`; the backend keeps what it needs to write it. */
export interface Prepared {
  readonly indices: number[];
  readonly added: number;
  /** The tree after this batch; undefined when nothing was new. */
  readonly tree: SignedTree | undefined;
}

/** Inner nodes of one full level-0 tile, read without waiting (get-proof-by-index's fast path). */
export interface LeafTile {
  /** Node at sub-level k (0..7), position p, in standard base64. Precondition: the node is in the tile. */
  nodeB64(k: number, p: number): string;
}

/** Reads, always against the latest durable tree; sizes passed in are at most `size`. */
export interface LogReads {
  /** The latest durable signed tree. */
  readonly tree: SignedTree;
  readonly size: number;
  /** Leaf hash at `index`. Precondition: index < size <= durable size. */
  leafHash(index: number, size?: number): Promise<Buffer>;
  /** Leaf hash from memory only; undefined when it must be loaded. Precondition: index < durable size. */
  leafHashSync(index: number): Buffer | undefined;
  /** Full level-0 tile `index` from memory only. Precondition: (index + 1) * 256 <= durable size. */
  leafTileSync(index: number): LeafTile | undefined;
  /** RFC 9162 inclusion proof. Precondition: index < size <= durable size. */
  inclusionProof(index: number, size: number): Promise<Uint8Array[]>;
  /** The inclusion proof from memory without yielding; undefined when something must be loaded. */
  inclusionProofSync(index: number, size: number): Uint8Array[] | undefined;
  /** inclusionProof, loading what it needs. */
  loadInclusionProof(index: number, size: number): Promise<Uint8Array[]>;
  /** RFC 9162 consistency proof. Precondition: first <= second <= durable size. */
  consistencyProof(first: number, second: number): Promise<Uint8Array[]>;
  /** Root of the tree of `size` leaves. Precondition: size <= durable size. */
  rootAt(size: number): Promise<Uint8Array>;
  /** Index of the leaf with this hash within the durable tree, if any. */
  findLeaf(leafHash: Uint8Array): Promise<number | undefined>;
  /** Tile L/N of `width` hashes, or undefined when the durable tree does not reach that width. */
  tileData(level: number, index: number, width: number): Promise<Buffer | undefined>;
  /** Entry bundle N with its first `width` entries, or undefined when the durable tree has fewer. */
  bundleData(index: number, width: number): Promise<Buffer | undefined>;
  /** Leaf data of entries [start, end). Precondition: start <= end <= durable size. */
  entries(start: number, end: number): Promise<Uint8Array[]>;
}

/** Writes: one sequencer, `prepare` serial, each prepared batch committed in order. */
export interface LogWrites {
  /**
   * Dedups and sequences leaves and signs the new tree; nothing is visible to reads until `commit`.
   * Rejects with UnavailableError (503) while writes are stopped.
   */
  prepare(leaves: readonly Leaf[]): Promise<Prepared>;
  /** Writes a prepared batch durably and makes its tree the one reads see. Rejects with UnavailableError. */
  commit(p: Prepared): Promise<AppendResult>;
  /** prepare + commit. */
  append(leaves: readonly Leaf[]): Promise<AppendResult>;
  /** The 503 every write gets while writes are stopped (storage failure, recovering); undefined while writing works. */
  readonly writeStopped: UnavailableError | undefined;
  /** The storage failure writes are stopped for, if any. */
  readonly failed: Error | undefined;
}

/** A log store (LevelDB or PostgreSQL): reads, the serial write path, and close. */
export interface LogStorage extends LogReads, LogWrites {
  /** Closes the store. Precondition: no commit in flight. */
  close(): Promise<void>;
}
