/**
 * Checking that leaves we hold are in a signed tree, at the indexes the log gave, with the log's tiles for the
 * rest of the tree: the root recomputed from our leaf hashes plus tile hashes of the subtrees holding none of
 * them must equal the signed root (a multi-leaf inclusion proof whose sibling hashes come from tiles). The
 * tiles need no trust of their own: a wrong tile hash changes the root. About two hashes per leaf and a
 * handful of tiles per batch.
 */
import { TlogError } from './errors.js';
import { rfc6962, type Hash, type Hasher } from './hash.js';
import { buildProof, rootPlan } from './proof.js';
import { TILE_HEIGHT, TILE_WIDTH, tileForNode, tileHashes, tileWidth, type TileRef } from './tiles.js';

/** A tile's bytes as the log serves them at tilePath(ref), or null when it does not serve that tile. */
export type TileBytesSource = (ref: TileRef) => Promise<Uint8Array | null>;

/** The log does not serve a tile the view needs (code 'tile-missing'); per-leaf proofs are the fallback. */
export class TileMissingError extends TlogError {}

/**
 * The tree of `size` leaves as seen from the log's tiles, with our own leaf hashes at our indexes. Nodes whose
 * leaves include one of ours are always hashed from their children, down to our leaves, so the root binds
 * every one of them; other nodes are read from the tiles where stored (levels 8k) or hashed up from them.
 * Memoized for one batch. Throws TlogError('tile') for a tile that is too short or outside the tree, and
 * TileMissingError when a tile is not served.
 */
export class TreeView {
  private readonly tiles = new Map<string, Hash[]>();
  private readonly nodes = new Map<string, Hash>();
  private readonly sorted: bigint[];
  /** Our leaf hashes in the order of `sorted`: a run of consecutive indexes is a slice of it. */
  private readonly sortedHashes: Hash[];
  /** Tiles the walk needed and did not hold (collected by the first, structural walk). */
  private wanted: Map<string, { level: number; index: bigint }> | null = null;

  /** Precondition: every index in `mine` is below `size`. */
  constructor(
    private readonly size: bigint,
    private readonly mine: ReadonlyMap<bigint, Hash>,
    private readonly fetchTile: TileBytesSource,
    private readonly hasher: Hasher = rfc6962,
    /** Awaited every few hundred hashes, so that a caller's event loop is not held for a whole batch. */
    private readonly pause?: () => Promise<void>,
  ) {
    this.sorted = [...mine.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.sortedHashes = this.sorted.map((i) => mine.get(i)!);
  }

  /** The root of the tree from our leaves and the tiles; compare it with the signed root. */
  async root(): Promise<Hash> {
    const plan = rootPlan(this.size);
    if (plan.nodes.length === 0) return this.hasher.empty();
    await this.hashRuns();
    // which tiles a node needs depends only on the shape of the tree and on where our leaves are, not on any
    // hash: one walk that hashes nothing finds them all, they are fetched together, and a second walk hashes
    this.wanted = new Map();
    for (const n of plan.nodes) this.node(n.level, n.index);
    const wanted = [...this.wanted.values()];
    this.wanted = null;
    const loaded = await Promise.all(wanted.map((t) => this.loadTile(t.level, t.index)));
    wanted.forEach((t, i) => this.tiles.set(`${t.level}/${t.index}`, loaded[i]));
    return buildProof(
      plan,
      plan.nodes.map((n) => this.node(n.level, n.index)!),
      this.hasher,
    )[0];
  }

  /** Position in `sorted` of the first of our leaves at or after `leaf`. */
  private lowerBound(leaf: bigint): number {
    let a = 0;
    let b = this.sorted.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.sorted[m] < leaf) a = m + 1;
      else b = m;
    }
    return a;
  }

  /** Whether node (level, index) covers one of our leaves. */
  private covers(level: number, index: bigint): boolean {
    const a = this.lowerBound(index << BigInt(level));
    return a < this.sorted.length && this.sorted[a] < (index + 1n) << BigInt(level);
  }

  /**
   * Hashes up, into the memo, every node all of whose leaves are ours: a batch's leaves sit at consecutive
   * indexes, so most of its nodes are such, and they are hashed in loops over slices of our hashes rather than
   * node by node through the memo (the walks then stop at them). Each run of consecutive indexes is cut into
   * aligned subtrees, largest first; any node all ours lies within one of them.
   */
  private async hashRuns(): Promise<void> {
    const n = this.sorted.length;
    let hashed = 0;
    for (let k = 0; k < n;) {
      let end = k + 1;
      while (end < n && this.sorted[end] === this.sorted[end - 1] + 1n) end++;
      for (let at = k; at < end;) {
        const lo = this.sorted[at];
        let level = 0;
        while (at + 2 ** (level + 1) <= end && lo % (1n << BigInt(level + 1)) === 0n) level++;
        if (level > 0) {
          let row = this.sortedHashes.slice(at, at + 2 ** level);
          while (row.length > 1) {
            const up: Hash[] = new Array<Hash>(row.length / 2);
            for (let i = 0; i < up.length; i++) {
              up[i] = this.hasher.node(row[2 * i], row[2 * i + 1]);
              if (++hashed % 512 === 0 && this.pause) await this.pause();
            }
            row = up;
          }
          this.nodes.set(`${level}/${lo >> BigInt(level)}`, row[0]);
        }
        at += 2 ** level;
      }
      k = end;
    }
  }

  /** The node's hash; during the structural walk, undefined where it needs a tile not yet loaded. */
  private node(level: number, index: bigint): Hash | undefined {
    const key = `${level}/${index}`;
    const hit = this.nodes.get(key);
    if (hit) return hit;
    let h: Hash | undefined = level === 0 ? this.mine.get(index) : undefined;
    if (h === undefined && level % TILE_HEIGHT === 0 && (level === 0 || !this.covers(level, index))) {
      const loc = tileForNode({ level, index });
      const tkey = `${loc.level}/${loc.index}`;
      const hashes = this.tiles.get(tkey);
      if (!hashes) {
        if (!this.wanted) throw new TlogError('tile', `tile ${tkey} was not loaded for node ${key}`);
        this.wanted.set(tkey, { level: loc.level, index: loc.index });
        return undefined;
      }
      if (hashes.length <= loc.offset)
        throw new TlogError('tile', `tile ${loc.level}/${loc.index} is too short for node ${key}`);
      h = hashes[loc.offset];
    } else if (h === undefined) {
      const left = this.node(level - 1, 2n * index);
      const right = this.node(level - 1, 2n * index + 1n);
      if (!left || !right) return undefined;
      h = this.hasher.node(left, right);
    }
    this.nodes.set(key, h);
    return h;
  }

  private async loadTile(level: number, index: bigint): Promise<Hash[]> {
    const width = tileWidth(level, index, this.size);
    if (width === 0) throw new TlogError('tile', `tile ${level}/${index} is outside the tree of size ${this.size}`);
    let data = await this.fetchTile({ level, index, width });
    // the tree may have grown since: a full tile holds the same hashes at the same places
    if (data === null && width < TILE_WIDTH) data = await this.fetchTile({ level, index, width: TILE_WIDTH });
    if (data === null) throw new TileMissingError('tile-missing', `tile ${level}/${index} not found`);
    const hashes = tileHashes(data);
    if (hashes.length < width)
      throw new TlogError('tile', `tile ${level}/${index} has ${hashes.length} hashes, want ${width}`);
    return hashes;
  }
}
