/**
 * The log's LevelDB storage (the embedded default), implementing LogStorage: one database, binary keys
 * (layout.ts), every state change one atomic `sync: true` batch. The concerns live in their own modules:
 * key layout (layout.ts), recovery (recovery.ts), dedup (dedup.ts), sequencing (sequencing.ts), reads
 * against the durable snapshot (reads.ts). This module owns the database's lifecycle: opening, committing
 * (the durable snapshot swap), the data directory's identity, and recovering from storage failures in
 * process.
 */
import { closeSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { LogStateError, UnavailableError } from './errors.js';
import type { LogKey } from './keys.js';
import { hashKey } from './layout.js';
import type { AppendResult, Leaf, LogStorage, Prepared } from './log-storage.js';
import type { Logger } from './logger.js';
import { Dedup } from './dedup.js';
import { DurableReads, type CacheOptions, type Db, type EdgeSnapshot } from './reads.js';
import { recoverEdge } from './recovery.js';
import { emptyEdge, EdgeWriter, type EdgeState } from './sequencing.js';
import { errorMessage } from '@trailmark/tlog';

export type { Leaf, SignedTree, AppendResult, Prepared, LogStorage } from './log-storage.js';

const MAX_SIZE = Number.MAX_SAFE_INTEGER;
const MAX_RETRY_MS = 30_000;

/** Settings of the LevelDB store: logger, recovery backoff and caches. */
export interface StoreOptions extends CacheOptions {
  logger?: Logger;
  /** First wait before reopening the database after a storage failure; doubles up to 30 s (default 500 ms). */
  retryMs?: number;
}

/** A LevelDB batch sequenced and signed by prepare, with the snapshot reads see once it is durable. */
interface LevelPrepared extends Prepared {
  batch: ReturnType<Db['batch']> | undefined;
  start: number;
  /** Leaf hashes of the new entries, from index `start`. */
  hashes: Uint8Array[];
  snapshot: EdgeSnapshot | undefined;
  /** The failure epoch it was prepared in: a batch prepared before a storage failure is never written. */
  epoch: number;
}

/** dev/ino of the database directory and of LevelDB's LOCK file, which stays in place while the database is open. */
function dirIdentity(dir: string): string {
  const d = statSync(dir);
  const l = statSync(join(dir, 'LOCK'));
  return `${d.dev}:${d.ino}/${l.dev}:${l.ino}`;
}

// unref'd: a closed store's pending retry must not keep the process alive
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

/**
 * The LevelDB log store. `prepare`/`commit` must not run concurrently with themselves (the Sequencer
 * serialises them); reads may run at any time and only ever see the latest durable tree.
 */
export class LogStore extends DurableReads implements LogStorage {
  private readonly dedup = new Dedup();
  private writer!: EdgeWriter;
  private failure: Error | undefined;
  /** A failure no retry can fix (the directory is gone or replaced, the store no longer matches): writes stop for good. */
  private fatal = false;
  /** Bumped by every failure: what was prepared before it is never written. */
  private epoch = 0;
  /** Prepared batches not yet durable, oldest first. */
  private inflight: LevelPrepared[] = [];
  private identity = '';
  private closed = false;
  readonly logger: Logger;
  private readonly retryMs: number;

  private constructor(
    db: Db,
    readonly dir: string,
    readonly key: LogKey,
    opts: StoreOptions,
  ) {
    super(db, opts);
    this.logger = opts.logger ?? { info() {}, warn() {}, error() {} };
    this.retryMs = opts.retryMs ?? 500;
  }

  /**
   * Opens (creating on first use) the log in `dir` signed by `key`, checking the stored tree against the
   * stored signed checkpoint. Throws LogStateError, refusing to serve, when anything does not match.
   */
  static async open(dir: string, key: LogKey, opts: StoreOptions = {}): Promise<LogStore> {
    const db = await openDb(dir, true);
    const store = new LogStore(db, dir, key, opts);
    try {
      await store.start();
    } catch (e) {
      await db.close();
      throw e;
    }
    return store;
  }

  private async start(): Promise<void> {
    const state = await recoverEdge(this.db, this.key, {
      leaf: (h) => this.dedup.filter.add(h),
      recentTiles: this.upperCapacity,
      recentTile: (i, raw) => this.seedUpper(0, i, raw),
    });
    if (state) {
      this.install(state);
      this.logger.info('log recovered', { size: this.size, root: this.tree.root.toString('base64') });
    } else {
      this.install(emptyEdge());
      const batch = this.db.batch();
      const tree = this.writer.sign(batch, 0, Date.now());
      await batch.write({ sync: true });
      this.snap = this.writer.snapshot(tree);
      this.logger.info('new log created', { origin: this.key.origin, vkey: this.key.vkey });
    }
    this.identity = dirIdentity(this.dir);
  }

  /** A new writer on `state`, and reads on its tree. */
  private install(state: EdgeState): void {
    this.writer = new EdgeWriter(this.key, state, {
      fullTile: (level, index, node) => this.cacheFullTile(level, index, node),
      fullBundle: (index, encoded) => this.cacheBundle(index, encoded),
    });
    if (state.tree) this.snap = this.writer.snapshot(state.tree);
  }

  /** Set while writes are stopped by a storage failure (recovering, or for good when fatal). */
  get failed(): Error | undefined {
    return this.failure;
  }

  /**
   * The 503 writes get after a storage failure (retry soon while recovering, much later when fatal), else undefined.
   */
  get writeStopped(): UnavailableError | undefined {
    if (!this.failure) return undefined;
    return this.fatal
      ? new UnavailableError(`the log stopped writing: ${this.failure.message}`, 3600)
      : new UnavailableError(`storage failure, the log is recovering: ${this.failure.message}`, 5);
  }

  /**
   * Stops writes after a failure. Memory may be ahead of the disk, so every batch prepared before it is
   * dropped; a transient failure (EMFILE, a full disk) starts the recovery loop, a fatal one ends writing.
   */
  private fail(e: unknown, fatal = false): UnavailableError {
    if (!this.failure) {
      this.failure = e instanceof Error ? e : new Error(String(e));
      this.fatal = fatal;
      this.epoch++;
      this.inflight = [];
      if (fatal) this.logger.error('the log stops accepting entries', { error: this.failure.message });
      else {
        this.logger.error('durable write failed; writes stop until the store is reopened', {
          error: this.failure.message,
        });
        // recoverLoop never rejects: each failure is logged and retried, or made fatal
        if (!this.closed) void this.recoverLoop();
      }
    }
    return this.writeStopped!;
  }

  /** Why the database directory is no longer the one opened, if it is not. */
  private identityProblem(): string | undefined {
    let now: string;
    try {
      now = dirIdentity(this.dir);
    } catch (e) {
      return `the log's database directory ${this.dir} is gone (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}): entries written since are in deleted files; restart the log on its real data directory`;
    }
    return now === this.identity
      ? undefined
      : `the log's database directory ${this.dir} was replaced under the running log; restart it on its real data directory`;
  }

  /** Retries reopening the database with backoff until it works, the failure turns out fatal, or the store closes. */
  private async recoverLoop(): Promise<void> {
    let delay = this.retryMs;
    for (;;) {
      await sleep(delay);
      if (this.closed) return;
      try {
        await this.reopen();
        this.logger.info('storage recovered; the log accepts entries again', { size: this.size });
        this.failure = undefined;
        return;
      } catch (e) {
        if (e instanceof LogStateError) {
          this.failure = e;
          this.fatal = true;
          this.logger.error('the store cannot be recovered in place; the log stops accepting entries', {
            error: e.message,
          });
          return;
        }
        this.logger.warn('storage still failing; retrying', { error: errorMessage(e), retry_ms: delay });
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    }
  }

  /**
   * Closes and reopens the database (LevelDB refuses every write after a failed sync or compaction until it
   * is reopened), then rebuilds the writer from what is durable: a batch whose write failed may or may not
   * have landed, and only the store can say. Reads wait while the database is closed.
   */
  private async reopen(): Promise<void> {
    const problem = this.identityProblem();
    if (problem) throw new LogStateError('data-dir', problem);
    // too few file descriptors to reopen: keep the open database (reads go on) and try later
    probeDescriptors();
    let done!: () => void;
    this.reopening = new Promise((r) => (done = r));
    try {
      await this.db.close().catch(() => {});
      try {
        this.db = await openDb(this.dir, false);
      } catch (e) {
        // not a verdict on the store: LevelDB could not open it yet (descriptors, space); retried
        throw new Error(errorMessage(e), { cause: e });
      }
      const state = await recoverEdge(this.db, this.key, {
        recentTiles: this.upperCapacity,
        recentTile: (i, raw) => this.seedUpper(0, i, raw),
      });
      if (!state)
        throw new LogStateError(
          'no-state',
          `the database in ${this.dir} is empty: it was replaced under the running log`,
        );
      if (state.tree!.size < this.size)
        throw new LogStateError(
          'rolled-back',
          `the reopened store has size ${state.tree!.size}, below the ${this.size} already acknowledged`,
        );
      this.resetCaches();
      this.install(state);
      this.identity = dirIdentity(this.dir);
    } finally {
      this.reopening = undefined;
      done();
    }
  }

  /**
   * Sequences leaves: duplicates (of stored leaves, of prepared ones, or within the call) get their first
   * index, new leaves are appended in memory, and the new tree is signed; returns the batch to write.
   * Memory runs ahead of the disk until commit(); reads only ever see the durable snapshot.
   * Precondition: calls to prepare are serial, and each prepared batch is committed in order.
   */
  async prepare(leaves: readonly Leaf[]): Promise<Prepared> {
    const stopped = this.writeStopped;
    if (stopped) throw stopped;
    const epoch = this.epoch;
    // batches prepared before this one: not durable yet, or made durable while this call awaits its reads
    const earlier = this.inflight.slice();
    const durable = this.snap.tree.size;
    let matches;
    try {
      matches = await this.dedup.lookup(this.db, leaves, durable, (i) => this.leafHash(i, durable));
    } catch (e) {
      if (epoch !== this.epoch)
        throw (
          this.writeStopped ??
          new UnavailableError('the store recovered from a failure while this batch waited; retry', 1)
        );
      throw this.fail(e);
    }
    // a commit may have failed (and the store recovered) while this call waited for the reads
    if (epoch !== this.epoch)
      throw (
        this.writeStopped ??
        new UnavailableError('the store recovered from a failure while this batch waited; retry', 1)
      );

    const start = this.writer.size;
    const batch = this.db.batch();
    this.writer.begin(batch);
    const indices = new Array<number>(leaves.length);
    const hashes: Uint8Array[] = [];
    const round = this.dedup.round(matches, earlier, { start, hashes });
    let size = start;
    try {
      for (let i = 0; i < leaves.length; i++) {
        const leaf = leaves[i];
        const r = round.check(i, leaf, size);
        if (typeof r === 'number') {
          indices[i] = r;
          continue;
        }
        if (size >= MAX_SIZE) throw new UnavailableError('the log is full', 3600);
        const idx = size++;
        indices[i] = idx;
        batch.put(hashKey(leaf.hash), r);
        round.added(leaf.hash, idx);
        this.writer.append(leaf.hash, leaf.data);
      }
      if (size === start) {
        this.writer.abandon();
        void batch.close().catch(() => {});
        const none: LevelPrepared = {
          batch: undefined,
          indices,
          added: 0,
          hashes,
          start,
          tree: undefined,
          snapshot: undefined,
          epoch,
        };
        return none;
      }
      const snapshot = this.writer.finish();
      const prepared: LevelPrepared = {
        batch,
        indices,
        added: size - start,
        hashes,
        start,
        tree: snapshot.tree,
        snapshot,
        epoch,
      };
      this.inflight.push(prepared);
      return prepared;
    } catch (e) {
      if (e instanceof UnavailableError && size === start) {
        this.writer.abandon();
        throw e;
      }
      throw this.fail(e);
    }
  }

  /**
   * Writes a prepared batch (one atomic sync LevelDB batch), checks the database directory is still the one
   * opened, and only then makes its tree the one reads see and the caller acknowledges.
   * Precondition: batches are committed in the order they were prepared, one at a time.
   */
  async commit(prepared: Prepared): Promise<AppendResult> {
    const p = prepared as LevelPrepared;
    if (!p.batch || !p.snapshot) return { indices: p.indices, added: 0, tree: this.snap.tree };
    if (this.failure || p.epoch !== this.epoch) {
      void p.batch.close().catch(() => {});
      throw (
        this.writeStopped ??
        new UnavailableError('the store recovered from a failure after this batch was sequenced; retry', 1)
      );
    }
    try {
      await p.batch.write({ sync: true });
    } catch (e) {
      throw this.fail(e);
    }
    // a log whose directory was deleted or replaced writes into files nobody will read again: never acknowledge
    const problem = this.identityProblem();
    if (problem) throw this.fail(new Error(problem), true);
    this.snap = p.snapshot;
    this.inflight.shift();
    return { indices: p.indices, added: p.added, tree: p.snapshot.tree };
  }

  /** prepare + commit. Precondition: not called concurrently with itself, prepare or commit. */
  async append(leaves: readonly Leaf[]): Promise<AppendResult> {
    return this.commit(await this.prepare(leaves));
  }

  /** Closes the database. Precondition: no commit in flight. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reopening) await this.reopening;
    if (this.db.status === 'open') await this.db.close();
  }
}

async function openDb(dir: string, create: boolean): Promise<Db> {
  const db = new Level<Uint8Array, Uint8Array>(dir, {
    keyEncoding: 'view',
    valueEncoding: 'view',
    createIfMissing: create,
  });
  try {
    await db.open();
  } catch (e) {
    const cause = (e as { cause?: Error }).cause;
    throw new LogStateError('db-open', `cannot open the log database in ${dir}: ${cause?.message ?? errorMessage(e)}`);
  }
  return db;
}

/**
 * Throws when the process cannot open a few more files: LevelDB needs some to reopen (its log, manifest,
 * tables), and closing it first would leave reads without a database until descriptors free up.
 */
function probeDescriptors(): void {
  const fds: number[] = [];
  try {
    for (let i = 0; i < 16; i++) fds.push(openSync('/dev/null', 'r'));
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}
