import { expect } from 'chai';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  NoteError,
  addSignatures,
  b64decode,
  b64encode,
  generateKey,
  parseNote,
  parsePrivateKey,
  parseVkey,
  signNote,
  utf8,
  verifierOf,
  verifyNote,
  MAX_NOTE_SIGNATURES,
  formatNote,
  KEY_TYPE_COSIGNATURE,
  errorMessage,
} from '../src/index.js';

const vectors = JSON.parse(readFileSync(new URL('./vectors/signed-note.json', import.meta.url), 'utf8'));
const keys = vectors.ed25519_note_keys as { name: string; vkey: string; skey?: string }[];
const peter = parsePrivateKey(keys.find((k) => k.name === 'PeterNeumann')!.skey!);
const peterV = parseVkey(keys.find((k) => k.name === 'PeterNeumann')!.vkey);
const enochV = parseVkey(keys.find((k) => k.name === 'EnochRoot')!.vkey);

function expectNoteError(fn: () => unknown, code: string, re?: RegExp): NoteError {
  try {
    fn();
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(NoteError);
    expect((e as NoteError).code, errorMessage(e)).to.equal(code);
    if (re) expect(errorMessage(e)).to.match(re);
    return e as NoteError;
  }
  return expect.fail(`expected NoteError ${code}`);
}

