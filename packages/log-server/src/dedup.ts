/**
 * Dedup: identical leaf data is stored once, and a resubmission gets the original index. A submission is a
 * duplicate of a stored leaf (found through the 'H' index: an 8-byte prefix of the leaf hash, confirmed
 * against the full hash in the level-0 tile), of a leaf in a batch prepared but not yet durable, or of an
 * earlier leaf of its own batch. The Bloom filter over stored prefixes keeps the common case (a new leaf)
 * free of LevelDB reads.
 */
import { bytesEqual } from '@trailmark/tlog';
import { PrefixFilter } from './filter.js';
import { buf, hashKey, readU64, u64 } from './layout.js';
import type { Leaf } from './log-storage.js';
import type { Db } from './reads.js';

/** Leaf hashes of one batch, from index `start`. */
export interface SequencedHashes {
  readonly start: number;
  readonly hashes: readonly Uint8Array[];
}

const key = (h: Uint8Array): string => buf(h).toString('latin1');

/** What the store already holds for some leaves of a batch. */
export interface StoredMatches {
  /** 'H' values (u64be indices) by leaf position, for leaves whose prefix is stored. */
  stored: Map<number, Uint8Array>;
  /** Confirmed duplicates of durable leaves: full hash (latin1) -> index. */
  known: Map<string, number>;
}

/**
 * The store-wide side of dedup: the Bloom filter over stored prefixes and the hash-index lookups it cannot rule out.
 */
export class Dedup {
  readonly filter = new PrefixFilter();

  /**
   * Reads the hash index for the leaves the filter cannot rule out, confirming each prefix hit with
   * `leafHash` (the durable tree's). Only leaves whose prefix might be stored cost a read.
   */
  async lookup(
    db: Db,
    leaves: readonly Leaf[],
    durable: number,
    leafHash: (index: number) => Promise<Uint8Array>,
  ): Promise<StoredMatches> {
    const stored = new Map<number, Uint8Array>();
    const known = new Map<string, number>();
    const maybe: number[] = [];
    for (let i = 0; i < leaves.length; i++) if (this.filter.mightContain(leaves[i].hash)) maybe.push(i);
    if (maybe.length === 0) return { stored, known };
    const got = await db.getMany(maybe.map((i) => hashKey(leaves[i].hash)));
    for (let k = 0; k < maybe.length; k++) {
      const v = got[k];
      if (!v) continue;
      const i = maybe[k];
      stored.set(i, v);
      for (let o = 0; o < v.length; o += 8) {
        const idx = readU64(v, o);
        if (idx < durable && bytesEqual(await leafHash(idx), leaves[i].hash)) known.set(key(leaves[i].hash), idx);
      }
    }
    return { stored, known };
  }

  /** One batch's dedup: `earlier` are the batches prepared before it and not yet durable. */
  round(
    matches: StoredMatches,
    earlier: readonly SequencedHashes[],
    batch: SequencedHashes & { hashes: Uint8Array[] },
  ): DedupRound {
    return new DedupRound(this.filter, matches, earlier, batch);
  }
}

/** Risky leaves a batch checks by scanning the batches not yet durable before it builds maps of them. */
const SCANS_BEFORE_MAPS = 16;

function samePrefix(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Dedup of one batch being sequenced: against stored leaves (looked up beforehand), batches prepared but not yet
 * durable (`earlier`), and the batch's own earlier leaves.
 */
export class DedupRound {
  // built only when many leaves of a batch might repeat one not yet durable (a resubmitted batch): full hash ->
  // first index, prefix -> indices. A handful of filter false positives is cheaper to answer by scanning.
  private recent: Map<string, number> | undefined;
  private recentPrefixes: Map<string, number[]> | undefined;
  private scans = 0;

  constructor(
    private readonly filter: PrefixFilter,
    private readonly matches: StoredMatches,
    private readonly earlier: readonly SequencedHashes[],
    private readonly batch: SequencedHashes & { hashes: Uint8Array[] },
  ) {}

  private note(h: Uint8Array, idx: number): void {
    const hs = key(h);
    if (!this.recent!.has(hs)) this.recent!.set(hs, idx);
    const pk = hs.slice(0, 8);
    const list = this.recentPrefixes!.get(pk);
    if (list) list.push(idx);
    else this.recentPrefixes!.set(pk, [idx]);
  }

  /** Leaves not yet durable sharing `h`'s 8-byte prefix: the first index with the same full hash, and every index. */
  private scan(h: Uint8Array): { dup: number | undefined; indices: number[] } {
    let dup: number | undefined;
    const indices: number[] = [];
    for (const f of [...this.earlier, this.batch]) {
      const hs = f.hashes;
      for (let k = 0; k < hs.length; k++) {
        if (h[0] !== hs[k][0] || !samePrefix(h, hs[k])) continue;
        indices.push(f.start + k);
        if (dup === undefined && bytesEqual(h, hs[k])) dup = f.start + k;
      }
    }
    return { dup, indices };
  }

  /**
   * For leaf `i` of the batch, about to become index `next`: the original index when it is a duplicate,
   * else the 'H' value to store for it (every index sharing its 8-byte prefix, itself included).
   */
  check(i: number, leaf: Leaf, next: number): number | Buffer {
    const prev = this.matches.stored.get(i);
    if (prev === undefined && !this.filter.mightContain(leaf.hash)) return u64(next);
    const stored = this.matches.known.get(key(leaf.hash));
    if (stored !== undefined) return stored;
    let dup: number | undefined;
    let sharing: readonly number[];
    if (!this.recent && this.scans++ < SCANS_BEFORE_MAPS) ({ dup, indices: sharing } = this.scan(leaf.hash));
    else {
      if (!this.recent) {
        this.recent = new Map();
        this.recentPrefixes = new Map();
        for (const f of this.earlier) f.hashes.forEach((h, k) => this.note(h, f.start + k));
        this.batch.hashes.forEach((h, k) => this.note(h, this.batch.start + k));
      }
      const hs = key(leaf.hash);
      dup = this.recent.get(hs);
      sharing = this.recentPrefixes!.get(hs.slice(0, 8)) ?? [];
    }
    if (dup !== undefined) return dup;
    // another leaf shares the 8-byte prefix: keep every index under the key
    const all = new Set<number>(sharing);
    if (prev) for (let o = 0; o < prev.length; o += 8) all.add(readU64(prev, o));
    all.add(next);
    return Buffer.concat([...all].map(u64));
  }

  /** Records leaf hash `h` as index `idx` (after check said it is new). */
  added(h: Uint8Array, idx: number): void {
    this.batch.hashes.push(h);
    if (this.recent) this.note(h, idx);
    this.filter.add(h);
  }
}
