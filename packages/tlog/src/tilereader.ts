/**
 * A verified tile reader: hashes and entries of a log, read through an untrusted tile fetcher and
 * authenticated against a checkpoint (size, root) the caller has already verified.
 *
 * How tiles are authenticated (the approach of golang.org/x/mod/sumdb/tlog's TileHashReader):
 * - the right edge: the partial tile of every tile level together determine the tree's root; recomputing the
 *   root from them and comparing it with the checkpoint's root authenticates every hash in all of them at once;
 * - a full tile: the Merkle root of its 256 hashes is one hash of its parent tile (level + 1), which is
 *   authenticated first (recursively, ending at the right edge).
 * An entry bundle is authenticated by the level-0 tile of the same index: each entry's leaf hash must equal
 * the tile's hash at that position.
 *
 * No I/O here: the caller injects `fetchTile` (HTTP, disk, a test double of the transport).
 */
import { bytesEqual, b64encode } from './encoding.js';
import { type ErrorDetails, TlogError, type TlogErrorCode } from './errors.js';
import { type Hash, type Hasher, HASH_SIZE, rfc6962 } from './hash.js';
import { type HashSource, type NodeId, foldRange, rangeNodes } from './proof.js';
import {
  TILE_WIDTH,
  type TileRef,
  nodeFromTile,
  rightEdgeTiles,
  tileForNode,
  tileHashes,
  tilePath,
  tileRoot,
  tileWidth,
} from './tiles.js';
import { toU64, type U64Like } from './u64.js';

/**
 * A tile or entry bundle did not match the checkpoint. `path` names the tile (tile/0/x001/002.p/7) or
 * bundle that failed; `leafIndex` is set for entry mismatches; `expected` and `found` are set for the size and
 * hash mismatches. Codes (see TlogErrorCode): 'tile-size', 'tile-mismatch', 'right-edge', 'bundle-malformed',
 * 'bundle-size', 'entry-mismatch', 'empty-root', 'not-in-tree'.
 */
export class TileVerifyError extends TlogError {
  constructor(
    code: TlogErrorCode,
    message: string,
    readonly path: string,
    readonly leafIndex?: bigint,
    details?: ErrorDetails,
  ) {
    super(code, message, details);
  }
}

/** Fetches the bytes of a tile or entry bundle (exactly `ref.width` hashes/entries). Untrusted. */
export type TileFetcher = (ref: TileRef) => Promise<Uint8Array>;

const W = BigInt(TILE_WIDTH);

function short(h: Uint8Array): string {
  return b64encode(h);
}

/**
 * Checks that tile bytes hold exactly `ref.width` hashes. Precondition: ref is a hash tile (not entries).
 * Throws TileVerifyError('tile-size').
 */
export function checkTileSize(ref: TileRef, data: Uint8Array): void {
  if (data.length !== ref.width * HASH_SIZE) {
    throw new TileVerifyError(
      'tile-size',
      `${tilePath(ref)}: got ${data.length} bytes, want ${ref.width * HASH_SIZE} (${ref.width} hashes)`,
      tilePath(ref),
      undefined,
      { expected: String(ref.width * HASH_SIZE), found: String(data.length) },
    );
  }
}

/**
 * Merkle root of the 256 hashes of a full tile, from its raw bytes.
 * Precondition: data is exactly 256 * 32 bytes.
 */
export function fullTileRoot(data: Uint8Array, hasher: Hasher = rfc6962): Hash {
  if (data.length !== TILE_WIDTH * HASH_SIZE)
    throw new TlogError('tile', `a full tile is ${TILE_WIDTH * HASH_SIZE} bytes, got ${data.length}`);
  return tileRoot(tileHashes(data), hasher);
}

/**
 * Checks a full tile against the hash its (already verified) parent tile holds for it.
 * Precondition: ref.width is 256 and `expected` comes from a verified parent. Throws TileVerifyError.
 */
export function checkFullTile(ref: TileRef, data: Uint8Array, expected: Hash, hasher: Hasher = rfc6962): void {
  checkTileSize(ref, data);
  const got = fullTileRoot(data, hasher);
  if (!bytesEqual(got, expected)) {
    throw new TileVerifyError(
      'tile-mismatch',
      `${tilePath(ref)} hashes to ${short(got)}, but verified parent tile ${ref.level + 1}/${ref.index / W} holds ${short(expected)} at position ${ref.index % W}`,
      tilePath(ref),
      undefined,
      { expected: short(expected), found: short(got) },
    );
  }
}

/**
 * Checks an entry bundle against the verified level-0 tile of the same index and returns its entries
 * (views into `data`). Precondition: `tile` is the verified tile bytes (bundle.width hashes) and
 * bundle.entries is set. Throws TileVerifyError naming the first entry that does not match.
 */
