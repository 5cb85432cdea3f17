/**
 * RFC 6962 hashing on node:crypto: the tlog Hasher, and the tile accelerator of VerifiedTileReader. One place
 * for both, so every daemon and client hashes the same way and at the same speed.
 */
import { createHash, hash as oneShot } from 'node:crypto';
import { makeHasher, type Hasher, type TileAccelerator } from '@trailmark/tlog';

/**
 * SHA-256 of `data` written into `out` at `off`: the one-shot digest as a latin1 string, which costs about half
 * of one returning a Buffer (that Buffer gets an ArrayBuffer of its own, which the GC must also track).
 * Precondition: 32 bytes of `out` from `off`.
 */
export const sha256Into: (data: Uint8Array, out: Buffer, off: number) => void =
  typeof oneShot === 'function'
    ? (d, out, off) => void out.write(oneShot('sha256', d, 'binary'), off, 32, 'binary')
    : (d, out, off) => void createHash('sha256').update(d).digest().copy(out, off);

/**
 * SHA-256 on node:crypto: the one-shot digest where this Node has it (about twice the rate of the pure-JS one),
 * into a Buffer from Node's pool (see sha256Into), else a Hash object. Precondition: none.
 */
export const sha256: (data: Uint8Array) => Buffer = (d) => {
  const out = Buffer.allocUnsafe(32);
  sha256Into(d, out, 0);
  return out;
};

/** RFC 6962 leaf and node hashing on node:crypto; byte-identical to tlog's portable default. */
export const nodeHasher: Hasher = makeHasher(sha256);

const childBuf = Buffer.alloc(65);
childBuf[0] = 1;

/**
 * SHA-256(0x01 || left || right) read from 32-byte slices of a larger buffer, without allocating the input.
 * Precondition: both offsets leave 32 bytes in `src`; not re-entrant (one shared scratch buffer, synchronous).
 */
export function hashChildren(src: Buffer, leftOff: number, rightOff: number): Buffer {
  src.copy(childBuf, 1, leftOff, leftOff + 32);
  src.copy(childBuf, 33, rightOff, rightOff + 32);
  return sha256(childBuf);
}

const WIDTH = 256;
const HASH = 32;

/*
 * The accelerator: crypto.hash() returning a latin1 ('binary') string is two to three times faster than any call
 * returning a Buffer (the Buffer result is itself made from such a string), so leaf hashes are compared as latin1
 * strings against the tile bytes, and a tile's inner nodes are written into one scratch buffer, with no per-hash
 * allocation. Its answers are only trusted when they say "matches".
 */

/** Precondition: none. Returns false on any doubt (the reference check then reports what differs). */
function bundleMatches(data: Uint8Array, tile: Uint8Array, width: number): boolean {
  if (tile.length !== width * HASH) return false;
  // a private copy: each leaf input 0x00 || entry is hashed in place over the low byte of its length
  const buf = Buffer.from(data);
  let o = 0;
  for (let i = 0; i < width; i++) {
    if (o + 2 > buf.length) return false;
    const len = (buf[o] << 8) | buf[o + 1];
    const end = o + 2 + len;
    if (end > buf.length) return false;
    buf[o + 1] = 0;
    const h = oneShot('sha256', buf.subarray(o + 1, end), 'binary');
    const t = i * HASH;
    for (let k = 0; k < HASH; k++) if (h.charCodeAt(k) !== tile[t + k]) return false;
    o = end;
  }
  return o === buf.length;
}

/** Precondition: data is 256 * 32 bytes. */
function fullTileRoot(data: Uint8Array): Uint8Array {
  if (data.length !== WIDTH * HASH) throw new Error(`a full tile is ${WIDTH * HASH} bytes, got ${data.length}`);
  const scratch = Buffer.alloc(1 + 2 * HASH);
  scratch[0] = 1;
  const work = Buffer.alloc((WIDTH / 2) * HASH);
  let src: Uint8Array = data;
  // siblings are contiguous; plain JS byte copies beat subarray views and Buffer.write for 32-64 bytes.
  // Results overwrite slots already read.
  for (let n = WIDTH; n > 1; n /= 2) {
    for (let i = 0; i < n / 2; i++) {
      const from = i * 2 * HASH;
      for (let k = 0; k < 2 * HASH; k++) scratch[1 + k] = src[from + k];
      const h = oneShot('sha256', scratch, 'binary');
      const to = i * HASH;
      for (let k = 0; k < HASH; k++) work[to + k] = h.charCodeAt(k);
    }
    src = work;
  }
  return new Uint8Array(work.subarray(0, HASH));
}

/** The node:crypto TileAccelerator for tlog's VerifiedTileReader. Precondition: Node 20 (crypto.hash). */
export const nodeAccelerator: TileAccelerator = { fullTileRoot, bundleMatches };
