/**
 * Recovery: rebuilds the writer's right edge from the durable store and checks it against the stored signed
 * checkpoint before anything is signed on top of it. Runs at start, and again in-process after a storage
 * failure (the database reopened: whatever the failed batch left, the store says which tree is durable).
 *
 * Checks: the checkpoint verifies with the log key; the pending entries and the partial tiles match the
 * signed size; nothing is stored beyond it; every full level-0 tile below the edge exists; the root
 * recomputed from the tiles and entries equals the signed one; the stored compact range matches the tiles.
 */
import {
  errorMessage,
  buildProof,
  bytesEqual,
  CompactRange,
  openCheckpoint,
  parseVkey,
  rootPlan,
  type ProofPlan,
  type NodeId,
} from '@trailmark/tlog';
import { LogStateError } from './errors.js';
import type { LogKey } from './keys.js';
import {
  afterPrefix,
  BUNDLE,
  bundleKey,
  parseState,
  PENDING,
  pendingKey,
  readU64,
  STATE_KEY,
  tileKey,
} from './layout.js';
import type { Db } from './reads.js';
import { locate } from './reads.js';
import type { EdgeState } from './sequencing.js';
import { nodeHasher } from '@trailmark/node';
import { TILE_W, TileNode } from './tilecache.js';

/** Callbacks through which recovery hands what it reads to the dedup filter and the caches. */
export interface RecoveryHooks {
  /** Each stored leaf hash (for the dedup filter); omitted when the filter is kept from before. */
  leaf?(hash: Uint8Array): void;
  /** Full level-0 tiles near the edge, for the upper-node cache: the `recentTiles` most recent ones. */
  recentTile?(index: number, raw: Uint8Array): void;
  recentTiles?: number;
}

/**
 * Reads and checks the durable state; undefined for an empty database (a new log). Throws LogStateError
 * naming what does not match.
 */
export async function recoverEdge(db: Db, key: LogKey, hooks: RecoveryHooks = {}): Promise<EdgeState | undefined> {
  const raw = await db.get(STATE_KEY);
  if (raw === undefined) {
    for await (const k of db.keys({ limit: 1 })) {
      throw new LogStateError(
        'no-state',
        `the database holds data (key ${Buffer.from(k).toString('hex')}) but no log state: not a Trailmark log, or a damaged one`,
      );
    }
    return undefined;
  }
  const st = parseState(raw);
  if (st.origin !== key.origin || st.vkey !== key.vkey) {
    throw new LogStateError(
      'key-mismatch',
      `this data directory belongs to log ${st.vkey}, not to the configured key ${key.vkey}`,
      { expected: key.vkey, found: st.vkey },
    );
  }
  let opened;
  try {
    opened = openCheckpoint(st.checkpoint, parseVkey(key.vkey));
  } catch (e) {
    throw new LogStateError(
      'checkpoint',
      `the stored checkpoint does not verify with the log key: ${errorMessage(e)}`,
      { cause: e },
    );
  }
  const size = Number(opened.checkpoint.size);
  if (String(size) !== st.size)
    throw new LogStateError(
      'state',
      `stored size ${st.size} differs from the signed checkpoint's size ${opened.checkpoint.size}`,
    );
  const signedRoot = Buffer.from(opened.checkpoint.root);

  // the partial bundle: pending entries, which also give the partial level-0 tile
  const bIndex = Math.floor(size / TILE_W);
  const bWidth = size % TILE_W;
  const entries: Uint8Array[] = [];
  for await (const [k, v] of db.iterator({ gte: pendingKey(bIndex * TILE_W), lt: afterPrefix(PENDING) })) {
    const i = readU64(k, 1);
    if (i >= size) {
      throw new LogStateError(
        'rolled-back',
        `the store holds entry ${i} beyond the signed size ${size}: its state was rolled back; serving it could sign a second tree of a signed size`,
      );
    }
    if (i !== bIndex * TILE_W + entries.length)
      throw new LogStateError(
        'entries',
        `pending entry ${bIndex * TILE_W + entries.length} is missing for size ${size}`,
      );
    entries.push(Buffer.from(v));
  }
  if (entries.length !== bWidth)
    throw new LogStateError(
      'entries',
      `the partial bundle ${bIndex} should hold ${bWidth} entries for size ${size}, found ${entries.length}`,
    );

  // right edge: the partial tile at every level (level 0 from the pending entries)
  const tiles: TileNode[] = [];
  for (let level = 0, n = size; n > 0 || level === 0; level++, n = Math.floor(n / TILE_W)) {
    const index = Math.floor(n / TILE_W);
    const width = n % TILE_W;
    const node = new TileNode(level, index);
    if (level === 0) for (const e of entries) node.push(nodeHasher.leaf(e));
    else if (width > 0) {
      const t = await db.get(tileKey(level, index));
      if (!t || t.length !== width * 32) {
        throw new LogStateError(
          'tile',
          `tile ${level}/${index} should hold ${width} hashes for size ${size}, found ${t ? t.length / 32 : 'none'}`,
        );
      }
      node.buf.set(t, 0);
      node.width = width;
    }
    tiles[level] = node;
    if (n === 0) break;
  }
  for await (const k of db.keys({ gte: bundleKey(bIndex), lt: afterPrefix(BUNDLE), limit: 1 })) {
    throw new LogStateError(
      'rolled-back',
      `the store holds entry bundle ${readU64(k, 1)} beyond the signed size ${size}: its state was rolled back; serving it could sign a second tree of a signed size`,
    );
  }

  // every full level-0 tile below the edge: the dedup filter and the upper nodes of the most recent ones
  const edge0 = tiles[0].index;
  const recent = hooks.recentTiles ?? 0;
  // without a leaf hook (the filter kept from before) only the tiles the upper-node cache takes are read
  const from = hooks.leaf ? 0 : Math.max(0, edge0 - recent);
  let full = from;
  for await (const t of db.values({ gte: tileKey(0, from), lt: tileKey(0, edge0) })) {
    if (t.length !== TILE_W * 32)
      throw new LogStateError('tile', `stored tile 0/${full} is not full below the right edge`);
    if (hooks.leaf) for (let o = 0; o < t.length; o += 32) hooks.leaf(t.subarray(o, o + 32));
    if (full >= edge0 - recent) hooks.recentTile?.(full, t);
    full++;
  }
  if (full !== edge0)
    throw new LogStateError(
      'tile',
      `found ${full - from} full level-0 tiles from 0/${from}, size ${size} needs ${edge0 - from}`,
    );
  if (hooks.leaf) for (let i = 0; i < tiles[0].width; i++) hooks.leaf(tiles[0].node(0, i));

  // the root recomputed from the stored tiles and entries must be the signed one: never sign over another tree
  const plan = rootPlan(BigInt(size));
  const hashes = await edgeNodes(db, tiles, plan.nodes);
  checkRoot(plan, hashes, signedRoot, size);
  const compact = st.compactHashes;
  if (compact.length !== hashes.length || compact.some((h, i) => !bytesEqual(h, hashes[i]))) {
    throw new LogStateError(
      'compact-mismatch',
      `the stored compact range differs from the stored tiles at size ${size}`,
    );
  }
  return edgeState(st, size, signedRoot, hashes, tiles, { index: bIndex, entries });
}

