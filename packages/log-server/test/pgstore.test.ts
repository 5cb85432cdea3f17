/**
 * The storage contract, run against both stores: LevelDB (the embedded default) and PostgreSQL (a private
 * server the harness starts). Then what only PostgreSQL has: several frontends on one store.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  consistencyProofPlan,
  decodeEntryBundle,
  hashLeaf,
  inclusionProofPlan,
  merkleRoot,
  openCheckpoint,
  parseVkey,
  verifyConsistency,
  verifyInclusion,
} from '@trailmark/tlog';
import {
  LogStateError,
  LogStore,
  PgStore,
  loadLogKey,
  nodeHasher,
  toLeaf,
  type Leaf,
  type LogKey,
  type LogStorage,
} from '../src/index.js';
import type { Postgres } from '../../../test/lib/postgres.js';
import { newPgDatabase, testPostgres } from '../../../test/lib/pgstore.js';

// the one private server of this test process (test/lib/pgstore.ts), shared with the other store suites: a
// second server here would put its password in PGPASSWORD over the first one's
let pg: Postgres;
before(async function () {
  this.timeout(120_000);
  pg = await testPostgres();
});

interface Backend {
  name: string;
  /** Opens a new empty log; `reopen` opens the same one again (after close). */
  fresh(key: LogKey): Promise<{ store: LogStorage; reopen(): Promise<LogStorage> }>;
}

const leaf = (v: object): Leaf => toLeaf(v, 'entry');

const backends: Backend[] = [
  {
    name: 'LevelDB',
    async fresh(key) {
      const dir = mkdtempSync(join(tmpdir(), 'tm-pgs-'));
      after(() => rmSync(dir, { recursive: true, force: true }));
      return { store: await LogStore.open(join(dir, 'db'), key), reopen: () => LogStore.open(join(dir, 'db'), key) };
    },
  },
  {
    name: 'PostgreSQL',
    async fresh(key) {
      const url = await newPgDatabase();
      return { store: await PgStore.open(url, key), reopen: () => PgStore.open(url, key) };
    },
  },
];

function newKey(): LogKey {
  const dir = mkdtempSync(join(tmpdir(), 'tm-pgk-'));
  const k = loadLogKey(join(dir, 'log.key'), { create: true, origin: 'pgstore.test/log' });
  rmSync(dir, { recursive: true, force: true });
  return k;
}

for (const b of backends) {
  describe(`log storage on ${b.name}`, function () {
    this.timeout(60_000);
    let store: LogStorage;
    let reopen: () => Promise<LogStorage>;
    let key: LogKey;
    beforeEach(async () => {
      key = newKey();
      ({ store, reopen } = await b.fresh(key));
    });
    afterEach(async () => {
      await store.close();
    });

    it('dedups within a batch, against stored leaves and across batches; finds leaves by hash', async () => {
      const r1 = await store.append([leaf({ a: 1 }), leaf({ a: 2 }), leaf({ a: 1 })]);
      expect(r1.indices).to.deep.equal([0, 1, 0]);
      expect(r1.added).to.equal(2);
      expect(r1.tree.size).to.equal(2);
      const r2 = await store.append([leaf({ a: 2 }), leaf({ a: 3 })]);
      expect(r2.indices).to.deep.equal([1, 2]);
      expect(r2.tree.size).to.equal(3);
      expect(await store.findLeaf(hashLeaf(new TextEncoder().encode('{"a":3}')))).to.equal(2);
      expect(await store.findLeaf(hashLeaf(new TextEncoder().encode('{"a":4}')))).to.equal(undefined);
      const cp = openCheckpoint(store.tree.checkpoint, parseVkey(key.vkey)).checkpoint;
      expect(cp.size).to.equal(3n);
    });

    it('proofs, tiles, bundles and entries match the reference across tile boundaries, before and after reopening', async () => {
      const leaves = Array.from({ length: 2_100 }, (_, i) => leaf({ i }));
      for (let o = 0; o < leaves.length; o += 700) await store.append(leaves.slice(o, o + 700));
      const hashes = leaves.map((l) => l.hash);
      await checkStore(store, leaves, hashes);
      await store.close();
      store = await reopen();
      expect(store.size).to.equal(leaves.length);
      await checkStore(store, leaves, hashes);
      // appends go on from the reopened edge
      const more = [leaf({ i: 'after' })];
      expect((await store.append(more)).indices).to.deep.equal([2_100]);
      verifyInclusion(
        2_100,
        2_101,
        more[0].hash,
        await store.inclusionProof(2_100, 2_101),
        merkleRoot([...hashes, more[0].hash], nodeHasher),
      );
    });
  });
}

