/**
 * Follows the log as a monitor does and indexes what it verified: each new checkpoint is verified with the
 * log key (and the witness policy when given) and proven consistent with the last one the index followed;
 * each entry bundle is checked against its verified level-0 tile before any of its entries is indexed.
 * A checkpoint that does not verify, a fork (no consistency proof joins two checkpoints), a rollback or a
 * tile or entry that does not match stops the indexer with an alert: it never indexes a bad entry.
 */
import { TlogError, errorMessage, openCheckpoint, type NoteVerifier, type Policy } from '@trailmark/tlog';
import {
  AuditError,
  LogReader,
  fetchVerifiedCheckpoint,
  nodeHasher,
  proveConsistencyFromTiles,
  verifiedBundles,
  verifiedBundlesOffThread,
  type VerifiedLog,
} from '@trailmark/client';
import type { IndexStore, VerifiedLeaf } from './store.js';
import { preparedEntry, type PreparedBundle } from './prepare.js';

/**
 * The entries' parsing and normalizing (prepare.ts), run by the reader thread on each bundle it verified: the
 * module is this one's sibling, in the same form (.js built, .ts from sources under a TypeScript loader).
 */
const PREPARE = {
  module: new URL(`./prepare${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url),
  name: 'prepareBundle',
};

/** Entry bundles requested ahead of the one being indexed. */
const PREFETCH_BUNDLES = 32;

/** What an Indexer follows (the log and its keys), where it writes, and how often it polls. */
export interface IndexerOptions {
  reader: LogReader;
  logKey: NoteVerifier;
  policy?: Policy;
  store: IndexStore;
  /** Poll interval for new checkpoints. Default 1 s. */
  intervalMs?: number;
  /** Entries per transaction. Default 4096. */
  batchSize?: number;
  /**
   * From how many entries to index at once the log is read and verified on a worker thread, overlapping with
   * the writes here (a thread costs tens of milliseconds to start). Default 16,384.
   */
  offThreadFrom?: number;
  /** Alert lines (default: stderr). */
  alert?: (line: string) => void;
}

/** The indexer's progress and health, as the explorer's status endpoint reports it. */
export interface IndexerStatus {
  /** 'following', or 'stopped' after misbehaviour (see alert). */
  state: 'following' | 'stopped';
  indexed: number;
  checkpointSize: number;
  /** Why the indexer stopped: what did not verify. */
  alert: string | null;
  /** The last error reading the log (retried; not misbehaviour). */
  lastReadError: string | null;
}

/**
 * Follows the log: verifies each new checkpoint (and its consistency with the last one) and indexes the entries up to
 * it, stopping for good on misbehaviour.
 */
export class Indexer {
  readonly status: IndexerStatus;
  private stopped = false;
  /** Entries indexed when the planner's statistics were last refreshed (this process). */
  private optimizedAt = 0;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private readonly waiters: { size: number; resolve: () => void }[] = [];

  constructor(private readonly opts: IndexerOptions) {
    const st = opts.store.state();
    this.status = { state: 'following', indexed: st.indexed, checkpointSize: 0, alert: null, lastReadError: null };
  }

  /** Starts the follow loop in the background; a second call does nothing. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops the follow loop and resolves once the round in progress has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  /** Resolves once at least `size` entries are indexed (for tests and tools). */
  waitForIndexed(size: number): Promise<void> {
    if (this.status.indexed >= size) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ size, resolve }));
  }

  /** One round: verify the latest checkpoint and index every entry up to it. Throws what it met. */
  async syncOnce(): Promise<void> {
    const { reader, logKey, policy, store } = this.opts;
    const st = store.state();
    const log = await fetchVerifiedCheckpoint(reader, logKey, { hasher: nodeHasher, ...(policy ? { policy } : {}) });
    if (st.checkpoint !== null) {
      // the stored note was verified before it was stored; re-opening it guards against a data directory
      // that belongs to another log
      const prev = openCheckpoint(st.checkpoint, logKey).checkpoint;
      await proveConsistencyFromTiles(log, prev);
    }
    if (st.checkpoint === null || log.checkpoint.size !== openCheckpoint(st.checkpoint, logKey).checkpoint.size)
      store.setCheckpoint(log.text);
    // leaf indices are SQLite integers read as numbers: checked, never rounded
    if (log.checkpoint.size > BigInt(Number.MAX_SAFE_INTEGER))
      throw new RangeError(`tree size ${log.checkpoint.size} is beyond what the index can address (2^53 - 1)`);
    this.status.checkpointSize = Number(log.checkpoint.size);
    await this.indexUpTo(log, st.indexed);
    // statistics only need refreshing when the index has grown by a good fraction; refreshing blocks the event
    // loop (some 300-700 ms on a 1,000,000-event index), so at most once per doubling (after 50,000)
    if (this.status.indexed >= Math.max(50_000, 2 * this.optimizedAt)) {
      store.optimize();
      this.optimizedAt = this.status.indexed;
    }
  }

  private async indexUpTo(log: VerifiedLog, from: number): Promise<void> {
    const size = log.checkpoint.size;
    const batchSize = this.opts.batchSize ?? 4096;
    let batch: VerifiedLeaf[] = [];
    const flush = () => {
      this.opts.store.add(batch);
      this.status.indexed = batch[batch.length - 1].index + 1;
      batch = [];
      this.notify();
    };
    // verifiedBundles checks each whole bundle before handing it out, and the leaf hashes are the verified
    // tile's (each entry was checked to hash to its own). Bundles are fetched well ahead (more than a batch:
    // 32 x 256 entries), so the log serves the next batch while this one is written; on a long catch-up, by a
    // worker thread, so fetching and verifying use another core while this thread writes
    const long = size - BigInt(from) >= BigInt(this.opts.offThreadFrom ?? 16_384);
    const bundles = long
      ? verifiedBundlesOffThread(
          this.opts.reader,
          log,
          BigInt(from),
          size,
          PREFETCH_BUNDLES,
          (why) => {
            // read on here instead; a mismatch is then thrown by the reference code here
            this.status.lastReadError = `reader thread: ${why}`;
          },
          PREPARE,
        )
      : verifiedBundles(log, BigInt(from), size, PREFETCH_BUNDLES);
    for await (const b of bundles) {
      const first = Number(b.start);
      const prepared = b.prepared as PreparedBundle | undefined;
      for (let i = 0; i < b.entries.length; i++) {
        const t = (b.offset + i) * 32;
        const leaf: VerifiedLeaf = { index: first + i, leafHash: b.tile.subarray(t, t + 32), data: b.entries[i] };
        if (prepared !== undefined) leaf.prepared = preparedEntry(prepared, i);
        batch.push(leaf);
      }
      if (batch.length >= batchSize) flush();
      if (this.stopped) break;
    }
    if (batch.length > 0) flush();
  }

  private notify(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.status.indexed >= this.waiters[i].size) {
        this.waiters[i].resolve();
        this.waiters.splice(i, 1);
      }
    }
  }

  private async run(): Promise<void> {
    const alert = this.opts.alert ?? ((l: string) => process.stderr.write(l + '\n'));
    while (!this.stopped) {
      try {
        await this.syncOnce();
        this.status.lastReadError = null;
      } catch (e) {
        if (e instanceof TlogError || e instanceof AuditError) {
          // cryptographic evidence: the log forked, rolled back, or served something that does not verify
          this.status.state = 'stopped';
          this.status.alert = `${e.code}: ${e.message}`;
          alert(`ALERT trailmark explorer stopped indexing: the log misbehaved (${this.status.alert})`);
          return;
        }
        this.status.lastReadError = errorMessage(e);
      }
      if (this.stopped) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, this.opts.intervalMs ?? 1000);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
  }
}
