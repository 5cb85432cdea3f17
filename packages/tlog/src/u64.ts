import { TlogError } from './errors.js';

/** A tree size or leaf index: an unsigned 64-bit integer. */
export type U64Like = bigint | number;

/** The largest uint64, 2^64 - 1. */
export const MAX_U64 = (1n << 64n) - 1n;

/**
 * Converts a number, bigint or decimal string to a checked uint64 bigint.
 * Precondition: none; throws TlogError('range') naming `what` when v is not an integer in [0, 2^64).
 */
export function toU64(v: U64Like | string, what = 'value'): bigint {
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new TlogError('range', `${what} must be a safe integer, got ${v}`);
    b = BigInt(v);
  } else if (typeof v === 'string') {
    if (!/^(0|[1-9][0-9]*)$/.test(v))
      throw new TlogError('range', `${what} must be a decimal integer, got ${JSON.stringify(v)}`);
    b = BigInt(v);
  } else {
    throw new TlogError('range', `${what} must be an integer`);
  }
  if (b < 0n || b > MAX_U64) throw new TlogError('range', `${what} out of uint64 range: ${b}`);
  return b;
}

const U32 = 0xffffffffn;

/**
 * Number of bits needed to represent x (0 for 0). Precondition: x >= 0.
 * Works 32 bits at a time: Math.clz32 only ever sees a value below 2^32.
 */
export function bitLength(x: bigint): number {
  let n = 0;
  while (x > U32) {
    x >>= 32n;
    n += 32;
  }
  return n + 32 - Math.clz32(Number(x));
}

/** Number of trailing zero bits of x (0 for x = 0 by convention). Precondition: x >= 0. */
export function trailingZeros(x: bigint): number {
  if (x === 0n) return 0;
  let n = 0;
  while ((x & U32) === 0n) {
    x >>= 32n;
    n += 32;
  }
  const lo = Number(x & U32);
  // lo is in [1, 2^32): in int32 arithmetic lo & -lo isolates its lowest set bit
  return n + 31 - Math.clz32(lo & -lo);
}

/** Number of set bits of x. Precondition: x >= 0. */
export function popCount(x: bigint): number {
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}

/** Largest power of two strictly less than n. Precondition: n >= 2. */
export function splitPoint(n: bigint): bigint {
  return 1n << BigInt(bitLength(n - 1n) - 1);
}
