import { expect } from 'chai';
import fc from 'fast-check';
import {
  CompactRange,
  type Hash,
  concatBytes,
  decodeEntryBundle,
  encodeEntryBundle,
  encodeTileIndex,
  entriesPath,
  hashLeaf,
  hexEncode,
  nodeFromTile,
  parseTilePath,
  rootPlan,
  buildProof,
  tileForNode,
  tileHashes,
  tilePath,
  tilesChanged,
  tilesForSize,
  tileWidth,
  utf8,
} from '../src/index.js';

describe('tlog-tiles', () => {
  it('encodes tile indices in x001/x234/067 groups', () => {
    expect(encodeTileIndex(0)).to.equal('000');
    expect(encodeTileIndex(7)).to.equal('007');
    expect(encodeTileIndex(1000)).to.equal('x001/000');
    expect(encodeTileIndex(1234067)).to.equal('x001/x234/067');
    expect(tilePath({ level: 1, index: 1234067n, width: 256 })).to.equal('tile/1/x001/x234/067');
    expect(tilePath({ level: 0, index: 3n, width: 7 })).to.equal('tile/0/003.p/7');
    expect(entriesPath(1234, 18)).to.equal('tile/entries/x001/234.p/18');
  });

  it('parses exactly the paths it writes and nothing else', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 63 }),
        fc.bigInt({ min: 0n, max: (1n << 56n) - 1n }),
        fc.integer({ min: 1, max: 256 }),
        fc.boolean(),
        (level, index, width, entries) => {
          const t = entries ? { level: 0, index, width, entries: true } : { level, index, width };
          expect(parseTilePath(tilePath(t))).to.deep.equal(t);
        },
      ),
    );
    for (const bad of [
      'tile/0/1',
      'tile/0/0001',
      'tile/0/x000/001',
      'tile/0/001.p/0',
      'tile/0/001.p/256',
      'tile/0/001.p/007',
      'tile/64/000',
      'tile/01/000',
      'tile/0/001/',
      'tile/data/000',
      'tile/0/x1/000',
    ]) {
      expect(() => parseTilePath(bad), bad).to.throw(/tile/);
    }
  });

  it('lists the tiles of a tree and the ones that change', () => {
    expect(tilesForSize(0)).to.deep.equal([]);
    expect(tilesForSize(5)).to.deep.equal([{ level: 0, index: 0n, width: 5 }]);
    expect(tilesForSize(256 * 3 + 1)).to.deep.equal([
      { level: 0, index: 0n, width: 256 },
      { level: 0, index: 1n, width: 256 },
      { level: 0, index: 2n, width: 256 },
      { level: 0, index: 3n, width: 1 },
      { level: 1, index: 0n, width: 3 },
    ]);
    expect(tilesChanged(250, 260)).to.deep.equal([
      { level: 0, index: 0n, width: 256 },
      { level: 0, index: 1n, width: 4 },
      { level: 1, index: 0n, width: 1 },
    ]);
    expect(tileWidth(1, 0, 65536)).to.equal(256);
    expect(tileWidth(2, 0, 65536)).to.equal(1);
    expect(tileWidth(2, 1, 65536)).to.equal(0);
  });

  it('property: the tiles of a tree reproduce its root', () => {
    const leaves = Array.from({ length: 256 * 256 + 300 }, (_, i) => hashLeaf(utf8(String(i))));
    // level-0 hashes are the leaves; level-1 tiles hold the roots of full level-0 tiles
    const cr = new CompactRange();
    const level8: Hash[] = [];
    const level16: Hash[] = [];
    for (const l of leaves)
      cr.append(l, (id, h) => {
        if (id.level === 8) level8.push(h);
        if (id.level === 16) level16.push(h);
      });
    const stored = [leaves, level8, level16];
    // random sizes, checked in one pass over the leaves: the reference root of each size is the compact range's
    // root after that many appends (rebuilding it per size made this test cost minutes on a loaded machine)
    const sizes = [...new Set([1, leaves.length, ...fc.sample(fc.integer({ min: 1, max: leaves.length }), 40)])].sort(
      (a, b) => a - b,
    );
    const c = new CompactRange();
    let appended = 0;
    for (const size of sizes) {
      while (appended < size) c.append(leaves[appended++]);
      const plan = rootPlan(size);
      const hashes = plan.nodes.map((n) => {
        const loc = tileForNode(n);
        const w = tileWidth(loc.level, loc.index, size);
        const start = Number(loc.index) * 256;
        const tile = stored[loc.level].slice(start, start + w);
        // the tile as served: bytes, then split back
        return nodeFromTile(loc, tileHashes(concatBytes(...tile)));
      });
      expect(hexEncode(buildProof(plan, hashes)[0]), `size ${size}`).to.equal(hexEncode(c.root()));
    }
  });

  it('encodes and decodes entry bundles, rejecting truncation', () => {
    const entries = [utf8('{"a":1}'), new Uint8Array(0), new Uint8Array(65535).fill(7)];
    const b = encodeEntryBundle(entries);
    expect(decodeEntryBundle(b).map((e) => e.length)).to.deep.equal([7, 0, 65535]);
    expect(decodeEntryBundle(b)[0]).to.deep.equal(entries[0]);
    expect(() => decodeEntryBundle(b.subarray(0, b.length - 1))).to.throw(/truncated/);
    expect(() => decodeEntryBundle(b.subarray(0, 1))).to.throw(/truncated/);
    expect(() => encodeEntryBundle([new Uint8Array(65536)])).to.throw(/exceeds/);
    expect(() => tileHashes(new Uint8Array(33))).to.throw(/32 bytes/);
  });
});
