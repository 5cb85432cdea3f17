/**
 * The LevelDB key layout of a log (one database, binary keys, binary values):
 *
 *   'S'                         state: size, compact range, latest signed checkpoint and STH (JSON)
 *   'E' u64be(N)                full entry bundle N (tlog-tiles bundle encoding)
 *   'P' u64be(I)                entry I while its bundle is partial (deleted when the bundle is written)
 *   'T' u8(L) u64be(N)          tile L/N (tlog-tiles); full ones, and the partial one of levels >= 1
 *   'H' leafHash[0:8]           u64be index (several if 64-bit prefixes collide; confirmed against tile 0)
 *
 * Every module that reads or writes the database names keys through this one.
 */
import { errorMessage, b64decode, b64encode } from '@trailmark/tlog';
import { LogStateError } from './errors.js';

/** Key of the log state record. */
export const STATE_KEY = Buffer.from('S');
/** Key prefix of full entry bundles. */
export const BUNDLE = 0x45; // 'E'
/** Key prefix of entries whose bundle is still partial. */
export const PENDING = 0x50; // 'P'
/** Key prefix of tiles. */
export const TILE = 0x54; // 'T'
/** Key prefix of the leaf-hash index (8-byte hash prefix to indices). */
export const HASH_INDEX = 0x48; // 'H'

/**
 * `n` as 8 big-endian bytes, the form of 'H' index values. Precondition: `n` is a non-negative safe integer (larger
 * ones are not exact).
 */
export function u64(n: number): Buffer {
  return indexKey(NO_PREFIX, n);
}

const NO_PREFIX: readonly number[] = [];

/**
 * Reads a big-endian uint64 at `off` as a number. Precondition: 8 bytes at `off`; a value of 2^53 or more throws
 * RangeError rather than losing precision.
 */
export function readU64(b: Uint8Array, off: number): number {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const hi = v.readUInt32BE(off);
  if (hi >= 2 ** 21) throw new RangeError(`stored index ${hi} * 2^32 + ... is beyond 2^53`);
  return hi * 2 ** 32 + v.readUInt32BE(off + 4);
}

/**
 * A key of one or two prefix bytes then a big-endian uint64 index (so LevelDB orders keys by index).
 * Written byte by byte into a pooled buffer: at least one such key is made per entry.
 */
function indexKey(prefix: readonly number[], n: number): Buffer {
  // indices are checked numbers: a value a double cannot hold exactly must never become a wrong key
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`index ${n} is not a non-negative safe integer`);
  const p = prefix.length;
  const k = Buffer.allocUnsafe(p + 8);
  for (let i = 0; i < p; i++) k[i] = prefix[i];
  const hi = Math.floor(n / 2 ** 32);
  const lo = n - hi * 2 ** 32;
  k.writeUInt32BE(hi, p);
  k.writeUInt32BE(lo, p + 4);
  return k;
}

/** Key of full entry bundle `n`. Precondition: `n` is a non-negative safe integer. */
export const bundleKey = (n: number): Buffer => indexKey([BUNDLE], n);
/** Key of pending entry `i`. Precondition: `i` is a non-negative safe integer. */
export const pendingKey = (i: number): Buffer => indexKey([PENDING], i);
/** Key of tile `level`/`n`. Precondition: `level` is 0..255 and `n` a non-negative safe integer. */
export const tileKey = (level: number, n: number): Buffer => indexKey([TILE, level], n);
/** The first key after every key of prefix byte `p`: the upper bound of a range scan. */
export const afterPrefix = (p: number): Buffer => Buffer.from([p + 1]);

/** Hash-index key of a leaf: 'H' and the first 8 bytes of its hash. Precondition: `leafHash` has at least 8 bytes. */
export function hashKey(leafHash: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(9);
  k[0] = HASH_INDEX;
  // a byte loop: a subarray per key would cost an allocation more than the key itself
  for (let i = 0; i < 8; i++) k[i + 1] = leafHash[i];
  return k;
}

/** `v` as a Buffer over the same memory (no copy). */
export function buf(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A key as an operator reads it in a message: `tile 1/42`, `entry bundle 7`, `hash index 48ab..`. */
export function describeKey(k: Uint8Array): string {
  const b = buf(k);
  if (b.length === 9 && b[0] === BUNDLE) return `entry bundle ${readU64(b, 1)}`;
  if (b.length === 9 && b[0] === PENDING) return `pending entry ${readU64(b, 1)}`;
  if (b.length === 10 && b[0] === TILE) return `tile ${b[1]}/${readU64(b, 2)}`;
  if (b.length === 9 && b[0] === HASH_INDEX) return `hash index key ${b.subarray(1).toString('hex')}`;
  if (b.equals(STATE_KEY)) return 'the log state';
  return `key ${b.toString('hex')}`;
}

/** The stored state ('S'), JSON. */
export interface StateJson {
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

/** Encodes the log state record (StateJson, version 1) with its binary fields in base64. */
export function encodeState(
  st: Omit<StateJson, 'v' | 'root' | 'compact' | 'sth'> & {
    root: Uint8Array;
    compact: readonly Uint8Array[];
    sth: Uint8Array;
  },
): Buffer {
  const json: StateJson = {
    v: 1,
    origin: st.origin,
    vkey: st.vkey,
    size: st.size,
    root: buf(st.root).toString('base64'),
    compact: st.compact.map(b64encode),
    checkpoint: st.checkpoint,
    timestamp: st.timestamp,
    sth: buf(st.sth).toString('base64'),
  };
  return Buffer.from(JSON.stringify(json));
}

/** Parses the stored state. Throws LogStateError('state') when it is not a state this code wrote. */
export function parseState(raw: Uint8Array): StateJson & { compactHashes: Uint8Array[]; sthBytes: Uint8Array } {
  let st: StateJson;
  try {
    st = JSON.parse(buf(raw).toString('utf8'));
  } catch {
    throw new LogStateError('state', 'the stored log state is not valid JSON');
  }
  if (st === null || typeof st !== 'object' || st.v !== 1)
    throw new LogStateError('state', `unknown log state version ${String((st as { v?: unknown } | null)?.v)}`);
  if (typeof st.checkpoint !== 'string' || !Array.isArray(st.compact) || typeof st.sth !== 'string')
    throw new LogStateError('state', 'the stored log state lacks its checkpoint, compact range or STH');
  try {
    return {
      ...st,
      compactHashes: st.compact.map((h) => b64decode(h, 'compact range hash')),
      sthBytes: b64decode(st.sth, 'sth'),
    };
  } catch (e) {
    throw new LogStateError('state', `the stored log state: ${errorMessage(e)}`, { cause: e });
  }
}
