/**
 * Every view decision of the monitor, table-driven (in the manner of transparency-dev/merkle's verify tests):
 * each row is a previous view, a checkpoint heard of, and the proofs the log serves; the expected answer is
 * what decideView says, which proofs it asked for, and for a split, evidence that verifies offline. Trees and
 * signed notes are real (@trailmark/tlog); a "log" serves proofs from one of two diverging trees.
 */
import { expect } from 'chai';
import { b64encode, generateKey, parsePrivateKey, parseVkey, type Hash } from '@trailmark/tlog';
import { MonitorError } from '../src/errors.js';
import { rememberingVerifier, verifyEvidence } from '@trailmark/client';
import { decideView, type NoteSeen, type ViewDecision, type ViewInput } from '../src/view.js';
import { TestTree } from '../../../test/lib/tree.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const key = generateKey('view.example/log', 1, seed(7));
const signer = parsePrivateKey(key.privateKey);
// the Monitor opens notes with a verifier that remembers the signatures it checked: so do these tests
const verifier = rememberingVerifier(parseVkey(key.vkey));
/** Another key with the same name: its notes are not the log's. */
const foreignSigner = parsePrivateKey(generateKey('view.example/log', 1, seed(8)).privateKey);
/** A TestTree whose notes are signed once per size (signing is the slow part of these tests). */
class Tree extends TestTree {
  private readonly notes = new Map<number, string>();
  override checkpoint(size: number): string {
    let n = this.notes.get(size);
    if (n === undefined) this.notes.set(size, (n = super.checkpoint(size)));
    return n;
  }
}
const trees = { a: new Tree(signer, 16, 'a'), b: new Tree(signer, 16, 'b') };
const foreign = new TestTree(foreignSigner, 16, 'a');
type TreeName = keyof typeof trees;

const LOG = 'http://log.example';
const seenView = { from: LOG, at: '2026-01-01T00:00:00.000Z' };
const seenGot = { from: 'http://peer.example', at: '2026-01-01T00:00:01.000Z' };

/** Flips one bit of the first hash of a proof. */
function flip(p: Hash[]): Hash[] {
  if (p.length === 0) return p;
  const h = new Uint8Array(p[0]);
  h[0] ^= 1;
  return [h, ...p.slice(1)];
}

/** A valid note with its signature altered: it names the log's key but does not verify under it. */
function badSignature(note: string): string {
  const lines = note.trimEnd().split('\n');
  const last = lines.pop()!;
  const sig = Buffer.from(last.split(' ').pop()!, 'base64');
  sig[sig.length - 1] ^= 1;
  return [...lines, last.replace(/\S+$/, sig.toString('base64'))].join('\n') + '\n';
}

interface Row {
  name: string;
  from: 'log' | 'foreign';
  /** The view: a checkpoint of tree t at size n, or none. */
  view?: [TreeName, number];
  /** The checkpoint heard of: of tree t at size n, or a note as given. */
  got: [TreeName, number] | string;
  /** The tree the log serves proofs from (default a). */
  serves?: TreeName;
  /** Alters the consistency proof the log serves. */
  tamper?: (p: Hash[]) => Hash[];
  want: ViewDecision['kind'];
  /** The proofs decideView asks for, in order. */
  asks?: string[];
  /** For a split: its kind, and the [tree, size] of its two checkpoints in order. */
  evidence?: { kind: string; checkpoints: [[TreeName, number], [TreeName, number]] };
  /** For unsigned: whether it is a mistake (wrong URL or key) rather than misbehaviour. */
  mistake?: boolean;
}

