/**
 * In-memory tiles. A TileNode holds one tile's hashes plus its Merkle nodes at sub-levels 2..8 inside it,
 * built incrementally as the tile grows, so any proof node inside a tile costs one lookup, or one hash for
 * sub-level 1, never up to 127.
 */
import { hashChildren } from '@trailmark/node';

/** Hashes in a full tile. */
export const TILE_W = 256;
const HASH = 32;
/**
 * Sub-levels from this one up are stored; sub-level 1 is recomputed from the tile's own hashes when asked (one
 * hash). Storing it too would cost 4 KiB more per tile (a third more tile cache, about 16 MB at 1M entries);
 * leaving out sub-level 2 as well saved little more memory and cost proofs three hashes each.
 */
const STORED_FROM = 2;
/** Hash offset of sub-level k in a TileNode buffer: the tile's 256 hashes, then sub-levels 2, 3, ... 8. */
const OFFSET = [0, -1, 256, 320, 352, 368, 376, 380, 382];
const NODE_HASHES = 383;
/** Upper nodes (sub-levels 3..8, 63 hashes) are what a tile leaving the cache leaves behind. */
const UPPER_FROM = 3;
const UPPER_START = OFFSET[UPPER_FROM] * HASH;
/** Sub-level 2 reads a restored tile answers by hashing (3 hashes each) before it builds that level once. */
const LOW_READS_BEFORE_BUILD = 16;

/**
 * One tile in memory: its hashes and the inner nodes above them, grown as hashes are appended (see the file comment).
 */
export class TileNode {
  /** Hashes at the tile's own level, then each stored sub-level above, then the tile root. */
  readonly buf: Buffer;
  width = 0;
  /** Complete nodes stored per sub-level (2..8). */
  private readonly built = new Uint16Array(9);
  private lowReads = 0;

  /** Precondition: level 0..63, index a non-negative safe integer. */
  constructor(
    readonly level: number,
    readonly index: number,
    data?: Uint8Array,
  ) {
    this.buf = Buffer.alloc(NODE_HASHES * HASH);
    if (data) {
      this.buf.set(data, 0);
      this.width = data.length / HASH;
    }
  }

  /** Appends one hash. Precondition: the tile is not full and h is 32 bytes. */
  push(h: Uint8Array): void {
    this.buf.set(h, this.width * HASH);
    this.width++;
  }

  /**
   * Records an inner node computed elsewhere (the compact range computes them while appending), so proofs
   * never rehash it. Precondition: nodes of sub-level k (1..8) arrive in order, each once complete.
   */
  setNode(k: number, p: number, h: Uint8Array): void {
    if (k < STORED_FROM || this.built[k] !== p) return; // not stored, or out of order: leave it to extend()
    this.buf.set(h, (OFFSET[k] + p) * HASH);
    this.built[k] = p + 1;
  }

  /** The tile bytes of its first `width` hashes (a view: the prefix never changes once written). */
  data(width = this.width): Buffer {
    return this.buf.subarray(0, width * HASH);
  }

  private extend(): void {
    const base = OFFSET[STORED_FROM] * HASH;
    // sub-level 2 from the tile's own hashes (3 hashes a node), the rest from the sub-level below
    for (let p = this.built[STORED_FROM]; p < this.width >> STORED_FROM; p++) {
      const pair = Buffer.concat([
        lowNode(this.buf, STORED_FROM - 1, 2 * p),
        lowNode(this.buf, STORED_FROM - 1, 2 * p + 1),
      ]);
      hashChildren(pair, 0, HASH).copy(this.buf, base + p * HASH);
    }
    this.built[STORED_FROM] = this.width >> STORED_FROM;
    for (let k = STORED_FROM + 1; k <= 8; k++) {
      const target = this.width >> k;
      const below = OFFSET[k - 1] * HASH;
      const here = OFFSET[k] * HASH;
      for (let p = this.built[k]; p < target; p++) {
        hashChildren(this.buf, below + 2 * p * HASH, below + (2 * p + 1) * HASH).copy(this.buf, here + p * HASH);
      }
      this.built[k] = target;
    }
  }

