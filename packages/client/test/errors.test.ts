import { expect } from 'chai';
import { CheckpointError, NoteError, ProofError, TileVerifyError, generateKey, parseVkey } from '@trailmark/tlog';
import { EvidenceError, isNotEvidence, verifyEvidence } from '@trailmark/client';

// A monitor raises an alert only for evidence; isNotEvidence decides by the error's code which failures are a
// caller's mistake (another log's key, not a note) instead (contract section 6).
describe('monitor errors', () => {
  const mistakes: [string, unknown][] = [
    ['not a signed note', new NoteError('malformed-note', 'x')],
    ['no signature by the given key', new CheckpointError('no-log-signature', 'x')],
    ['another origin', new CheckpointError('origin-mismatch', 'x')],
    ['not a proof file', new ProofError('malformed-proof', 'x')],
  ];
  const evidence: [string, unknown][] = [
    ['a bad log signature', new CheckpointError('bad-signature', 'x')],
    ['a proof to another root', new ProofError('root-mismatch', 'x')],
    ['a tile that does not verify', new TileVerifyError('tile-mismatch', 'x', 'tile/0/000')],
    ['no code at all', new Error('x')],
  ];
  for (const [name, e] of mistakes)
    it(`${name} is a mistake, not evidence`, () => expect(isNotEvidence(e)).to.equal(true));
  for (const [name, e] of evidence) it(`${name} is not a mistake`, () => expect(isNotEvidence(e)).to.equal(false));

  it('evidence whose checkpoint another key signed is EvidenceError signature, caused by the checkpoint error', () => {
    const vkey = parseVkey(generateKey('example.com/log').vkey);
    const ev = {
      kind: 'same-size-different-root',
      origin: 'example.com/log',
      checkpoints: ['example.com/log\n1\n' + 'A'.repeat(43) + '=\n\n— example.com/log AAAAAAAA\n', 'x'],
    };
    let err: unknown;
    try {
      verifyEvidence(ev, vkey);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(EvidenceError);
    expect((err as EvidenceError).code).to.equal('signature');
    expect((err as EvidenceError).cause).to.be.instanceOf(CheckpointError);
  });
});