async function checkStore(store: LogStorage, leaves: Leaf[], hashes: Uint8Array[]): Promise<void> {
  for (const size of [1, 255, 256, 257, 1_024, 2_049, leaves.length]) {
    const root = merkleRoot(hashes.slice(0, size), nodeHasher);
    expect(Buffer.from(await store.rootAt(size)).equals(Buffer.from(root))).to.equal(true);
    for (const idx of [0, size - 1, Math.floor(size / 3)]) {
      const proof = await store.inclusionProof(idx, size);
      expect(proof).to.have.length(inclusionProofPlan(idx, size).ranges.length);
      verifyInclusion(idx, size, hashes[idx], proof, root);
    }
    for (const first of [1, 256, 1_023]) {
      if (first > size) continue;
      const proof = await store.consistencyProof(first, size);
      expect(proof).to.have.length(consistencyProofPlan(first, size).ranges.length);
      verifyConsistency(first, size, proof, merkleRoot(hashes.slice(0, first), nodeHasher), root);
    }
  }
  const n = leaves.length;
  const lastBundle = Math.floor(n / 256);
  const full = decodeEntryBundle((await store.bundleData(3, 256))!);
  expect(Buffer.from(full[7]).equals(Buffer.from(leaves[3 * 256 + 7].data))).to.equal(true);
  const partial = decodeEntryBundle((await store.bundleData(lastBundle, n % 256))!);
  expect(partial).to.have.length(n % 256);
  expect(await store.bundleData(lastBundle, (n % 256) + 1)).to.equal(undefined);
  const tile = (await store.tileData(0, 5, 256))!;
  expect(Buffer.from(tile.subarray(32, 64)).equals(Buffer.from(hashes[5 * 256 + 1]))).to.equal(true);
  expect((await store.tileData(1, 0, 1))!.length).to.equal(32);
  const got = await store.entries(n - 300, n);
  expect(got.map((d) => Buffer.from(d).toString())).to.deep.equal(
    leaves.slice(n - 300).map((l) => Buffer.from(l.data).toString()),
  );
}

