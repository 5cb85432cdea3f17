import { expect } from 'chai';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { merkleRoot } from '@trailmark/tlog';
import { loadLogKey, LogStore, nodeHasher, startLogServer, toLeaf, UnavailableError, type Leaf } from '../src/index.js';

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

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
    const store = await LogStore.open(join(dir, 'db'), loadLogKey(join(dir, 'log.key'), { create: true, origin: 'fail.test/log' }), { retryMs: 50 });
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
      // the store reopens by itself (backoff from 50 ms); then the failed batch can be resubmitted
      const until = Date.now() + 20000;
      let resumed;
      while (!resumed && Date.now() < until) {
        try {
          resumed = await store.append(failed!);
        } catch (e) {
          if (!(e instanceof UnavailableError)) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect(resumed, 'writes did not resume').to.not.equal(undefined);
      ack(failed!, resumed!.indices);
      const more = batch();
      ack(more, (await store.append(more)).indices);
      // every acknowledged entry at its index, and the signed root is that of exactly the stored entries
      const data = await store.entries(0, store.size);
      expect(data.length).to.equal(acked.size);
      for (const [idx, l] of acked) expect(Buffer.from(data[idx]).equals(Buffer.from(l.data)), `entry ${idx}`).to.equal(true);
      const hashes = data.map((d) => nodeHasher.leaf(d));
      expect(Buffer.from(merkleRoot(hashes, nodeHasher)).equals(store.tree.root)).to.equal(true);
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
});
