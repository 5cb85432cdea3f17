/**
 * Reads of a LevelDB log, always against one immutable snapshot of the durable tree (EdgeSnapshot), taken
 * once per read: the writer builds the snapshot for each batch it prepares and `commit` swaps it in only once
 * the batch is durable, so what a read sees is durable and never moves under it.
 *
 * Proofs come from tiles: a node is located in its tile (`level / 8`, `level % 8`) and read from the tile's
 * inner nodes. Full tiles go through an LRU; a tile leaving it leaves its upper inner nodes behind (2 KiB) so
 * a later proof through it rehashes at most its lowest levels.
 */
import type { Level } from 'level';
import {
  bytesEqual,
  consistencyProof,
  decodeEntryBundle,
  encodeEntryBundle,
  foldRange,
  inclusionProofPlan,
  tileWidth,
  treeRoot,
  type NodeId,
} from '@trailmark/tlog';
import { LogStateError, UnavailableError } from './errors.js';
import { bundleKey, buf, hashKey, readU64, tileKey } from './layout.js';
import type { LogReads, SignedTree } from './log-storage.js';
import { nodeHasher } from '@trailmark/node';
import { Lru, TILE_W, TileNode } from './tilecache.js';

/** The log's LevelDB, with binary keys and values. */
export type Db = Level<Uint8Array, Uint8Array>;

/** What reads see: the durable tree and its right edge. Immutable once built (tile prefixes never change). */
export interface EdgeSnapshot {
  readonly tree: SignedTree;
  /**
   * The partial tile of every level at tree.size, by level. A later batch may have appended hashes beyond
   * tree.size to the same TileNode; reads never ask for them.
   */
  readonly tiles: readonly TileNode[];
  /** The partial entry bundle at tree.size (index = floor(size / 256)); a copy, so later batches do not grow it. */
  readonly bundle: { readonly index: number; readonly entries: readonly Uint8Array[] };
}

/** Sizes of the read caches. */
export interface CacheOptions {
  /** Full tiles kept whole in memory (~12 KiB each with their inner nodes from sub-level 2 up; default 4,096, i.e. 1M entries). */
  tileCacheTiles?: number;
  /** Full tiles whose upper inner nodes are kept (2 KiB each; default 32,768, i.e. 8M entries). */
  upperCacheTiles?: number;
}

/** Where node `node` lies: tile level L, sub-level k, tile index, position p in the tile. */
export function locate(node: NodeId): { L: number; k: number; tIndex: number; p: number } {
  const L = node.level >> 3;
  const k = node.level & 7;
  const first = Number(node.index) * 2 ** k;
  return { L, k, tIndex: Math.floor(first / TILE_W), p: (first % TILE_W) / 2 ** k };
}

/** A tile's id in the caches: level < 64 and index < 2^53 / 256, so unique and exact as a double. */
export const tileId = (level: number, index: number): number => index * 64 + level;

/**
 * LogReads over a durable EdgeSnapshot with tile, bundle and upper-node caches; the LevelDB and PostgreSQL stores
 * extend it with their own storage access.
 */
export class DurableReads implements LogReads {
  protected snap!: EdgeSnapshot;
  private tiles!: Lru<number, TileNode>;
  /** Upper inner nodes of full tiles: a proof node at sub-level >= 3 is one lookup, lower ones <= 3 hashes. */
  private uppers!: Lru<number, Buffer>;
  private bundles!: Lru<number, Buffer>;
  /** Folded right-edge ranges by `size/level/index`: a tree has at most 63, so this holds dozens of sizes. */
  private edgeMemo!: Lru<string, Uint8Array>;
  /** Set while the database is being reopened after a storage failure: reads wait for it. */
  protected reopening: Promise<void> | undefined;

  protected constructor(
    protected db: Db,
    private readonly cacheOpts: CacheOptions,
  ) {
    this.resetCaches();
  }

