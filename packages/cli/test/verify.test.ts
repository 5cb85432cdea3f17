import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  KEY_TYPE_COSIGNATURE,
  addSignatures,
  b64encode,
  canonicalJson,
  cosignCheckpoint,
  formatCheckpoint,
  formatTlogProof,
  generateKey,
  hashLeaf,
  merkleRoot,
  parsePrivateKey,
  signCheckpoint,
  utf8,
  type Hash,
} from '@trailmark/tlog';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function run(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A tiny in-test RFC 6962 tree: PATH and PROOF straight from RFC 6962 section 2.1. */
function path(m: number, leaves: Hash[]): Hash[] {
  if (leaves.length <= 1) return [];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  if (m < k) return [...path(m, leaves.slice(0, k)), merkleRoot(leaves.slice(k))];
  return [...path(m - k, leaves.slice(k)), merkleRoot(leaves.slice(0, k))];
}
function subproof(m: number, leaves: Hash[], b: boolean): Hash[] {
  const n = leaves.length;
  if (m === n) return b ? [] : [merkleRoot(leaves)];
  let k = 1;
  while (k * 2 < n) k *= 2;
  if (m <= k) return [...subproof(m, leaves.slice(0, k), b), merkleRoot(leaves.slice(k))];
  return [...subproof(m - k, leaves.slice(k), false), merkleRoot(leaves.slice(0, k))];
}

const seed = (n: number) => new Uint8Array(32).fill(n);
const ORIGIN = 'example.com/trail';
const logKey = generateKey(ORIGIN, 1, seed(1));
const log = parsePrivateKey(logKey.privateKey);
const wKeys = [1, 2].map((i) => generateKey(`w${i}.example`, KEY_TYPE_COSIGNATURE, seed(30 + i)));
const entries = Array.from({ length: 11 }, (_, i) => ({ schema: 'trailmark.access/v1', id: `e${i}`, n: i }));
const leaves = entries.map((e) => hashLeaf(canonicalJson(e)));
const cpAt = (n: number) => ({ origin: ORIGIN, size: BigInt(n), root: merkleRoot(leaves.slice(0, n)), extensions: [] });
const signedAt = (n: number) => signCheckpoint(cpAt(n), log);

describe('trailmark verify', () => {
  let dir: string;
  const file = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    return name;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trailmark-verify-'));
    file('log.pub', logKey.vkey + '\n');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('inclusion', () => {
    const proofFor = (i: number, checkpoint = signedAt(11), extra?: Uint8Array) =>
      formatTlogProof({ index: i, proof: path(i, leaves), checkpoint, ...(extra ? { extra } : {}) });

    it('verifies an entry (canonicalized first) with the key as a file or a string', () => {
      file('p.tlog-proof', proofFor(4));
      // same entry, different key order and whitespace: RFC 8785 makes it the same leaf
      file('e.json', '{ "n": 4, "id": "e4",\n "schema": "trailmark.access/v1" }\n');
      let r = run(['verify', 'inclusion', '--key', 'log.pub', '--proof', 'p.tlog-proof', '--entry', 'e.json'], dir);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/verified: leaf 4 .* example\.com\/trail at tree size 11/);
      r = run(
        [
          '--json',
          'verify',
          'inclusion',
          '--key',
          logKey.vkey,
          '--proof',
          'p.tlog-proof',
          '--leaf-hash',
          b64encode(leaves[4]),
        ],
        dir,
      );
      expect(r.code, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out).to.include({
        ok: true,
        origin: ORIGIN,
        leaf_index: 4,
        tree_size: 11,
        leaf_hash: b64encode(leaves[4]),
      });
    });

    it('carries extra data and says it is not authenticated', () => {
      file('p.tlog-proof', proofFor(0, signedAt(11), utf8('context')));
      const r = run(
        ['verify', 'inclusion', '--key', 'log.pub', '--proof', 'p.tlog-proof', '--leaf-hash', b64encode(leaves[0])],
        dir,
      );
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/not authenticated/);
    });

    it('exit 1 with a one-line reason when verification fails', () => {
      file('p.tlog-proof', proofFor(4));
      file('other.json', JSON.stringify({ ...entries[4], n: 5 }));
      const tampered = proofFor(4).replace('\nindex 4\n', '\nindex 5\n');
      file('t.tlog-proof', tampered);
      const cases = [
        ['--proof', 'p.tlog-proof', '--entry', 'other.json', '--key', 'log.pub'],
        ['--proof', 'p.tlog-proof', '--leaf-hash', b64encode(leaves[5]), '--key', 'log.pub'],
        ['--proof', 't.tlog-proof', '--leaf-hash', b64encode(leaves[4]), '--key', 'log.pub'],
      ];
      for (const c of cases) {
        const r = run(['verify', 'inclusion', ...c], dir);
        expect(r.code, `${c.join(' ')}: ${r.stderr}`).to.equal(1);
        expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1);
        expect(r.stdout).to.equal('');
      }
      const r = run(['--json', 'verify', 'inclusion', ...cases[0]], dir);
      expect(r.code).to.equal(1);
      expect(JSON.parse(r.stdout)).to.include({ ok: false, exit: 1 });
    });

    it('exit 2 for usage and I/O errors', () => {
      file('p.tlog-proof', proofFor(4));
      file('bad.json', '{"a":');
      file('arr.json', '[1,2]');
      file('bad.policy', 'quorum nobody\n');
      file('garbage.tlog-proof', 'not a proof\n');
      file('e.html', '<!doctype html><html><title>Index</title></html>\n');
      const h = b64encode(leaves[4]);
      const cases = [
        ['--key', 'log.pub', '--proof', 'missing.tlog-proof', '--leaf-hash', h],
        ['--key', 'missing.pub', '--proof', 'p.tlog-proof', '--leaf-hash', h],
        ['--key', 'not+a+vkey', '--proof', 'p.tlog-proof', '--leaf-hash', h],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof'],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof', '--leaf-hash', h, '--entry', 'bad.json'],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof', '--entry', 'bad.json'],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof', '--entry', 'arr.json'],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof', '--leaf-hash', 'AAAA'],
        ['--key', 'log.pub', '--proof', 'p.tlog-proof', '--leaf-hash', h, '--policy', 'bad.policy'],
        ['--proof', 'p.tlog-proof', '--leaf-hash', h],
        // mistakes, not evidence (contract section 6): a key for another log, a file that is not a tlog-proof
        ['--key', generateKey(ORIGIN, 1, seed(9)).vkey, '--proof', 'p.tlog-proof', '--leaf-hash', h],
        ['--key', generateKey('other.example/log', 1, seed(9)).vkey, '--proof', 'p.tlog-proof', '--leaf-hash', h],
        ['--key', 'log.pub', '--proof', 'garbage.tlog-proof', '--leaf-hash', h],
        ['--key', 'log.pub', '--proof', 'e.html', '--leaf-hash', h],
      ];
      for (const c of cases) {
        const r = run(['verify', 'inclusion', ...c], dir);
        expect(r.code, `${c.join(' ')}: ${r.stderr}`).to.equal(2);
      }
    });

    it('--policy: quorum enforced, bad known cosignature fails', () => {
      const body = formatCheckpoint(cpAt(11));
      const ws = wKeys.map((k) => parsePrivateKey(k.privateKey));
      file(
        'p.policy',
        `log ${logKey.vkey}\nwitness A ${wKeys[0].vkey}\nwitness B ${wKeys[1].vkey}\ngroup g all A B\nquorum g\n`,
      );
      const both = addSignatures(
        signedAt(11),
        ws.map((w) => cosignCheckpoint(body, w, 1700000000)),
      );
      const one = addSignatures(signedAt(11), [cosignCheckpoint(body, ws[0], 1700000000)]);
      const bad = addSignatures(one, [cosignCheckpoint(formatCheckpoint(cpAt(10)), ws[1], 1700000000)]);
      file('both.tlog-proof', proofFor(3, both));
      file('one.tlog-proof', proofFor(3, one));
      file('bad.tlog-proof', proofFor(3, bad));
      const args = (p: string) => [
        'verify',
        'inclusion',
        '--key',
        'log.pub',
        '--proof',
        p,
        '--leaf-hash',
        b64encode(leaves[3]),
        '--policy',
        'p.policy',
      ];
      let r = run(args('both.tlog-proof'), dir);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/quorum met \(A, B\)/);
      r = run(args('one.tlog-proof'), dir);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/quorum/);
      r = run(args('bad.tlog-proof'), dir);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/cosignature by witness B/);
      // without --policy the cosignatures are not required
      r = run(args('one.tlog-proof').slice(0, -2), dir);
      expect(r.code, r.stderr).to.equal(0);
    });
  });

  describe('consistency', () => {
    const doc = (m: number, n: number, proof = subproof(m, leaves.slice(0, n), true)) =>
      JSON.stringify({ old_checkpoint: signedAt(m), new_checkpoint: signedAt(n), proof: proof.map(b64encode) });

    it('verifies consistency between checkpoints', () => {
      for (const [m, n] of [
        [1, 11],
        [4, 11],
        [7, 11],
        [11, 11],
        [3, 8],
      ]) {
        file('c.json', doc(m, n));
        const r = run(['verify', 'consistency', '--key', 'log.pub', '--proof', 'c.json'], dir);
        expect(r.code, `${m}->${n}: ${r.stderr}`).to.equal(0);
        expect(r.stdout).to.match(new RegExp(`tree size ${n} is consistent with tree size ${m}`));
      }
      file('c.json', doc(5, 11));
      const r = run(['--json', 'verify', 'consistency', '--key', logKey.vkey, '--proof', 'c.json'], dir);
      expect(JSON.parse(r.stdout)).to.include({ ok: true, old_tree_size: 5, new_tree_size: 11 });
    });

    it('exit 1 for a forked history, a tampered proof or a wrong signature', () => {
      const forkLeaves = leaves.slice(0, 11);
      forkLeaves[2] = hashLeaf(utf8('{"evil":true}'));
      const forked = signCheckpoint({ origin: ORIGIN, size: 11n, root: merkleRoot(forkLeaves), extensions: [] }, log);
      const good = JSON.parse(doc(4, 11));
      const variants = [
        { ...good, new_checkpoint: forked, proof: subproof(4, forkLeaves, true).map(b64encode) },
        { ...good, proof: good.proof.slice(1) },
        { ...good, proof: [...good.proof].reverse() },
        { ...good, old_checkpoint: signedAt(5) },
        { ...good, old_checkpoint: signedAt(11), new_checkpoint: signedAt(4) },
        { ...good, new_checkpoint: good.new_checkpoint.replace('\n11\n', '\n12\n') },
      ];
      for (const v of variants) {
        file('c.json', JSON.stringify(v));
        const r = run(['verify', 'consistency', '--key', 'log.pub', '--proof', 'c.json'], dir);
        expect(r.code, r.stderr).to.equal(1);
        expect(r.stderr.trim().split('\n')).to.have.length(1);
      }
      // same size, different roots
      file('c.json', JSON.stringify({ old_checkpoint: signedAt(11), new_checkpoint: forked, proof: [] }));
      expect(run(['verify', 'consistency', '--key', 'log.pub', '--proof', 'c.json'], dir).code).to.equal(1);
    });

    it('exit 2 for usage and I/O errors', () => {
      file('c.json', doc(4, 11));
      expect(run(['verify', 'consistency', '--key', 'log.pub', '--proof', 'nope.json'], dir).code).to.equal(2);
      expect(run(['verify', 'consistency', '--key', 'nope.pub', '--proof', 'c.json'], dir).code).to.equal(2);
      expect(run(['verify', 'consistency', '--proof', 'c.json'], dir).code).to.equal(2);
      expect(run(['verify', 'consistency', '--key', 'log.pub'], dir).code).to.equal(2);
      // a checkpoint signed by another key, a malformed or incomplete proof file: mistakes, not evidence
      const good = JSON.parse(doc(4, 11));
      for (const v of [
        {
          ...good,
          old_checkpoint: signCheckpoint(cpAt(4), parsePrivateKey(generateKey(ORIGIN, 1, seed(8)).privateKey)),
        },
        { ...good, proof: ['!!'] },
        { old_checkpoint: good.old_checkpoint },
      ]) {
        file('c.json', JSON.stringify(v));
        const r = run(['verify', 'consistency', '--key', 'log.pub', '--proof', 'c.json'], dir);
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr.trim().split('\n')).to.have.length(1);
      }
    });
  });
});
