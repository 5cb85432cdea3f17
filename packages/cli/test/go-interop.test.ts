/**
 * Go -> Trailmark through the CLI: `trailmark verify inclusion|consistency` with a vkey from Go's
 * note.GenerateKey, checkpoints signed by Go's note.Sign and proofs from Go's tlog.ProveRecord / ProveTree
 * (fixtures in packages/tlog/test/vectors/go-interop, written by scripts/interop/go; Go is not needed here).
 * The exhaustive byte-mutation sweep runs in-process in packages/tlog/test/go-interop.test.ts; here a handful
 * of mutations go through the real binary, and must agree with the library.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TlogError, b64decode, formatTlogProof, parseVkey, verifyTlogProof } from '@trailmark/tlog';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const FIXTURES = new URL('../../tlog/test/vectors/go-interop/fixtures.json', import.meta.url);

interface GoTree {
  name: string;
  origin: string;
  size: number;
  leaf_hashes: string[];
  sizes: { size: number; root: string; checkpoint: string }[];
  record_proofs: { index: number; size: number; proof: string[] }[];
  tree_proofs: { old_size: number; new_size: number; proof: string[] }[];
}
const fx: { keys: { name: string; vkey: string }[]; trees: GoTree[] } = JSON.parse(readFileSync(FIXTURES, 'utf8'));
const big = fx.trees.find((t) => t.name === 'big')!;
const vkey = fx.keys.find((k) => k.name === big.origin)!.vkey;
const checkpoint = (size: number) => big.sizes.find((s) => s.size === size)!.checkpoint;

function run(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Replaces the character at `at` (a code unit index into s) by the one with bit `bit` flipped. */
function flip(s: string, at: number, bit = 0): string {
  return s.slice(0, at) + String.fromCharCode(s.charCodeAt(at) ^ (1 << bit)) + s.slice(at + 1);
}

describe('trailmark verify with Go x/mod/sumdb data', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trailmark-go-interop-'));
    writeFileSync(join(dir, 'go.pub'), vkey + '\n');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // index 700 of 1337: an 11-hash proof, with a three-digit index
  const p = big.record_proofs.find((r) => r.index === 700 && r.size === 1337)!;
  const leafHash = big.leaf_hashes[p.index];
  const proofText = formatTlogProof({
    index: p.index,
    proof: p.proof.map((h) => b64decode(h)),
    checkpoint: checkpoint(p.size),
  });

  it('verify inclusion accepts a tlog-proof made of a Go-signed checkpoint and a tlog.ProveRecord proof', () => {
    writeFileSync(join(dir, 'p.tlog-proof'), proofText);
    let r = run(['verify', 'inclusion', '--key', vkey, '--proof', 'p.tlog-proof', '--leaf-hash', leafHash], dir);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/verified: leaf 700 .* go\.example\/big-log at tree size 1337/);
    r = run(
      ['--json', 'verify', 'inclusion', '--key', 'go.pub', '--proof', 'p.tlog-proof', '--leaf-hash', leafHash],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const root = big.sizes.find((s) => s.size === 1337)!.root;
    expect(JSON.parse(r.stdout)).to.include({
      ok: true,
      origin: big.origin,
      leaf_index: 700,
      tree_size: 1337,
      leaf_hash: leafHash,
      root_hash: root,
    });
  });

  it('verify inclusion exits 1 for single-byte mutations of the index, proof hashes and checkpoint (as the library does)', () => {
    const lines = proofText.split('\n');
    const at = (line: number, col: number) => lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0) + col;
    const cpStart = proofText.indexOf('\n\n') + 2;
    const cp = proofText.slice(cpStart);
    const mutations: [string, string][] = [
      ['index digit', flip(proofText, at(1, 'index '.length + 1))],
      ['first proof hash', flip(proofText, at(2, 5), 1)],
      ['last proof hash', flip(proofText, at(2 + p.proof.length - 1, 40), 2)],
      ['checkpoint origin', flip(proofText, cpStart + 3)],
      ['checkpoint size', flip(proofText, cpStart + cp.indexOf('\n') + 2)],
      ['checkpoint root', flip(proofText, cpStart + cp.indexOf('\n', cp.indexOf('\n') + 1) + 9, 3)],
      ['signature', flip(proofText, proofText.length - 20)],
    ];
    const verifier = parseVkey(vkey);
    for (const [what, text] of mutations) {
      expect(text.length).to.equal(proofText.length);
      expect(() => verifyTlogProof(text, b64decode(leafHash), verifier), what).to.throw(TlogError);
      writeFileSync(join(dir, 'bad.tlog-proof'), text);
      const r = run(
        ['verify', 'inclusion', '--key', 'go.pub', '--proof', 'bad.tlog-proof', '--leaf-hash', leafHash],
        dir,
      );
      expect(r.code, `${what}: ${r.stdout}${r.stderr}`).to.equal(1);
    }
  });

  it('verify inclusion exits 1 for another Go leaf hash', () => {
    writeFileSync(join(dir, 'p.tlog-proof'), proofText);
    const r = run(
      ['verify', 'inclusion', '--key', 'go.pub', '--proof', 'p.tlog-proof', '--leaf-hash', big.leaf_hashes[701]],
      dir,
    );
    expect(r.code, r.stderr).to.equal(1);
  });

  it('verify consistency accepts Go-signed checkpoints with a tlog.ProveTree proof, and exits 1 when it is tampered with', () => {
    const t = big.tree_proofs.find((x) => x.old_size === 1000 && x.new_size === 1337)!;
    const doc = { old_checkpoint: checkpoint(t.old_size), new_checkpoint: checkpoint(t.new_size), proof: t.proof };
    writeFileSync(join(dir, 'c.json'), JSON.stringify(doc));
    let r = run(['--json', 'verify', 'consistency', '--key', vkey, '--proof', 'c.json'], dir);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ ok: true, origin: big.origin, old_tree_size: 1000, new_tree_size: 1337 });

    const bad = { ...doc, proof: [...t.proof] };
    bad.proof[1] = flip(bad.proof[1], 10);
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(bad));
    r = run(['verify', 'consistency', '--key', 'go.pub', '--proof', 'bad.json'], dir);
    expect(r.code, r.stderr).to.equal(1);

    // the proof for 1000 -> 1337 does not prove any other pair of Go checkpoints
    const other = big.tree_proofs.find((x) => x.new_size === 1337 && x.old_size !== 1000 && x.old_size !== 1337)!;
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ ...doc, old_checkpoint: checkpoint(other.old_size) }));
    r = run(['verify', 'consistency', '--key', 'go.pub', '--proof', 'other.json'], dir);
    expect(r.code, r.stderr).to.equal(1);
  });
});
