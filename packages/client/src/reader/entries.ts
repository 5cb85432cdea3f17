/**
 * Reading the trail: entries of a log, each checked against tiles verified against a signed checkpoint,
 * optionally following the log as it grows (each new checkpoint proven consistent with the previous one).
 */
import { TILE_WIDTH, type Checkpoint, type Hasher, type NoteVerifier } from '@trailmark/tlog';
import type { LogReader } from './http.js';
import { fetchVerifiedCheckpoint, proveConsistencyFromTiles, type VerifiedLog } from './verified.js';

/** One log entry whose bytes were checked against a verified tile. */
export interface VerifiedEntry {
  index: bigint;
  /** The leaf data: the entry's canonical JSON bytes, as logged. */
  data: Uint8Array;
  /** Its RFC 6962 leaf hash, as the verified level-0 tile holds it (which the data was checked to hash to). */
  leafHash: Uint8Array;
}

/** The entries of one entry bundle in a range, each checked against its verified level-0 tile. */
export interface VerifiedBundle {
  /** Leaf index of entries[0]. */
  start: bigint;
  /** The entries' bytes, in leaf order. */
  entries: Uint8Array[];
  /** The level-0 tile the entries were checked against; entry k's leaf hash is at bytes 32 (k + o) .. 32 (k + o + 1), o = offset. */
  tile: Uint8Array;
  /** Position of entries[0] in its bundle (non-zero only for the first bundle of a range). */
  offset: number;
  /** What the caller's BundlePrepare made of the entries (verifiedBundlesOffThread with one). */
  prepared?: unknown;
}

/**
 * The entries [start, end) of a verified tree, one bundle at a time, in order, each bundle checked against its
 * verified level-0 tile before it is handed out. A reader that handles a bundle at once (an indexer) awaits
 * once per 256 entries, not once per entry. Precondition: start <= end <= log size. Prefetches up to
 * `prefetch` bundles ahead.
 */
export async function* verifiedBundles(
  log: Pick<VerifiedLog, 'tiles'>,
  start: bigint,
  end: bigint,
  prefetch = 4,
): AsyncGenerator<VerifiedBundle> {
  const W = BigInt(TILE_WIDTH);
  if (start >= end) return;
  const first = start / W;
  const last = (end - 1n) / W;
  const queue: Promise<{ entries: Uint8Array[]; tile: Uint8Array }>[] = [];
  let next = first;
  const fill = () => {
    while (queue.length < prefetch && next <= last) {
      const n = next++;
      // entryBundle fetched and checked the tile first: this second read of it is a cache hit
      const p = log.tiles.entryBundle(n).then(async (entries) => ({ entries, tile: await log.tiles.tileBytes(0, n) }));
      p.catch(() => undefined); // awaited in order; keeps an early failure from being "unhandled"
      queue.push(p);
    }
  };
  fill();
  for (let b = first; b <= last; b++) {
    const { entries, tile } = await queue.shift()!;
    fill();
    const base = b * W;
    const lo = start > base ? Number(start - base) : 0;
    const hi = end < base + BigInt(entries.length) ? Number(end - base) : entries.length;
    if (lo < hi) yield { start: base + BigInt(lo), entries: entries.slice(lo, hi), tile, offset: lo };
  }
}

/**
 * Entries [start, end) of a verified tree, in order, each checked against its verified level-0 tile.
 * Precondition: start <= end <= log size. Prefetches up to `prefetch` bundles ahead.
 */
export async function* verifiedEntries(
  log: VerifiedLog,
  start: bigint,
  end: bigint,
  prefetch = 4,
): AsyncGenerator<VerifiedEntry> {
  for await (const b of verifiedBundles(log, start, end, prefetch)) {
    for (let i = 0; i < b.entries.length; i++) {
      const t = (b.offset + i) * 32;
      yield { index: b.start + BigInt(i), data: b.entries[i], leafHash: b.tile.subarray(t, t + 32) };
    }
  }
}

/** Where a follow-style entry read starts, stops and how it polls. */
export interface FollowOptions {
  /** First index (default 0). */
  start?: bigint;
  /** Stop after this index (exclusive); without it, read up to the current checkpoint (or forever with follow). */
  end?: bigint;
  /** Keep polling for new checkpoints. */
  follow?: boolean;
  /** Poll interval while following. Default 5 s. */
  intervalMs?: number;
  /** Stops following. */
  signal?: AbortSignal;
  hasher?: Hasher;
  /** Called with each newly verified checkpoint (and the previous one, proven consistent). */
  onCheckpoint?: (cp: Checkpoint, previous: Checkpoint | null) => void;
}

/**
 * Entries of the log from `start`, verified against the latest checkpoint; with `follow`, then each new
 * checkpoint is verified, proven consistent with the last, and its new entries are yielded.
 * Precondition: logKey is the log's key. Throws TlogError on any mismatch, LogReadError when unreadable.
 */
export async function* followEntries(
  reader: LogReader,
  logKey: NoteVerifier,
  opts: FollowOptions = {},
): AsyncGenerator<VerifiedEntry> {
  const hasherOpt = opts.hasher ? { hasher: opts.hasher } : {};
  let pos = opts.start ?? 0n;
  let prev: VerifiedLog | null = null;
  for (;;) {
    if (opts.signal?.aborted) return;
    const log = await fetchVerifiedCheckpoint(reader, logKey, hasherOpt);
    if (prev) await proveConsistencyFromTiles(log, prev.checkpoint);
    if (!prev || log.checkpoint.size !== prev.checkpoint.size)
      opts.onCheckpoint?.(log.checkpoint, prev?.checkpoint ?? null);
    prev = log;
    const limit = opts.end !== undefined && opts.end < log.checkpoint.size ? opts.end : log.checkpoint.size;
    for await (const e of verifiedEntries(log, pos, limit)) {
      yield e;
      pos = e.index + 1n;
    }
    if (pos < limit) pos = limit;
    if (!opts.follow || (opts.end !== undefined && pos >= opts.end)) return;
    await sleep(opts.intervalMs ?? 5000, opts.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
