import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { merkleRoot } from '@trailmark/tlog';
import { TileNode } from '../src/tilecache.js';

/**
 * The reference: node k/p of a tile holding `raw` (256 hashes) is the Merkle root of the hashes it covers,
 * computed by tlog's own hasher (not the log server's node:crypto one), one table per tile.
 */
function referenceNodes(raw: Uint8Array): (k: number, p: number) => string {
  const hashes = Array.from({ length: 256 }, (_, i) => raw.subarray(i * 32, (i + 1) * 32));
  const table = new Map<string, string>();
  for (let k = 0; k <= 8; k++)
    for (let p = 0; p < 256 >> k; p++)
      table.set(`${k}/${p}`, Buffer.from(merkleRoot(hashes.slice(p << k, (p + 1) << k))).toString('base64'));
  return (k, p) => table.get(`${k}/${p}`)!;
}

describe('TileNode', () => {
  it('a tile restored from its hashes and upper nodes gives the same inner nodes, read once or many times', () => {
    const raw = randomBytes(256 * 32);
    const built = new TileNode(0, 7);
    for (let i = 0; i < 256; i++) built.push(raw.subarray(i * 32, (i + 1) * 32));
    const upper = built.upper();
    // read every node of every sub-level three times: the first reads hash low nodes directly, later ones
    // come from the built tile; all must equal the reference
    const restored = new TileNode(0, 7, raw);
    restored.seedUpper(upper);
    const ref = referenceNodes(raw);
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k <= 8; k++) {
        for (let p = 0; p < 256 >> k; p++) {
          expect(restored.node(k, p).toString('base64'), `restored, round ${round} node ${k}/${p}`).to.equal(ref(k, p));
          expect(built.node(k, p).toString('base64'), `built, round ${round} node ${k}/${p}`).to.equal(ref(k, p));
        }
      }
    }
  });

  it('nodeB64 is node() in base64 for built, restored and partial tiles, however often read', () => {
    const raw = randomBytes(256 * 32);
    const built = new TileNode(0, 3);
    for (let i = 0; i < 256; i++) built.push(raw.subarray(i * 32, (i + 1) * 32));
    const restored = new TileNode(0, 3, raw);
    restored.seedUpper(built.upper());
    const partial = new TileNode(0, 4);
    for (let i = 0; i < 77; i++) partial.push(raw.subarray(i * 32, (i + 1) * 32));
    const ref = referenceNodes(raw);
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k <= 8; k++) {
        for (let p = 0; p < 256 >> k; p++) {
          const want = ref(k, p);
          expect(built.nodeB64(k, p), `built ${k}/${p}`).to.equal(want);
          expect(restored.nodeB64(k, p), `restored ${k}/${p}`).to.equal(want);
          if ((p + 1) << k <= 77) expect(partial.nodeB64(k, p), `partial ${k}/${p}`).to.equal(want);
          else expect(() => partial.nodeB64(k, p)).to.throw(/no complete node/);
        }
      }
    }
  });

  it('refuses a node the tile does not hold yet', () => {
    const t = new TileNode(0, 0);
    for (let i = 0; i < 5; i++) t.push(randomBytes(32));
    expect(() => t.node(3, 0)).to.throw(/no complete node/);
    expect(t.node(2, 0)).to.have.length(32);
  });
});
