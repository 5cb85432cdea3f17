/** The tlog-witness add-checkpoint body: the format the spec gives, and what the parser refuses. */
import { expect } from 'chai';
import fc from 'fast-check';
import { MAX_PROOF_LINES, b64encode, formatAddCheckpoint, parseAddCheckpoint, type Hash } from '../src/index.js';

const h = (n: number): Hash => new Uint8Array(32).fill(n);
const NOTE = 'example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n';

describe('add-checkpoint body (C2SP tlog-witness)', () => {
  it('writes "old N", one base64 line per proof hash, an empty line, then the note', () => {
    expect(formatAddCheckpoint({ oldSize: 3n, proof: [h(1), h(2)], note: NOTE })).to.equal(
      `old 3\n${b64encode(h(1))}\n${b64encode(h(2))}\n\n${NOTE}`,
    );
    expect(formatAddCheckpoint({ oldSize: 0n, proof: [], note: NOTE })).to.equal(`old 0\n\n${NOTE}`);
  });

  it('parses what it writes, for any size and proof length', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: MAX_PROOF_LINES }),
        (oldSize, proof) => {
          const r = parseAddCheckpoint(formatAddCheckpoint({ oldSize, proof, note: NOTE }));
          expect(r).to.deep.equal({ oldSize, proof, note: NOTE });
        },
      ),
    );
  });

  it('says what is malformed', () => {
    const cases: [string, RegExp][] = [
      ['old 3', /no old size line/],
      ['new 3\n\n' + NOTE, /first line/],
      ['old 03\n\n' + NOTE, /leading zeros/],
      ['old 18446744073709551616\n\n' + NOTE, /exceeds/],
      ['old 3\n' + b64encode(h(1)) + '\n', /missing empty line/],
      ['old 3\nAAAA\n\n' + NOTE, /want 32/],
      ['old 3\n' + `${b64encode(h(1))}\n`.repeat(MAX_PROOF_LINES + 1) + '\n' + NOTE, /more than 63/],
    ];
    for (const [body, want] of cases) expect(parseAddCheckpoint(body)).to.be.a('string').that.matches(want);
  });
});
