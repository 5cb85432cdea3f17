/**
 * Sequencing: the writer's right edge of the tree. Leaves are appended to the compact range; every completed
 * node at a level that is a multiple of 8 goes into its tile, full tiles and bundles into the batch, and the
 * new tree is signed into the same batch. The writer runs ahead of the disk (the next batch is sequenced
 * while the previous one is written); what reads see is the EdgeSnapshot it builds for each batch, which the
 * store swaps in once that batch is durable.
 *
 * The partial bundle and the partial level-0 tile are never written: the entries of a partial bundle are
 * stored as pending entries and both are rebuilt from them at start. Upper partial tiles change once per 256
 * entries below and are rewritten then.
 */
import { CompactRange, encodeEntryBundle, signCheckpoint, type NodeId } from '@trailmark/tlog';
import type { LogKey } from './keys.js';
import { bundleKey, buf, encodeState, pendingKey, STATE_KEY, tileKey } from './layout.js';
import type { SignedTree } from './log-storage.js';
import type { EdgeSnapshot } from './reads.js';
import { nodeHasher } from '@trailmark/node';
import { signTreeHead } from './sth.js';
import { TILE_W, TileNode } from './tilecache.js';

/** Where a prepared batch's writes go (a LevelDB batch, or rows for PostgreSQL). */
export interface BatchWriter {
  put(k: Uint8Array, v: Uint8Array): unknown;
  del(k: Uint8Array): unknown;
}

/** The durable right edge a writer starts from (recovery's result). */
export interface EdgeState {
  /** The durable tree; undefined for a log not yet created. */
  tree: SignedTree | undefined;
  compact: CompactRange;
  /** The partial tile of every level. */
  tiles: TileNode[];
  bundle: { index: number; entries: Uint8Array[] };
}

/** Callbacks for what a batch completes, so the store can cache full tiles and bundles once the batch is durable. */
export interface EdgeHooks {
  /** A tile filled by the batch being prepared (not durable yet). */
  fullTile(level: number, index: number, node: TileNode): void;
  fullBundle(index: number, encoded: Buffer): void;
}

/** The writer's right edge of the tree (see the file comment). Precondition: one writer per log, used serially. */
export class EdgeWriter {
  private readonly compact: CompactRange;
  private readonly edge: TileNode[];
  /** The tile of each level that filled last: its top inner nodes complete just after it does. */
  private readonly lastFull: (TileNode | undefined)[] = [];
  private bundle: { index: number; entries: Uint8Array[] };
  private lastTimestamp: number;
  private batch: BatchWriter | undefined;
  private start = 0;
  private readonly touched = new Set<number>();
  private readonly visit = (id: NodeId, h: Uint8Array) => this.onNode(id, h);

  constructor(
    private readonly key: LogKey,
    state: EdgeState,
    private readonly hooks: EdgeHooks,
  ) {
    this.compact = state.compact;
    this.edge = state.tiles;
    this.bundle = state.bundle;
    this.lastTimestamp = state.tree?.timestamp ?? 0;
  }

  /** Leaves sequenced so far (durable or not). */
  get size(): number {
    return Number(this.compact.size);
  }

  /** Starts a batch at the current size. Precondition: the previous batch was finished. */
  begin(batch: BatchWriter): void {
    this.batch = batch;
    this.start = this.size;
    this.touched.clear();
  }

  /** Appends one new leaf (its 'H' key is the caller's). */
  append(hash: Uint8Array, data: Uint8Array): void {
    this.compact.append(hash, this.visit);
    const eb = this.bundle;
    eb.entries.push(data);
    if (eb.entries.length === TILE_W) {
      const encoded = buf(encodeEntryBundle(eb.entries));
      this.batch!.put(bundleKey(eb.index), encoded);
      // entries of this bundle written as pending by earlier commits
      for (let j = eb.index * TILE_W; j < this.start; j++) this.batch!.del(pendingKey(j));
      this.hooks.fullBundle(eb.index, encoded);
      this.bundle = { index: eb.index + 1, entries: [] };
    }
  }