  /** Installs upper inner nodes computed earlier (see upper()). Precondition: the tile is full. */
  seedUpper(upper: Buffer): void {
    upper.copy(this.buf, UPPER_START);
    for (let k = UPPER_FROM; k <= 8; k++) this.built[k] = TILE_W >> k;
  }

  /** A copy of the inner nodes at sub-levels UPPER_FROM..8 (63 hashes). Precondition: the tile is full. */
  upper(): Buffer {
    this.extend();
    return Buffer.from(this.buf.subarray(UPPER_START, NODE_HASHES * HASH));
  }

  /** Byte offset of stored node (k, p), building what is missing. Precondition: k = 0 or 2..8, node complete. */
  private offset(k: number, p: number): number {
    if ((p + 1) << k > this.width)
      throw new Error(`tile ${this.level}/${this.index} of width ${this.width} has no complete node ${k}/${p}`);
    if (k > 0 && this.built[k] <= p) this.extend();
    return (OFFSET[k] + p) * HASH;
  }

  /**
   * Whether node (k, p) is answered by hashing the tile's own hashes: always for sub-level 1 (never stored);
   * for sub-level 2 of a tile restored from its upper nodes, during its first few reads. A tile read back for a
   * few proofs thus costs 3 hashes a proof, one that keeps serving proofs builds the level once (192 hashes).
   */
  private lowNode(k: number, p: number): Buffer {
    if ((p + 1) << k > this.width)
      throw new Error(`tile ${this.level}/${this.index} of width ${this.width} has no complete node ${k}/${p}`);
    return lowNode(this.buf, k, p);
  }

  private hashed(k: number, p: number): boolean {
    if (k === 1) return true;
    return k === 2 && this.built[2] <= p && ++this.lowReads <= LOW_READS_BEFORE_BUILD;
  }

  /**
   * The node at sub-level k (0..8) and position p inside this tile.
   * Precondition: the node is complete in this tile, i.e. (p + 1) << k <= width.
   */
  node(k: number, p: number): Buffer {
    if (this.hashed(k, p)) return this.lowNode(k, p);
    const off = this.offset(k, p);
    return this.buf.subarray(off, off + HASH);
  }

  /** node(k, p) in standard base64, stored nodes read straight from the tile's buffer. Same precondition. */
  nodeB64(k: number, p: number): string {
    if (this.hashed(k, p)) return this.lowNode(k, p).toString('base64');
    const off = this.offset(k, p);
    return this.buf.toString('base64', off, off + HASH);
  }
}

/** Node (k = 1 or 2, p) from a tile's own hashes: 1 or 3 hashes. */
function lowNode(b: Buffer, k: number, p: number): Buffer {
  if (k === 1) return hashChildren(b, 2 * p * HASH, (2 * p + 1) * HASH);
  const pair = Buffer.concat([
    hashChildren(b, 4 * p * HASH, (4 * p + 1) * HASH),
    hashChildren(b, (4 * p + 2) * HASH, (4 * p + 3) * HASH),
  ]);
  return hashChildren(pair, 0, HASH);
}

/** A least-recently-used map with a fixed number of entries. */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  /** `onEvict` sees each entry pushed out by a newer one. */
  constructor(
    readonly capacity: number,
    private readonly onEvict?: (k: K, v: V) => void,
  ) {}

  /** Whether `k` is held, without making it recently used. */
  has(k: K): boolean {
    return this.map.has(k);
  }

  /** The value of `k`, made the most recently used; undefined when absent. */
  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  /** Stores `k` as the most recently used, evicting the least recently used entry past capacity. */
  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as K;
      const ov = this.map.get(oldest) as V;
      this.map.delete(oldest);
      this.onEvict?.(oldest, ov);
    }
  }
}