const rows: Row[] = [
  { name: 'first checkpoint from the log', from: 'log', got: ['a', 5], want: 'first' },
  { name: 'foreign checkpoint before any view', from: 'foreign', got: ['a', 5], want: 'larger' },
  { name: 'equal checkpoint from the log', from: 'log', view: ['a', 5], got: ['a', 5], want: 'equal' },
  { name: 'equal checkpoint from a peer', from: 'foreign', view: ['a', 5], got: ['a', 5], want: 'equal' },
  {
    name: 'same size, other root, from the log',
    from: 'log',
    view: ['a', 5],
    got: ['b', 5],
    want: 'split',
    evidence: {
      kind: 'same-size-different-root',
      checkpoints: [
        ['a', 5],
        ['b', 5],
      ],
    },
  },
  {
    name: 'same size, other root, from a peer',
    from: 'foreign',
    view: ['a', 6],
    got: ['b', 6],
    want: 'split',
    evidence: {
      kind: 'same-size-different-root',
      checkpoints: [
        ['a', 6],
        ['b', 6],
      ],
    },
  },
  {
    name: 'consistent growth',
    from: 'log',
    view: ['a', 5],
    got: ['a', 13],
    want: 'advance',
    asks: ['consistency 5 13'],
  },
  {
    name: 'growth from a power of two',
    from: 'log',
    view: ['a', 8],
    got: ['a', 13],
    want: 'advance',
    asks: ['consistency 8 13'],
  },
  {
    name: 'growth from the empty tree',
    from: 'log',
    view: ['a', 0],
    got: ['a', 3],
    want: 'advance',
    asks: ['consistency 0 3'],
  },
  {
    name: 'inconsistent growth',
    from: 'log',
    view: ['a', 5],
    got: ['b', 13],
    serves: 'b',
    want: 'split',
    asks: ['consistency 5 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['a', 5],
        ['b', 13],
      ],
    },
  },
  {
    name: 'inconsistent growth from a power-of-two prefix (root from an inclusion proof)',
    from: 'log',
    view: ['a', 4],
    got: ['b', 13],
    serves: 'b',
    want: 'split',
    asks: ['consistency 4 13', 'inclusion 3 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['a', 4],
        ['b', 13],
      ],
    },
  },
  {
    name: 'inconsistent growth from size 1',
    from: 'log',
    view: ['a', 1],
    got: ['b', 2],
    serves: 'b',
    want: 'split',
    asks: ['consistency 1 2', 'inclusion 0 2'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['a', 1],
        ['b', 2],
      ],
    },
  },
  {
    name: 'rollback, consistent',
    from: 'log',
    view: ['a', 13],
    got: ['a', 5],
    want: 'rollback',
    asks: ['consistency 5 13'],
  },
  {
    name: 'rollback, inconsistent',
    from: 'log',
    view: ['a', 13],
    got: ['b', 5],
    serves: 'a',
    want: 'split',
    asks: ['consistency 5 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['b', 5],
        ['a', 13],
      ],
    },
  },
  {
    name: 'rollback, inconsistent, to a power of two',
    from: 'log',
    view: ['a', 13],
    got: ['b', 8],
    serves: 'a',
    want: 'split',
    asks: ['consistency 8 13', 'inclusion 7 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['b', 8],
        ['a', 13],
      ],
    },
  },
  {
    name: 'smaller consistent checkpoint from a peer',
    from: 'foreign',
    view: ['a', 13],
    got: ['a', 5],
    want: 'consistent',
    asks: ['consistency 5 13'],
  },
  {
    name: 'smaller inconsistent checkpoint from a peer',
    from: 'foreign',
    view: ['a', 13],
    got: ['b', 6],
    want: 'split',
    asks: ['consistency 6 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['b', 6],
        ['a', 13],
      ],
    },
  },
  {
    name: 'smaller inconsistent power-of-two checkpoint from a peer',
    from: 'foreign',
    view: ['a', 13],
    got: ['b', 2],
    want: 'split',
    asks: ['consistency 2 13', 'inclusion 1 13'],
    evidence: {
      kind: 'inconsistent',
      checkpoints: [
        ['b', 2],
        ['a', 13],
      ],
    },
  },
  {
    name: 'larger checkpoint from a peer (not checked until the log gets there)',
    from: 'foreign',
    view: ['a', 5],
    got: ['a', 13],
    want: 'larger',
  },
  {
    name: 'bad proof for consistent growth',
    from: 'log',
    view: ['a', 5],
    got: ['a', 13],
    tamper: flip,
    want: 'bad-proof',
    asks: ['consistency 5 13'],
  },
  {
    name: 'bad proof from a power of two (the inclusion proof shows the prefix is the view: no evidence)',
    from: 'log',
    view: ['a', 4],
    got: ['a', 13],
    tamper: flip,
    want: 'bad-proof',
    asks: ['consistency 4 13', 'inclusion 3 13'],
  },
  {
    name: 'truncated proof',
    from: 'log',
    view: ['a', 5],
    got: ['a', 13],
    tamper: (p) => p.slice(0, -1),
    want: 'bad-proof',
    asks: ['consistency 5 13'],
  },
  {
    name: 'empty proof',
    from: 'log',
    view: ['a', 5],
    got: ['a', 13],
    tamper: () => [],
    want: 'bad-proof',
    asks: ['consistency 5 13'],
  },
  {
    name: 'proof from a tree the log did not sign (cannot bind the checkpoint: no evidence)',
    from: 'log',
    view: ['a', 5],
    got: ['b', 13],
    serves: 'a',
    want: 'bad-proof',
    asks: ['consistency 5 13'],
  },
  {
    name: 'bad proof for a rollback',
    from: 'log',
    view: ['a', 13],
    got: ['a', 5],
    tamper: flip,
    want: 'bad-proof',
    asks: ['consistency 5 13'],
  },
  {
    name: 'checkpoint signed by another key with the same name',
    from: 'log',
    view: ['a', 5],
    got: foreign.checkpoint(9),
    want: 'unsigned',
    mistake: true,
  },
  {
    name: 'checkpoint with a bad signature by the log key',
    from: 'log',
    view: ['a', 5],
    got: badSignature(trees.a.checkpoint(9)),
    want: 'unsigned',
    mistake: false,
  },
  {
    name: 'unsigned checkpoint body',
    from: 'log',
    view: ['a', 5],
    got: `${verifier.name}\n9\n${b64encode(trees.a.root(9))}\n`,
    want: 'unsigned',
    mistake: true,
  },
  { name: 'an HTML page', from: 'log', got: '<html><title>nginx</title></html>', want: 'unsigned', mistake: true },
  {
    name: 'a peer checkpoint with a bad signature',
    from: 'foreign',
    view: ['a', 5],
    got: badSignature(trees.b.checkpoint(5)),
    want: 'unsigned',
    mistake: false,
  },
];

