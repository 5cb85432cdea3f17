import { expect } from 'chai';
import fc from 'fast-check';
import {
  KEY_TYPE_COSIGNATURE,
  PolicyError,
  evaluateQuorum,
  formatPolicy,
  generateKey,
  parsePolicy,
  errorMessage,
} from '../src/index.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const log = generateKey('example.com/log', 1, seed(1)).vkey;
const wit = (n: number) => generateKey(`w${n}.example`, KEY_TYPE_COSIGNATURE, seed(n + 10)).vkey;

const example = `# spec example, two levels of groups
log ${log} https://log.example/

witness X1 ${wit(1)}
witness X2 ${wit(2)}
witness X3 ${wit(3)} https://w3.example/submit
group X-witnesses 2 X1 X2 X3

\twitness Y1 ${wit(4)}\t
witness  Y2   ${wit(5)}
witness Y3 ${wit(6)}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
`;

function expectPolicyError(text: string, re: RegExp): void {
  try {
    parsePolicy(text);
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(PolicyError);
    expect(errorMessage(e)).to.match(re);
    return;
  }
  expect.fail(`expected PolicyError ${re}`);
}

describe('tlog-policy', () => {
  it('parses the spec example', () => {
    const p = parsePolicy(example);
    expect(p.logs).to.have.length(1);
    expect(p.logs[0].url).to.equal('https://log.example/');
    expect(p.logs[0].verifier.name).to.equal('example.com/log');
    expect([...p.witnesses.keys()]).to.deep.equal(['X1', 'X2', 'X3', 'Y1', 'Y2', 'Y3']);
    expect(p.witnesses.get('X3')!.url).to.equal('https://w3.example/submit');
    expect(p.witnesses.get('X1')!.url).to.equal(undefined);
    expect(p.groups.get('X-witnesses')).to.deep.equal({ name: 'X-witnesses', k: 2, members: ['X1', 'X2', 'X3'] });
    expect(p.groups.get('Y-witnesses')!.k).to.equal(1);
    expect(p.groups.get('X-and-Y')!.k).to.equal(2);
    expect(p.quorum).to.equal('X-and-Y');
    expect(formatPolicy(parsePolicy(formatPolicy(p)))).to.equal(formatPolicy(p));
    expect(formatPolicy(p)).to.contain(`group X-witnesses 2 X1 X2 X3\n`);
  });

  it('evaluates nested quorums', () => {
    const p = parsePolicy(example);
    const q = (...names: string[]) => evaluateQuorum(p, new Set(names));
    expect(q()).to.equal(false);
    expect(q('X1', 'X2')).to.equal(false);
    expect(q('X1', 'Y1')).to.equal(false);
    expect(q('X1', 'X2', 'Y3')).to.equal(true);
    expect(q('X1', 'X3', 'Y1', 'Y2')).to.equal(true);
    expect(q('X1', 'X2', 'X3')).to.equal(false);
    expect(q('Y1', 'Y2', 'Y3', 'X2')).to.equal(false);
    expect(q('X-witnesses', 'Y-witnesses', 'X-and-Y')).to.equal(false); // only witnesses cosign
    expect(q('unknown', 'X1', 'X2', 'Y1')).to.equal(true);
  });

  it('property: quorum matches a direct count', () => {
    const p = parsePolicy(example);
    fc.assert(
      fc.property(fc.subarray(['X1', 'X2', 'X3', 'Y1', 'Y2', 'Y3']), (set) => {
        const xs = set.filter((s) => s.startsWith('X')).length;
        const ys = set.filter((s) => s.startsWith('Y')).length;
        expect(evaluateQuorum(p, new Set(set))).to.equal(xs >= 2 && ys >= 1);
      }),
    );
  });

  it('quorum none, single-witness quorum, and no logs', () => {
    expect(evaluateQuorum(parsePolicy('quorum none\n'), new Set())).to.equal(true);
    const p = parsePolicy(`witness A ${wit(1)}\nquorum A`);
    expect(evaluateQuorum(p, new Set())).to.equal(false);
    expect(evaluateQuorum(p, new Set(['A']))).to.equal(true);
    expect(p.logs).to.deep.equal([]);
  });

  it('rejects malformed policies, naming the line', () => {
    expectPolicyError('', /no quorum/);
    expectPolicyError('# only a comment\n', /no quorum/);
    expectPolicyError('quorum none\nquorum none\n', /line 2: second quorum/);
    expectPolicyError('quorum A\n', /line 1: quorum "A" is not defined/);
    expectPolicyError(`quorum A\nwitness A ${wit(1)}\n`, /line 1/);
    expectPolicyError('frobnicate x\nquorum none\n', /line 1: unknown keyword/);
    expectPolicyError(`log ${log} url extra\nquorum none\n`, /line 1/);
    expectPolicyError(`log\nquorum none\n`, /line 1/);
    expectPolicyError(`log ${log}\nlog ${log}\nquorum none\n`, /line 2: duplicate log/);
    expectPolicyError(`log ${wit(1)}\nquorum none\n`, /type/);
    expectPolicyError(`witness A ${log}\nquorum none\n`, /type/);
    expectPolicyError(`witness A notakey\nquorum none\n`, /line 1: witness key/);
    expectPolicyError(`witness A ${wit(1)}\nwitness B ${wit(1)}\nquorum A\n`, /line 2: duplicate witness key/);
    expectPolicyError(`witness A ${wit(1)}\nwitness A ${wit(2)}\nquorum A\n`, /line 2: .*already defined/);
    expectPolicyError(`witness none ${wit(1)}\nquorum none\n`, /reserved/);
    expectPolicyError(`witness A ${wit(1)}\ngroup A any A\nquorum A\n`, /already defined/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G any\nquorum G\n`, /line 2/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G any B\nquorum G\n`, /"B" is not defined/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G any A A\nquorum G\n`, /twice/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G any none\nquorum G\n`, /none/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G 2 A\nquorum G\n`, /threshold 2/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G 0 A\nquorum G\n`, /threshold/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G 01 A\nquorum G\n`, /threshold/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G some A\nquorum G\n`, /threshold/);
    expectPolicyError(`witness A ${wit(1)}\ngroup G any G\nquorum G\n`, /already defined|not defined/);
    expectPolicyError('quorum none\r\n', /control/);
    expectPolicyError('quorum none extra\n', /line 1/);
  });
});
