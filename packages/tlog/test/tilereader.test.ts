import { expect } from 'chai';
import { hash as nodeHash } from 'node:crypto';
import fc from 'fast-check';
import {
  CompactRange,
  TileVerifyError,
  checkEntryBundle,
  VerifiedTileReader,
  bytesEqual,
  concatBytes,
  consistencyProof,
  encodeEntryBundle,
  inclusionProof,
  makeHasher,
  merkleRoot,
  tilePath,
  treeRoot,
  utf8,
  verifyConsistency,
  verifyInclusion,
  type Hash,
  type TileRef,
} from '../src/index.js';

const hasher = makeHasher((d) => nodeHash('sha256', d, 'buffer'));

/** A log's tiles and bundles, built independently of the reader: every level-8L node hash from a compact range. */
function buildLog(n: number) {
  const entries: Uint8Array[] = [];
  const levels = new Map<number, Hash[]>();
  const cr = new CompactRange(0n, [], hasher);
  const rootAt: Hash[] = [hasher.empty()];
  for (let i = 0; i < n; i++) {
    const e = utf8(JSON.stringify({ i, who: `user${i % 7}` }));
    entries.push(e);
    cr.append(hasher.leaf(e), (id, h) => {
      if (id.level % 8 !== 0) return;
      const l = id.level / 8;
      if (!levels.has(l)) levels.set(l, []);
      levels.get(l)![Number(id.index)] = h;
    });
    rootAt.push(cr.root());
  }
  const fetched: string[] = [];
  const tamper = new Map<string, (b: Uint8Array) => Uint8Array>();
  const fetchTile = async (ref: TileRef): Promise<Uint8Array> => {
    const path = tilePath(ref);
    fetched.push(path);
    const start = Number(ref.index) * 256;
    let data: Uint8Array;
    if (ref.entries) data = encodeEntryBundle(entries.slice(start, start + ref.width));
    else data = concatBytes(...(levels.get(ref.level) ?? []).slice(start, start + ref.width));
    const t = tamper.get(path);
    return t ? t(data) : data;
  };
  return { entries, rootAt, fetchTile, fetched, tamper };
}

function flip(at: number) {
  return (b: Uint8Array) => {
    const c = b.slice();
    c[at] ^= 1;
    return c;
  };
}

async function failure(p: unknown): Promise<TileVerifyError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(TileVerifyError);
    return e as TileVerifyError;
  }
  throw new Error('expected a TileVerifyError');
}

