/**
 * Split-view evidence built from real signed checkpoints of two diverging trees (same log key): it verifies
 * offline, for every shape of old size (zero, power of two, other), and every tampering makes it fail.
 */
import { expect } from 'chai';
import {
  addSignatures,
  b64encode,
  bytesEqual,
  cosignCheckpoint,
  generateKey,
  KEY_TYPE_COSIGNATURE,
  parseNote,
  parsePrivateKey,
  parseVkey,
} from '@trailmark/tlog';
import {
  EvidenceError,
  idOfEvidence,
  inconsistentEvidence,
  prefixRootFromConsistency,
  prefixRootFromInclusion,
  proofBindsPrefix,
  sameSizeEvidence,
  verifyEvidence,
  type Evidence,
} from '../src/index.js';
import { TestTree } from '../../../test/lib/tree.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const key = generateKey('evidence.example/log', 1, seed(3));
const signer = parsePrivateKey(key.privateKey);
const verifier = parseVkey(key.vkey);
const other = parseVkey(generateKey('evidence.example/log', 1, seed(4)).vkey);
const a = new TestTree(signer, 33, 'a');
const b = new TestTree(signer, 33, 'b');
const seen = [
  { from: 'http://a.example', at: '2026-01-01T00:00:00.000Z' },
  { from: 'http://b.example', at: '2026-01-01T00:00:01.000Z' },
] as const;

/** Evidence that tree a at size m and tree b at size n (m < n) split, built as the monitor builds it. */
async function split(m: number, n: number): Promise<Evidence> {
  const proof = await b.consistency(m, n);
  let first;
  if ((m & (m - 1)) === 0) first = prefixRootFromInclusion(BigInt(m), b.leaves[m - 1], await b.inclusion(m - 1, n));
  else first = prefixRootFromConsistency(BigInt(m), BigInt(n), proof);
  expect(first, `prefix root ${m} -> ${n}`).to.not.equal(undefined);
  expect(proofBindsPrefix(BigInt(m), BigInt(n), proof, first!, b.root(n))).to.equal(true);
  return inconsistentEvidence(
    verifier.name,
    [a.checkpoint(m), b.checkpoint(n)],
    [{ ...seen[0] }, { ...seen[1] }],
    BigInt(m),
    BigInt(n),
    proof,
    first!,
    'http://b.example',
  );
}

function expectFails(ev: unknown, code: string) {
  try {
    verifyEvidence(ev, verifier);
  } catch (e) {
    expect(e).to.be.instanceOf(EvidenceError);
    expect((e as EvidenceError).code).to.equal(code);
    return;
  }
  expect.fail('evidence verified but should not have');
}

describe('split-view evidence', () => {
  it('prefix roots recovered from proofs equal the real prefix roots for every m < n <= 33', async () => {
    for (let n = 2; n <= 33; n++) {
      for (let m = 1; m < n; m++) {
        const got =
          (m & (m - 1)) === 0
            ? prefixRootFromInclusion(BigInt(m), b.leaves[m - 1], await b.inclusion(m - 1, n))
            : prefixRootFromConsistency(BigInt(m), BigInt(n), await b.consistency(m, n));
        expect(bytesEqual(got!, b.root(m)), `${m} -> ${n}`).to.equal(true);
      }
    }
  });

  it('same size, different roots: verifies; same root or different sizes do not', () => {
    const ev = sameSizeEvidence(
      verifier.name,
      [a.checkpoint(7), b.checkpoint(7)],
      [{ ...seen[0] }, { ...seen[1] }],
      7n,
    );
    const r = verifyEvidence(JSON.parse(JSON.stringify(ev)), verifier);
    expect(r.first.size).to.equal(7n);
    expectFails({ ...ev, checkpoints: [a.checkpoint(7), a.checkpoint(7)] }, 'not-misbehaviour');
    expectFails({ ...ev, checkpoints: [a.checkpoint(7), b.checkpoint(8)] }, 'not-misbehaviour');
  });

  for (const [m, n] of [
    [2, 3],
    [1, 2],
    [4, 6],
    [5, 9],
    [8, 33],
    [13, 14],
    [31, 33],
  ] as const) {
    it(`inconsistent ${m} -> ${n}: verifies offline, and fails when tampered with`, async () => {
      const ev = await split(m, n);
      const json = JSON.parse(JSON.stringify(ev));
      expect(verifyEvidence(json, verifier).second.size).to.equal(BigInt(n));
      // the same evidence against another key proves nothing
      try {
        verifyEvidence(json, other);
        expect.fail('verified with the wrong key');
      } catch (e) {
        expect((e as EvidenceError).code).to.equal('signature');
      }
      // claim the first checkpoint's own root as the prefix: the proof no longer ties it to the second tree
      expectFails(
        { ...json, consistency: { ...json.consistency, first_root: b64encode(a.root(m)) } },
        'not-misbehaviour',
      );
      if (json.consistency.proof.length > 0) {
        const p = [...json.consistency.proof];
        p[p.length - 1] = p[0] === p[p.length - 1] ? b64encode(new Uint8Array(32)) : p[0];
        expectFails({ ...json, consistency: { ...json.consistency, proof: p } }, 'not-misbehaviour');
      }
      expectFails({ ...json, checkpoints: [json.checkpoints[1], json.checkpoints[0]] }, 'not-misbehaviour');
      expectFails({ ...json, consistency: undefined }, 'malformed-evidence');
      expectFails({ ...json, kind: 'other' }, 'malformed-evidence');
    });
  }

  it('two checkpoints of one history are not evidence', async () => {
    const proof = await a.consistency(5, 9);
    const first = prefixRootFromConsistency(5n, 9n, proof)!;
    expect(bytesEqual(first, a.root(5))).to.equal(true);
    const ev = inconsistentEvidence(
      verifier.name,
      [a.checkpoint(5), a.checkpoint(9)],
      [{ ...seen[0] }, { ...seen[1] }],
      5n,
      9n,
      proof,
      first,
      'x',
    );
    expectFails(JSON.parse(JSON.stringify(ev)), 'not-misbehaviour');
  });

  it('ids are stable and independent of who saw what', async () => {
    const ev = await split(5, 9);
    const again = {
      ...ev,
      seen: [
        { from: 'elsewhere', at: 'later' },
        { from: 'x', at: 'y' },
      ] as Evidence['seen'],
    };
    expect(idOfEvidence(ev))
      .to.equal(idOfEvidence(again))
      .and.to.match(/^[0-9a-f]{32}$/);
  });

  it('names the witnesses that cosigned each side, and those that cosigned both', async () => {
    const [w1, w2] = [1, 2].map((i) => generateKey(`w${i}.example`, KEY_TYPE_COSIGNATURE, seed(40 + i)));
    const cosign = (note: string, k: typeof w1) =>
      addSignatures(note, cosignCheckpoint(parseNote(note).text, parsePrivateKey(k.privateKey), 1_700_000_000) + '\n');
    const ev = await split(5, 9);
    ev.checkpoints = [cosign(cosign(ev.checkpoints[0], w1), w2), cosign(ev.checkpoints[1], w1)];
    const witnesses = new Map([
      ['w1', parseVkey(w1.vkey)],
      ['w2', parseVkey(w2.vkey)],
    ]);
    const r = verifyEvidence(JSON.parse(JSON.stringify(ev)), verifier, { witnesses });
    expect(r.cosigners).to.deep.equal({ first: ['w1', 'w2'], second: ['w1'], both: ['w1'] });
    expect(verifyEvidence(ev, verifier).cosigners).to.equal(undefined);
  });
});
