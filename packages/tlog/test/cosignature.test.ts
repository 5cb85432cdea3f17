import { expect } from 'chai';
import fc from 'fast-check';
import {
  CosignatureError,
  KEY_TYPE_COSIGNATURE,
  TlogError,
  addSignatures,
  b64decode,
  cosignCheckpoint,
  cosignatureMessage,
  formatCheckpoint,
  generateKey,
  parseNote,
  parsePrivateKey,
  parseVkey,
  sha256,
  signCheckpoint,
  utf8,
  verifyCosignature,
  verifyNote,
  fromUtf8,
  errorMessage,
} from '../src/index.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const wk = generateKey('witness.example/w1', KEY_TYPE_COSIGNATURE, seed(5));
const w = parsePrivateKey(wk.privateKey);
const wv = parseVkey(wk.vkey);
const lk = generateKey('example.com/behind-the-sofa', 1, seed(6));
const body = formatCheckpoint({
  origin: 'example.com/behind-the-sofa',
  size: 20852163n,
  root: sha256(utf8('x')),
  extensions: [],
});

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(TlogError);
    expect((e as TlogError).code, errorMessage(e)).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('cosignatures (tlog-cosignature v1.0.1, Ed25519)', () => {
  it('the signed message is cosignature/v1, the time line, then the body', () => {
    expect(fromUtf8(cosignatureMessage(utf8(body), 1679315147n))).to.equal(`cosignature/v1\ntime 1679315147\n${body}`);
  });

  it('cosigns and verifies, returning the timestamp', () => {
    const line = cosignCheckpoint(body, w, 1679315147);
    expect(line.startsWith('\u2014 witness.example/w1 ')).to.equal(true);
    const raw = b64decode(line.split(' ')[2]);
    expect(raw.length).to.equal(4 + 8 + 64);
    expect(verifyCosignature(body, line, wv)).to.equal(1679315147n);
    expect(verifyCosignature(body, line + '\n', wv)).to.equal(1679315147n);
    expect(verifyCosignature(body, parseNote(body + '\n' + line + '\n').signatures[0], wv)).to.equal(1679315147n);
    expect(verifyCosignature(body, raw.slice(4), wv)).to.equal(1679315147n);
    expectCode(() => verifyCosignature(body, line, wv, { notAfter: 1679315146n }), 'future');
  });

  it('a 0x04 verifier works with verifyNote on a cosigned checkpoint', () => {
    const note = addSignatures(signCheckpoint(parseCheckpointLike(), parsePrivateKey(lk.privateKey)), [
      cosignCheckpoint(body, w, 1),
    ]);
    const r = verifyNote(note, [wv]);
    expect(r.verified.map((v) => v.name)).to.deep.equal(['witness.example/w1']);
    expect(r.unknown.map((s) => s.name)).to.deep.equal(['example.com/behind-the-sofa']);
    const r2 = verifyNote(note, [wv, parseVkey(lk.vkey)]);
    expect(r2.verified).to.have.length(2);
  });

  it('mutations fail: timestamp, body, signature, key', () => {
    const line = cosignCheckpoint(body, w, 1679315147);
    const raw = b64decode(line.split(' ')[2]).slice(4);
    for (const i of [0, 7, 8, 30, 71]) {
      const bad = raw.slice();
      bad[i] ^= 1;
      expectCode(() => verifyCosignature(body, bad, wv), 'bad-cosignature');
    }
    expectCode(() => verifyCosignature(body.replace('20852163', '20852162'), line, wv), 'bad-cosignature');
    expectCode(() => verifyCosignature(body + 'ext\n', line, wv), 'bad-cosignature');
    expectCode(() => verifyCosignature(body, raw.slice(0, 71), wv), 'bad-cosignature');
    const other = parseVkey(generateKey('witness.example/w2', KEY_TYPE_COSIGNATURE, seed(7)).vkey);
    expectCode(() => verifyCosignature(body, line, other), 'key-mismatch');
    expectCode(() => verifyCosignature(body, raw, other), 'bad-cosignature');
    // same key, type 0x01: different key id and not a cosignature key
    expectCode(
      () => verifyCosignature(body, line, parseVkey(generateKey('witness.example/w1', 1, seed(5)).vkey)),
      'key-mismatch',
    );
  });

  it('refuses to cosign with a 0x01 key, a bad timestamp, or a non-checkpoint body', () => {
    expectCode(() => cosignCheckpoint(body, parsePrivateKey(lk.privateKey), 1), 'cosign');
    expectCode(() => cosignCheckpoint(body, w, -1), 'cosign');
    expectCode(() => cosignCheckpoint(body, w, 1n << 63n), 'cosign');
    expect(() => cosignCheckpoint('not a checkpoint\n', w, 1)).to.throw(TlogError);
    expect(verifyCosignature(body, cosignCheckpoint(body, w, (1n << 63n) - 1n), wv)).to.equal((1n << 63n) - 1n);
  });

  it('property: any timestamp round-trips', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), (ts) => {
        expect(verifyCosignature(body, cosignCheckpoint(body, w, ts), wv)).to.equal(ts);
      }),
      { numRuns: 20 },
    );
  });

  function parseCheckpointLike() {
    return {
      origin: 'example.com/behind-the-sofa',
      size: 20852163n,
      root: sha256(utf8('x')),
      extensions: [] as string[],
    };
  }
  void CosignatureError;
});
