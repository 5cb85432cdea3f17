import { TlogError } from './errors.js';
import { type Hash, type Hasher, HASH_SIZE, merkleRoot, rfc6962 } from './hash.js';
import type { NodeId } from './proof.js';
import { type U64Like, toU64 } from './u64.js';

/** C2SP tlog-tiles: each tile spans 8 tree levels and holds up to 256 hashes. */
export const TILE_HEIGHT = 8;
/** Hashes in a full tile (2^TILE_HEIGHT). */
export const TILE_WIDTH = 256;
const H = BigInt(TILE_HEIGHT);
const W = BigInt(TILE_WIDTH);

/** A tile (or, with `entries`, an entry bundle): level L, index N, width 1..256 (256 = full). */
export interface TileRef {
  level: number;
  index: bigint;
  width: number;
  entries?: boolean;
}

/** The x001/x234/067 encoding of a tile index. */
export function encodeTileIndex(index: U64Like): string {
  let s = toU64(index, 'tile index').toString();
  while (s.length % 3 !== 0) s = '0' + s;
  const parts: string[] = [];
  for (let i = 0; i < s.length; i += 3) parts.push(s.slice(i, i + 3));
  return parts.map((p, i) => (i < parts.length - 1 ? 'x' + p : p)).join('/');
}

/** The URL path of a tile or entry bundle, without a leading slash: tile/0/x001/234.p/7. */
export function tilePath(t: TileRef): string {
  if (!Number.isInteger(t.width) || t.width < 1 || t.width > TILE_WIDTH)
    throw new TlogError('tile', `tile width must be 1..256, got ${t.width}`);
  const level = t.entries ? 'entries' : String(checkLevel(t.level));
  const partial = t.width < TILE_WIDTH ? `.p/${t.width}` : '';
  return `tile/${level}/${encodeTileIndex(t.index)}${partial}`;
}

/** Path of entry bundle N (width 256 = full). */
export function entriesPath(index: U64Like, width = TILE_WIDTH): string {
  return tilePath({ level: 0, index: toU64(index, 'bundle index'), width, entries: true });
}

function checkLevel(level: number): number {
  if (!Number.isInteger(level) || level < 0 || level > 63)
    throw new TlogError('tile', `tile level must be 0..63, got ${level}`);
  return level;
}

/**
 * Parses a tile path ("tile/1/x001/234.p/5", "tile/entries/000", with or without a leading slash).
 * Precondition: none; throws TlogError('tile-path') for anything that is not exactly canonical.
 */
