/**
 * TreeView: leaves we hold are checked against a signed root through the log's tiles. The tiles here are
 * built from a real tree (CompactRange emits every node); the view must give the tree's root exactly when our
 * leaves are at their indexes and the tiles are honest, and another root as soon as either is not.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  CompactRange,
  TILE_HEIGHT,
  TILE_WIDTH,
  TileMissingError,
  TlogError,
  TreeView,
  bytesEqual,
  concatBytes,
  hashLeaf,
  merkleRoot,
  utf8,
  type Hash,
  type TileRef,
} from '../src/index.js';

/** A tree of `n` leaves with every node kept, serving tiles (full and partial) as a log does. */
function tree(n: number) {
  const leaves = Array.from({ length: n }, (_, i) => hashLeaf(utf8(`{"n":${i}}`)));
  const nodes = new Map<string, Hash>();
  const cr = new CompactRange(0n, []);
  for (const l of leaves) cr.append(l, (id, h) => nodes.set(`${id.level}/${id.index}`, h));
  const tile = (ref: TileRef): Uint8Array | null => {
    const hs: Hash[] = [];
    for (let i = 0; i < ref.width; i++) {
      const h = nodes.get(`${ref.level * TILE_HEIGHT}/${ref.index * BigInt(TILE_WIDTH) + BigInt(i)}`);
      if (!h) return null; // beyond the tree: the log has no such tile
      hs.push(h);
    }
    return concatBytes(...hs);
  };
  return { leaves, root: merkleRoot(leaves), tile };
}

/** Our leaves: a few indexes of the tree, with their true hashes. */
function mine(t: ReturnType<typeof tree>, idx: number[]): Map<bigint, Hash> {
  return new Map(idx.map((i) => [BigInt(i), t.leaves[i]]));
}

/** The view's root for our leaves, counting the pauses it made for its caller. */
async function pausedRoot(
  t: ReturnType<typeof tree>,
  ours: Map<bigint, Hash>,
): Promise<{ root: Hash; pauses: number }> {
  let pauses = 0;
  const view = new TreeView(
    BigInt(t.leaves.length),
    ours,
    async (r) => t.tile(r),
    undefined,
    async () => void pauses++,
  );
  return { root: await view.root(), pauses };
}

describe('TreeView (leaves against a signed root through tiles)', () => {
  it('gives the signed root for honest tiles, for every tree size shape and set of our leaves', async () => {
    const sizes = [1, 2, 255, 256, 257, 511, 1000, 4_000];
    const trees = new Map(sizes.map((n) => [n, tree(n)]));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...sizes),
        fc.array(fc.nat(), { minLength: 1, maxLength: 20 }),
        async (n, picks) => {
          const t = trees.get(n)!;
          const view = new TreeView(
            BigInt(n),
            mine(
              t,
              picks.map((p) => p % n),
            ),
            async (r) => t.tile(r),
          );
          expect(bytesEqual(await view.root(), t.root)).to.equal(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('gives the signed root for a batch at consecutive indexes (whole subtrees of ours), and another for one wrong leaf in it', async () => {
    const t = tree(4_000);
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 3_999 }),
        fc.integer({ min: 1, max: 1_200 }),
        fc.nat(),
        async (start, len, pick) => {
          const idx = Array.from({ length: Math.min(len, 4_000 - start) }, (_, i) => start + i);
          const ours = mine(t, idx);
          // the caller's pause comes between slices of the hashing, and changes nothing in the result
          const paused = await pausedRoot(t, ours);
          expect(bytesEqual(paused.root, t.root)).to.equal(true);
          if (idx.length >= 1_100) expect(paused.pauses).to.be.greaterThan(0);
          // one leaf of the run swapped for another entry's hash: the run's subtrees no longer add up
          const forged = idx[pick % idx.length];
          ours.set(BigInt(forged), hashLeaf(utf8(`{"forged":${forged}}`)));
          expect(bytesEqual(await new TreeView(4_000n, ours, async (r) => t.tile(r)).root(), t.root)).to.equal(false);
        },
      ),
      { numRuns: 30 },
    );
    // a 2,000-entry batch: about 2,000 node hashes, paused between slices of them
    const batch = await pausedRoot(
      t,
      mine(
        t,
        Array.from({ length: 2_000 }, (_, i) => 1_000 + i),
      ),
    );
    expect(bytesEqual(batch.root, t.root)).to.equal(true);
    expect(batch.pauses).to.be.within(3, 4);
  });

  it('gives another root when one of our leaves is not at the index the log gave, or a tile lies', async () => {
    const t = tree(1000);
    // our leaf 5 claimed at index 6
    const moved = new Map([[6n, t.leaves[5]]]);
    expect(bytesEqual(await new TreeView(1000n, moved, async (r) => t.tile(r)).root(), t.root)).to.equal(false);
    // a tile hash flipped: the level-1 tile's hash of leaves 512..767 (none ours, so read from the tile) lies
    const lying = async (r: TileRef) => {
      const b = t.tile(r);
      if (b && r.level === 1 && r.index === 0n) b[2 * 32] ^= 1;
      return b;
    };
    expect(bytesEqual(await new TreeView(1000n, mine(t, [5]), lying).root(), t.root)).to.equal(false);
  });

  it('never takes a node covering one of our leaves from a tile, so a tile cannot vouch for our leaf', async () => {
    const t = tree(1000);
    // a wrong leaf of ours (index 3) while the level-1 tile holds the honest hash of leaves 0..255 above it
    const wrong = new Map([[3n, hashLeaf(utf8('{"n":"forged"}'))]]);
    const root = await new TreeView(1000n, wrong, async (r) => t.tile(r)).root();
    expect(bytesEqual(root, t.root)).to.equal(false);
  });

  it('reads the full tile when the partial one is gone (the tree grew), and says when tiles are not served', async () => {
    const t = tree(300);
    const grown = tree(512);
    const onlyFull = async (r: TileRef) => (r.level === 0 && r.width < TILE_WIDTH ? null : grown.tile(r));
    // leaves 0..299 of a 512-leaf tree are the same leaves, so a full tile serves the 300-leaf tree's nodes
    expect(bytesEqual(await new TreeView(300n, mine(t, [299]), onlyFull).root(), t.root)).to.equal(true);
    let err: unknown;
    await new TreeView(300n, mine(t, [1]), async () => null).root().catch((e) => (err = e));
    expect(err).to.be.instanceOf(TileMissingError);
  });

  it('refuses a tile that is too short for the tree (TlogError "tile")', async () => {
    const t = tree(300);
    const short = async (r: TileRef) => t.tile({ ...r, width: 1 });
    let err: unknown;
    await new TreeView(300n, mine(t, [299]), short).root().catch((e) => (err = e));
    expect(err).to.be.instanceOf(TlogError);
    expect((err as TlogError).code).to.equal('tile');
  });
});
