import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { merkleRoot } from '@trailmark/tlog';
import { nodeHasher } from '@trailmark/node';
import { TileNode } from '../src/tilecache.js';

describe('TileNode', () => {
  it('a tile restored from its hashes and upper nodes gives the same inner nodes, read once or many times', () => {
    const raw = randomBytes(256 * 32);
    const built = new TileNode(0, 7);
    for (let i = 0; i < 256; i++) built.push(raw.subarray(i * 32, (i + 1) * 32));
    const upper = built.upper();
    // read every node of every sub-level three times: the first reads hash low nodes directly, later ones
    // come from the built tile; all must equal the incrementally built tile's nodes
    const restored = new TileNode(0, 7, raw);
    restored.seedUpper(upper);
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k <= 8; k++) {
        for (let p = 0; p < 256 >> k; p++) {
          expect(restored.node(k, p).equals(built.node(k, p)), `round ${round} node ${k}/${p}`).to.equal(true);
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
    // the reference: each node as the Merkle root of the hashes it covers, computed by tlog
    const hashes = Array.from({ length: 256 }, (_, i) => raw.subarray(i * 32, (i + 1) * 32));
    const ref = (k: number, p: number) =>
      Buffer.from(merkleRoot(hashes.slice(p << k, (p + 1) << k), nodeHasher)).toString('base64');
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k <= 8; k++) {
        for (let p = 0; p < 256 >> k; p++) {
          const want = round < 2 ? ref(k, p) : built.node(k, p).toString('base64');
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