export function parseTilePath(path: string): TileRef {
  const m = /^\/?tile\/(entries|0|[1-9][0-9]?)\/((?:x[0-9]{3}\/)*)([0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/.exec(path);
  if (!m) throw new TlogError('tile-path', `not a tile path: ${path}`);
  const entries = m[1] === 'entries';
  const level = entries ? 0 : Number(m[1]);
  if (level > 63) throw new TlogError('tile-path', `tile level out of range: ${m[1]}`);
  const groups = m[2]
    ? m[2]
        .split('/')
        .filter(Boolean)
        .map((g) => g.slice(1))
    : [];
  if (groups.length > 0 && groups[0] === '000')
    throw new TlogError('tile-path', `tile index has a leading zero group: ${path}`);
  const digits = groups.join('') + m[3];
  const index = toU64(BigInt(digits), 'tile index');
  const width = m[4] ? Number(m[4]) : TILE_WIDTH;
  if (m[4] && width >= TILE_WIDTH) throw new TlogError('tile-path', `partial tile width must be 1..255, got ${width}`);
  return entries ? { level, index, width, entries } : { level, index, width };
}

/** Hashes stored at tree level 8L in a tree of `size` leaves. */
function nodesAtTileLevel(level: number, size: bigint): bigint {
  return size >> (H * BigInt(level));
}

/**
 * Width of tile (level, index) in a tree of `size` leaves: 256 if full, 1..255 if partial, 0 if the tree
 * does not reach it yet.
 */
export function tileWidth(level: number, index: U64Like, size: U64Like): number {
  const n = nodesAtTileLevel(checkLevel(level), toU64(size, 'tree size'));
  const start = toU64(index, 'tile index') * W;
  if (n <= start) return 0;
  const w = n - start;
  return w >= W ? TILE_WIDTH : Number(w);
}

/** Every tile of a tree of `size` leaves, lowest level first, full tiles then the partial one per level. */
export function tilesForSize(size: U64Like): TileRef[] {
  const s = toU64(size, 'tree size');
  const out: TileRef[] = [];
  for (let level = 0; level < 64; level++) {
    const n = nodesAtTileLevel(level, s);
    if (n === 0n) break;
    const full = n / W;
    for (let i = 0n; i < full; i++) out.push({ level, index: i, width: TILE_WIDTH });
    const rest = Number(n % W);
    if (rest > 0) out.push({ level, index: full, width: rest });
  }
  return out;
}

/** The partial tiles of a tree of `size` leaves, one per level at most: together they recompute the root. */
export function rightEdgeTiles(size: U64Like): TileRef[] {
  const s = toU64(size, 'tree size');
  const out: TileRef[] = [];
  for (let level = 0; level < 64; level++) {
    const n = nodesAtTileLevel(level, s);
    if (n === 0n) break;
    if (n % W !== 0n) out.push({ level, index: n / W, width: Number(n % W) });
  }
  return out;
}

/**
 * Tiles that differ between a tree of size oldSize and one of newSize: the ones new or grown.
 * Precondition: oldSize <= newSize.
 */
export function tilesChanged(oldSize: U64Like, newSize: U64Like): TileRef[] {
  const a = toU64(oldSize, 'old size');
  const b = toU64(newSize, 'new size');
  if (a > b) throw new TlogError('range', `old size ${a} is greater than new size ${b}`);
  const out: TileRef[] = [];
  for (let level = 0; level < 64; level++) {
    const nb = nodesAtTileLevel(level, b);
    if (nb === 0n) break;
    const na = nodesAtTileLevel(level, a);
    if (na === nb) continue;
    for (let i = na / W; i * W < nb; i++) out.push({ level, index: i, width: tileWidth(level, i, b) });
  }
  return out;
}

/** Where the hash of a perfect subtree lives: which tile, and the run of hashes in it whose root it is. */
export interface NodeLocation {
  level: number;
  index: bigint;
  /** First hash in the tile covered by the node. */
  offset: number;
  /** Number of tile hashes covered (a power of two, up to 128 for nodes inside the tile; 1 for stored nodes). */
  count: number;
}

/** Locates node `id` in the tiles: stored directly when its level is a multiple of 8, otherwise below. */
export function tileForNode(id: NodeId): NodeLocation {
  const level = Math.floor(id.level / TILE_HEIGHT);
  const k = id.level % TILE_HEIGHT;
  const first = id.index << BigInt(k);
  return { level, index: first / W, offset: Number(first % W), count: 1 << k };
}

/** Splits tile bytes into hashes. Precondition: none; throws unless a whole number of 1..256 hashes. */
export function tileHashes(data: Uint8Array): Hash[] {
  if (data.length === 0 || data.length % HASH_SIZE !== 0 || data.length > TILE_WIDTH * HASH_SIZE) {
    throw new TlogError('tile', `tile data must be 1..256 hashes of 32 bytes, got ${data.length} bytes`);
  }
  const out: Hash[] = [];
  for (let i = 0; i < data.length; i += HASH_SIZE) out.push(data.subarray(i, i + HASH_SIZE));
  return out;
}

/** The hash of a node from the hashes of the tile that holds it. Precondition: the tile is wide enough. */
export function nodeFromTile(loc: NodeLocation, hashes: readonly Hash[], hasher: Hasher = rfc6962): Hash {
  if (hashes.length < loc.offset + loc.count) {
    throw new TlogError(
      'tile',
      `tile ${loc.level}/${loc.index} has ${hashes.length} hashes, node needs ${loc.offset + loc.count}`,
    );
  }
  if (loc.count === 1) return hashes[loc.offset];
  return merkleRoot(hashes.slice(loc.offset, loc.offset + loc.count), hasher);
}

/**
 * The hash a tile contributes to the level above: the root of its 256 hashes, stored in tile level L+1.
 * Precondition: the tile is full.
 */
export function tileRoot(hashes: readonly Hash[], hasher: Hasher = rfc6962): Hash {
  if (hashes.length !== TILE_WIDTH)
    throw new TlogError('tile', `only a full tile has a parent hash, this one has ${hashes.length}`);
  return merkleRoot(hashes, hasher);
}

/** Maximum size of one entry in a bundle: its length is a big-endian uint16. */
export const MAX_ENTRY_SIZE = 0xffff;

/** Encodes an entry bundle: each entry as a big-endian uint16 length then its bytes. */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const e of entries) {
    if (e.length > MAX_ENTRY_SIZE)
      throw new TlogError('entry-size', `entry of ${e.length} bytes exceeds ${MAX_ENTRY_SIZE}`);
    len += 2 + e.length;
  }
  const out = new Uint8Array(len);
  let o = 0;
  for (const e of entries) {
    out[o] = e.length >> 8;
    out[o + 1] = e.length & 0xff;
    out.set(e, o + 2);
    o += 2 + e.length;
  }
  return out;
}

/** Decodes an entry bundle. Precondition: none; throws on truncation or more than 256 entries. */
export function decodeEntryBundle(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < data.length) {
    if (o + 2 > data.length)
      throw new TlogError('entry-bundle', `entry bundle truncated in a length prefix at byte ${o}`);
    const len = (data[o] << 8) | data[o + 1];
    if (o + 2 + len > data.length)
      throw new TlogError(
        'entry-bundle',
        `entry bundle truncated: entry ${out.length} needs ${len} bytes at byte ${o + 2}`,
      );
    out.push(data.subarray(o + 2, o + 2 + len));
    o += 2 + len;
    if (out.length > TILE_WIDTH) throw new TlogError('entry-bundle', 'entry bundle holds more than 256 entries');
  }
  return out;
}