export function checkEntryBundle(
  bundle: TileRef,
  data: Uint8Array,
  tile: Uint8Array,
  hasher: Hasher = rfc6962,
): Uint8Array[] {
  const path = tilePath({ ...bundle, entries: true });
  const tpath = tilePath({ level: 0, index: bundle.index, width: bundle.width });
  const first = bundle.index * W;
  // one private copy: each entry's leaf input 0x00 || entry is then hashed in place, overwriting the low
  // byte of its own length prefix, with no per-entry allocation
  const buf = new Uint8Array(data); // a copy even when data is a Buffer (whose slice() is a view)
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < data.length) {
    const i = out.length;
    if (i >= bundle.width) {
      throw new TileVerifyError(
        'bundle-size',
        `${path}: holds more than ${bundle.width} entries`,
        path,
        first + BigInt(i),
      );
    }
    if (o + 2 > data.length) {
      throw new TileVerifyError(
        'bundle-malformed',
        `${path}: truncated in the length of entry ${first + BigInt(i)} at byte ${o}`,
        path,
        first + BigInt(i),
      );
    }
    const len = (data[o] << 8) | data[o + 1];
    if (o + 2 + len > data.length) {
      throw new TileVerifyError(
        'bundle-malformed',
        `${path}: entry ${first + BigInt(i)} needs ${len} bytes at byte ${o + 2}, bundle ends at ${data.length}`,
        path,
        first + BigInt(i),
      );
    }
    buf[o + 1] = 0;
    const leafHash = hasher.sha256(buf.subarray(o + 1, o + 2 + len));
    const want = tile.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
    if (!bytesEqual(leafHash, want)) {
      throw new TileVerifyError(
        'entry-mismatch',
        `entry ${first + BigInt(i)} (${path}, position ${i}): leaf hash ${short(leafHash)} does not match ${short(want)} in verified ${tpath}`,
        path,
        first + BigInt(i),
        { expected: short(want), found: short(leafHash) },
      );
    }
    out.push(data.subarray(o + 2, o + 2 + len));
    o += 2 + len;
  }
  if (out.length !== bundle.width) {
    throw new TileVerifyError(
      'bundle-size',
      `${path}: holds ${out.length} entries, want ${bundle.width}`,
      path,
      first + BigInt(out.length),
      { expected: String(bundle.width), found: String(out.length) },
    );
  }
  return out;
}

/**
 * The entries of a bundle (views into `data`) that an accelerator already found to match its tile: only split,
 * not hashed again. Precondition: bundleMatches(data, tile, width) returned true.
 */
function splitCheckedBundle(data: Uint8Array, width: number): Uint8Array[] {
  const out: Uint8Array[] = new Array(width);
  let o = 0;
  for (let i = 0; i < width; i++) {
    const len = (data[o] << 8) | data[o + 1];
    out[i] = data.subarray(o + 2, o + 2 + len);
    o += 2 + len;
  }
  return out;
}

/**
 * Optional faster implementations of the two hot checks (for example on node:crypto). They are only ever
 * trusted to say "matches": any "does not match" is re-checked by the reference code here, which then
 * reports exactly what differs.
 */
export interface TileAccelerator {
  /** The Merkle root of a full tile. Precondition: data is 256 * 32 bytes. */
  fullTileRoot(data: Uint8Array): Hash;
  /**
   * Whether `data` holds exactly `width` entries and each entry's leaf hash equals the hash at its
   * position in `tile` (width * 32 bytes). Never throws.
   */
  bundleMatches(data: Uint8Array, tile: Uint8Array, width: number): boolean;
}

/** Options of a VerifiedTileReader. */
export interface VerifiedTileReaderOptions {
  hasher?: Hasher;
  /** Faster checks; results are only trusted when they match (see TileAccelerator). */
  accelerator?: TileAccelerator;
  /** Most verified tiles kept (least recently used are dropped, and re-verified if needed again). Default 4096. */
  maxCachedTiles?: number;
}

/** Statistics of what a reader fetched and verified. */
export interface TileReaderStats {
  tilesVerified: number;
  bundlesVerified: number;
  entriesVerified: number;
}

/**
 * Reads hashes, tiles and entries of the tree of a verified checkpoint; every tile it returns or uses has
 * been authenticated against the checkpoint's root. Precondition: (size, root) come from a checkpoint whose
 * signature the caller verified. Errors: TileVerifyError for any mismatch; fetch errors pass through.
 */
