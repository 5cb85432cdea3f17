/**
 * The log's storage: one LevelDB, binary keys, every state change one atomic `sync: true` batch.
 *
 *   'S'                         state: size, compact range, latest signed checkpoint and STH (JSON)
 *   'E' u64be(N)                full entry bundle N (tlog-tiles bundle encoding)
 *   'P' u64be(I)                entry I while its bundle is partial (deleted when the bundle is written)
 *   'T' u8(L) u64be(N)          tile L/N (tlog-tiles); full ones, and the partial one of levels >= 1
 *   'H' leafHash[0:8]           u64be index (several if 64-bit prefixes collide; confirmed against tile 0)
 *
 * Leaf data is stored once (pending, then in its bundle); its hash once (in its full level-0 tile). A commit
 * writes only what is new: the partial bundle and the partial level-0 tile are never rewritten, they are
 * rebuilt at start from the pending entries (hashing them), which also checks them against the signed root.
 * Upper partial tiles change once per 256 entries below and are rewritten then. The right edge lives in
 * memory; full tiles go through an LRU.
 */
import { Level } from 'level';
import {
  b64decode,
  b64encode,
  buildProof,
  bytesEqual,
  CompactRange,
  decodeEntryBundle,
  encodeEntryBundle,
  foldRange,
  inclusionProofPlan,
  openCheckpoint,
  parseVkey,
  rootPlan,
  tileWidth,
  signCheckpoint,
  consistencyProof,
  treeRoot,
  type NodeId,
} from '@trailmark/tlog';
import { LogStateError, UnavailableError } from './errors.js';
import { PrefixFilter } from './filter.js';
import type { LogKey } from './keys.js';
import type { Logger } from './logger.js';
import { nodeHasher } from './sha.js';
import { signTreeHead } from './sth.js';
import { Lru, TILE_W, TileNode } from './tilecache.js';

const STATE_KEY = Buffer.from('S');
const MAX_SIZE = Number.MAX_SAFE_INTEGER;

function u64(n: number): Buffer {
  return indexKey([], n);
}

function readU64(b: Uint8Array, off: number): number {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return v.readUInt32BE(off) * 2 ** 32 + v.readUInt32BE(off + 4);
}

/** A key of one or two prefix bytes then a big-endian uint64 index (so LevelDB orders keys by index). */
function indexKey(prefix: readonly number[], n: number): Buffer {
  const k = Buffer.alloc(prefix.length + 8);
  k.set(prefix, 0);
  k.writeUInt32BE(Math.floor(n / 2 ** 32), prefix.length);
  k.writeUInt32BE(n % 2 ** 32, prefix.length + 4);
  return k;
}

const bundleKey = (n: number): Buffer => indexKey([0x45 /* 'E' */], n);
const pendingKey = (i: number): Buffer => indexKey([0x50 /* 'P' */], i);
const tileKey = (level: number, n: number): Buffer => indexKey([0x54 /* 'T' */, level], n);

function hashKey(leafHash: Uint8Array): Buffer {
  const k = Buffer.alloc(9);
  k[0] = 0x48; // 'H'
  k.set(leafHash.subarray(0, 8), 1);
  return k;
}

