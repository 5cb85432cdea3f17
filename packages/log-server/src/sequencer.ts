/**
 * Group commit. Submissions queue up (bounded, so overload becomes a 503 instead of memory growth); one loop
 * takes everything queued (up to a cap) as one batch, has the store sequence and sign it (LogWrites.prepare),
 * then write it durably as one atomic sync batch (commit), and answers its waiters in submission order.
 *
 * Pipelined: batch N+1 is prepared (CPU) while commit N (fsync) is in flight, but commits run one at a time
 * in the order prepared, and no batch is prepared further ahead than that. A failed commit rejects its batch
 * and everything still queued; the batch already prepared behind it still goes to commit, where the store
 * refuses it (a failure drops every batch prepared before it), so the disk never holds a batch without the
 * ones before it. Tested against a store the test holds and releases (test/sequencer.test.ts).
 */
import { UnavailableError } from './errors.js';
import type { AppendResult, Leaf, LogWrites, Prepared, SignedTree } from './log-storage.js';

/** Queue and batch bounds of a Sequencer, and its commit callback. */
export interface SequencerOptions {
  /** Most entries waiting (queued, not yet in a batch) before submissions are refused with 503. */
  maxQueuedEntries?: number;
  /** Most entries per commit; a larger submission is still committed whole. */
  maxBatchEntries?: number;
  /** Called after each commit, outside the commit loop's critical path. */
  onCommit?: (info: CommitInfo) => void;
}

/** What one commit did: entries and new leaves, submissions answered, duration and the tree signed. */
export interface CommitInfo {
  entries: number;
  added: number;
  submissions: number;
  seconds: number;
  tree: SignedTree;
}

/** What a submitter gets back once its entries are durable and covered by `tree`. */
export interface Sequenced {
  indices: number[];
  tree: SignedTree;
  /** When the submission was accepted (performance.now()), for latency accounting. */
  acceptedAt: number;
}

interface Pending {
  leaves: readonly Leaf[];
  acceptedAt: number;
  resolve(v: Sequenced): void;
  reject(e: unknown): void;
}

/** The group-commit loop in front of a store (see the file comment). */
export class Sequencer {
  private queue: Pending[] = [];
  private queued = 0;
  private running = false;
  private closing = false;
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | undefined;
  readonly maxQueued: number;
  readonly maxBatch: number;

  constructor(
    readonly store: LogWrites,
    private readonly opts: SequencerOptions = {},
  ) {
    this.maxQueued = opts.maxQueuedEntries ?? 200_000;
    this.maxBatch = opts.maxBatchEntries ?? 8_000;
  }

  /** Entries accepted and not yet in a commit. */
  get depth(): number {
    return this.queued;
  }

  /**
   * Queues leaves for the next commit; resolves once they are durable and signed.
   * Precondition: each leaf hash is SHA-256(0x00 || data). Rejects with UnavailableError (503) when the
   * queue is full, the log is closing, or storage has failed.
   */
  submit(leaves: readonly Leaf[]): Promise<Sequenced> {
    if (this.closing) return Promise.reject(new UnavailableError('the log is shutting down', 5));
    const stopped = this.store.writeStopped;
    if (stopped) return Promise.reject(stopped);
    if (this.queued > 0 && this.queued + leaves.length > this.maxQueued) {
      return Promise.reject(
        new UnavailableError(`the log is overloaded: ${this.queued} entries queued`, 1, 'overload'),
      );
    }
    return new Promise<Sequenced>((resolve, reject) => {
      this.queue.push({ leaves, acceptedAt: performance.now(), resolve, reject });
      this.queued += leaves.length;
      if (!this.running) {
        this.running = true;
        this.idle = new Promise((r) => (this.idleResolve = r));
        // let requests that arrive in the same turn of the event loop join the first batch
        setImmediate(() => void this.loop());
      }
    });
  }

  private take(): Pending[] {
    let n = 0;
    let i = 0;
    while (i < this.queue.length && (i === 0 || n + this.queue[i].leaves.length <= this.maxBatch)) {
      n += this.queue[i].leaves.length;
      i++;
    }
    const group = this.queue.slice(0, i);
    this.queue = this.queue.slice(i);
    this.queued -= n;
    return group;
  }

  /**
   * Pipelined: batch N+1 is sequenced and signed (CPU) while batch N's fsync is in flight (I/O); writes stay
   * strictly one at a time and in order, so the disk never holds a batch without the ones before it.
   */
  private async loop(): Promise<void> {
    let writing: Promise<void> | undefined;
    do {
      while (this.queue.length > 0) {
        const group = this.take();
        const leaves: Leaf[] = [];
        for (const p of group) for (const l of p.leaves) leaves.push(l);
        const t0 = performance.now();
        let prepared: Prepared;
        try {
          prepared = await this.store.prepare(leaves);
        } catch (e) {
          for (const p of group) p.reject(e);
          if (this.store.failed) this.failAll(e);
          continue;
        }
        const previous = writing;
        writing = (async () => {
          if (previous) await previous;
          let result: AppendResult;
          try {
            result = await this.store.commit(prepared);
          } catch (e) {
            for (const p of group) p.reject(e);
            this.failAll(e);
            return;
          }
          let o = 0;
          for (const p of group) {
            p.resolve({
              indices: result.indices.slice(o, o + p.leaves.length),
              tree: result.tree,
              acceptedAt: p.acceptedAt,
            });
            o += p.leaves.length;
          }
          this.opts.onCommit?.({
            entries: leaves.length,
            added: result.added,
            submissions: group.length,
            seconds: (performance.now() - t0) / 1000,
            tree: result.tree,
          });
        })();
        // at most one batch sequenced ahead of the write in flight
        if (previous) await previous;
      }
      if (writing) await writing;
      writing = undefined;
    } while (this.queue.length > 0);
    this.running = false;
    this.idleResolve?.();
  }

  private failAll(e: unknown): void {
    const q = this.queue;
    this.queue = [];
    this.queued = 0;
    for (const p of q) p.reject(e);
  }

  /** Stops accepting submissions and resolves once everything already accepted is committed (or failed). */
  async drain(): Promise<void> {
    this.closing = true;
    await this.idle;
  }
}