  /**
   * Empties every cache. After a failed write the caches may hold tiles and bundles of batches that never
   * became durable; the batches sequenced next may differ, so nothing beyond the durable tree may survive.
   */
  protected resetCaches(): void {
    this.tiles = new Lru(this.cacheOpts.tileCacheTiles ?? 4096, (id, node) => {
      if (node.width === TILE_W && !this.uppers.has(id)) this.uppers.set(id, node.upper());
    });
    this.uppers = new Lru(this.cacheOpts.upperCacheTiles ?? 32_768);
    this.bundles = new Lru(16);
    this.edgeMemo = new Lru(2048);
  }

  /** How many full tiles' upper nodes the cache holds (recovery preloads that many recent tiles). */
  get upperCapacity(): number {
    return this.uppers.capacity;
  }

  /** A tile the writer just filled; prefix-immutable, so reads may use it once the tree reaches it. */
  protected cacheFullTile(level: number, index: number, node: TileNode): void {
    this.tiles.set(tileId(level, index), node);
  }

  protected cacheBundle(index: number, encoded: Buffer): void {
    this.bundles.set(index, encoded);
  }

  /** Keeps the upper inner nodes of stored full tile 0/index (recovery does this for the most recent ones). */
  protected seedUpper(level: number, index: number, raw: Uint8Array): void {
    this.uppers.set(tileId(level, index), new TileNode(level, index, raw).upper());
  }

