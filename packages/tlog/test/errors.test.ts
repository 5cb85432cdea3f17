import { expect } from 'chai';
import {
  CheckpointError,
  ProofError,
  TlogError,
  errorCode,
  errorMessage,
  generateKey,
  hashLeaf,
  hexEncode,
  merkleRoot,
  parseCheckpoint,
  parsePrivateKey,
  signCheckpoint,
  utf8,
  verifyConsistency,
  verifyInclusion,
} from '../src/index.js';

/** Runs f and returns what it threw; fails the test when it throws nothing. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  expect.fail('expected a throw');
}

describe('tlog errors', () => {
  const leaves = [0, 1, 2, 3].map((i) => hashLeaf(utf8(`leaf ${i}`)));
  const root2 = merkleRoot(leaves.slice(0, 2));
  const root4 = merkleRoot(leaves);

  it('an inclusion proof against another root says which root it expected and which it found', () => {
    // leaf 0 of a 2-leaf tree: the proof is leaf 1's hash, and it gives root2, never root4
    const e = thrown(() => verifyInclusion(0n, 2n, leaves[0], [leaves[1]], root4));
    expect(e).to.be.instanceOf(ProofError);
    const p = e as ProofError;
    expect(p.code).to.equal('root-mismatch');
    expect(p.expected).to.equal(hexEncode(root4));
    expect(p.found).to.equal(hexEncode(root2));
  });

  it('two roots for the same size are a root-mismatch carrying both', () => {
    const e = thrown(() => verifyConsistency(2n, 2n, [], root2, root4)) as ProofError;
    expect(e.code).to.equal('root-mismatch');
    expect([e.expected, e.found]).to.deep.equal([hexEncode(root2), hexEncode(root4)]);
  });

  it('signing a checkpoint for another origin names the key and the origin', () => {
    const signer = parsePrivateKey(generateKey('example.com/log', 1, new Uint8Array(32).fill(1)).privateKey);
    const e = thrown(() =>
      signCheckpoint({ origin: 'example.com/other', size: 1n, root: root2, extensions: [] }, signer),
    ) as CheckpointError;
    expect(e).to.be.instanceOf(CheckpointError);
    expect(e.code).to.equal('origin-mismatch');
    expect(e.expected).to.equal('example.com/log');
    expect(e.found).to.equal('example.com/other');
  });

  it('a wrapping error keeps the error it wraps as its cause', () => {
    const e = thrown(() => parseCheckpoint('example.com/log\n1\nnot base64!\n')) as CheckpointError;
    expect(e.code).to.equal('malformed-checkpoint');
    expect(e.cause).to.be.instanceOf(TlogError);
    expect((e.cause as TlogError).code).to.equal('base64');
  });

  it('errorMessage and errorCode read anything thrown', () => {
    expect(errorMessage(new Error('boom'))).to.equal('boom');
    expect(errorMessage('plain')).to.equal('plain');
    expect(errorMessage({ message: 'shaped' })).to.equal('shaped');
    expect(errorMessage(undefined)).to.equal('undefined');
    expect(errorCode(Object.assign(new Error('x'), { code: 'ENOENT' }))).to.equal('ENOENT');
    expect(errorCode(new Error('x'))).to.equal(undefined);
    expect(errorCode(null)).to.equal(undefined);
  });
});
