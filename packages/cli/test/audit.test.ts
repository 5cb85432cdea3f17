import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cli,
  closedPort,
  flipByte,
  startTestLog,
  tamperedLogSuite,
  type TamperProxy,
  type TestLog,
} from './auditor-helpers.js';

describe('trailmark audit (real log server, real HTTP)', function () {
  this.timeout(60_000);
  let log: TestLog;
  let proxy: TamperProxy;
  let dir: string;
  const audit = (...extra: string[]) => cli(['audit', '--log', proxy.url, '--key', log.server.vkey, ...extra], dir);

  // five full bundles and a partial one; a partial level-1 tile
  tamperedLogSuite(
    'tm-audit-cli-',
    (l) => l.add(1300),
    (s) => ({ dir, log, proxy } = s),
  );

  it('passes on an honest log, with a CloudTrail-style summary', async () => {
    const r = await audit();
    expect(r.stderr).to.equal('');
    expect(r.code).to.equal(0);
    expect(r.stdout).to.equal(
      'localhost/trailmark: 1300/1300 entries verified, 7/7 tiles verified, root matches checkpoint 1300\n',
    );
    const j = await audit('--json');
    expect(j.code).to.equal(0);
    const doc = JSON.parse(j.stdout);
    expect(doc).to.include({
      ok: true,
      tree_size: 1300,
      entries_verified: 1300,
      tiles_verified: 7,
      tiles_total: 7,
      from_size: 0,
    });
  });

  it('exits 1 naming the entry when one byte of an entry bundle is flipped', async () => {
    proxy.rewrite = (p, b) => (p === '/tile/entries/001' ? flipByte(b, 2 + 5) : b);
    const r = await audit();
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.match(
      /^trailmark: verification failed: entry 256 \(tile\/entries\/001, position 0\): leaf hash \S+ does not match \S+ in verified tile\/0\/001\n$/,
    );
    const j = await audit('--json');
    expect(JSON.parse(j.stdout)).to.include({
      ok: false,
      exit: 1,
      reason: 'entry-mismatch',
      tile: 'tile/entries/001',
      leaf_index: 256,
    });
  });

  it('exits 1 naming the tile when one byte of a full tile is flipped', async () => {
    proxy.rewrite = (p, b) => (p === '/tile/0/003' ? flipByte(b, 77) : b);
    const r = await audit();
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      /verification failed: tile\/0\/003 hashes to \S+, but verified parent tile 1\/0 holds \S+ at position 3/,
    );
    // the same verdict with every check on one thread (no worker pool)
    const single = await audit('--workers', '0');
    expect(single.code).to.equal(1);
    expect(single.stderr).to.equal(r.stderr);
    proxy.reset();
    expect((await audit('--workers', '0')).stdout).to.contain('1300/1300 entries verified, 7/7 tiles verified');
  });

  it('exits 1 when a tile of the right edge does not recompute the root', async () => {
    proxy.rewrite = (p, b) => (p === '/tile/1/000.p/5' ? flipByte(b, 40) : b);
    const r = await audit();
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      /right-edge tiles of tree size 1300 \(tile\/0\/005\.p\/20, tile\/1\/000\.p\/5\) give root \S+, but the checkpoint's root is/,
    );
  });

  it('exits 1 when the checkpoint signature does not verify', async () => {
    proxy.rewrite = (p, b) => {
      if (p !== '/checkpoint') return b;
      const text = b.toString('utf8');
      const sig = text.lastIndexOf(' ') + 10; // inside the base64 signature of the last line
      return Buffer.from(text.slice(0, sig) + (text[sig] === 'A' ? 'B' : 'A') + text.slice(sig + 1));
    };
    const r = await audit();
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      /verification failed: checkpoint signature by log key localhost\/trailmark does not verify/,
    );
  });

  it('exits 2 (not 1) when the log cannot be reached, and on usage errors', async () => {
    const r = await cli(
      ['audit', '--log', `http://127.0.0.1:${await closedPort()}`, '--key', log.server.vkey, '--retries', '0'],
      dir,
    );
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(
      /^trailmark: cannot read the log: GET http:\/\/127\.0\.0\.1:\d+\/checkpoint: ECONNREFUSED/,
    );
    expect((await cli(['audit', '--log', proxy.url, '--key', 'not-a-key'], dir)).code).to.equal(2);
    expect((await cli(['audit', '--key', log.server.vkey], dir)).code).to.equal(2);
  });

  describe('a forked tree (same key, other entries)', () => {
    let fork: TestLog;
    before(async () => {
      fork = await startTestLog({ keyFile: join(log.dir, 'log.key') });
    });
    // the fork has exactly as many entries as the honest log, all different
    beforeEach(async () => {
      if (fork.size < log.size) await fork.add(log.size - fork.size, 'forked');
      expect(fork.size).to.equal(log.size);
    });
    after(() => fork.close());

    it('exits 1 when the checkpoint is of another tree than the tiles', async () => {
      proxy.route = (p) => (p === '/checkpoint' ? fork.server.url : log.server.url);
      const r = await audit();
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/verification failed: .*give root \S+, but the checkpoint's root is/);
    });

    it('exits 1 with --state when the log later serves a fork of what was audited', async () => {
      const state = join(dir, 'fork-state.json');
      expect((await audit('--state', state)).code).to.equal(0);
      proxy.route = () => fork.server.url; // a self-consistent fork of the same size
      const r = await audit('--state', state);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(new RegExp(`two checkpoints of tree size ${log.size} have different roots`));
      await fork.add(10, 'forked');
      const grown = await audit('--state', state);
      expect(grown.code).to.equal(1);
      expect(grown.stderr).to.match(
        new RegExp(`checkpoint ${log.size + 10} \\(root \\S+\\) is not consistent with checkpoint ${log.size}`),
      );
    });
  });

  it('audits incrementally with --state: consistency with the last audit, then only what is new', async () => {
    const state = join(dir, 'state.json');
    const first = await audit('--state', state);
    expect(first.code).to.equal(0);
    expect(JSON.parse(readFileSync(state, 'utf8'))).to.include({ version: 1, tree_size: String(log.size) });
    const from = log.size;
    await log.add(600);
    const r = await audit('--state', state, '--json');
    expect(r.code).to.equal(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).to.include({ from_size: from, tree_size: from + 600, entries_verified: 600, consistent_with: from });
    expect(doc.summary).to.equal(
      `600/600 new entries verified (${from} to ${from + 600}), ${doc.tiles_total}/${doc.tiles_total} tiles verified, root matches checkpoint ${from + 600}, consistent with ${from}`,
    );
    expect(JSON.parse(readFileSync(state, 'utf8')).tree_size).to.equal(String(from + 600));

    // nothing new: still proves the same checkpoint and recomputes the root from the right edge
    const again = await audit('--state', state);
    expect(again.code).to.equal(0);
    expect(again.stdout).to.contain(`0/0 new entries verified (${from + 600} to ${from + 600})`);

    // a failed audit leaves the state alone
    const before = readFileSync(state, 'utf8');
    await log.add(5);
    proxy.rewrite = (p, b) => (p.startsWith('/tile/entries/') ? flipByte(b, b.length - 1) : b);
    expect((await audit('--state', state)).code).to.equal(1);
    expect(readFileSync(state, 'utf8')).to.equal(before);
  });

  it('rejects a state file that is not signed by the log key (exit 2)', async () => {
    const state = join(dir, 'bad-state.json');
    expect((await audit('--state', state)).code).to.equal(0);
    const doc = JSON.parse(readFileSync(state, 'utf8'));
    doc.checkpoint = doc.checkpoint.replace(/\n\d+\n/, '\n5\n');
    writeFileSync(state, JSON.stringify(doc));
    const r = await audit('--state', state);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/state file .*bad-state\.json: its checkpoint does not verify with log key/);
  });
});
