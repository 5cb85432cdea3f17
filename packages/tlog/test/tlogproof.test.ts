import { expect } from 'chai';
import fc from 'fast-check';
import {
  KEY_TYPE_COSIGNATURE,
  TLOG_PROOF_HEADER,
  TlogError,
  addSignatures,
  b64encode,
  cosignCheckpoint,
  formatCheckpoint,
  formatTlogProof,
  generateKey,
  hashLeaf,
  hashNode,
  merkleRoot,
  parsePolicy,
  parsePrivateKey,
  parseTlogProof,
  parseVkey,
  signCheckpoint,
  utf8,
  verifyTlogProof,
  type Hash,
  errorMessage,
} from '../src/index.js';

/** RFC 6962 section 2.1.1 PATH(m, D[n]), straight from the definition. */
function path(m: number, leaves: Hash[]): Hash[] {
  if (leaves.length <= 1) return [];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  if (m < k) return [...path(m, leaves.slice(0, k)), merkleRoot(leaves.slice(k))];
  return [...path(m - k, leaves.slice(k)), merkleRoot(leaves.slice(0, k))];
}

const seed = (n: number) => new Uint8Array(32).fill(n);
const lk = generateKey('example.com/fancylog', 1, seed(1));
const log = parsePrivateKey(lk.privateKey);
const logV = parseVkey(lk.vkey);
const wk = [1, 2, 3].map((i) => generateKey(`witness${i}.example`, KEY_TYPE_COSIGNATURE, seed(20 + i)));
const ws = wk.map((k) => parsePrivateKey(k.privateKey));

const leaves = Array.from({ length: 13 }, (_, i) => hashLeaf(utf8(`{"n":${i}}`)));
const cp = { origin: 'example.com/fancylog', size: BigInt(leaves.length), root: merkleRoot(leaves), extensions: [] };
const body = formatCheckpoint(cp);
const signed = signCheckpoint(cp, log);
const cosigned = addSignatures(
  signed,
  ws.map((w, i) => cosignCheckpoint(body, w, 1700000000 + i)),
);

function proofFor(i: number, checkpoint = signed, extra?: Uint8Array): string {
  return formatTlogProof({ index: i, proof: path(i, leaves), checkpoint, ...(extra ? { extra } : {}) });
}

function expectFail(fn: () => unknown, re?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(TlogError);
    if (re) expect(errorMessage(e)).to.match(re);
    return;
  }
  expect.fail('expected a TlogError');
}