describe('log storage on PostgreSQL: several frontends', function () {
  this.timeout(60_000);

  it('two frontends on one store are one log: concurrent writes, strong dedup, one root per size', async () => {
    const key = newKey();
    const url = await newPgDatabase();
    const a = await PgStore.open(url, key, { pollMs: 200 });
    const b = await PgStore.open(url, key, { pollMs: 200 });
    try {
      expect([a.sequencing, b.sequencing].filter(Boolean)).to.have.length(1);
      // the same leaves submitted through both, interleaved, plus leaves of their own
      const shared = Array.from({ length: 500 }, (_, i) => leaf({ shared: i }));
      const writes: Promise<{ indices: number[]; leaves: Leaf[] }>[] = [];
      for (let round = 0; round < 20; round++) {
        for (const [s, tag] of [
          [a, 'a'],
          [b, 'b'],
        ] as const) {
          const ls = [
            ...shared.slice(round * 25, round * 25 + 25),
            ...Array.from({ length: 50 }, (_, i) => leaf({ tag, round, i })),
          ];
          writes.push(s.append(ls).then((r) => ({ indices: r.indices, leaves: ls })));
        }
      }
      const done = await Promise.all(writes);
      const byHash = new Map<string, number>();
      for (const d of done) {
        d.indices.forEach((idx, i) => {
          const h = Buffer.from(d.leaves[i].hash).toString('hex');
          const had = byHash.get(h);
          if (had !== undefined) expect(idx, 'one index per leaf across frontends').to.equal(had);
          byHash.set(h, idx);
        });
      }
      expect(byHash.size).to.equal(500 + 2000);
      expect(new Set(byHash.values()).size).to.equal(byHash.size);
      // both views reach the same tree within a second or so
      await b.refresh();
      await a.refresh();
      const size = Math.max(...byHash.values()) + 1;
      expect(a.size).to.be.at.least(size);
      expect(b.size).to.be.at.least(size);
      const entries = await b.entries(0, size);
      const hashes = entries.map((e) => hashLeaf(e));
      for (const [h, idx] of byHash) expect(Buffer.from(hashes[idx]).toString('hex')).to.equal(h);
      const root = merkleRoot(hashes, nodeHasher);
      expect(Buffer.from(await a.rootAt(size)).equals(Buffer.from(root))).to.equal(true);
      expect(Buffer.from(await b.rootAt(size)).equals(Buffer.from(root))).to.equal(true);
      // every stored checkpoint's root is the root of the entries at its size
      for (const line of pg
        .sql(`SELECT size, encode(root, 'hex') FROM tm_checkpoints ORDER BY size`, url.split('/').pop())
        .split('\n')) {
        const [s, r] = line.split('|');
        expect(r, `root at ${s}`).to.equal(
          Buffer.from(merkleRoot(hashes.slice(0, Number(s)), nodeHasher)).toString('hex'),
        );
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a sequencer that signed a batch and stalled while its lease was taken stores nothing it signed', async () => {
    const key = newKey();
    const url = await newPgDatabase();
    const db = url.split('/').pop()!;
    const a = await PgStore.open(url, key, { pollMs: 100 });
    await a.append([leaf({ before: 1 })]);
    expect(a.sequencing).to.equal(true);
    // a client holding the lease row's lock stalls the sequencer's next transaction after it has signed
    const { default: pgmod } = await import('pg');
    const blocker = new pgmod.Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT * FROM tm_lease FOR UPDATE');
      const stalled = a.append([leaf({ during: 1 }), leaf({ during: 2 })]);
      // meanwhile another frontend takes the lease (as one does once a paused sequencer's lease expires)
      await new Promise((r) => setTimeout(r, 300));
      await blocker.query(
        `UPDATE tm_lease SET holder = 'someone-else', token = token + 1, expires = clock_timestamp() + interval '1 hour'`,
      );
      await blocker.query('COMMIT');
      // the stalled transaction finds the lease gone and stores nothing: the checkpoint stays at size 1
      for (let i = 0; i < 50 && a.fenced === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(a.fenced).to.be.at.least(1);
      expect(a.sequencing).to.equal(false);
      expect(pg.sql('SELECT size FROM tm_checkpoint', db)).to.equal('1');
      expect(pg.sql('SELECT count(*) FROM tm_checkpoints', db)).to.equal('2');
      expect(a.size).to.equal(1);
      // the entries themselves are durable at their indices; the next sequencer signs them
      await blocker.query(`UPDATE tm_lease SET expires = '-infinity'`);
      const r = await stalled;
      expect(r.indices).to.deep.equal([1, 2]);
      expect(r.tree.size).to.equal(3);
      expect(pg.sql('SELECT size FROM tm_checkpoints ORDER BY size', db).split('\n')).to.deep.equal(['0', '1', '3']);
    } finally {
      await blocker.end();
      await a.close();
    }
  });

  it('refuses a store that belongs to another key', async () => {
    const url = await newPgDatabase();
    const s = await PgStore.open(url, newKey());
    await s.close();
    try {
      await PgStore.open(url, newKey());
      expect.fail('opened');
    } catch (e) {
      expect(e).to.be.instanceOf(LogStateError);
      expect((e as LogStateError).code).to.equal('key-mismatch');
    }
  });
});
