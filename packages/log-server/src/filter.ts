/**
 * An in-memory Bloom filter over the 8-byte leaf-hash prefixes the hash index ('H' keys) holds, so the
 * sequencer reads LevelDB only for the rare submission that might be a duplicate (or share a prefix): a
 * random LevelDB lookup per entry costs more than everything else in a commit. About 2 bytes per entry;
 * segments double in capacity so it never needs rebuilding while the log grows.
 */
const BITS_PER_ENTRY = 16;
const PROBES = 7;
const FIRST_CAPACITY = 1 << 16;
// keeps bit indexes within 31 bits
const MAX_CAPACITY = 1 << 26;

interface Segment {
  bits: Uint32Array;
  mask: number;
  capacity: number;
  count: number;
}

function segment(capacity: number): Segment {
  const m = capacity * BITS_PER_ENTRY; // a power of two: capacity is one
  return { bits: new Uint32Array(m / 32), mask: m - 1, capacity, count: 0 };
}

/**
 * A growable Bloom filter over 8-byte leaf-hash prefixes: mightContain is false only for prefixes never added (see the
 * file comment).
 */
export class PrefixFilter {
  private readonly segments: Segment[] = [segment(FIRST_CAPACITY)];

  /** Adds the 8-byte prefix of `hash`. Precondition: hash has at least 8 bytes. */
  add(hash: Uint8Array): void {
    let s = this.segments[this.segments.length - 1];
    if (s.count >= s.capacity) {
      s = segment(Math.min(s.capacity * 2, MAX_CAPACITY));
      this.segments.push(s);
    }
    const h1 = ((hash[0] << 24) | (hash[1] << 16) | (hash[2] << 8) | hash[3]) >>> 0;
    const h2 = ((hash[4] << 24) | (hash[5] << 16) | (hash[6] << 8) | hash[7] | 1) >>> 0;
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + Math.imul(i, h2)) & s.mask;
      s.bits[bit >>> 5] |= 1 << (bit & 31);
    }
    s.count++;
  }

  /** False only if no added hash shares the 8-byte prefix of `hash`. */
  mightContain(hash: Uint8Array): boolean {
    const h1 = ((hash[0] << 24) | (hash[1] << 16) | (hash[2] << 8) | hash[3]) >>> 0;
    const h2 = ((hash[4] << 24) | (hash[5] << 16) | (hash[6] << 8) | hash[7] | 1) >>> 0;
    for (const s of this.segments) {
      let all = true;
      for (let i = 0; i < PROBES && all; i++) {
        const bit = (h1 + Math.imul(i, h2)) & s.mask;
        all = (s.bits[bit >>> 5] & (1 << (bit & 31))) !== 0;
      }
      if (all) return true;
    }
    return false;
  }
}