  private async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.reopening) await this.reopening;
    // a reopen that failed leaves the database closed until the next attempt: a retryable answer, not a 500
    if (this.db.status !== 'open')
      throw new UnavailableError('the log database is being reopened after a storage failure', 1);
    return this.db.get(key);
  }

  /** The latest durable signed tree. */
  get tree(): SignedTree {
    return this.snap.tree;
  }

  /** Size of the durable tree reads see. */
  get size(): number {
    return this.snap.tree.size;
  }

  private async tile(snap: EdgeSnapshot, level: number, index: number): Promise<TileNode | undefined> {
    const cached = this.tileSync(snap, level, index);
    if (cached) return cached;
    const raw = await this.get(tileKey(level, index));
    if (!raw) return undefined;
    if (raw.length !== TILE_W * 32) {
      // a stored partial tile left of the right edge cannot happen in a consistent store
      throw new LogStateError(
        'tile',
        `stored tile ${level}/${index} has ${raw.length / 32} hashes, expected a full tile`,
      );
    }
    const node = new TileNode(level, index, raw);
    this.tiles.set(tileId(level, index), node);
    return node;
  }

  private tileSync(snap: EdgeSnapshot, level: number, index: number): TileNode | undefined {
    const e = snap.tiles[level];
    if (e && e.index === index) return e;
    return this.tiles.get(tileId(level, index));
  }

  /**
   * Hashes of complete nodes (perfect subtrees) of the tree of `size` leaves, from tiles.
   * Precondition: every node lies within [0, size) and size <= the durable size.
   */
  async nodeHashes(nodes: readonly NodeId[], size: number, snap = this.snap): Promise<Buffer[]> {
    const out = new Array<Buffer>(nodes.length);
    for (let i = 0; i < nodes.length; i++)
      out[i] = this.cachedNode(snap, nodes[i]) ?? (await this.loadNode(snap, nodes[i], size));
    return out;
  }

  /** nodeHashes from memory (and LevelDB's synchronous reads) only; undefined when a tile must be loaded. */
  private nodeHashesSync(snap: EdgeSnapshot, nodes: readonly NodeId[]): Buffer[] | undefined {
    const out = new Array<Buffer>(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const h = this.cachedNode(snap, nodes[i]);
      if (h === undefined) return undefined;
      out[i] = h;
    }
    return out;
  }

  /** A node from a cached tile, or from a stored full tile whose upper nodes are known. */
  private cachedNode(snap: EdgeSnapshot, node: NodeId): Buffer | undefined {
    const { L, k, tIndex, p } = locate(node);
    return this.memoryTile(snap, L, tIndex)?.node(k, p);
  }

  /**
   * Tile `level/index` without waiting: cached, the right edge, or a stored full tile whose upper nodes are
   * known (its own 8 KiB come from LevelDB's synchronous read); undefined when it must be loaded.
   */
  private memoryTile(snap: EdgeSnapshot, level: number, index: number): TileNode | undefined {
    const t = this.tileSync(snap, level, index);
    if (t) return t;
    const id = tileId(level, index);
    const u = this.uppers.get(id);
    if (!u) return undefined;
    const raw = this.rawTile(level, index);
    if (!raw) return undefined;
    const whole = new TileNode(level, index, raw);
    whole.seedUpper(u);
    this.tiles.set(id, whole);
    return whole;
  }

  /** Full level-0 tile `index` from memory only. Precondition: (index + 1) * 256 <= durable size. */
  leafTileSync(index: number): TileNode | undefined {
    const t = this.memoryTile(this.snap, 0, index);
    return t && t.width === TILE_W ? t : undefined;
  }

  private async loadNode(snap: EdgeSnapshot, node: NodeId, size: number): Promise<Buffer> {
    const { L, k, tIndex, p } = locate(node);
    const whole = await this.tile(snap, L, tIndex);
    if (!whole)
      throw new Error(
        `internal: tile ${L}/${tIndex} missing for node ${node.level}/${node.index} in a tree of ${size}`,
      );
    this.uppers.set(tileId(L, tIndex), whole.upper());
    return whole.node(k, p);
  }

  private rawTile(level: number, index: number): Uint8Array | undefined {
    // while the database is reopened (after a storage failure) take the asynchronous path, which waits
    if (this.reopening || this.db.status !== 'open') return undefined;
    const raw = this.db.getSync(tileKey(level, index));
    if (raw && raw.length !== TILE_W * 32)
      throw new LogStateError(
        'tile',
        `stored tile ${level}/${index} has ${raw.length / 32} hashes, expected a full tile`,
      );
    return raw;
  }

  /** Leaf hash at `index`. Precondition: index < size <= durable size. */
  async leafHash(index: number, size = this.snap.tree.size): Promise<Buffer> {
    return (await this.nodeHashes([{ level: 0, index: BigInt(index) }], size))[0];
  }

  /** RFC 9162 inclusion proof, from memory when possible. Precondition: index < size <= durable size. */
  async inclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    return this.inclusionProofSync(index, size) ?? this.loadInclusionProof(index, size);
  }

  /** RFC 9162 inclusion proof, loading the nodes it needs. Precondition: index < size <= durable size. */
  async loadInclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    const snap = this.snap;
    const plan = inclusionProofPlan(BigInt(index), BigInt(size));
    const out = new Array<Uint8Array>(plan.ranges.length);
    for (let i = 0; i < plan.ranges.length; i++) {
      const r = plan.ranges[i];
      out[i] =
        r.length === 1
          ? (await this.nodeHashes(r, size, snap))[0]
          : this.memoEdge(r, size, foldRange(await this.nodeHashes(r, size, snap), nodeHasher));
    }
    return out;
  }

  /**
   * The inclusion proof when every tile it needs is in memory, without yielding to the event loop (a proof
   * answered in the request's own tick costs markedly less than one answered after an await); else undefined.
   */
  inclusionProofSync(index: number, size: number): Uint8Array[] | undefined {
    const snap = this.snap;
    const plan = inclusionProofPlan(BigInt(index), BigInt(size));
    const out = new Array<Uint8Array>(plan.ranges.length);
    for (let i = 0; i < plan.ranges.length; i++) {
      const r = plan.ranges[i];
      const h = r.length === 1 ? this.cachedNode(snap, r[0]) : this.edgeRangeSync(snap, r, size);
      if (h === undefined) return undefined;
      out[i] = h;
    }
    return out;
  }

  /** Leaf hash from memory only; undefined when it must be loaded. Precondition: index < durable size. */
  leafHashSync(index: number): Buffer | undefined {
    return this.cachedNode(this.snap, { level: 0, index: BigInt(index) });
  }

  /**
   * The hash of a proof range made of several perfect subtrees: the tree's ragged right edge, which every
   * proof in a tree of this size shares, so it is folded once per (size, range) rather than once per proof.
   */
  private edgeRangeSync(snap: EdgeSnapshot, nodes: NodeId[], size: number): Uint8Array | undefined {
    const h = this.edgeMemo.get(`${size}/${nodes[0].level}/${nodes[0].index}`);
    if (h) return h;
    const hashes = this.nodeHashesSync(snap, nodes);
    return hashes && this.memoEdge(nodes, size, foldRange(hashes, nodeHasher));
  }

  private memoEdge(nodes: NodeId[], size: number, h: Uint8Array): Uint8Array {
    this.edgeMemo.set(`${size}/${nodes[0].level}/${nodes[0].index}`, h);
    return h;
  }

  /** RFC 9162 consistency proof between two sizes. Precondition: first <= second <= durable size. */
  async consistencyProof(first: number, second: number): Promise<Uint8Array[]> {
    const snap = this.snap;
    return consistencyProof(first, second, (nodes) => this.nodeHashes(nodes, second, snap), nodeHasher);
  }

  /** Root of the tree of `size` leaves. Precondition: size <= durable size. */
  async rootAt(size: number): Promise<Uint8Array> {
    const snap = this.snap;
    return treeRoot(size, (nodes) => this.nodeHashes(nodes, size, snap), nodeHasher);
  }

  /**
   * Index of the leaf with this hash within the durable tree, confirmed against the full hash; undefined when absent.
   */
  async findLeaf(leafHash: Uint8Array): Promise<number | undefined> {
    const snap = this.snap;
    const size = snap.tree.size;
    const v = await this.get(hashKey(leafHash));
    if (!v) return undefined;
    for (let o = 0; o < v.length; o += 8) {
      const idx = readU64(v, o);
      if (idx < size && bytesEqual(await this.leafHash(idx, size), leafHash)) return idx;
    }
    return undefined;
  }

  /** Tile `level`/`index` of `width` hashes, or undefined when the durable tree does not reach that width. */
  async tileData(level: number, index: number, width: number): Promise<Buffer | undefined> {
    const snap = this.snap;
    if (tileWidth(level, index, snap.tree.size) < width) return undefined;
    const t = await this.tile(snap, level, index);
    return t?.data(width);
  }

  /** Entry bundle `index` with its first `width` entries, or undefined when the durable tree has fewer. */
  async bundleData(index: number, width: number): Promise<Buffer | undefined> {
    const snap = this.snap;
    if (tileWidth(0, index, snap.tree.size) < width) return undefined;
    if (index === snap.bundle.index) return buf(encodeEntryBundle(snap.bundle.entries.slice(0, width)));
    const full = await this.fullBundle(snap, index);
    if (width === TILE_W) return full;
    return buf(encodeEntryBundle(decodeEntryBundle(full).slice(0, width)));
  }

  /** Full entry bundle `index`. Precondition: it is full in `snap`'s tree. */
  private async fullBundle(snap: EdgeSnapshot, index: number): Promise<Buffer> {
    let full = this.bundles.get(index);
    if (!full) {
      const raw = await this.get(bundleKey(index));
      if (!raw) throw new Error(`internal: entry bundle ${index} missing below size ${snap.tree.size}`);
      full = buf(raw);
      this.bundles.set(index, full);
    }
    return full;
  }

  /** Leaf data of entries [start, end). Precondition: start <= end <= durable size (an end beyond it throws). */
  async entries(start: number, end: number): Promise<Uint8Array[]> {
    const snap = this.snap;
    if (!(Number.isSafeInteger(start) && start >= 0 && start <= end && end <= snap.tree.size))
      throw new RangeError(`internal: entries [${start}, ${end}) asked of a tree of ${snap.tree.size}`);
    const out: Uint8Array[] = [];
    for (let b = Math.floor(start / TILE_W); b * TILE_W < end; b++) {
      const list = b === snap.bundle.index ? snap.bundle.entries : decodeEntryBundle(await this.fullBundle(snap, b));
      const from = Math.max(start - b * TILE_W, 0);
      const to = Math.min(end - b * TILE_W, TILE_W);
      for (let i = from; i < to; i++) out.push(list[i]);
    }
    return out;
  }
}