function buf(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A leaf ready to sequence: its canonical data and SHA-256(0x00 || data). */
export interface Leaf {
  data: Uint8Array;
  hash: Uint8Array;
}

/** The latest durable, signed tree. */
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

export interface AppendResult {
  /** Index of each leaf, in order (the original index for duplicates). */
  indices: number[];
  /** Number of leaves that were new. */
  added: number;
  tree: SignedTree;
}

/** A sequenced, signed batch waiting to be written (see LogStore.prepare). */
export interface Prepared {
  batch: ReturnType<Level<Uint8Array, Uint8Array>['batch']> | undefined;
  indices: number[];
  added: number;
  /** Leaf hashes of the new entries, from index `start`. */
  hashes: Uint8Array[];
  start: number;
  /** The tree after this batch; undefined when nothing was new. */
  tree: SignedTree | undefined;
}

export interface StoreOptions {
  /** Full tiles kept whole in memory (~12 KiB each with their inner nodes from sub-level 2 up; default 4,096, i.e. 1M entries). */
  tileCacheTiles?: number;
  /** Full tiles whose upper inner nodes are kept (2 KiB each; default 32,768, i.e. 8M entries). */
  upperCacheTiles?: number;
  logger?: Logger;
}

interface StateJson {
  v: 1;
  origin: string;
  vkey: string;
  size: string;
  root: string;
  compact: string[];
  checkpoint: string;
  timestamp: number;
  sth: string;
}

/**
 * Sequencing storage. `append` must not run concurrently with itself (the Sequencer serialises it); reads may
 * run at any time and only ever see the latest durable tree.
 */
export class LogStore {
  private compact!: CompactRange;
  private readonly edge: TileNode[] = [];
  /** The tile of each level that filled last: its top inner nodes complete just after it does. */
  private readonly lastFull: (TileNode | undefined)[] = [];
  private edgeBundle: { index: number; entries: Uint8Array[] } = { index: 0, entries: [] };
  private readonly tiles: Lru<number, TileNode>;
  /**
   * Full tiles filled by batches not yet durable. LevelDB does not hold them until their commit, so they stay
   * here whatever the LRU evicts: a proof at the durable size may need a tile a later batch has filled.
   */
  private readonly fresh = new Map<number, TileNode>();
  /** Upper inner nodes of full tiles: a proof node at sub-level >= 3 is one lookup, lower ones <= 3 hashes. */
  private readonly uppers: Lru<number, Buffer>;
  private readonly bundles = new Lru<number, Buffer>(16);
  private readonly filter = new PrefixFilter();
  private latest!: SignedTree;
  private failure: Error | undefined;
  private batch: ReturnType<Level<Uint8Array, Uint8Array>['batch']> | undefined;
  private touched = new Set<number>();
  /** Prepared batches not yet durable, oldest first. */
  private readonly inflight: Prepared[] = [];
  private lastTimestamp = 0;
  private readonly visit = (id: NodeId, h: Uint8Array) => this.onNode(id, h);

  private constructor(
    readonly db: Level<Uint8Array, Uint8Array>,
    readonly key: LogKey,
    readonly logger: Logger,
    opts: StoreOptions,
  ) {
    // a full tile leaving the cache leaves its upper inner nodes behind (2 KiB), so a later proof through it
    // rehashes at most its lowest levels; tiles still cached need no second copy of them
    this.tiles = new Lru(opts.tileCacheTiles ?? 4096, (id, node) => {
      if (node.width === TILE_W && !this.uppers.has(id)) this.uppers.set(id, node.upper());
    });
    this.uppers = new Lru(opts.upperCacheTiles ?? 32_768);
  }

  /**
   * Opens (creating on first use) the log in `dir` signed by `key`, checking the stored tree against the
   * stored signed checkpoint. Throws LogStateError, refusing to serve, when anything does not match.
   */
  static async open(dir: string, key: LogKey, opts: StoreOptions = {}): Promise<LogStore> {
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      throw new LogStateError('db-open', `cannot open the log database in ${dir}: ${cause?.message ?? (e as Error).message}`);
    }
    const store = new LogStore(db, key, opts.logger ?? { info() {}, warn() {}, error() {} }, opts);
    try {
      await store.recover();
    } catch (e) {
      await db.close();
      throw e;
    }
    return store;
  }

  /** The latest durable signed tree. */
  get tree(): SignedTree {
    return this.latest;
  }

  get size(): number {
    return this.latest.size;
  }

  /** Set once a durable write failed: the in-memory tree may be ahead of the disk, so nothing more is written. */
  get failed(): Error | undefined {
    return this.failure;
  }

  private async recover(): Promise<void> {
    const raw = await this.db.get(STATE_KEY);
    if (raw === undefined) {
      for await (const k of this.db.keys({ limit: 1 })) {
        throw new LogStateError('no-state', `the database holds data (key ${Buffer.from(k).toString('hex')}) but no log state: not a Trailmark log, or a damaged one`);
      }
      await this.init();
      return;
    }
    let st: StateJson;
    try {
      st = JSON.parse(Buffer.from(raw).toString('utf8'));
    } catch {
      throw new LogStateError('state', 'the stored log state is not valid JSON');
    }
    if (st.v !== 1) throw new LogStateError('state', `unknown log state version ${String(st.v)}`);
    if (st.origin !== this.key.origin || st.vkey !== this.key.vkey) {
      throw new LogStateError('key-mismatch', `this data directory belongs to log ${st.vkey}, not to the configured key ${this.key.vkey}`);
    }
    let opened;
    try {
      opened = openCheckpoint(st.checkpoint, parseVkey(this.key.vkey));
    } catch (e) {
      throw new LogStateError('checkpoint', `the stored checkpoint does not verify with the log key: ${(e as Error).message}`);
    }
    const size = Number(opened.checkpoint.size);
    if (String(size) !== st.size) throw new LogStateError('state', `stored size ${st.size} differs from the signed checkpoint's size ${opened.checkpoint.size}`);
    const signedRoot = Buffer.from(opened.checkpoint.root);

    // the partial bundle: pending entries, which also give the partial level-0 tile
    const bIndex = Math.floor(size / TILE_W);
    const bWidth = size % TILE_W;
    const entries: Uint8Array[] = [];
    for await (const [k, v] of this.db.iterator({ gte: pendingKey(bIndex * TILE_W), lt: Buffer.from([0x51]) })) {
      const i = readU64(k, 1);
      if (i >= size) {
        throw new LogStateError('rolled-back', `the store holds entry ${i} beyond the signed size ${size}: its state was rolled back; serving it could sign a second tree of a signed size`);
      }
      if (i !== bIndex * TILE_W + entries.length) throw new LogStateError('entries', `pending entry ${bIndex * TILE_W + entries.length} is missing for size ${size}`);
      entries.push(Buffer.from(v));
    }
    if (entries.length !== bWidth) throw new LogStateError('entries', `the partial bundle ${bIndex} should hold ${bWidth} entries for size ${size}, found ${entries.length}`);

    // right edge: the partial tile at every level (level 0 from the pending entries)
    for (let level = 0, n = size; n > 0 || level === 0; level++, n = Math.floor(n / TILE_W)) {
      const index = Math.floor(n / TILE_W);
      const width = n % TILE_W;
      const node = new TileNode(level, index);
      if (level === 0) for (const e of entries) node.push(nodeHasher.leaf(e));
      else if (width > 0) {
        const t = await this.db.get(tileKey(level, index));
        if (!t || t.length !== width * 32) {
          throw new LogStateError('tile', `tile ${level}/${index} should hold ${width} hashes for size ${size}, found ${t ? t.length / 32 : 'none'}`);
        }
        node.buf.set(t, 0);
        node.width = width;
      }
      this.edge[level] = node;
      if (n === 0) break;
    }
    for await (const k of this.db.keys({ gte: bundleKey(bIndex), lt: Buffer.from([0x46]), limit: 1 })) {
      throw new LogStateError('rolled-back', `the store holds entry bundle ${readU64(k, 1)} beyond the signed size ${size}: its state was rolled back; serving it could sign a second tree of a signed size`);
    }

    // the dedup filter, from every leaf hash: full level-0 tiles in storage, then the partial one
    let full = 0;
    for await (const t of this.db.values({ gte: tileKey(0, 0), lt: tileKey(0, this.edge[0].index) })) {
      if (t.length !== TILE_W * 32) throw new LogStateError('tile', `stored tile 0/${full} is not full below the right edge`);
      for (let o = 0; o < t.length; o += 32) this.filter.add(t.subarray(o, o + 32));
      // the upper inner nodes of the most recent tiles, so proofs are fast from the first request
      if (full >= this.edge[0].index - this.uppers.capacity) this.uppers.set(this.tileId(0, full), new TileNode(0, full, t).upper());
      full++;
    }
    if (full !== this.edge[0].index) throw new LogStateError('tile', `found ${full} full level-0 tiles, size ${size} needs ${this.edge[0].index}`);
    for (let i = 0; i < this.edge[0].width; i++) this.filter.add(this.edge[0].node(0, i));

    // the root recomputed from the stored tiles and entries must be the signed one: never sign over another tree
    const plan = rootPlan(BigInt(size));
    const hashes = await this.nodeHashes(plan.nodes, size);
    const root = plan.nodes.length === 0 ? nodeHasher.empty() : buildProof(plan, hashes, nodeHasher)[0];
    if (!bytesEqual(root, signedRoot)) {
      throw new LogStateError(
        'root-mismatch',
        `the stored tiles and entries give root ${Buffer.from(root).toString('base64')} for size ${size}, but the signed checkpoint says ${signedRoot.toString('base64')}: the store was altered; refusing to serve it`,
      );
    }
    const compact = st.compact.map((h) => b64decode(h, 'compact range hash'));
    if (compact.length !== hashes.length || compact.some((h, i) => !bytesEqual(h, hashes[i]))) {
      throw new LogStateError('compact-mismatch', `the stored compact range differs from the stored tiles at size ${size}`);
    }
    this.compact = new CompactRange(BigInt(size), hashes, nodeHasher);
    this.edgeBundle = { index: bIndex, entries };
    this.latest = { size, root: signedRoot, checkpoint: st.checkpoint, timestamp: st.timestamp, sthSignature: Buffer.from(b64decode(st.sth, 'sth')) };
    this.lastTimestamp = st.timestamp;
    this.logger.info('log recovered', { size, root: signedRoot.toString('base64') });
  }

  private async init(): Promise<void> {
    this.compact = new CompactRange(0n, [], nodeHasher);
    this.edge[0] = new TileNode(0, 0);
    this.edgeBundle = { index: 0, entries: [] };
    const batch = this.db.batch();
    this.latest = this.sign(batch, 0, Date.now());
    this.lastTimestamp = this.latest.timestamp;
    await batch.write({ sync: true });
    this.logger.info('new log created', { origin: this.key.origin, vkey: this.key.vkey });
  }

  private sign(batch: { put(k: Uint8Array, v: Uint8Array): unknown }, size: number, timestamp: number): SignedTree {
    const root = Buffer.from(this.compact.root());
    const checkpoint = signCheckpoint({ origin: this.key.origin, size: BigInt(size), root, extensions: [] }, this.key.signer);
    const sthSignature = signTreeHead(this.key.signer, BigInt(timestamp), BigInt(size), root);
    const st: StateJson = {
      v: 1,
      origin: this.key.origin,
      vkey: this.key.vkey,
      size: String(size),
      root: root.toString('base64'),
      compact: this.compact.hashes().map(b64encode),
      checkpoint,
      timestamp,
      sth: sthSignature.toString('base64'),
    };
    batch.put(STATE_KEY, Buffer.from(JSON.stringify(st)));
    return { size, root, checkpoint, timestamp, sthSignature };
  }

  private onNode(id: NodeId, h: Uint8Array): void {
    const k = id.level & 7;
    if (k !== 0) {
      // an inner node of a tile: keep it, so proofs on fresh tiles need no hashing
      const L = id.level >> 3;
      const first = Number(id.index) * 2 ** k;
      const t = Math.floor(first / TILE_W);
      const node = this.edge[L]?.index === t ? this.edge[L] : this.lastFull[L]?.index === t ? this.lastFull[L] : undefined;
      node?.setNode(k, (first % TILE_W) >> k, h);
      return;
    }
    const level = id.level >> 3;
    const idx = Number(id.index);
    let node = this.edge[level];
    if (!node) node = this.edge[level] = new TileNode(level, Math.floor(idx / TILE_W));
    if (node.index * TILE_W + node.width !== idx) throw new Error(`internal: node ${id.level}/${idx} does not extend tile ${level}/${node.index} of width ${node.width}`);
    node.push(h);
    this.touched.add(level);
    if (node.width === TILE_W) {
      this.batch!.put(tileKey(level, node.index), node.data());
      this.tiles.set(this.tileId(level, node.index), node);
      this.fresh.set(this.tileId(level, node.index), node);
      this.lastFull[level] = node;
      this.edge[level] = new TileNode(level, node.index + 1);
    }
  }

  private tileId(level: number, index: number): number {
    // level < 64 and index < 2^53 / 256: unique and exact as a double
    return index * 64 + level;
  }

  /**
   * Sequences leaves: duplicates (of stored leaves, of prepared ones, or within the call) get their first
   * index, new leaves are appended in memory, and the new tree is signed; returns the batch to write.
   * Memory runs ahead of the disk until commit(); readers only ever see `tree`, the durable one.
   * Precondition: calls to prepare are serial, and each prepared batch is committed in order.
   */
  async prepare(leaves: readonly Leaf[]): Promise<Prepared> {
    if (this.failure) throw this.fail(this.failure);
    // batches prepared before this one: not durable yet, or made durable while this call awaits its reads
    const earlier = [...this.inflight];
    // only leaves whose prefix might be stored need a read: duplicates, and 64-bit prefix collisions
    const maybe: number[] = [];
    for (let i = 0; i < leaves.length; i++) if (this.filter.mightContain(leaves[i].hash)) maybe.push(i);
    const stored = new Map<number, Uint8Array>();
    const known = new Map<string, number>();
    if (maybe.length > 0) {
      const got = await this.db.getMany(maybe.map((i) => hashKey(leaves[i].hash)));
      const durable = this.latest.size;
      for (let k = 0; k < maybe.length; k++) {
        const v = got[k];
        if (!v) continue;
        const i = maybe[k];
        stored.set(i, v);
        // confirm prefix hits against the full leaf hash in the level-0 tile
        for (let o = 0; o < v.length; o += 8) {
          const idx = readU64(v, o);
          if (idx < durable && bytesEqual(await this.leafHash(idx, durable), leaves[i].hash)) known.set(buf(leaves[i].hash).toString('latin1'), idx);
        }
      }
      // a commit may have failed while this call waited for the reads
      if (this.failed) throw this.fail(this.failed);
    }

    const start = Number(this.compact.size);
    const batch = this.db.batch();
    this.batch = batch;
    this.touched.clear();
    const indices = new Array<number>(leaves.length);
    const added: Uint8Array[] = [];
    // built only when a leaf's prefix may repeat one not yet durable (rare): full hash -> index, prefix -> indices
    let recent: Map<string, number> | undefined;
    let recentPrefixes: Map<string, number[]> | undefined;
    const buildRecent = () => {
      recent = new Map();
      recentPrefixes = new Map();
      const note = (h: Uint8Array, idx: number) => {
        const hs = buf(h).toString('latin1');
        if (!recent!.has(hs)) recent!.set(hs, idx);
        const pk = hs.slice(0, 8);
        const list = recentPrefixes!.get(pk);
        if (list) list.push(idx);
        else recentPrefixes!.set(pk, [idx]);
      };
      for (const f of earlier) f.hashes.forEach((h, k) => note(h, f.start + k));
      added.forEach((h, k) => note(h, start + k));
      return note;
    };
    let note: ((h: Uint8Array, idx: number) => void) | undefined;
    let size = start;
    try {
      for (let i = 0; i < leaves.length; i++) {
        const leaf = leaves[i];
        const risky = stored.has(i) || this.filter.mightContain(leaf.hash);
        let hValue: Buffer | undefined;
        if (risky) {
          const hs = buf(leaf.hash).toString('latin1');
          note ??= buildRecent();
          const dup = known.get(hs) ?? recent!.get(hs);
          if (dup !== undefined) {
            indices[i] = dup;
            continue;
          }
          // another leaf shares the 8-byte prefix: keep every index under the key
          const all = new Set<number>(recentPrefixes!.get(hs.slice(0, 8)) ?? []);
          const prev = stored.get(i);
          if (prev) for (let o = 0; o < prev.length; o += 8) all.add(readU64(prev, o));
          all.add(size);
          hValue = Buffer.concat([...all].map(u64));
        }
        if (size >= MAX_SIZE) throw new UnavailableError('the log is full', 3600);
        const idx = size++;
        indices[i] = idx;
        added.push(leaf.hash);
        note?.(leaf.hash, idx);
        batch.put(hashKey(leaf.hash), hValue ?? u64(idx));
        this.filter.add(leaf.hash);
        this.compact.append(leaf.hash, this.visit);
        const eb = this.edgeBundle;
        eb.entries.push(leaf.data);
        if (eb.entries.length === TILE_W) {
          const encoded = buf(encodeEntryBundle(eb.entries));
          batch.put(bundleKey(eb.index), encoded);
          // entries of this bundle written as pending by earlier commits
          for (let j = eb.index * TILE_W; j < start; j++) batch.del(pendingKey(j));
          this.bundles.set(eb.index, encoded);
          this.edgeBundle = { index: eb.index + 1, entries: [] };
        }
      }
      if (size === start) {
        void batch.close().catch(() => {});
        return { batch: undefined, indices, added: 0, hashes: added, start, tree: undefined };
      }
      // new entries left in the partial bundle are stored as pending entries
      const eb = this.edgeBundle;
      for (let j = Math.max(start, eb.index * TILE_W); j < size; j++) batch.put(pendingKey(j), eb.entries[j - eb.index * TILE_W]);
      for (const level of this.touched) {
        const node = this.edge[level];
        // the partial level-0 tile is rebuilt from the pending entries at start
        if (level > 0 && node.width > 0) batch.put(tileKey(level, node.index), node.data());
      }
      const tree = this.sign(batch, size, Math.max(Date.now(), this.lastTimestamp));
      this.lastTimestamp = tree.timestamp;
      const prepared: Prepared = { batch, indices, added: size - start, hashes: added, start, tree };
      this.inflight.push(prepared);
      return prepared;
    } catch (e) {
      if (e instanceof UnavailableError && size === start) throw e;
      throw this.fail(e);
    } finally {
      this.batch = undefined;
    }
  }

  /** The 503 every write gets once a durable write failed; undefined while writing works. */
  get writeStopped(): UnavailableError | undefined {
    return this.failure && this.fail(this.failure);
  }

  private fail(e: unknown): UnavailableError {
    // memory may now be ahead of the disk: stop writing; a restart recovers from the last durable state
    if (!this.failure) {
      this.failure = e as Error;
      this.logger.error('durable write failed; the log stops accepting entries', { error: e as Error });
    }
    return new UnavailableError(`the log stopped writing after a storage failure: ${(e as Error).message}`, 30);
  }

  /**
   * Writes a prepared batch (one atomic sync LevelDB batch) and makes its tree the durable one.
   * Precondition: batches are committed in the order they were prepared, one at a time.
   */
  async commit(p: Prepared): Promise<AppendResult> {
    if (!p.batch || !p.tree) return { indices: p.indices, added: 0, tree: this.latest };
    if (this.failure) throw this.fail(this.failure);
    try {
      await p.batch.write({ sync: true });
    } catch (e) {
      throw this.fail(e);
    }
    this.latest = p.tree;
    this.inflight.shift();
    for (const [id, t] of this.fresh) if ((t.index + 1) * TILE_W ** (t.level + 1) <= p.tree.size) this.fresh.delete(id);
    return { indices: p.indices, added: p.added, tree: p.tree };
  }

  /** prepare + commit. Precondition: not called concurrently with itself, prepare or commit. */
  async append(leaves: readonly Leaf[]): Promise<AppendResult> {
    return this.commit(await this.prepare(leaves));
  }

  private async tile(level: number, index: number): Promise<TileNode | undefined> {
    const cached = this.tileSync(level, index);
    if (cached) return cached;
    const raw = await this.db.get(tileKey(level, index));
    if (!raw) return undefined;
    if (raw.length !== TILE_W * 32) {
      // a stored partial tile left of the right edge cannot happen in a consistent store
      throw new LogStateError('tile', `stored tile ${level}/${index} has ${raw.length / 32} hashes, expected a full tile`);
    }
    const node = new TileNode(level, index, raw);
    this.tiles.set(this.tileId(level, index), node);
    return node;
  }

  private tileSync(level: number, index: number): TileNode | undefined {
    const e = this.edge[level];
    if (e && e.index === index) return e;
    const id = this.tileId(level, index);
    return this.tiles.get(id) ?? this.fresh.get(id);
  }

  /**
   * Hashes of complete nodes (perfect subtrees) of the tree of `size` leaves, from tiles.
   * Precondition: every node lies within [0, size) and size <= the durable size.
   */
  async nodeHashes(nodes: readonly NodeId[], size: number): Promise<Buffer[]> {
    const out = new Array<Buffer>(nodes.length);
    for (let i = 0; i < nodes.length; i++) out[i] = this.cachedNode(nodes[i]) ?? (await this.loadNode(nodes[i], size));
    return out;
  }

  /** nodeHashes from memory (and LevelDB's synchronous reads) only; undefined when a tile must be loaded. */
  nodeHashesSync(nodes: readonly NodeId[]): Buffer[] | undefined {
    const out = new Array<Buffer>(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const h = this.cachedNode(nodes[i]);
      if (h === undefined) return undefined;
      out[i] = h;
    }
    return out;
  }

  private static locate(node: NodeId): { L: number; k: number; tIndex: number; p: number } {
    const L = node.level >> 3;
    const k = node.level & 7;
    const first = Number(node.index) * 2 ** k;
    return { L, k, tIndex: Math.floor(first / TILE_W), p: (first % TILE_W) / 2 ** k };
  }

  /** A node from a cached tile, or from a stored full tile whose upper nodes are known. */
  private cachedNode(node: NodeId): Buffer | undefined {
    const { L, k, tIndex, p } = LogStore.locate(node);
    return this.memoryTile(L, tIndex)?.node(k, p);
  }

  /**
   * Tile `level/index` without waiting: cached, the right edge, or a stored full tile whose upper nodes are
   * known (its own 8 KiB come from LevelDB's synchronous read); undefined when it must be loaded.
   */
  private memoryTile(level: number, index: number): TileNode | undefined {
    const t = this.tileSync(level, index);
    if (t) return t;
    const id = this.tileId(level, index);
    const u = this.uppers.get(id);
    if (!u) return undefined;
    const raw = this.rawTile(level, index);
    if (!raw) return undefined;
    const whole = new TileNode(level, index, raw);
    whole.seedUpper(u);
    this.tiles.set(id, whole);
    return whole;
  }

  /**
   * Full level-0 tile `index` (leaves index*256 ..) from memory only; undefined when it must be loaded.
   * Precondition: the tile is full in the durable tree, i.e. (index + 1) * 256 <= durable size.
   */
  leafTileSync(index: number): TileNode | undefined {
    const t = this.memoryTile(0, index);
    return t && t.width === TILE_W ? t : undefined;
  }

  private async loadNode(node: NodeId, size: number): Promise<Buffer> {
    const { L, k, tIndex, p } = LogStore.locate(node);
    const whole = await this.tile(L, tIndex);
    if (!whole) throw new Error(`internal: tile ${L}/${tIndex} missing for node ${node.level}/${node.index} in a tree of ${size}`);
    this.uppers.set(this.tileId(L, tIndex), whole.upper());
    return whole.node(k, p);
  }

  private rawTile(level: number, index: number): Uint8Array | undefined {
    const raw = this.db.getSync(tileKey(level, index));
    if (raw && raw.length !== TILE_W * 32) throw new LogStateError('tile', `stored tile ${level}/${index} has ${raw.length / 32} hashes, expected a full tile`);
    return raw;
  }

  /** Leaf hash at `index`. Precondition: index < size <= durable size. */
  async leafHash(index: number, size = this.latest.size): Promise<Buffer> {
    return (await this.nodeHashes([{ level: 0, index: BigInt(index) }], size))[0];
  }

  /** RFC 9162 inclusion proof. Precondition: index < size <= durable size. */
  async inclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    return this.inclusionProofSync(index, size) ?? this.loadInclusionProof(index, size);
  }

  /** inclusionProof, loading the tiles it needs (for a caller that just found inclusionProofSync undefined). Same precondition. */
  async loadInclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    const plan = inclusionProofPlan(BigInt(index), BigInt(size));
    const out = new Array<Uint8Array>(plan.ranges.length);
    for (let i = 0; i < plan.ranges.length; i++) {
      const r = plan.ranges[i];
      out[i] = r.length === 1 ? (await this.nodeHashes(r, size))[0] : this.memoEdge(r, size, foldRange(await this.nodeHashes(r, size), nodeHasher));
    }
    return out;
  }

  /**
   * The inclusion proof when every tile it needs is in memory, without yielding to the event loop (a proof
   * answered in the request's own tick costs markedly less than one answered after an await); else undefined.
   * Precondition: index < size <= durable size.
   */
  inclusionProofSync(index: number, size: number): Uint8Array[] | undefined {
    const plan = inclusionProofPlan(BigInt(index), BigInt(size));
    const out = new Array<Uint8Array>(plan.ranges.length);
    for (let i = 0; i < plan.ranges.length; i++) {
      const r = plan.ranges[i];
      if (r.length === 1) {
        const h = this.cachedNode(r[0]);
        if (h === undefined) return undefined;
        out[i] = h;
      } else {
        const h = this.edgeRangeSync(r, size);
        if (h === undefined) return undefined;
        out[i] = h;
      }
    }
    return out;
  }

  /** Leaf hash from memory only; undefined when its tile must be loaded. Precondition: index < durable size. */
  leafHashSync(index: number): Buffer | undefined {
    return this.cachedNode({ level: 0, index: BigInt(index) });
  }

  /**
   * The hash of a proof range made of several perfect subtrees: the tree's ragged right edge, which every
   * proof in a tree of this size shares, so it is folded once per (size, range) rather than once per proof.
   */
  private edgeRangeSync(nodes: NodeId[], size: number): Uint8Array | undefined {
    const h = this.edgeMemo.get(`${size}/${nodes[0].level}/${nodes[0].index}`);
    if (h) return h;
    const hashes = this.nodeHashesSync(nodes);
    return hashes && this.memoEdge(nodes, size, foldRange(hashes, nodeHasher));
  }

  private memoEdge(nodes: NodeId[], size: number, h: Uint8Array): Uint8Array {
    this.edgeMemo.set(`${size}/${nodes[0].level}/${nodes[0].index}`, h);
    return h;
  }

  /** Folded right-edge ranges by `size/level/index`: a tree has at most 63, so this holds dozens of sizes. */
  private readonly edgeMemo = new Lru<string, Uint8Array>(2048);

  /** RFC 9162 consistency proof. Precondition: first <= second <= durable size. */
  async consistencyProof(first: number, second: number): Promise<Uint8Array[]> {
    return consistencyProof(first, second, (nodes) => this.nodeHashes(nodes, second), nodeHasher);
  }

  /** Root of the tree of `size` leaves. Precondition: size <= durable size. */
  async rootAt(size: number): Promise<Uint8Array> {
    return treeRoot(size, (nodes) => this.nodeHashes(nodes, size), nodeHasher);
  }

  /** Index of the leaf with this hash, if stored within the durable tree. */
  async findLeaf(leafHash: Uint8Array): Promise<number | undefined> {
    const size = this.latest.size;
    const v = await this.db.get(hashKey(leafHash));
    if (!v) return undefined;
    for (let o = 0; o < v.length; o += 8) {
      const idx = readU64(v, o);
      if (idx < size && bytesEqual(await this.leafHash(idx, size), leafHash)) return idx;
    }
    return undefined;
  }

  /**
   * Tile L/N of `width` hashes as served, or undefined when the durable tree does not reach that width.
   * Precondition: width 1..256.
   */
  async tileData(level: number, index: number, width: number): Promise<Buffer | undefined> {
    const have = tileWidth(level, index, this.latest.size);
    if (have < width) return undefined;
    const t = await this.tile(level, index);
    return t?.data(width);
  }

  /** Entry bundle N with its first `width` entries, or undefined if the durable tree has fewer. */
  async bundleData(index: number, width: number): Promise<Buffer | undefined> {
    const size = this.latest.size;
    const have = tileWidth(0, index, size);
    if (have < width) return undefined;
    if (index === this.edgeBundle.index) return buf(encodeEntryBundle(this.edgeBundle.entries.slice(0, width)));
    let full = this.bundles.get(index);
    if (!full) {
      const raw = await this.db.get(bundleKey(index));
      if (!raw) throw new Error(`internal: entry bundle ${index} missing below size ${size}`);
      full = buf(raw);
      this.bundles.set(index, full);
    }
    if (width === TILE_W) return full;
    return buf(encodeEntryBundle(decodeEntryBundle(full).slice(0, width)));
  }

  /** Leaf data of entries [start, end). Precondition: start <= end <= durable size. */
  async entries(start: number, end: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (let b = Math.floor(start / TILE_W); b * TILE_W < end; b++) {
      let list: Uint8Array[];
      if (b === this.edgeBundle.index) list = this.edgeBundle.entries;
      else {
        const data = await this.bundleData(b, TILE_W);
        list = decodeEntryBundle(data!);
      }
      const from = Math.max(start - b * TILE_W, 0);
      const to = Math.min(end - b * TILE_W, TILE_W);
      for (let i = from; i < to; i++) out.push(list[i]);
    }
    return out;
  }

  /** Closes the database. Precondition: no append in flight. */
  async close(): Promise<void> {
    if (this.db.status === 'open') await this.db.close();
  }
}