describe('signed notes', () => {
  describe('vectors (golang.org/x/mod/sumdb/note)', () => {
    for (const n of vectors.signed_notes) {
      it(`parses, verifies and re-signs "${n.text.slice(0, 20)}..."`, () => {
        const parsed = parseNote(n.note);
        expect(parsed.text).to.equal(n.text);
        expect(parsed.signatures).to.have.length(1);
        expect(parsed.signatures[0].name).to.equal(n.signed_by);
        expect(formatNote(parsed)).to.equal(n.note);
        const r = verifyNote(n.note, [peterV, enochV]);
        expect(r.text).to.equal(n.text);
        expect(r.verified.map((v) => v.name)).to.deep.equal([n.signed_by]);
        expect(signNote(n.text, peter)).to.equal(n.note);
        expect(verifyNote(utf8(n.note), peterV).text).to.equal(n.text);
      });
      it('verifies the note with two signatures, by either or both keys', () => {
        const two = n.note_with_two_signatures;
        expect(parseNote(two).signatures.map((s) => s.name)).to.deep.equal(['PeterNeumann', 'EnochRoot']);
        expect(verifyNote(two, [peterV, enochV]).verified.map((v) => v.name)).to.deep.equal([
          'PeterNeumann',
          'EnochRoot',
        ]);
        const onlyEnoch = verifyNote(two, enochV);
        expect(onlyEnoch.verified.map((v) => v.name)).to.deep.equal(['EnochRoot']);
        expect(onlyEnoch.unknown.map((s) => s.name)).to.deep.equal(['PeterNeumann']);
        expect(addSignatures(n.note, two.slice(n.note.length))).to.equal(two);
        expect(addSignatures(two, two.slice(n.note.length))).to.equal(two);
      });
    }
  });

  const note = vectors.signed_notes[0].note as string;

  it('wrong key: a note signed by an unknown key only is rejected', () => {
    const other = generateKey('PeterNeumann');
    expectNoteError(() => verifyNote(note, parseVkey(other.vkey)), 'no-verified-signature');
    expectNoteError(() => verifyNote(note, enochV), 'no-verified-signature');
    expectNoteError(() => verifyNote(note, []), 'no-verified-signature');
  });

  it('a known key with a bad signature rejects the whole note', () => {
    // a flipped bit anywhere in the text
    for (let i = 0; i < vectors.signed_notes[0].text.length; i += 7) {
      const c = note.charCodeAt(i);
      if (c === 10) continue;
      const t = note.slice(0, i) + String.fromCharCode(c ^ 1) + note.slice(i + 1);
      expectNoteError(() => verifyNote(t, peterV), 'bad-signature', /PeterNeumann/);
    }
    // a flipped bit in the signature bytes (after the key id)
    const p = parseNote(note);
    const raw = b64decode(p.signatures[0].line.split(' ')[2]);
    for (const bit of [32, 100, 300, 511]) {
      const bad = raw.slice();
      bad[4 + (bit >> 3)] ^= 1 << (bit & 7);
      const t = p.text + '\n\u2014 PeterNeumann ' + b64encode(bad) + '\n';
      expectNoteError(() => verifyNote(t, peterV), 'bad-signature');
    }
    // a bad known signature is not excused by another good one
    const two = vectors.signed_notes[0].note_with_two_signatures as string;
    const enochLine = parseNote(two).signatures[1].line;
    const enochRaw = b64decode(enochLine.split(' ')[2]);
    enochRaw[40] ^= 4; // inside the Ed25519 signature, key id untouched
    const broken = two.replace(enochLine, `\u2014 EnochRoot ${b64encode(enochRaw)}`);
    expectNoteError(() => verifyNote(broken, [peterV, enochV]), 'bad-signature', /EnochRoot/);
    expect(verifyNote(broken, peterV).verified).to.have.length(1); // unknown keys are ignored
  });

  it('a signature from a key sharing only the name or only the id is ignored', () => {
    const p = parseNote(note);
    const raw = b64decode(p.signatures[0].line.split(' ')[2]);
    const wrongId = raw.slice();
    wrongId[0] ^= 0xff;
    const t =
      p.text +
      '\n' +
      p.signatures[0].line +
      '\n\u2014 PeterNeumann ' +
      b64encode(wrongId) +
      '\n\u2014 Other ' +
      b64encode(raw) +
      '\n';
    const r = verifyNote(t, peterV);
    expect(r.verified).to.have.length(1);
    expect(r.unknown).to.have.length(2);
  });

  it('rejects malformed notes', () => {
    const text = vectors.signed_notes[0].text as string;
    const line = parseNote(note).signatures[0].line;
    const cases: [string, RegExp][] = [
      ['', /blank line/],
      [text, /blank line/],
      [text + '\n', /no signature/],
      [text + '\n' + line, /newline/],
      [text + line + '\n', /blank line/],
      [text + '\n' + line + '\n\n', /./],
      [text + '\n' + line.replace('\u2014', '-') + '\n', /start with/],
      [text + '\n' + line.replace('\u2014 ', '\u2014') + '\n', /./],
      [text + '\n' + line.replace(' x08', '  x08') + '\n', /./],
      [text + '\n\u2014 PeterNeumann\n', /no space/],
      [text + '\n\u2014 Peter+Neumann AAAAAAA=\n', /key name/],
      [text + '\n\u2014 PeterNeumann AAAAAA==\n', /too short/],
      [text + '\n\u2014 PeterNeumann x08go_ZJ\n', /base64/],
      [text + '\n\u2014 PeterNeumann ' + line.split(' ')[2].replace(/=$/, '') + '\n', /base64/],
      ['a\tb\n\n' + line + '\n', /control/],
      ['a\rb\n\n' + line + '\n', /control/],
      ['a\u0000b\n\n' + line + '\n', /control/],
      ['a\ud800b\n\n' + line + '\n', /UTF-8/],
    ];
    for (const [t, re] of cases) expectNoteError(() => parseNote(t), 'malformed-note', re);
    expectNoteError(() => parseNote(new Uint8Array([0x61, 0xff, 0x0a, 0x0a])), 'malformed-note', /UTF-8/);
    expectNoteError(() => verifyNote(text, peterV), 'malformed-note');
  });

  it('limits the number of signatures', () => {
    const line = parseNote(note).signatures[0].line + '\n';
    const text = vectors.signed_notes[0].text + '\n';
    expect(parseNote(text + line.repeat(MAX_NOTE_SIGNATURES)).signatures).to.have.length(MAX_NOTE_SIGNATURES);
    expect(parseNote(text + line.repeat(16)).signatures).to.have.length(16);
    expectNoteError(() => parseNote(text + line.repeat(MAX_NOTE_SIGNATURES + 1)), 'too-many-signatures');
  });

  it('the last blank line separates the text: texts may contain blank lines', () => {
    const t = 'para one\n\npara two\n\n\nend\n';
    const s = signNote(t, peter);
    expect(verifyNote(s, peterV).text).to.equal(t);
  });

  it('signNote refuses bad texts', () => {
    expectNoteError(() => signNote('no newline', peter), 'sign');
    expectNoteError(() => signNote('ctl\u0001\n', peter), 'sign');
    expectNoteError(() => signNote('x\n', []), 'sign');
  });

  it('addSignatures appends cosignature lines and validates them', () => {
    const w = parsePrivateKey(
      generateKey('witness.example/w1', KEY_TYPE_COSIGNATURE, new Uint8Array(32).fill(9)).privateKey,
    );
    const text = vectors.signed_notes[0].text as string;
    const cosigned = signNote(text, w);
    const line = parseNote(cosigned).signatures[0].line;
    const both = addSignatures(note, [line]);
    expect(both).to.equal(note + line + '\n');
    const r = verifyNote(both, [peterV, verifierOf(w)]);
    expect(r.verified.map((v) => v.name)).to.deep.equal(['PeterNeumann', 'witness.example/w1']);
    expectNoteError(() => addSignatures(note, 'garbage\n'), 'malformed-note');
    expectNoteError(() => addSignatures(note, line), 'malformed-note', /newline/);
    // replace: a fresher cosignature from the same key replaces the old one
    const fresher = parseNote(signNote(text, w)).signatures[0].line;
    expect(parseNote(addSignatures(both, [fresher], { replace: true })).signatures).to.have.length(2);
  });

  it('property: sign then verify round-trips any valid text; any single-character change fails', () => {
    const textArb = fc
      .array(
        fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => s.replace(/[\u0000-\u001f]/g, '')),
        { minLength: 1, maxLength: 4 },
      )
      .map((ls) => ls.join('\n') + '\n');
    fc.assert(
      fc.property(textArb, fc.nat(), (text, pos) => {
        const s = signNote(text, peter);
        const r = verifyNote(s, peterV);
        expect(r.text).to.equal(text);
        const i = pos % text.length;
        const ch = text[i] === 'a' ? 'b' : 'a';
        const tampered = text.slice(0, i) + ch + text.slice(i + 1) + s.slice(text.length);
        expect(() => verifyNote(tampered, peterV)).to.throw(NoteError);
      }),
      { numRuns: 40 },
    );
  });
});