export class VerifiedTileReader {
  readonly size: bigint;
  readonly root: Hash;
  readonly hasher: Hasher;
  readonly stats: TileReaderStats = { tilesVerified: 0, bundlesVerified: 0, entriesVerified: 0 };
  private readonly fetchTile: TileFetcher;
  private readonly accel: TileAccelerator | undefined;
  private readonly maxCached: number;
  /** Verified full tiles, in least-recently-used order. */
  private readonly cache = new Map<string, Uint8Array>();
  /** Verified partial tiles of the right edge, by level (kept for the reader's lifetime). */
  private edge: Promise<Map<number, Uint8Array>> | null = null;
  private readonly inflight = new Map<string, Promise<Uint8Array>>();

  constructor(size: U64Like, root: Hash, fetchTile: TileFetcher, opts: VerifiedTileReaderOptions = {}) {
    this.size = toU64(size, 'tree size');
    this.hasher = opts.hasher ?? rfc6962;
    if (!(root instanceof Uint8Array) || root.length !== HASH_SIZE)
      throw new TlogError('hash-length', `root must be ${HASH_SIZE} bytes`);
    this.root = root.slice();
    if (this.size === 0n && !bytesEqual(this.root, this.hasher.empty())) {
      throw new TileVerifyError(
        'empty-root',
        `checkpoint of size 0 has root ${short(this.root)}, not the empty tree's root`,
        '',
      );
    }
    this.fetchTile = fetchTile;
    this.accel = opts.accelerator;
    this.maxCached = Math.max(16, opts.maxCachedTiles ?? 4096);
  }

  /** The tile (level, index) at this tree's size: its width, or 0 when the tree does not reach it. */
  tileRef(level: number, index: U64Like): TileRef {
    const idx = toU64(index, 'tile index');
    return { level, index: idx, width: tileWidth(level, idx, this.size) };
  }

