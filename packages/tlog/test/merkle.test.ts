import { expect } from 'chai';
import fc from 'fast-check';
import {
  CompactRange,
  type Hash,
  type NodeId,
  ProofError,
  b64decode,
  b64encode,
  buildProof,
  consistencyProof,
  consistencyProofPlan,
  emptyRoot,
  hashLeaf,
  hashNode,
  hexEncode,
  inclusionProof,
  inclusionProofPlan,
  merkleRoot,
  rootFromInclusionProof,
  toU64,
  treeRoot,
  utf8,
  verifyConsistency,
  verifyInclusion,
} from '../src/index.js';

/** Reference Merkle tree hash straight from RFC 6962 section 2.1's recursive definition. */
function mth(leaves: Hash[]): Hash {
  if (leaves.length === 0) return emptyRoot();
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return hashNode(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** Every perfect subtree hash of a list of leaves, as a storage layer keeps them. */
function nodeStore(leaves: Hash[]): (nodes: NodeId[]) => Hash[] {
  const store = new Map<string, Hash>();
  const cr = new CompactRange();
  for (const l of leaves) cr.append(l, (id, h) => store.set(`${id.level}/${id.index}`, h));
  return (nodes) =>
    nodes.map((n) => {
      const h = store.get(`${n.level}/${n.index}`);
      if (!h) throw new Error(`missing node ${n.level}/${n.index}`);
      return h;
    });
}

/**
 * Same number of proof hashes on the same sides of `pivot` (the leaf index, or the old size): a verifier
 * folds them identically, so it cannot tell the two sizes apart.
 */
function sameShape(a: NodeId[][], b: NodeId[][], pivot: number): boolean {
  const sides = (r: NodeId[][]) =>
    r.map((x) => (x[0].index << BigInt(x[0].level) < BigInt(pivot) ? 'L' : 'R')).join('');
  return sides(a) === sides(b);
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => hashLeaf(utf8(`leaf ${i}`)));

function flipBit(h: Uint8Array, bit: number): Uint8Array {
  const c = h.slice();
  c[bit >> 3] ^= 1 << (bit & 7);
  return c;
}

describe('RFC 6962 hashing', () => {
  it('hashes the empty tree as SHA-256 of the empty string', () => {
    expect(hexEncode(emptyRoot())).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
  it('hashes a leaf with the 0x00 prefix and a node with 0x01', () => {
    expect(hexEncode(hashLeaf(new Uint8Array(0)))).to.equal(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
    const l = hashLeaf(utf8('a'));
    expect(hashNode(l, l)).to.not.deep.equal(l);
  });
  it('merkleRoot matches the recursive definition for sizes 0..70', () => {
    for (let n = 0; n <= 70; n++) {
      const leaves = leavesOf(n);
      expect(hexEncode(merkleRoot(leaves)), `size ${n}`).to.equal(hexEncode(mth(leaves)));
    }
  });
  it('CompactRange roots agree with merkleRoot and restore from their hashes', () => {
    const cr = new CompactRange();
    const leaves = leavesOf(300);
    for (let i = 0; i < leaves.length; i++) {
      cr.append(leaves[i]);
      expect(hexEncode(cr.root())).to.equal(hexEncode(mth(leaves.slice(0, i + 1))));
      const restored = new CompactRange(cr.size, cr.hashes());
      expect(hexEncode(restored.root())).to.equal(hexEncode(cr.root()));
    }
    expect(() => new CompactRange(5n, [])).to.throw(/perfect subtrees/);
  });
});

describe('proof generation and verification', () => {
  it('every inclusion proof in trees of size 1..64 verifies, and wrong leaves do not', async () => {
    const all = leavesOf(64);
    for (let n = 1; n <= 64; n++) {
      const leaves = all.slice(0, n);
      const root = mth(leaves);
      const src = nodeStore(leaves);
      for (let i = 0; i < n; i++) {
        const proof = await inclusionProof(i, n, src);
        verifyInclusion(i, n, leaves[i], proof, root);
        if (n > 1) expect(() => verifyInclusion(i, n, leaves[(i + 1) % n], proof, root)).to.throw(ProofError);
      }
      expect(hexEncode(await treeRoot(n, src))).to.equal(hexEncode(root));
    }
  });

  it('every consistency proof between sizes 1..40 verifies', async () => {
    const all = leavesOf(40);
    const roots = [emptyRoot(), ...all.map((_, i) => mth(all.slice(0, i + 1)))];
    const src = nodeStore(all);
    for (let n = 1; n <= 40; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = await consistencyProof(m, n, src);
        verifyConsistency(m, n, proof, roots[m], roots[n]);
        if (m > 0 && m < n) {
          expect(() => verifyConsistency(m, n, proof, roots[m - 1], roots[n])).to.throw(ProofError);
          expect(() => verifyConsistency(m, n, proof.slice(1), roots[m], roots[n])).to.throw(ProofError);
        }
      }
    }
  });

  it('rejects index >= size, size 0, first > second with clear messages', () => {
    const h = hashLeaf(utf8('x'));
    expect(() => verifyInclusion(1, 1, h, [], h)).to.throw(/not below tree size/);
    expect(() => verifyInclusion(0, 0, h, [], h)).to.throw(/not below tree size 0/);
    expect(() => verifyConsistency(2, 1, [], h, h)).to.throw(/greater than second/);
    expect(() => verifyConsistency(3, 3, [h], h, h)).to.throw(/must be empty/);
    expect(() => inclusionProofPlan(5, 5)).to.throw(ProofError);
    expect(() => consistencyProofPlan(6, 5)).to.throw(ProofError);
    expect(() => verifyInclusion(0, 2, h, [h.slice(1)], h)).to.throw(/proof element 0 must be 32 bytes/);
    expect(() => verifyInclusion(0, 2, h, [h, h], h)).to.throw(/needs 1 hashes, got 2/);
  });

  it('handles sizes and indices near 2^63 without 32-bit arithmetic', () => {
    const size = (1n << 63n) + 5n;
    const index = (1n << 62n) + 12345n;
    const p = inclusionProofPlan(index, size);
    // one hash per level below the split plus the right border: 64 levels at most
    expect(p.ranges.length).to.be.within(2, 64);
    const fake = p.nodes.map((n) => hashLeaf(utf8(`${n.level}/${n.index}`)));
    const proof = buildProof(p, fake);
    const leaf = hashLeaf(utf8('leaf'));
    const root = rootFromInclusionProof(index, size, leaf, proof);
    verifyInclusion(index, size, leaf, proof, root);
    expect(() => verifyInclusion(index + 1n, size, leaf, proof, root)).to.throw(ProofError);
    const c = consistencyProofPlan((1n << 40n) + 3n, size);
    expect(c.ranges.length).to.be.greaterThan(0);
    expect(() => toU64(1n << 64n)).to.throw(/uint64/);
    expect(() => toU64(-1)).to.throw(/uint64/);
  });

  it('property: random tree, random index: the proof verifies and any single-bit change fails', async () => {
    const all = leavesOf(200);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.nat(), fc.nat(), async (n, ri, bit) => {
        const leaves = all.slice(0, n);
        const i = ri % n;
        const root = mth(leaves);
        const proof = await inclusionProof(i, n, nodeStore(leaves));
        verifyInclusion(i, n, leaves[i], proof, root);
        // root, leaf, each proof element, index and size mutated by one bit
        expect(() => verifyInclusion(i, n, leaves[i], proof, flipBit(root, bit % 256))).to.throw(ProofError);
        expect(() => verifyInclusion(i, n, flipBit(leaves[i], bit % 256), proof, root)).to.throw(ProofError);
        if (proof.length > 0) {
          const k = bit % proof.length;
          const bad = proof.map((p, j) => (j === k ? flipBit(p, (bit >> 3) % 256) : p));
          expect(() => verifyInclusion(i, n, leaves[i], bad, root)).to.throw(ProofError);
        }
        const b = bit % 9;
        const i2 = BigInt(i) ^ (1n << BigInt(b));
        expect(() => verifyInclusion(i2, n, leaves[i], proof, root)).to.throw(ProofError);
        // A size change that keeps the path's shape gives the same root: RFC 6962 proofs do not bind the
        // size by themselves (the signed checkpoint does), so only a shape change must fail here.
        const n2 = BigInt(n) ^ (1n << BigInt(b));
        if (n2 > BigInt(i) && !sameShape(inclusionProofPlan(i, n2).ranges, inclusionProofPlan(i, n).ranges, i)) {
          expect(() => verifyInclusion(i, n2, leaves[i], proof, root)).to.throw(ProofError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('property: random size pairs: consistency proofs verify and any single-bit change fails', async () => {
    const all = leavesOf(150);
    const src = nodeStore(all);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 150 }),
        fc.integer({ min: 1, max: 150 }),
        fc.nat(),
        async (a, b, bit) => {
          const [m, n] = a <= b ? [a, b] : [b, a];
          const r1 = mth(all.slice(0, m));
          const r2 = mth(all.slice(0, n));
          const proof = await consistencyProof(m, n, src);
          verifyConsistency(m, n, proof, r1, r2);
          expect(() => verifyConsistency(m, n, proof, flipBit(r1, bit % 256), r2)).to.throw(ProofError);
          expect(() => verifyConsistency(m, n, proof, r1, flipBit(r2, bit % 256))).to.throw(ProofError);
          if (proof.length > 0) {
            const k = bit % proof.length;
            const bad = proof.map((p, j) => (j === k ? flipBit(p, (bit >> 3) % 256) : p));
            expect(() => verifyConsistency(m, n, bad, r1, r2)).to.throw(ProofError);
            const m2 = m ^ (1 << (bit % 8));
            if (m2 >= 1 && m2 < n && m2 !== m)
              expect(() => verifyConsistency(m2, n, proof, r1, r2)).to.throw(ProofError);
            const n2 = n ^ (1 << (bit % 8));
            if (
              n2 > m &&
              n2 !== n &&
              !sameShape(consistencyProofPlan(m, n2).ranges, consistencyProofPlan(m, n).ranges, m)
            ) {
              expect(() => verifyConsistency(m, n2, proof, r1, r2)).to.throw(ProofError);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('base64', () => {
  it('round-trips and rejects non-canonical input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), (d) => {
        expect(b64decode(b64encode(d))).to.deep.equal(d);
      }),
    );
    expect(() => b64decode('YQ')).to.throw(/padded/);
    expect(() => b64decode('YR==')).to.throw(/non-canonical/);
    expect(() => b64decode('Y-==')).to.throw(/invalid/);
    expect(Buffer.from(b64decode('aGVsbG8=')).toString()).to.equal('hello');
  });
});

describe('uint64 bit helpers', () => {
  it('bitLength and trailingZeros agree with a string reference up to 2^64', async () => {
    const { bitLength, trailingZeros } = await import('../src/u64.js');
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (x) => {
        const bin = x.toString(2);
        expect(bitLength(x)).to.equal(x === 0n ? 0 : bin.length);
        expect(trailingZeros(x)).to.equal(x === 0n ? 0 : bin.length - 1 - bin.lastIndexOf('1'));
      }),
      { numRuns: 2000 },
    );
    for (let k = 0; k < 64; k++) {
      expect(bitLength(1n << BigInt(k))).to.equal(k + 1);
      expect(trailingZeros(1n << BigInt(k))).to.equal(k);
      expect(bitLength((1n << BigInt(k + 1)) - 1n)).to.equal(k + 1);
    }
  });
});