describe('VerifiedTileReader', () => {
  const big = buildLog(66_000); // three tile levels, partial tiles at each
  const size = BigInt(big.entries.length);

  it('computes the checkpoint root and proofs from verified tiles', async () => {
    for (const n of [1, 2, 255, 256, 257, 511, 512, 4097, 65_536, 65_537, 66_000]) {
      const r = new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher });
      expect(bytesEqual(await treeRoot(n, r.readHashes, hasher), big.rootAt[n]), `root ${n}`).to.equal(true);
      for (const i of [0, n - 1, Math.floor(n / 3)]) {
        const proof = await inclusionProof(i, n, r.readHashes, hasher);
        verifyInclusion(i, n, hasher.leaf(big.entries[i]), proof, big.rootAt[n], hasher);
        expect(bytesEqual(await r.leafHash(i), hasher.leaf(big.entries[i]))).to.equal(true);
      }
    }
  });

  it('computes consistency proofs that verify between many size pairs', async () => {
    const r = new VerifiedTileReader(size, big.rootAt[Number(size)], big.fetchTile, { hasher });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: Number(size) }),
        fc.integer({ min: 0, max: Number(size) }),
        async (a, b) => {
          const [m, n] = a <= b ? [a, b] : [b, a];
          if (n === 0) return;
          const rn = n === Number(size) ? r : new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher });
          const proof = await consistencyProof(m, n, rn.readHashes, hasher);
          verifyConsistency(m, n, proof, big.rootAt[m], big.rootAt[n], hasher);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('returns entry bundles checked against the level-0 tiles, and caches verified tiles', async () => {
    const r = new VerifiedTileReader(size, big.rootAt[Number(size)], big.fetchTile, { hasher });
    const before = big.fetched.length;
    const last = await r.entryBundle(257); // 66000 = 257 * 256 + 208: the partial bundle
    expect(last.length).to.equal(208);
    expect(bytesEqual(last[207], big.entries[65_999])).to.equal(true);
    const full = await r.entryBundle(3);
    expect(full.length).to.equal(256);
    expect(bytesEqual(full[0], big.entries[768])).to.equal(true);
    const fetchedOnce = big.fetched.length - before;
    await r.entryBundle(3);
    expect(big.fetched.length - before - fetchedOnce, 'only the bundle is fetched again').to.equal(1);
    expect(r.stats.entriesVerified).to.equal(208 + 256 + 256);
    expect((await failure(r.entryBundle(258))).message).to.match(/beyond tree size/);
  });

  describe('says exactly what did not match', () => {
    afterEach(() => big.tamper.clear());
    const n = 66_000;
    const reader = () => new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher });

    it('a flipped byte in a full level-0 tile', async () => {
      big.tamper.set('tile/0/005', flip(100));
      const e = await failure(reader().entryBundle(5));
      expect(e.code).to.equal('tile-mismatch');
      expect(e.path).to.equal('tile/0/005');
      expect(e.message).to.match(/tile\/0\/005 hashes to .* parent tile 1\/0 holds .* at position 5/);
    });

    it('a flipped byte in a full level-1 tile, seen when a level-0 tile needs it', async () => {
      big.tamper.set('tile/1/000', flip(31));
      const e = await failure(inclusionProof(7, n, reader().readHashes, hasher));
      expect(e.code).to.equal('tile-mismatch');
      expect(e.path).to.equal('tile/1/000');
    });

    it('a flipped byte in a partial tile of the right edge', async () => {
      big.tamper.set('tile/1/001.p/1', flip(0));
      const e = await failure(reader().entryBundle(0));
      expect(e.code).to.equal('right-edge');
      expect(e.message).to.contain('tile/1/001.p/1').and.contain(`tree size ${n}`);
    });

    it('a root that the tiles do not recompute', async () => {
      const r = new VerifiedTileReader(n, big.rootAt[n - 1], big.fetchTile, { hasher });
      expect((await failure(r.leafHash(0))).code).to.equal('right-edge');
    });

    it('with an accelerator: the same entries, and a flipped byte still named by the reference check', async () => {
      // an accelerator that hashes as the reference does, counting its answers
      const said: boolean[] = [];
      const accelerator = {
        fullTileRoot: (d: Uint8Array) =>
          merkleRoot(
            Array.from({ length: 256 }, (_, i) => d.subarray(32 * i, 32 * i + 32)),
            hasher,
          ),
        bundleMatches: (data: Uint8Array, tile: Uint8Array, width: number) => {
          let ok = true;
          try {
            checkEntryBundle({ level: 0, index: 0n, width }, data, tile, hasher);
          } catch {
            ok = false;
          }
          said.push(ok);
          return ok;
        },
      };
      const fast = new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher, accelerator });
      const got = await fast.entryBundle(2);
      expect(got.map((e) => [...e])).to.deep.equal(big.entries.slice(512, 768).map((e) => [...e]));
      big.tamper.set('tile/entries/002', flip(2 + (300 % 10)));
      const e = await failure(
        new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher, accelerator }).entryBundle(2),
      );
      expect(e.code).to.equal('entry-mismatch');
      expect(e.message).to.match(/^entry 512 \(tile\/entries\/002, position 0\)/);
      expect(said).to.deep.equal([true, false]);
    });

    it('a flipped byte in an entry bundle names the entry', async () => {
      big.tamper.set('tile/entries/002', flip(2 + (300 % 10)));
      const e = await failure(reader().entryBundle(2));
      expect(e.code).to.equal('entry-mismatch');
      expect(e.leafIndex).to.equal(512n);
      expect(e.message).to.match(/^entry 512 \(tile\/entries\/002, position 0\)/);
    });

    it('a bundle with an entry missing, one too many, or truncated', async () => {
      big.tamper.set('tile/entries/002', (b) => concatBytes(b, encodeEntryBundle([utf8('{}')])));
      expect((await failure(reader().entryBundle(2))).code).to.equal('bundle-size');
      big.tamper.set('tile/entries/002', (b) => b.subarray(0, b.length - 5));
      expect((await failure(reader().entryBundle(2))).code).to.equal('bundle-malformed');
      big.tamper.set('tile/entries/002', () => encodeEntryBundle(big.entries.slice(512, 767)));
      const e = await failure(reader().entryBundle(2));
      expect(e.code).to.equal('bundle-size');
      expect(e.message).to.contain('holds 255 entries, want 256');
    });

    it('a tile of the wrong length', async () => {
      big.tamper.set('tile/0/003', (b) => b.subarray(32));
      const e = await failure(reader().entryBundle(3));
      expect(e.code).to.equal('tile-size');
      expect(e.message).to.contain('tile/0/003: got 8160 bytes, want 8192');
    });

    it('an empty tree whose root is not the empty root', async () => {
      expect(() => new VerifiedTileReader(0, big.rootAt[1], big.fetchTile, { hasher })).to.throw(
        TileVerifyError,
        /size 0/,
      );
      const r = new VerifiedTileReader(0, hasher.empty(), big.fetchTile, { hasher });
      expect(bytesEqual(await treeRoot(0, r.readHashes, hasher), hasher.empty())).to.equal(true);
    });

    it('a node outside the tree', async () => {
      const r = new VerifiedTileReader(10, big.rootAt[10], big.fetchTile, { hasher });
      expect((await failure(r.readHashes([{ level: 1, index: 5n }]))).message).to.match(
        /not a complete subtree of tree size 10/,
      );
    });
  });

  it('checkEntryBundle leaves its input unchanged, even a Buffer', () => {
    const entries = big.entries.slice(0, 256);
    const data = Buffer.from(encodeEntryBundle(entries));
    const before = Buffer.from(data);
    const tile = concatBytes(...entries.map((e) => hasher.leaf(e)));
    const out = checkEntryBundle({ level: 0, index: 0n, width: 256, entries: true }, data, tile, hasher);
    expect(out.length).to.equal(256);
    expect(data.equals(before)).to.equal(true);
  });

  it('agrees with merkleRoot on small random trees', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1200 }), async (n) => {
        const r = new VerifiedTileReader(n, big.rootAt[n], big.fetchTile, { hasher });
        const leaves = await Promise.all(Array.from({ length: Math.ceil(n / 256) }, (_, i) => r.tile(0, i)));
        expect(bytesEqual(merkleRoot(leaves.flat(), hasher), big.rootAt[n])).to.equal(true);
      }),
      { numRuns: 30 },
    );
  });
});
