import { expect } from 'chai';
import { AuditError, LogReadError } from '@trailmark/client';
import { ProofError, TileVerifyError } from '@trailmark/tlog';
import { toCliError } from '../src/commands/checkpoint.js';
import { CliError, EXIT_ERROR, EXIT_FAILED } from '../src/exit.js';

/** The contract's exit status a library error maps to, and the reason it reports. */
function exitOf(e: unknown): { code: number; reason: unknown } {
  const c = toCliError(e);
  expect(c).to.be.instanceOf(CliError);
  return { code: (c as CliError).code, reason: (c as CliError).details?.reason };
}

describe('cli: library errors to exit statuses (contract section 6)', () => {
  // the audit's codes decide between "evidence" (1) and "the question was wrong" (2)
  const cases: [string, unknown, number, string][] = [
    ['a rollback is evidence', new AuditError('rollback', 'smaller'), EXIT_FAILED, 'rollback'],
    ['a fork is evidence', new AuditError('inconsistent', 'fork'), EXIT_FAILED, 'inconsistent'],
    ['a checkpoint of another log is evidence', new AuditError('origin', 'other'), EXIT_FAILED, 'origin'],
    ['an entry not in the log is a mistake', new AuditError('not-found', 'absent'), EXIT_ERROR, 'not-found'],
    ['a proof that does not verify is evidence', new ProofError('root-mismatch', 'x'), EXIT_FAILED, 'root-mismatch'],
    [
      'a tile that does not verify is evidence',
      new TileVerifyError('tile-mismatch', 'x', 'tile/0/000'),
      EXIT_FAILED,
      'tile-mismatch',
    ],
    ['a text that is not a note is a mistake', new ProofError('malformed-proof', 'x'), EXIT_ERROR, 'malformed-proof'],
    [
      'an unreachable log is not evidence',
      new LogReadError('network', 'refused', 'http://127.0.0.1:1/checkpoint'),
      EXIT_ERROR,
      'network',
    ],
  ];
  for (const [name, err, code, reason] of cases) {
    it(`${name}: exit ${code}`, () => {
      expect(exitOf(err)).to.deep.equal({ code, reason });
    });
  }
});
