import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  b64decode,
  canonicalJson,
  hashLeaf,
  openCheckpoint,
  parseVkey,
  verifyConsistency,
  verifyTlogProof,
} from '@trailmark/tlog';
import { LogReader, fetchVerifiedCheckpoint, proveConsistencyFromTiles, verifiedLogFromNote } from '@trailmark/client';
import { cli, event, tamperedLogSuite, type TamperProxy, type TestLog } from './auditor-helpers.js';

describe('trailmark prove (real log server, real HTTP)', function () {
  this.timeout(60_000);
  let log: TestLog;
  let proxy: TamperProxy;
  let dir: string;
  /** Signed checkpoints the log returned for many tree sizes. */
  const checkpoints: { size: number; checkpoint: string }[] = [];

  tamperedLogSuite(
    'tm-prove-cli-',
    async (l) => {
      // sizes around tile and power-of-two boundaries
      for (const n of [1, 1, 1, 252, 1, 1, 43, 211, 1, 1, 300, 490]) checkpoints.push(...(await l.add(n)));
    },
    (s) => ({ dir, log, proxy } = s),
  );

  it('prove inclusion --index writes a tlog-proof that verifies offline (tlog and trailmark verify)', async () => {
    for (const i of [0, 255, 256, 1302]) {
      const out = `p${i}.tlog-proof`;
      const r = await cli(
        ['prove', 'inclusion', '--log', log.server.url, '--key', log.server.vkey, '--index', String(i), '--out', out],
        dir,
      );
      expect(r.code, r.stderr).to.equal(0);
      const text = readFileSync(join(dir, out), 'utf8');
      const leaf = hashLeaf(canonicalJson(event(i)));
      const v = verifyTlogProof(text, leaf, parseVkey(log.server.vkey));
      expect(v.index).to.equal(BigInt(i));
      expect(v.checkpoint.size).to.equal(BigInt(log.size));
      writeFileSync(join(dir, `e${i}.json`), JSON.stringify(event(i), null, 2));
      const ok = await cli(
        ['verify', 'inclusion', '--key', log.server.vkey, '--proof', out, '--entry', `e${i}.json`],
        dir,
      );
      expect(ok.code, ok.stderr).to.equal(0);
      // the same proof does not verify for a neighbouring entry
      writeFileSync(join(dir, 'other.json'), JSON.stringify(event(i + 1)));
      expect(
        (await cli(['verify', 'inclusion', '--key', log.server.vkey, '--proof', out, '--entry', 'other.json'], dir))
          .code,
      ).to.equal(1);
    }
  });

  it('prove inclusion --entry finds the entry by hash even when the log lies about where it is', async () => {
    writeFileSync(join(dir, 'e700.json'), JSON.stringify(event(700)));
    proxy.rewrite = (p, b) => (p === '/v1/get-proof-by-hash' ? Buffer.from('{"leaf_index": 3, "audit_path": []}') : b);
    const r = await cli(
      ['prove', 'inclusion', '--log', proxy.url, '--key', log.server.vkey, '--entry', 'e700.json', '--json'],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).to.include({ ok: true, leaf_index: 700, tree_size: log.size });
    verifyTlogProof(doc.proof, hashLeaf(canonicalJson(event(700))), parseVkey(log.server.vkey));

    writeFileSync(join(dir, 'absent.json'), JSON.stringify({ not: 'logged' }));
    // an entry that is not logged is not evidence of anything: exit 2, not 1 (contract section 6)
    const absent = await cli(
      ['prove', 'inclusion', '--log', log.server.url, '--key', log.server.vkey, '--entry', 'absent.json'],
      dir,
    );
    expect(absent.code).to.equal(2);
    expect(absent.stderr).to.match(/no entry with leaf hash \S+ in the log at tree size \d+/);
  });

  it('prove inclusion exits 1 when a tile on the path is tampered, 2 on usage errors and a missing index', async () => {
    proxy.rewrite = (p, b) =>
      p === '/tile/0/001' ? Buffer.concat([b.subarray(0, 32 * 9), Buffer.alloc(32, 7), b.subarray(32 * 10)]) : b;
    const r = await cli(['prove', 'inclusion', '--log', proxy.url, '--key', log.server.vkey, '--index', '260'], dir);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/verification failed: tile\/0\/001 hashes to \S+, but verified parent tile 1\/0 holds/);
    const both = await cli(
      ['prove', 'inclusion', '--log', log.server.url, '--key', log.server.vkey, '--index', '1', '--entry', 'x.json'],
      dir,
    );
    expect(both.code).to.equal(2);
    expect(both.stderr).to.contain('give exactly one of --index I or --entry FILE.json');
    const far = await cli(
      ['prove', 'inclusion', '--log', log.server.url, '--key', log.server.vkey, '--index', String(log.size)],
      dir,
    );
    expect(far.code).to.equal(2); // a missing index is a mistake, not misbehaviour
    expect(far.stderr).to.contain(`leaf index ${log.size} is not below the checkpoint's tree size ${log.size}`);
    expect(
      (await cli(['prove', 'inclusion', '--log', log.server.url, '--key', log.server.vkey, '--index', '-1'], dir)).code,
    ).to.equal(2);
  });

  it('prove consistency writes {old_checkpoint, new_checkpoint, proof} that trailmark verify consistency accepts', async () => {
    const oldCp = checkpoints[5];
    writeFileSync(join(dir, 'old.cp'), oldCp.checkpoint);
    const r = await cli(
      ['prove', 'consistency', '--log', log.server.url, '--key', log.server.vkey, '--old', 'old.cp', '--out', 'c.json'],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const doc = JSON.parse(readFileSync(join(dir, 'c.json'), 'utf8'));
    expect(Object.keys(doc)).to.deep.equal(['old_checkpoint', 'new_checkpoint', 'proof']);
    expect(doc.old_checkpoint).to.equal(oldCp.checkpoint);
    const ok = await cli(['verify', 'consistency', '--key', log.server.vkey, '--proof', 'c.json'], dir);
    expect(ok.code, ok.stderr).to.equal(0);
    // a proof with one hash changed fails offline
    doc.proof[0] = doc.proof[1];
    writeFileSync(join(dir, 'c-bad.json'), JSON.stringify(doc));
    expect(
      (await cli(['verify', 'consistency', '--key', log.server.vkey, '--proof', 'c-bad.json'], dir)).code,
    ).to.equal(1);
    // a file of another kind where the old checkpoint belongs: exit 2, saying what it is and what to give
    const proofFile = await cli(
      [
        'prove',
        'inclusion',
        '--log',
        log.server.url,
        '--key',
        log.server.vkey,
        '--index',
        '0',
        '--out',
        'p.tlog-proof',
      ],
      dir,
    );
    expect(proofFile.code, proofFile.stderr).to.equal(0);
    writeFileSync(join(dir, 'entry.json'), JSON.stringify(event(1)));
    for (const [file, kind] of [
      ['p.tlog-proof', /is a tlog-proof, not a checkpoint/],
      ['entry.json', /is JSON without a new_checkpoint member/],
    ] as const) {
      const r = await cli(
        ['prove', 'consistency', '--log', log.server.url, '--key', log.server.vkey, '--old', file],
        dir,
      );
      expect(r.code, file).to.equal(2);
      expect(r.stderr, file)
        .to.match(kind)
        .and.to.match(/trailmark checkpoint --out FILE/);
    }
    // an old checkpoint not signed by this key is the caller's mistake: exit 2
    writeFileSync(join(dir, 'forged.cp'), oldCp.checkpoint.replace(/\n\d+\n/, '\n2\n'));
    expect(
      (
        await cli(
          ['prove', 'consistency', '--log', log.server.url, '--key', log.server.vkey, '--old', 'forged.cp'],
          dir,
        )
      ).code,
    ).to.equal(2);
  });

  it('consistency proofs from verified tiles verify between every pair of sizes the log signed', async () => {
    const key = parseVkey(log.server.vkey);
    const reader = new LogReader(log.server.url);
    const latest = await fetchVerifiedCheckpoint(reader, key);
    let pairs = 0;
    for (const newer of checkpoints) {
      const n = verifiedLogFromNote(reader, newer.checkpoint, key);
      for (const older of checkpoints) {
        if (older.size > newer.size) continue;
        const m = openCheckpoint(older.checkpoint, key).checkpoint;
        const proof = await proveConsistencyFromTiles(n, m);
        verifyConsistency(m.size, n.checkpoint.size, proof, m.root, n.checkpoint.root);
        pairs++;
      }
      // and the proof to the latest, with the hashes as written to the file
      const m = openCheckpoint(newer.checkpoint, key).checkpoint;
      const proof = (await proveConsistencyFromTiles(latest, m)).map((h) =>
        b64decode(Buffer.from(h).toString('base64')),
      );
      verifyConsistency(m.size, latest.checkpoint.size, proof, m.root, latest.checkpoint.root);
    }
    expect(pairs).to.equal((checkpoints.length * (checkpoints.length + 1)) / 2);
  });

  it('trailmark checkpoint verifies, prints and saves the checkpoint; exit 1 on a bad signature', async () => {
    const r = await cli(
      ['checkpoint', '--log', log.server.url, '--key', log.server.vkey, '--out', 'now.cp', '--json'],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).to.include({ ok: true, origin: 'localhost/trailmark', tree_size: log.size });
    expect(readFileSync(join(dir, 'now.cp'), 'utf8')).to.equal(doc.checkpoint);
    proxy.rewrite = (p, b) =>
      p === '/checkpoint' ? Buffer.from(b.toString().replace(`\n${log.size}\n`, `\n${log.size + 1}\n`)) : b;
    const bad = await cli(['checkpoint', '--log', proxy.url, '--key', log.server.vkey], dir);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain('checkpoint signature by log key localhost/trailmark does not verify');
  });
});