  /**
   * Finishes the batch: pending entries, changed upper tiles, and the new tree signed into the state.
   * Returns the snapshot reads will see once the batch is durable. Precondition: at least one leaf appended.
   */
  finish(): EdgeSnapshot {
    const batch = this.batch!;
    const size = this.size;
    const eb = this.bundle;
    for (let j = Math.max(this.start, eb.index * TILE_W); j < size; j++)
      batch.put(pendingKey(j), eb.entries[j - eb.index * TILE_W]);
    for (const level of this.touched) {
      const node = this.edge[level];
      // the partial level-0 tile is rebuilt from the pending entries at start
      if (level > 0 && node.width > 0) batch.put(tileKey(level, node.index), node.data());
    }
    const tree = this.sign(batch, size, Date.now());
    this.batch = undefined;
    return this.snapshot(tree);
  }

  /** What reads see of the tree as sequenced so far, which is `tree`. */
  snapshot(tree: SignedTree): EdgeSnapshot {
    return { tree, tiles: [...this.edge], bundle: { index: this.bundle.index, entries: this.bundle.entries.slice() } };
  }

  /** Ends a batch that added nothing. */
  abandon(): void {
    this.batch = undefined;
  }

  /**
   * Signs the tree of `size` (the compact range's) and puts the state holding it into `batch`. The STH
   * timestamp is `now`, or the last one signed if the clock went back: timestamps never decrease.
   */
  sign(batch: BatchWriter, size: number, now: number): SignedTree {
    const timestamp = Math.max(now, this.lastTimestamp);
    this.lastTimestamp = timestamp;
    const root = Buffer.from(this.compact.root());
    const checkpoint = signCheckpoint(
      { origin: this.key.origin, size: BigInt(size), root, extensions: [] },
      this.key.signer,
    );
    const sthSignature = signTreeHead(this.key.signer, BigInt(timestamp), BigInt(size), root);
    batch.put(
      STATE_KEY,
      encodeState({
        origin: this.key.origin,
        vkey: this.key.vkey,
        size: String(size),
        root,
        compact: this.compact.hashes(),
        checkpoint,
        timestamp,
        sth: sthSignature,
      }),
    );
    return { size, root, checkpoint, timestamp, sthSignature };
  }

  private onNode(id: NodeId, h: Uint8Array): void {
    const k = id.level & 7;
    if (k !== 0) {
      // an inner node of a tile: keep it, so proofs on fresh tiles need no hashing
      const L = id.level >> 3;
      const first = Number(id.index) * 2 ** k;
      const t = Math.floor(first / TILE_W);
      const node =
        this.edge[L]?.index === t ? this.edge[L] : this.lastFull[L]?.index === t ? this.lastFull[L] : undefined;
      node?.setNode(k, (first % TILE_W) >> k, h);
      return;
    }
    const level = id.level >> 3;
    const idx = Number(id.index);
    let node = this.edge[level];
    if (!node) node = this.edge[level] = new TileNode(level, Math.floor(idx / TILE_W));
    if (node.index * TILE_W + node.width !== idx)
      throw new Error(
        `internal: node ${id.level}/${idx} does not extend tile ${level}/${node.index} of width ${node.width}`,
      );
    node.push(h);
    this.touched.add(level);
    if (node.width === TILE_W) {
      this.batch!.put(tileKey(level, node.index), node.data());
      this.hooks.fullTile(level, node.index, node);
      this.lastFull[level] = node;
      this.edge[level] = new TileNode(level, node.index + 1);
    }
  }
}

/** The writer state of an empty log. */
export function emptyEdge(): EdgeState {
  return {
    tree: undefined,
    compact: new CompactRange(0n, [], nodeHasher),
    tiles: [new TileNode(0, 0)],
    bundle: { index: 0, entries: [] },
  };
}
