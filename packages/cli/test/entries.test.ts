import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { b64encode, canonicalJson, hashLeaf, utf8 } from '@trailmark/tlog';
import { BIN, cli, event, flipByte, tamperedLogSuite, type TamperProxy, type TestLog } from './auditor-helpers.js';

describe('trailmark entries (real log server, real HTTP)', function () {
  this.timeout(60_000);
  let log: TestLog;
  let proxy: TamperProxy;
  let dir: string;

  tamperedLogSuite(
    'tm-entries-cli-',
    (l) => l.add(600),
    (s) => ({ dir, log, proxy } = s),
  );

  it('prints the verified entries as NDJSON, byte for byte as logged', async () => {
    const r = await cli(
      ['entries', '--log', log.server.url, '--key', log.server.vkey, '--start', '250', '--end', '260'],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.split('\n');
    expect(lines.pop()).to.equal('');
    expect(lines).to.have.length(11);
    lines.forEach((l, k) => expect(l).to.equal(new TextDecoder().decode(canonicalJson(event(250 + k)))));
  });

  it('with --json, wraps each entry with its index and leaf hash', async () => {
    const r = await cli(
      ['entries', '--log', log.server.url, '--key', log.server.vkey, '--start', '598', '--json'],
      dir,
    );
    expect(r.code, r.stderr).to.equal(0);
    const docs = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(docs.map((d) => d.leaf_index)).to.deep.equal([598, 599]);
    for (const d of docs) {
      expect(d.entry).to.deep.equal(event(d.leaf_index));
      expect(d.leaf_hash).to.equal(b64encode(hashLeaf(utf8(JSON.stringify(d.entry)))));
    }
  });

  it("docs/proxy.md's recipe: an entries line saved to a file (with or without --json) verifies with verify inclusion --entry", async () => {
    const i = 321;
    for (const json of [true, false]) {
      const r = await cli(
        [
          ...(json ? ['--json'] : []),
          'entries',
          '--log',
          log.server.url,
          '--key',
          log.server.vkey,
          '--start',
          String(i),
          '--end',
          String(i),
        ],
        dir,
      );
      expect(r.code, r.stderr).to.equal(0);
      writeFileSync(join(dir, 'event.json'), r.stdout);
      const p = await cli(
        [
          'prove',
          'inclusion',
          '--log',
          log.server.url,
          '--key',
          log.server.vkey,
          '--entry',
          'event.json',
          '--out',
          'event.tlog-proof',
        ],
        dir,
      );
      expect(p.code, p.stderr).to.equal(0);
      const v = await cli(
        ['verify', 'inclusion', '--key', log.server.vkey, '--proof', 'event.tlog-proof', '--entry', 'event.json'],
        dir,
      );
      expect(v.code, v.stderr).to.equal(0);
      expect(v.stdout).to.match(new RegExp(`verified: leaf ${i} `));
    }
    // a --json line whose entry was edited no longer matches its own leaf_hash: a usage error naming it
    const r = await cli(
      [
        '--json',
        'entries',
        '--log',
        log.server.url,
        '--key',
        log.server.vkey,
        '--start',
        String(i),
        '--end',
        String(i),
      ],
      dir,
    );
    const line = JSON.parse(r.stdout);
    line.entry.n = 999;
    writeFileSync(join(dir, 'edited.json'), JSON.stringify(line));
    const bad = await cli(
      ['verify', 'inclusion', '--key', log.server.vkey, '--proof', 'event.tlog-proof', '--entry', 'edited.json'],
      dir,
    );
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/leaf_hash .* is not the hash of its entry/);
  });

  it('exits 1 at a tampered entry, after printing only the entries before its bundle', async () => {
    proxy.rewrite = (p, b) => (p === '/tile/entries/001' ? flipByte(b, 40) : b);
    const r = await cli(['entries', '--log', proxy.url, '--key', log.server.vkey], dir);
    expect(r.code).to.equal(1);
    expect(r.stdout.trim().split('\n')).to.have.length(256);
    expect(r.stderr).to.match(/verification failed: entry 256 \(tile\/entries\/001, position 0\)/);
    const usage = await cli(
      ['entries', '--log', log.server.url, '--key', log.server.vkey, '--start', '9', '--end', '3'],
      dir,
    );
    expect(usage.code).to.equal(2);
  });

  it('--follow prints new entries as new checkpoints arrive, each proven consistent, and stops cleanly on SIGINT', async () => {
    const start = log.size - 2;
    const p = spawn(
      process.execPath,
      [
        BIN,
        'entries',
        '--log',
        log.server.url,
        '--key',
        log.server.vkey,
        '--start',
        String(start),
        '--follow',
        '--interval',
        '0.1',
      ],
      {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
    const lines = () => stdout.split('\n').filter(Boolean);
    const waitFor = async (n: number) => {
      for (let i = 0; i < 200 && lines().length < n; i++) await new Promise((r) => setTimeout(r, 25));
      expect(lines(), stderr).to.have.length(n);
    };
    try {
      await waitFor(2);
      await log.add(3);
      await waitFor(5);
      await log.add(300);
      await waitFor(305);
      lines().forEach((l, k) => expect(JSON.parse(l)).to.deep.equal(event(start + k)));
      expect(stderr).to.match(
        new RegExp(`verified checkpoint localhost/trailmark ${log.size}, consistent with ${log.size - 300}`),
      );
    } finally {
      p.kill('SIGINT');
    }
    expect(await exited).to.equal(0);
  });
});
