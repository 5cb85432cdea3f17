/**
 * The sequencer's group commit and pipelining, against a store whose prepare and commit the test holds and
 * releases (a test double for the LogWrites boundary only: the real stores are tested in store.test.ts,
 * crash.test.ts and storage-failures.test.ts). The double keeps LogWrites' rules as the LevelDB store does:
 * batches are committed in the order they were prepared, and a failed commit drops every batch prepared
 * before it (their commit is refused) until the store recovers. It records every call and fails the test on
 * two commits in flight at once or a commit out of order.
 */
import { expect } from 'chai';
import { UnavailableError } from '../src/errors.js';
import type { AppendResult, Leaf, LogWrites, Prepared, SignedTree } from '../src/log-storage.js';
import { Sequencer, type CommitInfo, type Sequenced } from '../src/sequencer.js';

/** A call the test holds until it says how it ends. */
interface Held<T> {
  release(): void;
  fail(e: Error): void;
  readonly result: Promise<T>;
}

interface DoublePrepared extends Prepared {
  n: number;
  epoch: number;
  leaves: readonly Leaf[];
}

class HeldStore implements LogWrites {
  /** What happened, in order: "prepare 1 (3)" is the first prepare, of 3 leaves; "commit 1" its commit. */
  readonly events: string[] = [];
  /** The durable leaves, in index order. */
  readonly disk: Leaf[] = [];
  /** Hold each prepare until released (else it answers at once). */
  holdPrepares = false;
  private memSize = 0;
  private prepares = 0;
  private epoch = 0;
  private failure: Error | undefined;
  private inFlight = 0;
  /** Batches prepared and not yet committed, in order. */
  private readonly order: DoublePrepared[] = [];
  private readonly waiting: ((h: Held<unknown>) => void)[] = [];
  private readonly heldCalls: Held<unknown>[] = [];

  get writeStopped(): UnavailableError | undefined {
    return this.failure && new UnavailableError(`storage failure: ${this.failure.message}`, 5);
  }
  get failed(): Error | undefined {
    return this.failure;
  }

  /** The storage fails outside a commit (as a failed read while sequencing can). */
  breakDown(e: Error): void {
    this.failure = e;
    this.epoch++;
    this.order.length = 0;
  }

  /** The store reopens: writes work again from what is durable. */
  recover(): void {
    this.failure = undefined;
    this.memSize = this.disk.length;
  }

  /** Resolves with the next held call (prepare or commit), in the order they were made. */
  next(): Promise<Held<unknown>> {
    const h = this.heldCalls.shift();
    if (h) return Promise.resolve(h);
    return new Promise((r) => this.waiting.push(r));
  }

  private hold<T>(work: () => T): Promise<T> {
    let release!: () => void;
    let fail!: (e: Error) => void;
    const result = new Promise<T>((res, rej) => {
      release = () => {
        try {
          res(work());
        } catch (e) {
          rej(e);
        }
      };
      fail = rej;
    });
    const h: Held<T> = { release, fail, result };
    const w = this.waiting.shift();
    if (w) w(h);
    else this.heldCalls.push(h);
    return result;
  }

  async prepare(leaves: readonly Leaf[]): Promise<Prepared> {
    const stopped = this.writeStopped;
    if (stopped) throw stopped;
    const n = ++this.prepares;
    this.events.push(`prepare ${n} (${leaves.length})`);
    const make = (): DoublePrepared => {
      const start = this.memSize;
      this.memSize += leaves.length;
      const p: DoublePrepared = {
        n,
        epoch: this.epoch,
        leaves,
        indices: leaves.map((_l, i) => start + i),
        added: leaves.length,
        tree: tree(this.memSize),
      };
      this.order.push(p);
      return p;
    };
    return this.holdPrepares ? this.hold(make) : make();
  }

  async commit(prepared: Prepared): Promise<AppendResult> {
    const p = prepared as DoublePrepared;
    this.events.push(`commit ${p.n}`);
    if (this.inFlight > 0) throw new Error(`commit ${p.n} started while another commit is in flight`);
    if (this.failure || p.epoch !== this.epoch) throw new UnavailableError(`batch ${p.n} was dropped by a failure`);
    if (this.order[0] !== p) throw new Error(`commit ${p.n} out of order (next prepared: ${this.order[0]?.n})`);
    this.order.shift();
    this.inFlight++;
    try {
      return await this.hold(() => {
        this.disk.push(...p.leaves);
        return { indices: p.indices, added: p.added, tree: p.tree! };
      });
    } catch (e) {
      // as the LevelDB store: memory may be ahead of the disk, every batch prepared before the failure is dropped
      this.failure = e as Error;
      this.epoch++;
      this.order.length = 0;
      throw e;
    } finally {
      this.inFlight--;
    }
  }