describe('tlog-proof (c2sp.org/tlog-proof@v1)', () => {
  it('formats the documented layout', () => {
    const extra = utf8('age-v1.2.1-darwin-arm64.tar.gz');
    const text = proofFor(5, signed, extra);
    const lines = text.split('\n');
    expect(lines[0]).to.equal(TLOG_PROOF_HEADER);
    expect(lines[1]).to.equal(`extra ${b64encode(extra)}`);
    expect(lines[2]).to.equal('index 5');
    const p = path(5, leaves);
    expect(lines.slice(3, 3 + p.length)).to.deep.equal(p.map(b64encode));
    expect(lines[3 + p.length]).to.equal('');
    expect(text.endsWith('\n\n' + signed)).to.equal(true);
  });

  it('every leaf of the tree round-trips and verifies', () => {
    for (let i = 0; i < leaves.length; i++) {
      const text = proofFor(i);
      const p = parseTlogProof(text);
      expect(p.index).to.equal(BigInt(i));
      expect(p.checkpoint).to.equal(signed);
      expect(formatTlogProof(p)).to.equal(text);
      const r = verifyTlogProof(text, leaves[i], logV);
      expect(r.index).to.equal(BigInt(i));
      expect(r.checkpoint.size).to.equal(13n);
      expect(r.extra).to.equal(undefined);
    }
  });

  it('single-leaf tree: empty proof', () => {
    const one = { ...cp, size: 1n, root: leaves[0] };
    const text = formatTlogProof({ index: 0, proof: [], checkpoint: signCheckpoint(one, log) });
    expect(text.startsWith(`${TLOG_PROOF_HEADER}\nindex 0\n\n`)).to.equal(true);
    expect(verifyTlogProof(text, leaves[0], logV).index).to.equal(0n);
  });

  it('carries extra data without trusting it', () => {
    const text = proofFor(3, signed, utf8('hello'));
    const r = verifyTlogProof(text, leaves[3], logV);
    expect(r.extra).to.deep.equal(utf8('hello'));
    // changing extra does not change the verdict: it is not authenticated
    const other = text.replace(`extra ${b64encode(utf8('hello'))}`, `extra ${b64encode(utf8('bye'))}`);
    expect(verifyTlogProof(other, leaves[3], logV).extra).to.deep.equal(utf8('bye'));
  });

  it('every mutation fails', () => {
    const text = proofFor(6, cosigned, utf8('x'));
    const head = text.slice(0, text.indexOf('\n\n'));
    // wrong leaf, wrong index, wrong key
    expectFail(() => verifyTlogProof(text, leaves[5], logV), /inclusion/);
    expectFail(() => verifyTlogProof(text.replace('index 6', 'index 7'), leaves[6], logV));
    expectFail(() => verifyTlogProof(text.replace('index 6', 'index 13'), leaves[6], logV), /below/);
    expectFail(() => verifyTlogProof(text, leaves[6], parseVkey(generateKey('example.com/fancylog', 1, seed(9)).vkey)));
    // flip every character of the head (outside the extra line, which is not authenticated)
    const extraEnd = head.indexOf('\n', head.indexOf('extra '));
    for (let i = 0; i < head.length; i++) {
      if (head[i] === '\n' || (i > head.indexOf('extra ') + 5 && i < extraEnd)) continue;
      const c = head.charCodeAt(i);
      for (const repl of [String.fromCharCode(c ^ 1), String.fromCharCode(c ^ 0x20)]) {
        const m = text.slice(0, i) + repl + text.slice(i + 1);
        if (m === text) continue;
        expectFail(() => verifyTlogProof(m, leaves[6], logV));
      }
    }
    // flip characters in the checkpoint body and log signature
    const cpStart = text.indexOf('\n\n') + 2;
    const logSigEnd = text.indexOf('\n', text.indexOf('\u2014 example.com/fancylog'));
    for (let i = cpStart; i < logSigEnd; i += 3) {
      if (text[i] === '\n' || text[i] === '\u2014' || text[i] === '=') continue;
      const m = text.slice(0, i) + (text[i] === 'A' ? 'B' : 'A') + text.slice(i + 1);
      if (m === text) continue;
      expectFail(() => verifyTlogProof(m, leaves[6], logV));
    }
    // structural mutations
    const lines = text.split('\n');
    const structural = [
      text.replace(TLOG_PROOF_HEADER, 'c2sp.org/tlog-proof@v2'),
      text.replace('\nindex 6\n', '\nindex 06\n'),
      text.replace('\nindex 6\n', '\nindex  6\n'),
      text.replace('\nindex 6\n', '\n'),
      lines.slice(0, 3).concat(lines.slice(4)).join('\n'), // a proof hash removed
      lines.slice(0, 3).concat([lines[3]], lines.slice(3)).join('\n'), // duplicated
      lines.slice(0, 3).concat([lines[4], lines[3]], lines.slice(5)).join('\n'), // swapped
      text.replace('\n\n', '\n'),
      text.replace('\n\n', '\n\n\n'),
      text.slice(0, -1),
      text + '\n',
      text.replace(lines[3], lines[3].slice(0, -1)),
      text.replace(lines[3], b64encode(new Uint8Array(31))),
      text.replace(lines[1], 'extra !!'),
      text.replace(lines[1], 'extra' + lines[1].slice(6)),
    ];
    for (const m of structural) {
      expect(m).to.not.equal(text);
      expectFail(() => verifyTlogProof(m, leaves[6], logV));
    }
  });

  it('enforces a witness policy', () => {
    const policy = (q: string) =>
      parsePolicy(`log ${lk.vkey}\n${wk.map((k, i) => `witness W${i + 1} ${k.vkey}`).join('\n')}\n${q}\n`);
    const two = policy('group g 2 W1 W2 W3\nquorum g');
    expect(verifyTlogProof(proofFor(2, cosigned), leaves[2], logV, { policy: two }).cosignatures).to.have.length(3);
    expectFail(() => verifyTlogProof(proofFor(2, signed), leaves[2], logV, { policy: two }), /quorum/);
    const oneCosig = addSignatures(signed, [cosignCheckpoint(body, ws[0], 1)]);
    expectFail(() => verifyTlogProof(proofFor(2, oneCosig), leaves[2], logV, { policy: two }), /quorum/);
    expect(
      verifyTlogProof(proofFor(2, oneCosig), leaves[2], logV, { policy: policy('quorum W1') }).cosignatures[0].witness,
    ).to.equal('W1');
    expect(verifyTlogProof(proofFor(2, signed), leaves[2], logV, { policy: policy('quorum none') }).index).to.equal(2n);
    // a known witness's bad cosignature fails even though the quorum is met by the others
    const badLine = cosignCheckpoint(formatCheckpoint({ ...cp, size: 12n }), ws[2], 5);
    const withBad = addSignatures(
      addSignatures(signed, [cosignCheckpoint(body, ws[0], 1), cosignCheckpoint(body, ws[1], 1)]),
      [badLine],
    );
    expectFail(() => verifyTlogProof(proofFor(2, withBad), leaves[2], logV, { policy: two }), /cosignature/);
    // unknown cosigners are ignored
    const stranger = parsePrivateKey(generateKey('stranger.example', KEY_TYPE_COSIGNATURE, seed(77)).privateKey);
    const withStranger = addSignatures(cosigned, [
      cosignCheckpoint(formatCheckpoint({ ...cp, size: 1n }), stranger, 1),
    ]);
    expect(verifyTlogProof(proofFor(2, withStranger), leaves[2], logV, { policy: two }).index).to.equal(2n);
  });

  it('property: random trees, every index verifies and a wrong leaf fails', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.nat(), (n, r) => {
        const ls = Array.from({ length: n }, (_, i) => hashLeaf(utf8(String(i))));
        const c = signCheckpoint({ origin: cp.origin, size: BigInt(n), root: merkleRoot(ls), extensions: [] }, log);
        const i = r % n;
        const text = formatTlogProof({ index: i, proof: path(i, ls), checkpoint: c });
        expect(verifyTlogProof(text, ls[i], logV).index).to.equal(BigInt(i));
        expect(() => verifyTlogProof(text, hashNode(ls[i], ls[i]), logV)).to.throw(TlogError);
      }),
      { numRuns: 30 },
    );
  });
});
