import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  merkleRoot,
  consistencyProofPlan,
  inclusionProofPlan,
  verifyConsistency,
  verifyInclusion,
  hashLeaf,
} from '@trailmark/tlog';
import { LogStore, loadLogKey, nodeHasher, toLeaf, type Leaf } from '../src/index.js';

describe('LogStore', function () {
  this.timeout(30000);
  let dir: string;
  let store: LogStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-store-'));
    store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'store.test/log' }),
    );
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const leaf = (v: object): Leaf => toLeaf(v, 'entry');

  it('dedups against batches still in flight (prepared, not yet durable) and within a batch', async () => {
    const a = await store.prepare([leaf({ a: 1 }), leaf({ a: 2 })]);
    // the second batch is sequenced while the first is not written yet
    const b = await store.prepare([leaf({ a: 2 }), leaf({ a: 3 }), leaf({ a: 3 }), leaf({ a: 1 })]);
    expect(a.indices).to.deep.equal([0, 1]);
    expect(b.indices).to.deep.equal([1, 2, 2, 0]);
    expect(store.size).to.equal(0);
    await store.commit(a);
    expect(store.size).to.equal(2);
    await store.commit(b);
    expect(store.size).to.equal(3);
    expect((await store.append([leaf({ a: 3 }), leaf({ a: 4 })])).indices).to.deep.equal([2, 3]);
    expect(await store.findLeaf(hashLeaf(new TextEncoder().encode('{"a":3}')))).to.equal(2);
  });

  it('dedups a whole resubmitted batch still in flight (more suspects than it scans for), and new leaves among them', async () => {
    const first = Array.from({ length: 100 }, (_, i) => leaf({ r: i }));
    const a = await store.prepare(first);
    const b = await store.prepare([...first.slice(0, 50).reverse(), leaf({ r: 'new' }), ...first.slice(50), first[0]]);
    expect(b.indices).to.deep.equal([
      ...Array.from({ length: 50 }, (_, i) => 49 - i),
      100,
      ...Array.from({ length: 50 }, (_, i) => 50 + i),
      0,
    ]);
    await store.commit(a);
    await store.commit(b);
    expect(store.size).to.equal(101);
  });

  it('keeps every index under a shared 64-bit hash prefix', async () => {
    // hashes crafted to share their first 8 bytes (a collision SHA-256 will not produce on its own)
    const mk = (tail: number): Leaf => {
      const hash = new Uint8Array(32).fill(7);
      hash[31] = tail;
      return { data: new TextEncoder().encode(`{"t":${tail}}`), hash };
    };
    const r1 = await store.append([mk(1), mk(2)]);
    expect(r1.indices).to.deep.equal([0, 1]);
    const p = await store.prepare([mk(3)]);
    const q = await store.prepare([mk(4), mk(2)]);
    await store.commit(p);
    await store.commit(q);
    expect(q.indices).to.deep.equal([3, 1]);
    for (const t of [1, 2, 3, 4]) expect(await store.findLeaf(mk(t).hash)).to.equal(t - 1);
    expect(await store.findLeaf(mk(5).hash)).to.equal(undefined);
    expect((await store.append([mk(1), mk(4), mk(5)])).indices).to.deep.equal([0, 3, 4]);
  });

  it('proofs from tiles match the tlog reference for sizes across tile boundaries, before and after a restart', async () => {
    const leaves: Leaf[] = Array.from({ length: 70_000 }, (_, i) => leaf({ i }));
    for (let o = 0; o < leaves.length; o += 20_000) await store.append(leaves.slice(o, o + 20_000));
    const hashes = leaves.map((l) => l.hash);
    await checkProofs(store, hashes);
    // reopened with tiny caches: nodes come from upper-node records, tiles read back and hashed
    await store.close();
    store = await LogStore.open(join(dir, 'db'), loadLogKey(join(dir, 'log.key'), { create: false }), {
      tileCacheTiles: 2,
      upperCacheTiles: 100,
    });
    await checkProofs(store, hashes);
  });

  it('proofs stay right when tiles leave a tiny cache during ingest (their upper nodes are kept on eviction)', async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'store.test/log' }),
      { tileCacheTiles: 2, upperCacheTiles: 100 },
    );
    const leaves: Leaf[] = Array.from({ length: 70_000 }, (_, i) => leaf({ evict: i }));
    for (let o = 0; o < leaves.length; o += 7_000) await store.append(leaves.slice(o, o + 7_000));
    await checkProofs(
      store,
      leaves.map((l) => l.hash),
    );
  });

  it('serves proofs at the durable size while a later batch, not yet durable, has filled more tiles than the cache holds', async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'store.test/log' }),
      { tileCacheTiles: 4, upperCacheTiles: 8 },
    );
    const leaves: Leaf[] = Array.from({ length: 12_000 }, (_, i) => leaf({ pending: i }));
    const hashes = leaves.map((l) => l.hash);
    await store.append(leaves.slice(0, 5_000)); // tile 19 is partial and durable
    const p = await store.prepare(leaves.slice(5_000)); // fills tiles 19..46 in memory only
    expect(store.size).to.equal(5_000);
    const root = merkleRoot(hashes.slice(0, 5_000), nodeHasher);
    for (const idx of [4_999, 4_864, 4_863, 1_000, 0])
      verifyInclusion(idx, 5_000, hashes[idx], await store.inclusionProof(idx, 5_000), root);
    expect(Buffer.from(await store.rootAt(5_000)).equals(Buffer.from(root))).to.equal(true);
    await store.commit(p);
    const root2 = merkleRoot(hashes, nodeHasher);
    for (const idx of [4_999, 11_999, 7_000])
      verifyInclusion(idx, 12_000, hashes[idx], await store.inclusionProof(idx, 12_000), root2);
  });

  async function checkProofs(store: LogStore, hashes: Uint8Array[]): Promise<void> {
    for (const size of [1, 255, 256, 257, 65_536, 65_537, 70_000]) {
      const root = merkleRoot(hashes.slice(0, size), nodeHasher);
      expect(Buffer.from(await store.rootAt(size)).equals(Buffer.from(root))).to.equal(true);
      for (const idx of [0, size - 1, Math.floor(size / 3)]) {
        const proof = await store.inclusionProof(idx, size);
        expect(proof).to.have.length(inclusionProofPlan(idx, size).ranges.length);
        verifyInclusion(idx, size, hashes[idx], proof, root);
      }
      for (const first of [1, 256, 65_535, size]) {
        if (first > size) continue;
        const proof = await store.consistencyProof(first, size);
        expect(proof).to.have.length(consistencyProofPlan(first, size).ranges.length);
        verifyConsistency(first, size, proof, merkleRoot(hashes.slice(0, first), nodeHasher), root);
      }
    }
  }
});