  async append(leaves: readonly Leaf[]): Promise<AppendResult> {
    return this.commit(await this.prepare(leaves));
  }
}

function tree(size: number): SignedTree {
  return { size, root: Buffer.alloc(32), checkpoint: `size ${size}\n`, timestamp: 0, sthSignature: Buffer.alloc(0) };
}

let leafCount = 0;
function leaves(n: number): Leaf[] {
  return Array.from({ length: n }, () => {
    const data = new TextEncoder().encode(`leaf ${leafCount++}`);
    return { data, hash: data };
  });
}

/** Lets every pending callback and immediate run: what is not done after this waits on something held. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** The outcome of a submission, once it has one. */
function track(p: Promise<Sequenced>): { p: Promise<Sequenced>; state: () => string } {
  let state = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  return { p, state: () => state };
}

describe('sequencer: group commit and pipelining', () => {
  it('submissions made in one turn go to the store as one batch, in order', async () => {
    const store = new HeldStore();
    const commits: CommitInfo[] = [];
    const seq = new Sequencer(store, { onCommit: (c) => commits.push(c) });
    const subs = [seq.submit(leaves(2)), seq.submit(leaves(1)), seq.submit(leaves(3))];
    (await store.next()).release();
    const got = await Promise.all(subs);
    expect(store.events).to.deep.equal(['prepare 1 (6)', 'commit 1']);
    expect(got.map((g) => g.indices)).to.deep.equal([[0, 1], [2], [3, 4, 5]]);
    expect(got.map((g) => g.tree.size)).to.deep.equal([6, 6, 6]);
    expect(commits.map((c) => [c.entries, c.submissions, c.tree.size])).to.deep.equal([[6, 3, 6]]);
  });

  it('prepares batch N+1 while commit N is in flight, never two commits at once, and acknowledges in order', async () => {
    const store = new HeldStore();
    store.holdPrepares = true;
    const seq = new Sequencer(store);
    const s1 = track(seq.submit(leaves(1)));
    const prepare1 = await store.next();
    // arrive while batch 1 is being sequenced
    const s2 = track(seq.submit(leaves(2)));
    const s3 = track(seq.submit(leaves(1)));
    prepare1.release();
    const commit1 = await store.next();
    const prepare2 = await store.next();
    expect(store.events).to.deep.equal(['prepare 1 (1)', 'commit 1', 'prepare 2 (3)']);
    prepare2.release();
    const s4 = track(seq.submit(leaves(1)));
    await settle();
    // batch 2 waits for commit 1; nothing more is sequenced ahead of the write in flight
    expect(store.events).to.deep.equal(['prepare 1 (1)', 'commit 1', 'prepare 2 (3)']);
    expect([s1.state(), s2.state(), s3.state(), s4.state()]).to.deep.equal([
      'pending',
      'pending',
      'pending',
      'pending',
    ]);
    commit1.release();
    expect((await s1.p).indices).to.deep.equal([0]);
    const commit2 = await store.next();
    const prepare3 = await store.next();
    expect(store.events.slice(3)).to.deep.equal(['commit 2', 'prepare 3 (1)']);
    // a later batch is never acknowledged before an earlier one
    prepare3.release();
    await settle();
    expect([s2.state(), s3.state(), s4.state()]).to.deep.equal(['pending', 'pending', 'pending']);
    commit2.release();
    (await store.next()).release();
    expect((await s2.p).indices).to.deep.equal([1, 2]);
    expect((await s3.p).indices).to.deep.equal([3]);
    expect((await s4.p).indices).to.deep.equal([4]);
    expect((await s4.p).tree.size).to.equal(5);
    expect(store.disk.length).to.equal(5);
  });

  it('caps a batch at maxBatchEntries, except a single larger submission, which is committed whole', async () => {
    const store = new HeldStore();
    const seq = new Sequencer(store, { maxBatchEntries: 3 });
    const subs = [seq.submit(leaves(5)), seq.submit(leaves(2)), seq.submit(leaves(1)), seq.submit(leaves(1))];
    for (let i = 0; i < 3; i++) (await store.next()).release();
    const got = await Promise.all(subs);
    expect(store.events.filter((e) => e.startsWith('prepare'))).to.deep.equal([
      'prepare 1 (5)',
      'prepare 2 (3)',
      'prepare 3 (1)',
    ]);
    expect(got.map((g) => g.indices[0])).to.deep.equal([0, 5, 7, 8]);
  });

  it('refuses submissions with 503 (overload) once maxQueuedEntries are waiting, and accepts again once they are taken', async () => {
    const store = new HeldStore();
    const seq = new Sequencer(store, { maxQueuedEntries: 4 });
    // a submission larger than the bound is accepted into an empty queue
    const big = seq.submit(leaves(6));
    const commit1 = await store.next();
    const waiting = [seq.submit(leaves(2)), seq.submit(leaves(2))];
    expect(seq.depth).to.equal(4);
    const refused = await seq.submit(leaves(1)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).to.be.instanceOf(UnavailableError);
    expect((refused as UnavailableError).reason).to.equal('overload');
    commit1.release();
    await big;
    (await store.next()).release();
    await Promise.all(waiting);
    expect(seq.depth).to.equal(0);
    const again = seq.submit(leaves(1));
    (await store.next()).release();
    expect((await again).indices).to.deep.equal([10]);
  });

  it('a failed commit fails its batch, the batch prepared behind it and everything queued; writes resume after recovery', async () => {
    const store = new HeldStore();
    store.holdPrepares = true;
    const seq = new Sequencer(store);
    const s1 = track(seq.submit(leaves(1)));
    const prepare1 = await store.next();
    const s2 = track(seq.submit(leaves(1)));
    prepare1.release();
    const commit1 = await store.next();
    (await store.next()).release(); // batch 2, sequenced on top of batch 1
    await settle();
    const s3 = track(seq.submit(leaves(1))); // queued behind the write in flight
    const boom = new Error('fsync: EIO');
    commit1.fail(boom);
    const e1 = await s1.p.catch((e: unknown) => e);
    const e2 = await s2.p.catch((e: unknown) => e);
    const e3 = await s3.p.catch((e: unknown) => e);
    expect(e1).to.equal(boom);
    // batch 2 counted on batch 1's indices: the store refuses it rather than write it without batch 1
    expect(e2).to.be.instanceOf(UnavailableError);
    expect(e3).to.equal(boom);
    expect(store.disk).to.deep.equal([]);
    // while the store is failed, a submission is refused at once with its 503
    const e4 = await seq.submit(leaves(1)).catch((e: unknown) => e);
    expect(e4).to.be.instanceOf(UnavailableError);
    expect((e4 as UnavailableError).message).to.include('EIO');
    store.recover();
    const s5 = seq.submit(leaves(1));
    (await store.next()).release();
    (await store.next()).release();
    expect((await s5).indices).to.deep.equal([0]);
    expect(store.disk.length).to.equal(1);
  });

  it('a failed prepare fails its own batch only, unless the store stopped writing', async () => {
    const store = new HeldStore();
    store.holdPrepares = true;
    const seq = new Sequencer(store);
    const s1 = seq.submit(leaves(1));
    const prepare1 = await store.next();
    const s2 = seq.submit(leaves(1));
    prepare1.fail(new Error('dedup lookup failed'));
    expect(await s1.catch((e: Error) => e.message)).to.equal('dedup lookup failed');
    (await store.next()).release();
    (await store.next()).release();
    expect((await s2).indices).to.deep.equal([0]);

    // the store stops writing while a batch is being sequenced: that batch and everything queued fail
    const s3 = seq.submit(leaves(1));
    const prepare3 = await store.next();
    const s4 = seq.submit(leaves(1));
    const down = new Error('ENOSPC');
    store.breakDown(down);
    prepare3.fail(down);
    expect(await s3.catch((e: unknown) => e)).to.equal(down);
    expect(await s4.catch((e: unknown) => e)).to.equal(down);
  });

  it('drain() refuses new submissions and resolves once the accepted ones are committed', async () => {
    const store = new HeldStore();
    const seq = new Sequencer(store);
    const s1 = track(seq.submit(leaves(1)));
    const commit1 = await store.next();
    let drained = false;
    const d = seq.drain().then(() => (drained = true));
    const late = await seq.submit(leaves(1)).catch((e: unknown) => e);
    expect(late).to.be.instanceOf(UnavailableError);
    await settle();
    expect(drained).to.equal(false);
    commit1.release();
    await d;
    expect(s1.state()).to.equal('resolved');
  });
});
