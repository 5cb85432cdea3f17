/**
 * The monitor's tlog-witness endpoint over real HTTP, on a real LevelDB: every status code of
 * C2SP tlog-witness v1.0.0, cosignatures per tlog-cosignature v1.0.1, persistence across a restart, and the
 * atomicity of check-and-record under concurrent requests.
 */
import { silentLogger } from '@trailmark/node';
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addSignatures,
  formatAddCheckpoint,
  generateKey,
  KEY_TYPE_COSIGNATURE,
  parseNote,
  parsePrivateKey,
  parseVkey,
  verifyCosignature,
  type Hash,
} from '@trailmark/tlog';
import { startMonitor, type RunningMonitor } from '@trailmark/monitor';
import { TestTree } from './lib/tree.js';

const ORIGIN = 'witness-test.example/log';
const seed = (n: number) => new Uint8Array(32).fill(n);
const logKey = generateKey(ORIGIN, 1, seed(7));
const logSigner = parsePrivateKey(logKey.privateKey);
const impostor = parsePrivateKey(generateKey(ORIGIN, 1, seed(8)).privateKey);
const otherLog = parsePrivateKey(generateKey('other.example/log', 1, seed(9)).privateKey);
const witnessKey = generateKey('witness-test.example/w1', KEY_TYPE_COSIGNATURE, seed(10));
const witnessVerifier = parseVkey(witnessKey.vkey);

function body(old: number, proof: Hash[], note: string): string {
  return formatAddCheckpoint({ oldSize: BigInt(old), proof, note });
}

describe('witness: POST /add-checkpoint (tlog-witness v1.0.0)', function () {
  this.timeout(20_000);
  let dir: string;
  let w: RunningMonitor;
  const tree = new TestTree(logSigner, 40, 'a');
  const fork = new TestTree(logSigner, 40, 'b');

  const start = async () =>
    startMonitor({
      logs: [{ url: 'http://127.0.0.1:9/unused', vkey: logKey.vkey }],
      witnessKey: witnessKey.privateKey,
      dataDir: dir,
      listen: '127.0.0.1:0',
      follow: false,
      logger: silentLogger,
    });
  const post = async (text: string) => {
    const r = await fetch(`${w.url}/add-checkpoint`, { method: 'POST', body: text });
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trailmark-witness-'));
    w = await start();
  });
  after(async () => {
    await w?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('404 for an unknown origin', async () => {
    const t = new TestTree(otherLog, 3);
    const r = await post(body(0, [], t.checkpoint(3)));
    expect(r.status).to.equal(404);
  });

  it('403 when no signature verifies against the trusted key (same origin, other key)', async () => {
    const t = new TestTree(impostor, 3);
    expect((await post(body(0, [], t.checkpoint(3)))).status).to.equal(403);
  });

  it('403 when the trusted key signature is corrupted', async () => {
    const note = tree.checkpoint(3);
    const sig = note.trimEnd().split(' ').pop()!;
    const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
    expect((await post(body(0, [], note.replace(sig, flipped)))).status).to.equal(403);
  });

  it('400 for malformed bodies', async () => {
    for (const b of [
      '',
      'old 01\n\n' + tree.checkpoint(3),
      'old x\n\n' + tree.checkpoint(3),
      'old 0\nnot-base64\n\n' + tree.checkpoint(3),
      'old 0\n' + tree.checkpoint(3),
      body(0, [], 'not a note\n'),
      body(0, Array(64).fill(tree.root(1)), tree.checkpoint(3)),
    ]) {
      const r = await post(b);
      expect(r.status, JSON.stringify(b.slice(0, 20))).to.equal(400);
    }
  });

  it('400 when the old size is larger than the checkpoint size', async () => {
    expect((await post(body(5, [], tree.checkpoint(3)))).status).to.equal(400);
  });

  it('200 with a verifying cosignature for a first checkpoint (old 0, empty proof)', async () => {
    const note = tree.checkpoint(5);
    const r = await post(body(0, [], note));
    expect(r.status).to.equal(200);
    expect(r.text).to.match(/^— witness-test\.example\/w1 [A-Za-z0-9+/=]+\n$/);
    const ts = verifyCosignature(parseNote(note).text, r.text, witnessVerifier);
    expect(Number(ts)).to.be.closeTo(Date.now() / 1000, 5);
    // the response lines append to the note and verify as a cosigned checkpoint
    expect(addSignatures(note, r.text)).to.contain(r.text);
  });

  it('409 with text/x.tlog.size and the cosigned size when the old size does not match', async () => {
    const r = await post(body(0, [], tree.checkpoint(9)));
    expect(r.status).to.equal(409);
    expect(r.type).to.equal('text/x.tlog.size');
    expect(r.text).to.equal('5\n');
    const r2 = await post(body(3, await tree.consistency(3, 9), tree.checkpoint(9)));
    expect(r2.status).to.equal(409);
    expect(r2.text).to.equal('5\n');
  });

  it('422 when the consistency proof does not verify (a fork signed by the same key)', async () => {
    expect((await post(body(5, await fork.consistency(5, 9), fork.checkpoint(9)))).status).to.equal(422);
    const proof = await tree.consistency(5, 9);
    proof[0] = proof[1];
    expect((await post(body(5, proof, tree.checkpoint(9)))).status).to.equal(422);
    expect((await post(body(5, [], tree.checkpoint(9)))).status).to.equal(422);
  });

  it('200 for a consistent extension, then 409 for a different root at the cosigned size', async () => {
    const r = await post(body(5, await tree.consistency(5, 9), tree.checkpoint(9)));
    expect(r.status).to.equal(200);
    verifyCosignature(parseNote(tree.checkpoint(9)).text, r.text, witnessVerifier);
    const same = await post(body(9, [], tree.checkpoint(9)));
    expect(same.status).to.equal(200);
    const other = await post(body(9, [], fork.checkpoint(9)));
    expect(other.status).to.equal(409);
    expect(other.type).to.equal('text/x.tlog.size');
    expect(other.text).to.equal('9\n');
  });

  it('cosigns exactly one of two concurrent extensions of the same old size', async () => {
    const [a, b] = await Promise.all([
      post(body(9, await tree.consistency(9, 12), tree.checkpoint(12))),
      post(body(9, await tree.consistency(9, 16), tree.checkpoint(16))),
    ]);
    expect([a.status, b.status].sort()).to.deep.equal([200, 409]);
  });

  it('keeps the last cosigned checkpoint across a restart (never cosigns a rolled-back tree)', async () => {
    const before = await post(body(0, [], tree.checkpoint(20)));
    expect(before.status).to.equal(409);
    const size = BigInt(before.text.trim());
    await w.close();
    w = await start();
    const after = await post(body(0, [], tree.checkpoint(20)));
    expect(after.status).to.equal(409);
    expect(after.text).to.equal(`${size}\n`);
    expect((await post(body(Number(size), [], fork.checkpoint(Number(size))))).status).to.equal(409);
    const ok = await post(body(Number(size), await tree.consistency(Number(size), 20), tree.checkpoint(20)));
    expect(ok.status).to.equal(200);
  });

  it('counts requests by status in /metrics', async () => {
    const text = await (await fetch(`${w.url}/metrics`)).text();
    expect(text).to.match(/trailmark_witness_requests_total\{status="200"\} 1/);
  });
});
