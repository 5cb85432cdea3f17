import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { b64decode, merkleRoot, verifyInclusion } from '@trailmark/tlog';
import { LogStore, loadLogKey, nodeHasher, toLeaf, type Leaf } from '../src/index.js';
import { InclusionBodies, inclusionBody } from '../src/proofbody.js';

describe('InclusionBodies (get-proof-by-index bodies with the path above each tile shared)', function () {
  this.timeout(60000);
  let dir: string;
  let store: LogStore;
  const N = 70_000;
  const leaves: Leaf[] = Array.from({ length: N }, (_, i) => toLeaf({ body: i }, 'entry'));
  const hashes = leaves.map((l) => l.hash);
  // sizes on and around tile and level-2 tile boundaries, and ragged ones
  const SIZES = [256, 257, 511, 512, 4_097, 65_536, 65_537, 65_792, 69_999, N];
  const roots = new Map<number, Uint8Array>();

  before(async () => {
    for (const s of SIZES) roots.set(s, merkleRoot(hashes.slice(0, s), nodeHasher));
    dir = mkdtempSync(join(tmpdir(), 'tm-bodies-'));
    store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'bodies.test/log' }),
    );
    for (let o = 0; o < N; o += 10_000) await store.append(leaves.slice(o, o + 10_000));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Checks one answer: the same bytes as the general path, and a proof that verifies. Returns whether it was served from memory. */
  async function check(bodies: InclusionBodies, idx: number, size: number): Promise<boolean> {
    const body = bodies.sync(idx, size);
    const general = inclusionBody(idx, await store.leafHash(idx, size), await store.inclusionProof(idx, size));
    if (body === undefined) return false;
    expect(body, `leaf ${idx} in ${size}`).to.equal(general);
    const j = JSON.parse(body);
    expect(j.leaf_index).to.equal(idx);
    expect(Buffer.from(b64decode(j.leaf_hash)).equals(Buffer.from(hashes[idx]))).to.equal(true);
    verifyInclusion(
      idx,
      size,
      hashes[idx],
      j.audit_path.map((h: string) => b64decode(h)),
      roots.get(size)!,
    );
    return true;
  }

  it('answers leaves of full tiles from memory with the general path’s exact bytes, at every size asked', async () => {
    const bodies = new InclusionBodies(store);
    let served = 0;
    let asked = 0;
    for (const size of SIZES) {
      const full = Math.floor(size / 256) * 256;
      for (const idx of [0, 1, 255, 256, 257, full - 1, full - 256, Math.floor(full / 3), full - 2]) {
        if (idx < 0 || idx >= full) continue;
        asked++;
        if (await check(bodies, idx, size)) served++;
      }
    }
    // with the default caches every tile of this tree is in memory: nothing falls back
    expect(served).to.equal(asked);
  });

  it('never serves a leaf of the partial right-edge tile (the general path answers those)', async () => {
    const bodies = new InclusionBodies(store);
    for (const size of [257, 511, 65_537, 69_999, N]) {
      for (const idx of [Math.floor(size / 256) * 256, size - 1])
        if (idx < size) expect(bodies.sync(idx, size)).to.equal(undefined);
    }
  });

  it('keeps no stale upper path when requests alternate between tree sizes (random leaves, same tiles)', async () => {
    const bodies = new InclusionBodies(store, 8);
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 400; i++) {
      const size = SIZES[rnd(SIZES.length)];
      // a few tiles only, so the same tile is asked at many sizes
      const tile = rnd(Math.min(4, Math.floor(size / 256)));
      expect(await check(bodies, tile * 256 + rnd(256), size)).to.equal(true);
    }
  });

  it('falls back (undefined) rather than answering wrong when tiles are not in memory', async () => {
    await store.close();
    store = await LogStore.open(join(dir, 'db'), loadLogKey(join(dir, 'log.key'), { create: false }), {
      tileCacheTiles: 2,
      upperCacheTiles: 4,
    });
    const bodies = new InclusionBodies(store, 2);
    let served = 0;
    let fellBack = 0;
    for (let i = 0; i < 200; i++) {
      const idx = (i * 7919) % 69_888;
      if (!(await check(bodies, idx, N))) fellBack++;
      // the general path just loaded this leaf's tiles: a second ask can come from memory
      if (await check(bodies, idx ^ 1, N)) served++;
    }
    expect(served).to.be.greaterThan(0);
    expect(fellBack).to.be.greaterThan(0);
  });
});
