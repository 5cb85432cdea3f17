/**
 * In-memory tiles. A TileNode holds one tile's hashes plus every Merkle node inside it (the 8 levels between
 * its hashes and its root), built incrementally as the tile grows, so any proof node inside a tile costs one
 * lookup instead of up to 127 hashes.
 */
import { hashChildren } from './sha.js';

export const TILE_W = 256;
const HASH = 32;
/** Hash offset of sub-level k inside a TileNode buffer: 256 + 128 + ... hashes before it. */
const SUB_OFFSET = [0, 256, 384, 448, 480, 496, 504, 508, 510];
/** Sub-levels from this one up are kept for many tiles (2 KiB each); below it they are recomputed from the tile. */
export const UPPER_FROM = 3;
const UPPER_START = SUB_OFFSET[UPPER_FROM] * HASH;
const NODE_HASHES = 511;
/** Low-node reads answered by hashing before a tile builds its inner nodes for good. */
const LOW_READS_BEFORE_BUILD = 16;

export class TileNode {
  /** Hashes at the tile's own level, then each sub-level above, then the tile root. */
  readonly buf: Buffer;
  width = 0;
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
    if (this.built[k] !== p) return; // out of order: leave it to extend()
    this.buf.set(h, (SUB_OFFSET[k] + p) * HASH);
    this.built[k] = p + 1;
  }

  /** The tile bytes of its first `width` hashes (a view: the prefix never changes once written). */
  data(width = this.width): Buffer {
    return this.buf.subarray(0, width * HASH);
  }

  private extend(): void {
    for (let k = 1; k <= 8; k++) {
      const target = this.width >> k;
      const below = SUB_OFFSET[k - 1] * HASH;
      const here = SUB_OFFSET[k] * HASH;
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

  /**
   * The node at sub-level k (0..8) and position p inside this tile.
   * Precondition: the node is complete in this tile, i.e. (p + 1) << k <= width.
   */
  node(k: number, p: number): Buffer {
    if (k > 0 && this.built[k] <= p) {
      // A tile read back for a few proofs computes its low nodes directly (at most 3 hashes); one that keeps
      // serving proofs builds every missing inner node once (at most 192 hashes), which profiles showed is
      // cheaper than recomputing them for each of its proofs.
      if (k < UPPER_FROM && ((p + 1) << k) <= this.width && ++this.lowReads <= LOW_READS_BEFORE_BUILD) return lowNode(this.buf, k, p);
      this.extend();
    }
    if (((p + 1) << k) > this.width) throw new Error(`tile ${this.level}/${this.index} of width ${this.width} has no complete node ${k}/${p}`);
    const off = (SUB_OFFSET[k] + p) * HASH;
    return this.buf.subarray(off, off + HASH);
  }

  /** node(k, p) in standard base64, read straight from the tile's buffer when built. Same precondition. */
  nodeB64(k: number, p: number): string {
    if (k > 0 && this.built[k] <= p) return this.node(k, p).toString('base64');
    if (((p + 1) << k) > this.width) throw new Error(`tile ${this.level}/${this.index} of width ${this.width} has no complete node ${k}/${p}`);
    const off = (SUB_OFFSET[k] + p) * HASH;
    return this.buf.toString('base64', off, off + HASH);
  }
}

/** Node (k < UPPER_FROM, p) from the raw bytes of a full tile: at most 3 hashes. */
function lowNode(raw: Uint8Array, k: number, p: number): Buffer {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (k === 1) return hashChildren(b, 2 * p * HASH, (2 * p + 1) * HASH);
  const pair = Buffer.concat([hashChildren(b, 4 * p * HASH, (4 * p + 1) * HASH), hashChildren(b, (4 * p + 2) * HASH, (4 * p + 3) * HASH)]);
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

  has(k: K): boolean {
    return this.map.has(k);
  }

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

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

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}
