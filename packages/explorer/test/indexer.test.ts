import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { fileURLToPath } from 'node:url';
import { startLogServer } from '@trailmark/log-server';
import { parseVkey } from '@trailmark/tlog';
import { INDEX_FORMAT, IndexStore, Indexer, startExplorer, type RunningExplorer } from '../src/index.js';
import { LogReader } from '@trailmark/client';
import { addEntries, startRelay, startTrail, waitFor, type Trail } from './fixture.js';
import { StreamWriter, exchange } from '../../../test/lib/streams.js';

const BIN = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const filler = (tag: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    schema: 'trailmark.access/v1',
    stage: 'request',
    id: `${tag}-${i}`,
    request_id: `${tag}-${i}`,
    time: '2026-01-03T00:00:00.000Z',
    actor: { id: tag, roles: [], ip: null, user_agent: null },
    action: { method: 'GET', target: 'http://svc', path: `/f/${i}`, query: '' },
    decision: { allowed: true, reason: 'ok' },
  }));

describe('explorer indexer (follows the log, verifies before indexing)', function () {
  this.timeout(60_000);
  let trail: Trail;
  const extra: RunningExplorer[] = [];
  const closers: (() => Promise<void>)[] = [];

  beforeEach(async () => {
    trail = await startTrail();
  });
  afterEach(async () => {
    for (const x of extra.splice(0)) await x.close();
    for (const c of closers.splice(0)) await c();
    await trail.close();
  });

  it('survives a restart and catches up incrementally, without reading what it already indexed', async () => {
    await addEntries(trail.log.url, filler('bulk', 300));
    const first = await trail.startExplorer();
    const size1 = trail.size + 300;
    await first.indexer.waitForIndexed(size1);
    await first.close();
    await addEntries(trail.log.url, filler('late', 5));
    const seen: string[] = [];
    const relay = await startRelay(trail.log.url, { rewrite: (p) => void seen.push(p) });
    closers.push(relay.close);
    const second = await trail.startExplorer({ log: relay.url });
    await second.indexer.waitForIndexed(size1 + 5);
    expect(seen).to.not.include('/tile/entries/000', 'the first, full bundle was indexed before the restart');
    const page = (await (await fetch(`${second.url}/api/events?actor=late`)).json()) as {
      tree_size: number;
      events: unknown[];
    };
    expect(page.tree_size).to.equal(size1 + 5);
    expect(page.events.length).to.equal(5);
    const bulk = (await (await fetch(`${second.url}/api/events?actor=bulk&limit=1000`)).json()) as {
      events: unknown[];
    };
    expect(bulk.events.length).to.equal(300);
    expect(second.indexer.status).to.include({ state: 'following', lastReadError: null });
  });

  it('rebuilds an index of an older format from the log, saying so, rather than trusting what it claims', async () => {
    await addEntries(trail.log.url, filler('bulk', 300));
    // the format before this one: it claims 5 entries, and holds one the log does not
    const dataDir = join(trail.dir, 'old-index');
    mkdirSync(dataDir);
    const old = new Database(join(dataDir, 'index.sqlite'));
    old.exec(`CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE events (leaf_index INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL, kind INTEGER NOT NULL, top INTEGER NOT NULL,
        request_id TEXT, time_ms INTEGER, actor TEXT, target TEXT, method TEXT, path TEXT, protocol TEXT, decision INTEGER,
        status TEXT, stream_id TEXT, stream_seq INTEGER, response_index INTEGER, entry TEXT NOT NULL);
      INSERT INTO meta VALUES ('indexed', '5');
      INSERT INTO events (leaf_index, leaf_hash, kind, top, actor, entry) VALUES (0, x'00', 0, 1, 'ghost', '{}');
      PRAGMA user_version = ${INDEX_FORMAT - 1};`);
    old.close();
    const notices: string[] = [];
    const x = await trail.startExplorer({ dataDir, notice: (l) => void notices.push(l) });
    expect(notices.join('\n')).to.match(
      new RegExp(
        `format ${INDEX_FORMAT - 1}, this version uses format ${INDEX_FORMAT}: deleting it and rebuilding it from the log`,
      ),
    );
    await x.indexer.waitForIndexed(trail.size + 300);
    const page = async (q: string) =>
      ((await (await fetch(`${x.url}/api/events?${q}&limit=1000`)).json()) as { events: unknown[] }).events;
    expect(await page('actor=ghost')).to.deep.equal([]);
    expect((await page('actor=bulk')).length).to.equal(300);
    const again: string[] = [];
    await x.close();
    await (
      await trail.startExplorer({ dataDir, notice: (l) => void again.push(l) })
    ).indexer.waitForIndexed(trail.size + 300);
    expect(again, 'an index of this format is kept').to.deep.equal([]);
  });

  it('/api/streams reports a hole and a forged heartbeat, and resumes the stream state after a restart', async () => {
    const hole = new StreamWriter('x-hole', 'proxy-h');
    const forged = new StreamWriter('x-forged', 'proxy-f');
    const before = [hole.next('start'), ...exchange(hole, 'h-r1')];
    hole.next('heartbeat'); // seq 3 never reaches the log
    const bad = [forged.next('start'), forged.build('heartbeat', {}, 1, forged.prev, StreamWriter.forger())];
    const size1 = await addEntries(trail.log.url, [...before, ...bad]);
    const first = await trail.startExplorer();
    await first.indexer.waitForIndexed(size1);
    await first.close();
    // the second explorer resumes from the saved checker state: seq 4 continues the stream (no new hole at 0-3)
    const size2 = await addEntries(trail.log.url, [hole.next('end')]);
    const second = await trail.startExplorer();
    await second.indexer.waitForIndexed(size2);
    const r = (await (await fetch(`${second.url}/api/streams`)).json()) as { streams: Record<string, any>[] };
    const h = r.streams.find((s) => s.id === 'x-hole')!;
    expect(h).to.include({
      proxy: 'proxy-h',
      first_seq: 0,
      last_seq: 4,
      events: 4,
      ended: true,
      complete: false,
      stream_key: hole.vkey,
    });
    expect(h.holes).to.deep.equal([[3, 3]]);
    expect([h.duplicates, h.broken, h.bad_signatures]).to.deep.equal([[], [], []]);
    expect(h.status).to.equal('missing seq 3');
    const f = r.streams.find((s) => s.id === 'x-forged')!;
    expect(f).to.include({
      proxy: 'proxy-f',
      first_seq: 0,
      last_seq: 1,
      events: 2,
      ended: false,
      complete: false,
      last_heartbeat: null,
    });
    expect(f.holes).to.deep.equal([]);
    expect(f.broken).to.deep.equal([1]);
    expect(f.bad_signatures).to.deep.equal([1]);
  });

  it('indexes a long catch-up read on a reader thread exactly as on its own thread', async () => {
    await addEntries(trail.log.url, filler('bulk', 600));
    const index = async (name: string, offThreadFrom: number) => {
      const reader = new LogReader(trail.log.url);
      const store = new IndexStore(join(trail.dir, name), () => {});
      try {
        const indexer = new Indexer({ reader, logKey: parseVkey(trail.vkey), store, offThreadFrom });
        await indexer.syncOnce();
        expect(indexer.status.lastReadError).to.equal(null); // the reader thread did not fall back
        return {
          state: store.state().indexed,
          rows: store.search({}, 1000, null),
          bulk: store.search({ actor: 'bulk' }, 1000, null),
          // what the reader thread prepared (fields, words, path tokens, stream members) searched by each
          denied: store.search({ decision: 'denied' }, 1000, null),
          path: store.search({ path: '/' }, 1000, null),
          stats: store.stats({}, 'minute'),
          streams: store.streams.streams(),
        };
      } finally {
        store.close();
        reader.close();
      }
    };
    const off = await index('off-thread', 0);
    const here = await index('on-thread', Number.MAX_SAFE_INTEGER);
    expect(off.state).to.equal(trail.size + 600);
    expect(off.bulk.length).to.equal(600);
    expect(off.streams.length).to.be.greaterThan(0);
    expect(off.path.length).to.be.greaterThan(0);
    expect(off).to.deep.equal(here);
  });

  it('stops with an alert, indexing nothing, when the log serves an entry that does not match its tiles', async () => {
    const relay = await startRelay(trail.log.url, {
      rewrite: (p, body) =>
        p.startsWith('/tile/entries/000')
          ? Buffer.from(body.toString('latin1').replace('"alice"', '"mallo"'), 'latin1')
          : undefined,
    });
    closers.push(relay.close);
    const alerts: string[] = [];
    const x = await startExplorer({
      log: relay.url,
      logKey: parseVkey(trail.vkey),
      dataDir: join(trail.dir, 'x-lying'),
      listen: '127.0.0.1:0',
      intervalMs: 100,
      alert: (l) => alerts.push(l),
    });
    extra.push(x);
    await waitFor('the indexer to stop', () => x.indexer.status.state === 'stopped');
    expect(x.indexer.status.alert).to.match(/^entry-mismatch: /);
    expect(alerts.join('\n')).to.match(/ALERT .*misbehaved/);
    expect(x.indexer.status.indexed).to.equal(0);
    const page = (await (await fetch(`${x.url}/api/events`)).json()) as { tree_size: number; events: unknown[] };
    expect(page).to.deep.equal({ tree_size: 0, events: [], next: null });
    expect((await fetch(`${x.url}/healthz`)).status).to.equal(503);
  });

  it('stops with an alert when the log forks: a second history under the same key', async () => {
    const x = await trail.startExplorer();
    await x.indexer.waitForIndexed(trail.size);
    await x.close();
    // the same key serving another history, longer than the one indexed
    const fork = await startLogServer({
      dataDir: join(trail.dir, 'fork'),
      keyFile: join(trail.dir, 'log', 'log.key'),
      create: true,
      listen: '127.0.0.1:0',
    });
    closers.push(() => fork.close());
    expect(fork.vkey).to.equal(trail.vkey);
    await addEntries(fork.url, filler('fork', trail.size + 3));
    const y = await trail.startExplorer({ log: fork.url });
    await waitFor('the indexer to stop', () => y.indexer.status.state === 'stopped');
    expect(y.indexer.status.alert).to.match(/^inconsistent: /);
    expect(y.indexer.status.indexed).to.equal(trail.size);
    const forked = (await (await fetch(`${y.url}/api/events?actor=fork`)).json()) as { events: unknown[] };
    expect(forked.events).to.deep.equal([]);
  });

  it('trailmark explorer serves the index until SIGTERM, and refuses a malformed key', async () => {
    const p = spawn(
      process.execPath,
      [
        BIN,
        'explorer',
        '--log',
        trail.log.url,
        '--key',
        trail.vkey,
        '--data',
        join(trail.dir, 'x-cli'),
        '--listen',
        '127.0.0.1:0',
        '--interval',
        '100',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
    await waitFor('the explorer to print its URL', () => /^url: /m.test(out), 30_000);
    const url = /^url: (\S+)$/m.exec(out)![1];
    await waitFor(
      'the index to catch up',
      async () => ((await (await fetch(`${url}/api/info`)).json()) as { tree_size: number }).tree_size === trail.size,
      30_000,
    );
    p.kill('SIGTERM');
    expect(await exited).to.equal(0);
    const bad = await cli([
      'explorer',
      '--log',
      trail.log.url,
      '--key',
      'not-a-key',
      '--data',
      join(trail.dir, 'x-bad'),
      '--listen',
      '127.0.0.1:0',
    ]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/neither a vkey/);
  });

  it('trailmark search prints verified results, and exits 1 when the explorer alters one', async () => {
    const x = await trail.startExplorer();
    await x.indexer.waitForIndexed(trail.size);
    const ok = await cli([
      'search',
      '--explorer',
      x.url,
      '--key',
      trail.vkey,
      '--protocol',
      'http',
      '--method',
      'POST',
    ]);
    expect(ok.code, ok.stderr).to.equal(0);
    const lines = ok.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.entry.action.path, l.response.entry.outcome.status])).to.deep.equal([['/db/rows', 200]]);
    const csv = await cli([
      'search',
      '--explorer',
      x.url,
      '--log-key',
      trail.vkey,
      '--protocol',
      'postgres',
      '--format',
      'csv',
    ]);
    expect(csv.code, csv.stderr).to.equal(0);
    expect(csv.stdout.trim().split('\r\n').length).to.equal(4);
    // a relay in front of the explorer changes what one event says
    const lying = await startRelay(x.url, {
      rewrite: (p, body) =>
        p.startsWith('/api/events')
          ? Buffer.from(body.toString().replace('"path":"/db/rows"', '"path":"/db/other"'))
          : undefined,
    });
    closers.push(lying.close);
    const bad = await cli(['search', '--explorer', lying.url, '--key', trail.vkey, '--method', 'POST']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/not what the log holds there/);
    expect(bad.stdout).to.equal('');
    const usage = await cli(['search', '--explorer', x.url, '--key', trail.vkey, '--decision', 'maybe']);
    expect(usage.code).to.equal(2);
  });
});