function seenNote([t, n]: [TreeName, number], seen = seenView): NoteSeen {
  return { note: trees[t].checkpoint(n), seen };
}

/** Runs decideView as the Monitor does, serving each proof it asks for from the row's log tree. */
async function run(row: Row): Promise<{ d: ViewDecision; asks: string[] }> {
  const log = trees[row.serves ?? 'a'];
  const got: NoteSeen = typeof row.got === 'string' ? { note: row.got, seen: seenGot } : seenNote(row.got, seenGot);
  const input: ViewInput = {
    verifier,
    view: row.view && seenNote(row.view),
    got,
    from: row.from,
    proofSource: LOG,
  };
  const asks: string[] = [];
  for (let i = 0; i < 4; i++) {
    const d = decideView(input);
    if (d.kind === 'need-consistency') {
      asks.push(`consistency ${d.first} ${d.second}`);
      const p = await log.consistency(Number(d.first), Number(d.second));
      input.consistency = row.tamper ? row.tamper(p) : p;
    } else if (d.kind === 'need-inclusion') {
      asks.push(`inclusion ${d.index} ${d.size}`);
      const i = Number(d.index);
      input.inclusion = { leafHash: log.leaves[i], path: await log.inclusion(i, Number(d.size)) };
    } else return { d, asks };
  }
  throw new Error('decideView keeps asking for proofs');
}

describe('monitor view decisions', () => {
  for (const row of rows) {
    it(row.name, async () => {
      const { d, asks } = await run(row);
      expect(
        d.kind,
        JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
      ).to.equal(row.want);
      expect(asks).to.deep.equal(row.asks ?? []);
      if (d.kind === 'split') {
        expect(row.evidence, 'the row expects evidence').to.not.equal(undefined);
        const ev = d.evidence;
        expect(ev.kind).to.equal(row.evidence!.kind);
        expect(ev.checkpoints).to.deep.equal(row.evidence!.checkpoints.map(([t, n]) => trees[t].checkpoint(n)));
        // portable: it verifies offline under the log's key alone
        expect(verifyEvidence(JSON.parse(JSON.stringify(ev)), verifier).evidence).to.deep.equal(ev);
        if (ev.kind === 'inconsistent') expect(ev.detail).to.include(LOG);
      } else expect(row.evidence, 'the row expects evidence').to.equal(undefined);
      if (d.kind === 'unsigned') expect(d.mistake).to.equal(row.mistake);
      if (d.kind === 'advance' || d.kind === 'consistent')
        expect(d.cp.size).to.equal(BigInt((row.got as [TreeName, number])[1]));
    });
  }

  it('refuses to compare against a stored view the key did not sign', () => {
    const input: ViewInput = {
      verifier,
      view: { note: foreign.checkpoint(5), seen: seenView },
      got: seenNote(['a', 9]),
      from: 'log',
      proofSource: LOG,
    };
    expect(() => decideView(input))
      .to.throw(MonitorError)
      .with.property('code', 'stored-view');
  });

  it('every pair of sizes up to 16: growth advances, rollback is caught, a fork is evidence', async () => {
    for (let m = 0; m <= 16; m++) {
      for (let n = 0; n <= 16; n++) {
        if (m === n) continue;
        const fork = m > 0 && n > 0; // trees a and b share no leaves: any two non-empty prefixes disagree
        const row: Row = {
          name: `${m} -> ${n}`,
          from: 'log',
          view: ['a', m],
          got: ['b', n],
          serves: n > m ? 'b' : 'a',
          want: 'first',
        };
        const { d } = await run(row);
        const want = !fork ? (n > m ? 'advance' : 'rollback') : 'split';
        expect(d.kind, `${m} -> ${n}`).to.equal(want);
        if (d.kind === 'split') verifyEvidence(d.evidence, verifier);
      }
    }
  });
});