/**
 * Refuses a store whose right-edge hashes (`hashes`, answering `plan`) do not give the signed root: a log must
 * never sign over another tree. Precondition: plan = rootPlan(size); throws LogStateError 'root-mismatch'.
 */
export function checkRoot(plan: ProofPlan, hashes: readonly Uint8Array[], signedRoot: Uint8Array, size: number): void {
  const root = plan.nodes.length === 0 ? nodeHasher.empty() : buildProof(plan, hashes, nodeHasher)[0];
  if (!bytesEqual(root, signedRoot)) {
    const found = Buffer.from(root).toString('base64');
    const expected = Buffer.from(signedRoot).toString('base64');
    throw new LogStateError(
      'root-mismatch',
      `the stored tiles and entries give root ${found} for size ${size}, but the signed checkpoint says ${expected}: the store was altered; refusing to serve it`,
      { expected, found },
    );
  }
}

/** The writer's edge over a recovered, root-checked store. Precondition: checkRoot passed for these hashes. */
export function edgeState(
  st: { checkpoint: string; timestamp: number; sthBytes: Uint8Array },
  size: number,
  signedRoot: Buffer,
  hashes: Uint8Array[],
  tiles: TileNode[],
  bundle: EdgeState['bundle'],
): EdgeState {
  return {
    tree: {
      size,
      root: signedRoot,
      checkpoint: st.checkpoint,
      timestamp: st.timestamp,
      sthSignature: Buffer.from(st.sthBytes),
    },
    compact: new CompactRange(BigInt(size), hashes, nodeHasher),
    tiles,
    bundle,
  };
}

/** The compact range's nodes, from the edge tiles or stored full tiles. */
async function edgeNodes(db: Db, tiles: readonly TileNode[], nodes: readonly NodeId[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const n of nodes) {
    const { L, k, tIndex, p } = locate(n);
    let t = tiles[L]?.index === tIndex ? tiles[L] : undefined;
    if (!t) {
      const raw = await db.get(tileKey(L, tIndex));
      if (!raw || raw.length !== TILE_W * 32)
        throw new LogStateError('tile', `tile ${L}/${tIndex} is ${raw ? 'not full' : 'missing'} below the right edge`);
      t = new TileNode(L, tIndex, raw);
    }
    out.push(t.node(k, p));
  }
  return out;
}
