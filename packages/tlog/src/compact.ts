import { TlogError } from './errors.js';
import { type Hash, type Hasher, rfc6962 } from './hash.js';
import type { NodeId } from './proof.js';
import { foldRange, rangeNodes } from './proof.js';
import { type U64Like, toU64 } from './u64.js';

/**
 * A compact range over leaves [0, size): the roots of the perfect subtrees that make up the tree, left to
 * right, largest first. Appending a leaf costs O(log n) hashes amortised O(1); the root costs O(log n).
 */
export class CompactRange {
  private _size: bigint;
  private readonly _hashes: Hash[];
  private readonly _levels: number[];

  /**
   * Starts from a known state. Precondition: hashes are the perfect subtree roots of [0, size)
   * (what `hashes()` returned, or rootPlan(size).nodes read from storage).
   */
  constructor(
    size: U64Like = 0n,
    hashes: readonly Hash[] = [],
    readonly hasher: Hasher = rfc6962,
  ) {
    this._size = toU64(size, 'tree size');
    const nodes = rangeNodes(0n, this._size);
    if (nodes.length !== hashes.length) {
      throw new TlogError(
        'compact-range',
        `a tree of size ${this._size} has ${nodes.length} perfect subtrees, got ${hashes.length} hashes`,
      );
    }
    this._hashes = hashes.map((h) => h.slice());
    this._levels = nodes.map((n) => n.level);
  }

  /** The number of leaves appended so far. */
  get size(): bigint {
    return this._size;
  }

  /** The perfect subtree roots, left to right. */
  hashes(): Hash[] {
    return this._hashes.map((h) => h.slice());
  }

  /**
   * Appends one leaf hash. `visit` is called for every node that becomes complete (the leaf itself at
   * level 0 first, then each parent), so a caller can store them for proofs and tiles.
   */
  append(leafHash: Hash, visit?: (id: NodeId, hash: Hash) => void): void {
    let index = this._size;
    let level = 0;
    let h = leafHash;
    visit?.({ level, index }, h);
    while (this._levels.length > 0 && this._levels[this._levels.length - 1] === level) {
      h = this.hasher.node(this._hashes.pop()!, h);
      this._levels.pop();
      level++;
      index >>= 1n;
      visit?.({ level, index }, h);
    }
    this._hashes.push(h);
    this._levels.push(level);
    this._size++;
  }

  /** The Merkle tree hash of [0, size). */
  root(): Hash {
    return this._hashes.length === 0 ? this.hasher.empty() : foldRange(this._hashes, this.hasher);
  }
}
