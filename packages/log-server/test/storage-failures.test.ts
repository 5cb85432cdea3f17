import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage, merkleRoot } from '@trailmark/tlog';
import { loadLogKey, LogStore, nodeHasher, startLogServer, toLeaf, UnavailableError, type Leaf } from '../src/index.js';

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** Resubmits `failed` until writes resume (the store reopens by itself), then checks every acknowledged entry and the root. */
async function resumeAndVerify(store: LogStore, failed: Leaf[], acked: Map<number, Leaf>, more: Leaf[]): Promise<void> {
  const until = Date.now() + 20000;
  let resumed: Awaited<ReturnType<typeof store.append>> | undefined;
  while (!resumed && Date.now() < until) {
    try {
      resumed = await store.append(failed);
    } catch (e) {
      if (!(e instanceof UnavailableError)) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  expect(resumed, 'writes did not resume').to.not.equal(undefined);
  resumed!.indices.forEach((idx, k) => acked.set(idx, failed[k]));
  (await store.append(more)).indices.forEach((idx, k) => acked.set(idx, more[k]));
  // every acknowledged entry at its index, and the signed root is that of exactly the stored entries
  const data = await store.entries(0, store.size);
  expect(data.length).to.equal(acked.size);
  for (const [idx, l] of acked)
    expect(Buffer.from(data[idx]).equals(Buffer.from(l.data)), `entry ${idx}`).to.equal(true);
  expect(
    Buffer.from(
      merkleRoot(
        data.map((d) => nodeHasher.leaf(d)),
        nodeHasher,
      ),
    ).equals(store.tree.root),
  ).to.equal(true);
}

describe('storage failures', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tm-fail-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a log whose data directory is deleted under it stops acknowledging (503), and reads go on', async () => {
    const log = await startLogServer({ dataDir: join(dir, 'data'), origin: 'fail.test/log' });
    try {
      expect((await post(`${log.url}/v1/add-entries`, [{ a: 1 }, { a: 2 }])).status).to.equal(200);
      rmSync(join(dir, 'data'), { recursive: true, force: true });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        statuses.push((await post(`${log.url}/v1/add-entry`, { after: i })).status);
        statuses.push((await post(`${log.url}/v1/add-entries`, [{ batch: i }])).status);
      }
      expect(statuses).to.deep.equal(Array(10).fill(503));
      expect((await fetch(`${log.url}/healthz`)).status).to.equal(503);
      const sth = (await (await fetch(`${log.url}/v1/get-sth`)).json()) as { tree_size: number };
      expect(sth.tree_size).to.equal(2);
      expect((await fetch(`${log.url}/v1/get-entries?start=0&end=1`)).status).to.equal(200);
    } finally {
      await log.close();
    }
  });

  it('recovers from running out of file descriptors without a restart: writes resume, nothing acknowledged is lost, the tree stays consistent', async () => {
    const store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'fail.test/log' }),
      { retryMs: 50 },
    );
    const pad = 'p'.repeat(1000);
    const leaf = (i: number): Leaf => toLeaf({ i, pad }, 'entry');
    const acked = new Map<number, Leaf>();
    const ack = (leaves: Leaf[], indices: number[]) => indices.forEach((idx, k) => acked.set(idx, leaves[k]));
    let next = 0;
    const batch = () => Array.from({ length: 200 }, () => leaf(next++));
    const fds: number[] = [];
    try {
      for (let b = 0; b < 5; b++) {
        const l = batch();
        ack(l, (await store.append(l)).indices);
      }
      // exhaust the process's descriptors; LevelDB fails as soon as it needs a new file (its next log file)
      try {
        for (;;) fds.push(openSync('/dev/null', 'r'));
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).to.equal('EMFILE');
      }
      let failed: Leaf[] | undefined;
      for (let b = 0; b < 60 && !failed; b++) {
        const l = batch();
        try {
          ack(l, (await store.append(l)).indices);
        } catch (e) {
          expect(e).to.be.instanceOf(UnavailableError);
          failed = l;
        }
      }
      expect(failed, 'LevelDB never needed a new file').to.not.equal(undefined);
      // writes stay refused while the condition lasts; reads of the durable tree go on
      await new Promise((r) => setTimeout(r, 300));
      let refused = false;
      try {
        await store.append([leaf(-1)]);
      } catch (e) {
        refused = e instanceof UnavailableError;
      }
      expect(refused).to.equal(true);
      expect(store.size).to.be.at.least(1000);
      expect(await store.entries(store.size - 1, store.size)).to.have.length(1);
      for (const fd of fds.splice(0)) closeSync(fd);
      await resumeAndVerify(store, failed!, acked, batch());
      await store.close();
      // and a restart agrees
      const again = await LogStore.open(join(dir, 'db'), loadLogKey(join(dir, 'log.key'), { create: false }));
      expect(again.size).to.equal(acked.size);
      await again.close();
    } finally {
      for (const fd of fds) closeSync(fd);
      await store.close();
    }
  });

  it('recovers from a full disk once space returns, without a restart', async function () {
    // a private 16 MiB tmpfs: the disk fills for real, and freeing a ballast file gives the space back
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      throw new Error(`this test mounts a tmpfs and needs root (CAP_SYS_ADMIN): ${errorMessage(e)}`, { cause: e });
    }
    const store = await LogStore.open(
      join(mnt, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'fail.test/log' }),
      { retryMs: 50 },
    );
    try {
      const acked = new Map<number, Leaf>();
      let next = 0;
      const pad = 'q'.repeat(1000);
      const batch = () => Array.from({ length: 200 }, () => toLeaf({ i: next++, pad }, 'entry'));
      const first = batch();
      (await store.append(first)).indices.forEach((idx, k) => acked.set(idx, first[k]));
      // leave about 2 MiB free
      writeFileSync(join(mnt, 'ballast'), Buffer.alloc(12 * 1024 * 1024));
      let failed: Leaf[] | undefined;
      for (let b = 0; b < 100 && !failed; b++) {
        const l = batch();
        try {
          (await store.append(l)).indices.forEach((idx, k) => acked.set(idx, l[k]));
        } catch (e) {
          expect(e).to.be.instanceOf(UnavailableError);
          failed = l;
        }
      }
      expect(failed, 'the disk never filled').to.not.equal(undefined);
      expect(store.failed).to.not.equal(undefined);
      expect(await store.entries(0, 1)).to.have.length(1);
      rmSync(join(mnt, 'ballast'));
      await resumeAndVerify(store, failed!, acked, batch());
      await store.close();
      const again = await LogStore.open(join(mnt, 'db'), loadLogKey(join(dir, 'log.key'), { create: false }));
      expect(again.size).to.equal(acked.size);
      await again.close();
    } finally {
      await store.close();
      execFileSync('umount', [mnt]);
    }
  });
});
