import { expect } from 'chai';
import fc from 'fast-check';
import {
  CheckpointError,
  KEY_TYPE_COSIGNATURE,
  NoteError,
  TlogError,
  addSignatures,
  b64encode,
  cosignCheckpoint,
  formatCheckpoint,
  generateKey,
  openCheckpoint,
  parseCheckpoint,
  parsePolicy,
  parsePrivateKey,
  parseVkey,
  sha256,
  signCheckpoint,
  utf8,
  type Checkpoint,
  errorMessage,
} from '../src/index.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const logKeys = generateKey('example.com/log', 1, seed(1));
const log = parsePrivateKey(logKeys.privateKey);
const logV = parseVkey(logKeys.vkey);
const root = sha256(utf8('root'));
const cp: Checkpoint = { origin: 'example.com/log', size: 20852163n, root, extensions: [] };

function expectCode(fn: () => unknown, code: string, cls: new (...args: any[]) => Error = TlogError): void {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(cls);
    expect((e as TlogError).code, errorMessage(e)).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('checkpoints', () => {
  it('formats the spec example body and parses it back', () => {
    const body = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
    const c = parseCheckpoint(body);
    expect(c.origin).to.equal('example.com/behind-the-sofa');
    expect(c.size).to.equal(20852163n);
    expect(c.root).to.have.length(32);
    expect(c.extensions).to.deep.equal([]);
    expect(formatCheckpoint(c)).to.equal(body);
    const ext = parseCheckpoint(body + 'ext one\nx\n');
    expect(ext.extensions).to.deep.equal(['ext one', 'x']);
    expect(formatCheckpoint(ext)).to.equal(body + 'ext one\nx\n');
  });

  it('property: format/parse round-trip', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(
          fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !/[\u0000-\u001f]/.test(s)),
          { maxLength: 3 },
        ),
        (size, r, extensions) => {
          const c = { origin: 'o', size, root: r, extensions };
          expect(parseCheckpoint(formatCheckpoint(c))).to.deep.equal(c);
        },
      ),
    );
  });

  it('rejects malformed bodies', () => {
    const r = b64encode(root);
    const bad = [
      '',
      `o\n1\n${r}`,
      `o\n1\n`,
      `\n1\n${r}\n`,
      `o\n01\n${r}\n`,
      `o\n-1\n${r}\n`,
      `o\n+1\n${r}\n`,
      `o\n 1\n${r}\n`,
      `o\n1.0\n${r}\n`,
      `o\n18446744073709551616\n${r}\n`,
      `o\n1\n${r.slice(0, -1)}\n`,
      `o\n1\n${b64encode(root.slice(0, 31))}\n`,
      `o\n1\n${r.replace('=', '')}\n`,
      `o\n1\n${r}\n\n`,
      `o\n1\n${r}\n\next\n`,
      `o\r\n1\n${r}\n`,
    ];
    for (const b of bad) expectCode(() => parseCheckpoint(b), 'malformed-checkpoint', CheckpointError);
    expect(parseCheckpoint(`o\n18446744073709551615\n${r}\n`).size).to.equal((1n << 64n) - 1n);
    expect(parseCheckpoint(`o\n0\n${r}\n`).size).to.equal(0n);
  });

  it('formatCheckpoint refuses invalid fields', () => {
    expectCode(() => formatCheckpoint({ ...cp, origin: '' }), 'malformed-checkpoint');
    expectCode(() => formatCheckpoint({ ...cp, origin: 'a\nb' }), 'malformed-checkpoint');
    expectCode(() => formatCheckpoint({ ...cp, size: -1n }), 'malformed-checkpoint');
    expectCode(() => formatCheckpoint({ ...cp, size: 1n << 64n }), 'malformed-checkpoint');
    expectCode(() => formatCheckpoint({ ...cp, root: root.slice(1) }), 'malformed-checkpoint');
    expectCode(() => formatCheckpoint({ ...cp, extensions: [''] }), 'malformed-checkpoint');
  });

  it('signs and opens a checkpoint', () => {
    const note = signCheckpoint(cp, log);
    const { checkpoint, note: parsed, cosignatures } = openCheckpoint(note, logV);
    expect(checkpoint).to.deep.equal(cp);
    expect(parsed.signatures).to.have.length(1);
    expect(cosignatures).to.deep.equal([]);
  });

  it('refuses to sign for another origin, and to open one', () => {
    expectCode(() => signCheckpoint({ ...cp, origin: 'other' }, log), 'origin-mismatch');
    // a key named "other" signing a checkpoint of origin example.com/log is not that log
    const other = parsePrivateKey(generateKey('other', 1, seed(2)).privateKey);
    const otherV = parseVkey(generateKey('other', 1, seed(2)).vkey);
    const body = formatCheckpoint(cp);
    const forged = body + '\n' + signCheckpoint({ ...cp, origin: 'other' }, other).split('\n\n')[1];
    expect(() => openCheckpoint(forged, otherV)).to.throw(TlogError);
  });

  it('fails on a wrong key, tampered body, tampered signature, or unknown-only signatures', () => {
    const note = signCheckpoint(cp, log);
    const wrong = parseVkey(generateKey('example.com/log', 1, seed(3)).vkey);
    expectCode(() => openCheckpoint(note, wrong), 'no-log-signature');
    expectCode(() => openCheckpoint(note.replace('20852163', '20852164'), logV), 'bad-signature');
    const sigStart = note.lastIndexOf(' ') + 10;
    const flipped = note.slice(0, sigStart) + (note[sigStart] === 'A' ? 'B' : 'A') + note.slice(sigStart + 1);
    expectCode(() => openCheckpoint(flipped, logV), 'bad-signature');
    expectCode(() => openCheckpoint(formatCheckpoint(cp), logV), 'malformed-note', NoteError);
  });

  it('checks witness cosignatures and the policy quorum', () => {
    const w1k = generateKey('w1.example', KEY_TYPE_COSIGNATURE, seed(11));
    const w2k = generateKey('w2.example', KEY_TYPE_COSIGNATURE, seed(12));
    const w1 = parsePrivateKey(w1k.privateKey);
    const w2 = parsePrivateKey(w2k.privateKey);
    const note = signCheckpoint(cp, log);
    const body = formatCheckpoint(cp);
    const cosigned = addSignatures(note, [cosignCheckpoint(body, w1, 1700000000)]);
    const r = openCheckpoint(cosigned, logV, { witnesses: [parseVkey(w1k.vkey), parseVkey(w2k.vkey)] });
    expect(r.cosignatures.map((c) => [c.verifier.name, c.timestamp])).to.deep.equal([['w1.example', 1700000000n]]);

    const policy = parsePolicy(
      `log ${logKeys.vkey}\nwitness A ${w1k.vkey}\nwitness B ${w2k.vkey}\ngroup both all A B\nquorum both\n`,
    );
    expectCode(() => openCheckpoint(cosigned, logV, { policy }), 'quorum');
    const full = addSignatures(cosigned, [cosignCheckpoint(body, w2, 1700000001)]);
    const ok = openCheckpoint(full, logV, { policy });
    expect(ok.cosignatures.map((c) => c.witness)).to.deep.equal(['A', 'B']);
    // a bad cosignature by a known witness fails even when the quorum is otherwise met
    const line = cosignCheckpoint(body, w2, 1700000001);
    const badLine = line.slice(0, -6) + (line.at(-6) === 'A' ? 'B' : 'A') + line.slice(-5);
    const bad = addSignatures(full, [badLine]);
    expectCode(() => openCheckpoint(bad, logV, { policy }), 'bad-cosignature');
    // a cosignature over another body does not count
    const otherBody = formatCheckpoint({ ...cp, size: cp.size + 1n });
    expectCode(
      () => openCheckpoint(addSignatures(cosigned, [cosignCheckpoint(otherBody, w2, 5)]), logV, { policy }),
      'bad-cosignature',
    );
    // the log must be in the policy when it lists logs
    const other = parsePolicy(`log ${generateKey('example.com/log', 1, seed(99)).vkey}\nquorum none\n`);
    expectCode(() => openCheckpoint(full, logV, { policy: other }), 'log-not-in-policy');
    expect(openCheckpoint(note, logV, { policy: parsePolicy('quorum none\n') }).checkpoint.size).to.equal(cp.size);
  });
});