  /**
   * The verified bytes of tile (level, index) at this tree's size (width * 32 bytes), shared with the cache:
   * do not modify them. Precondition: the tile exists at this size; throws TileVerifyError('not-in-tree') otherwise.
   */
  async tileBytes(level: number, index: U64Like): Promise<Uint8Array> {
    const ref = this.tileRef(level, index);
    const path = tilePath({ ...ref, width: ref.width || 1 });
    if (ref.width === 0)
      throw new TileVerifyError('not-in-tree', `tile ${level}/${ref.index} is beyond tree size ${this.size}`, path);
    if (ref.width < TILE_WIDTH) return (await this.rightEdge()).get(level)!;
    const key = `${level}/${ref.index}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.verifyFull(ref).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** The verified hashes of tile (level, index) at this tree's size. Precondition: as tileBytes. */
  async tile(level: number, index: U64Like): Promise<Hash[]> {
    return tileHashes(await this.tileBytes(level, index));
  }

  /**
   * The hash a verified parent tile holds for full tile (level, index).
   * Precondition: tile (level, index) is full at this size.
   */
  async parentHash(level: number, index: U64Like): Promise<Hash> {
    const idx = toU64(index, 'tile index');
    const parent = await this.tileBytes(level + 1, idx / W);
    const off = Number(idx % W);
    return parent.subarray(off * HASH_SIZE, (off + 1) * HASH_SIZE);
  }

  private async verifyFull(ref: TileRef): Promise<Uint8Array> {
    const [expected, data] = await Promise.all([this.parentHash(ref.level, ref.index), this.fetchTile(ref)]);
    const fast =
      this.accel && data.length === TILE_WIDTH * HASH_SIZE && bytesEqual(this.accel.fullTileRoot(data), expected);
    if (!fast) checkFullTile(ref, data, expected, this.hasher);
    this.stats.tilesVerified++;
    this.remember(`${ref.level}/${ref.index}`, data);
    return data;
  }

  private remember(key: string, data: Uint8Array): void {
    this.cache.set(key, data);
    while (this.cache.size > this.maxCached) this.cache.delete(this.cache.keys().next().value!);
  }

  /** Verifies the partial tile of every level against the checkpoint root (once); returns them by level. */
  rightEdge(): Promise<Map<number, Uint8Array>> {
    if (!this.edge) {
      this.edge = this.verifyRightEdge();
      // a failed fetch may be retried by a later call; a mismatch is final but costs nothing to recompute
      this.edge.catch(() => (this.edge = null));
    }
    return this.edge;
  }

  private async verifyRightEdge(): Promise<Map<number, Uint8Array>> {
    const refs = rightEdgeTiles(this.size);
    const datas = await Promise.all(refs.map((r) => this.fetchTile(r)));
    const byLevel = new Map<number, Uint8Array>();
    // each partial tile split into its hashes once
    const split = new Map<number, { index: bigint; hashes: Uint8Array[] }>();
    refs.forEach((r, i) => {
      checkTileSize(r, datas[i]);
      byLevel.set(r.level, datas[i]);
      split.set(r.level, { index: r.index, hashes: tileHashes(datas[i]) });
    });
    if (this.size === 0n) return byLevel;
    const hashes = rangeNodes(0n, this.size).map((id) => {
      const loc = tileForNode(id);
      const tile = split.get(loc.level);
      // every node of the root's decomposition below a tile boundary lies in that level's partial tile
      if (!tile || loc.index !== tile.index)
        throw new TlogError('internal', `node ${id.level}/${id.index} is not on the right edge`);
      return nodeFromTile(loc, tile.hashes, this.hasher);
    });
    const got = foldRange(hashes, this.hasher);
    if (!bytesEqual(got, this.root)) {
      const paths = refs.map((r) => tilePath(r));
      throw new TileVerifyError(
        'right-edge',
        `the right-edge tiles of tree size ${this.size} (${paths.join(', ')}) give root ${short(got)}, but the checkpoint's root is ${short(this.root)}`,
        paths[0],
        undefined,
        { expected: short(this.root), found: short(got) },
      );
    }
    this.stats.tilesVerified += refs.length;
    return byLevel;
  }

  /**
   * Hashes of perfect subtrees of this tree, each from a verified tile: a tlog HashSource for
   * inclusionProof / consistencyProof / treeRoot. Precondition: every node lies inside the tree.
   */
  readonly readHashes: HashSource = async (nodes: NodeId[]) => {
    const locs = nodes.map((id) => {
      if ((id.index + 1n) << BigInt(id.level) > this.size) {
        throw new TileVerifyError(
          'not-in-tree',
          `node ${id.level}/${id.index} is not a complete subtree of tree size ${this.size}`,
          '',
        );
      }
      return tileForNode(id);
    });
    const tiles = new Map<string, Promise<Uint8Array>>();
    for (const l of locs) {
      const k = `${l.level}/${l.index}`;
      if (!tiles.has(k)) tiles.set(k, this.tileBytes(l.level, l.index));
    }
    const resolved = new Map<string, Hash[]>();
    await Promise.all([...tiles].map(async ([k, p]) => resolved.set(k, tileHashes(await p))));
    return locs.map((l) => nodeFromTile(l, resolved.get(`${l.level}/${l.index}`)!, this.hasher));
  };

  /**
   * The entries of bundle `index`, each checked against the verified level-0 tile.
   * Precondition: the bundle exists at this size (index < ceil(size / 256)).
   */
  async entryBundle(index: U64Like): Promise<Uint8Array[]> {
    const { bundleRef, data, tile } = await this.fetchBundle(index);
    // the accelerator hashes each entry once, natively, with no allocation; the reference check only runs
    // when it finds a mismatch, to say exactly what differs
    const entries = this.accel?.bundleMatches(data, tile, bundleRef.width)
      ? splitCheckedBundle(data, bundleRef.width)
      : checkEntryBundle(bundleRef, data, tile, this.hasher);
    this.countBundle(entries.length);
    return entries;
  }

  /**
   * Like entryBundle, without handing the entries out (an audit only needs to know they all match);
   * returns their number. Precondition: as entryBundle.
   */
  async verifyEntryBundle(index: U64Like): Promise<number> {
    const { bundleRef, data, tile } = await this.fetchBundle(index);
    if (!this.accel?.bundleMatches(data, tile, bundleRef.width)) checkEntryBundle(bundleRef, data, tile, this.hasher);
    this.countBundle(bundleRef.width);
    return bundleRef.width;
  }

  private async fetchBundle(index: U64Like): Promise<{ bundleRef: TileRef; data: Uint8Array; tile: Uint8Array }> {
    const ref = this.tileRef(0, index);
    if (ref.width === 0) {
      throw new TileVerifyError(
        'not-in-tree',
        `entry bundle ${ref.index} is beyond tree size ${this.size}`,
        tilePath({ ...ref, width: 1, entries: true }),
      );
    }
    const bundleRef: TileRef = { ...ref, entries: true };
    const [tile, data] = await Promise.all([this.tileBytes(0, ref.index), this.fetchTile(bundleRef)]);
    return { bundleRef, data, tile };
  }

  private countBundle(entries: number): void {
    this.stats.bundlesVerified++;
    this.stats.entriesVerified += entries;
  }

  /** The leaf hash of entry `index`, from a verified tile. Precondition: index < size. */
  async leafHash(index: U64Like): Promise<Hash> {
    const i = toU64(index, 'leaf index');
    const [h] = await this.readHashes([{ level: 0, index: i }]);
    return h;
  }
}
