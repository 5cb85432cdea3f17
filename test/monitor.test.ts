/**
 * End to end, on real log servers, real LevelDB and real HTTP: a monitor follows a log and keeps its view
 * across restarts; a forked log (two servers, same key and origin, different entries) is caught through
 * gossip within seconds, with evidence that verifies offline (library and CLI) and reaches the webhook;
 * `trailmark monitor --once` exits 0, 1 and 2 as the contract says.
 */
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseVkey } from '@trailmark/tlog';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import { silentLogger } from '@trailmark/node';
import { verifyEvidence, type Evidence } from '@trailmark/client';
import { startMonitor, type RunningMonitor } from '@trailmark/monitor';
import { cli, startSilentServer, startWebhook, addEntries, entry, keyFile, tempDir, waitFor } from './lib/util.js';

const quiet = silentLogger;

describe('monitor (end to end)', function () {
  this.timeout(30_000);
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const closers: (() => Promise<void>)[] = [];
  const origin = 'e2e.example/log';
  let key: Awaited<ReturnType<typeof keyFile>>;

  before(async () => {
    tmp = await tempDir('monitor-e2e');
    key = await keyFile(join(tmp.dir, 'log.key'), origin);
  });
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });
  after(async () => tmp.cleanup());

  async function log(name: string): Promise<LogServer> {
    const s = await startLogServer({
      dataDir: join(tmp.dir, name),
      keyFile: key.file,
      create: true,
      listen: '127.0.0.1:0',
    });
    closers.push(() => s.close());
    return s;
  }
  async function monitor(
    name: string,
    logUrl: string,
    extra: Partial<Parameters<typeof startMonitor>[0]> = {},
  ): Promise<RunningMonitor> {
    const m = await startMonitor({
      logs: [{ url: logUrl, vkey: key.vkey }],
      dataDir: join(tmp.dir, name),
      listen: '127.0.0.1:0',
      pollIntervalMs: 100,
      gossipIntervalMs: 100,
      logger: quiet,
      ...extra,
    });
    closers.push(() => m.close());
    return m;
  }
  const sizeOf = async (m: RunningMonitor) => (await m.monitor.view(origin))?.size;

  it('follows a log, serves its view over gossip, and keeps the view across a restart', async () => {
    const l = await log('follow-log');
    await addEntries(l.url, [entry('f', 0), entry('f', 1)]);
    const m = await monitor('follow-mon', l.url);
    await waitFor('view at 2', async () => (await sizeOf(m)) === 2n);
    await addEntries(l.url, [entry('f', 2), entry('f', 3), entry('f', 4)]);
    await waitFor('view at 5', async () => (await sizeOf(m)) === 5n);
    const list = (await (await fetch(`${m.url}/v1/checkpoints`)).json()) as string[];
    expect(list).to.have.length(1);
    expect(list[0].split('\n')[1]).to.equal('5');
    expect(await (await fetch(`${m.url}/v1/evidence`)).json()).to.deep.equal([]);
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    expect(metrics).to.match(/trailmark_monitor_tree_size\{origin="e2e\.example\/log"\} 5/);
    // one data dir, one monitor: a second one is refused with a clear error
    try {
      await startMonitor({
        logs: [{ url: l.url, vkey: key.vkey }],
        dataDir: join(tmp.dir, 'follow-mon'),
        logger: quiet,
      });
      expect.fail('a second monitor opened the same data dir');
    } catch (e) {
      expect((e as Error).message).to.match(/in use by another monitor/);
    }
    await m.close();
    const again = await monitor('follow-mon', 'http://127.0.0.1:9', { follow: false });
    expect(await sizeOf(again)).to.equal(5n);
    expect(((await (await fetch(`${again.url}/v1/checkpoints`)).json()) as string[])[0]).to.equal(list[0]);
  });

  it('rejects malformed gossip with 400 and ignores checkpoints of unknown logs', async () => {
    const m = await monitor('gossip-bad', 'http://127.0.0.1:9', { follow: false });
    for (const body of ['not json', '{"checkpoints": "x"}', '{"checkpoints": [1]}', '[]']) {
      const r = await fetch(`${m.url}/v1/gossip`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(r.status, body).to.equal(400);
    }
    const r = await fetch(`${m.url}/v1/gossip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        checkpoints: ['other.example\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— other.example AAAAAAA=\n'],
      }),
    });
    expect(r.status).to.equal(200);
    expect(((await r.json()) as { results: { status: string }[] }).results[0].status).to.equal('ignored');
  });

  it('catches a forked log through gossip within seconds; the evidence verifies offline and reaches the webhook', async function () {
    this.timeout(90_000); // several CLI runs, slow on a loaded machine
    const hook = await startWebhook<Evidence>();
    closers.push(() => hook.close());
    const hooks = hook.bodies;
    const hookUrl = hook.url;

    // same key, same origin, different entries: a split view
    const a = await log('fork-a');
    const b = await log('fork-b');
    await addEntries(
      a.url,
      [0, 1, 2, 3].map((i) => entry('a', i)),
    );
    await addEntries(
      b.url,
      [0, 1, 2, 3, 4, 5].map((i) => entry('b', i)),
    );
    const ma = await monitor('fork-ma', a.url, { alertWebhook: hookUrl });
    const mb = await monitor('fork-mb', b.url, { peers: [ma.url!] });
    // ma learns of mb only after start, to show pull and push both work
    const t0 = Date.now();
    await waitFor(
      'evidence at mb',
      async () => ((await (await fetch(`${mb.url}/v1/evidence`)).json()) as Evidence[]).length > 0,
      10_000,
    );
    await waitFor(
      'evidence at ma (pulled from... pushed to it and imported)',
      async () => ((await (await fetch(`${ma.url}/v1/evidence`)).json()) as Evidence[]).length > 0,
      10_000,
    );
    const took = Date.now() - t0;
    if (process.env.TRAILMARK_TEST_TIMING) console.log(`      fork detected at both monitors in ${took} ms`);
    expect(took).to.be.below(5000);

    const evs = (await (await fetch(`${mb.url}/v1/evidence`)).json()) as Evidence[];
    expect(evs).to.have.length(1);
    const ev = evs[0];
    expect(Object.keys(ev)).to.include.members(['origin', 'kind', 'checkpoints', 'detail', 'seen']);
    expect(ev.origin).to.equal(origin);
    expect(ev.kind).to.equal('inconsistent');
    expect(ev.checkpoints.map((c) => c.split('\n')[1])).to.deep.equal(['4', '6']);
    expect(ev.seen).to.have.length(2);
    expect(ev.seen[1].from).to.equal(b.url);
    expect(Date.parse(ev.seen[0].at)).to.be.a('number').and.not.NaN;
    verifyEvidence(ev, parseVkey(key.vkey));

    // the evidence file in the data dir verifies with the CLI; a tampered copy does not
    const files = await readdir(join(tmp.dir, 'fork-mb', 'evidence'));
    expect(files).to.have.length(1);
    const file = join(tmp.dir, 'fork-mb', 'evidence', files[0]);
    const ok = await cli(['verify', 'evidence', file, '--key', key.file + '.pub']);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/verified: inconsistent/);
    const tampered = JSON.parse(await readFile(file, 'utf8')) as Evidence;
    tampered.consistency!.first_root = tampered.consistency!.proof[0];
    await writeFile(join(tmp.dir, 'tampered.json'), JSON.stringify(tampered));
    const bad = await cli(['verify', 'evidence', join(tmp.dir, 'tampered.json'), '--key', key.vkey]);
    expect(bad.code, bad.stderr).to.equal(1);

    // GET /v1/evidence saved as is (an array) verifies too, with machine output
    await writeFile(join(tmp.dir, 'all-evidence.json'), JSON.stringify(evs));
    const all = await cli(['--json', 'verify', 'evidence', join(tmp.dir, 'all-evidence.json'), '--log-key', key.vkey]);
    expect(all.code, all.stderr).to.equal(0);
    expect(JSON.parse(all.stdout)).to.deep.include({ ok: true });

    // /healthz is unhealthy while the monitor holds evidence nobody acknowledged; monitor-ack clears it
    const health = await fetch(`${mb.url}/healthz`);
    expect(health.status).to.equal(503);
    expect(((await health.json()) as { unacknowledged_evidence: string[] }).unacknowledged_evidence).to.have.length(1);
    const ack = await cli(['monitor-ack', '--data', join(tmp.dir, 'fork-mb')]);
    expect(ack.code, ack.stderr).to.equal(0);
    expect((await fetch(`${mb.url}/healthz`)).status).to.equal(200);

    await waitFor('webhook delivery', async () => hooks.length > 0, 5000);
    verifyEvidence(hooks[0], parseVkey(key.vkey));

    // a one-shot monitor pointed at the honest-looking log a and peer mb sees the misbehaviour: exit 1
    const once = await cli(['monitor', '--once', '--log', a.url, '--log-key', key.vkey, '--peer', mb.url!, ma.url!]);
    expect(once.code, once.stdout + once.stderr).to.equal(1);
    // without --data nothing is kept: no output names a file in the folder it deletes; the evidence is printed
    const lonely = await cli(['monitor', '--once', '--log', b.url, '--log-key', key.vkey, '--peer', ma.url!]);
    expect(lonely.code, lonely.stdout + lonely.stderr).to.equal(1);
    expect(lonely.stdout + lonely.stderr).to.not.match(/trailmark-monitor-[^\s]*\/evidence/);
    expect(lonely.stdout).to.contain('"kind": "inconsistent"');
  });

  it('trailmark monitor --once: 0 when consistent (and across runs with --data), 2 when the log is unreachable', async () => {
    const l = await log('once-log');
    await addEntries(l.url, [entry('o', 0)]);
    const data = join(tmp.dir, 'once-data');
    const first = await cli(['monitor', '--once', '--log', l.url, '--log-key', key.file + '.pub', '--data', data]);
    expect(first.code, first.stdout + first.stderr).to.equal(0);
    await addEntries(l.url, [entry('o', 1), entry('o', 2)]);
    const second = await cli(['--json', 'monitor', '--once', '--log', l.url, '--log-key', key.vkey, '--data', data]);
    expect(second.code, second.stdout + second.stderr).to.equal(0);
    const out = JSON.parse(second.stdout) as { outcomes: { status: string; message: string }[] };
    expect(out.outcomes[0].status).to.equal('advanced');
    expect(out.outcomes[0].message).to.contain('1 -> 3');
    const down = await cli(['monitor', '--once', '--log', 'http://127.0.0.1:9', '--log-key', key.vkey]);
    expect(down.code).to.equal(2);
    const usage = await cli(['monitor', '--once', '--log', l.url, '--log-key', 'not-a-key']);
    expect(usage.code).to.equal(2);
    const unpaired = await cli(['monitor', '--once', '--log', l.url, '--log', l.url, '--log-key', key.vkey]);
    expect(unpaired.code).to.equal(2);
    expect(unpaired.stderr).to.match(/one --log-key per --log/);
  });

  it('a log restarted from scratch with the same key (a rollback) is caught by its own monitor', async () => {
    const l1 = await log('reset-1');
    await addEntries(
      l1.url,
      [0, 1, 2, 3, 4].map((i) => entry('r', i)),
    );
    const m = await monitor('reset-mon', l1.url);
    await waitFor('view at 5', async () => (await sizeOf(m)) === 5n);
    await m.close();
    const l2 = await log('reset-2');
    await addEntries(
      l2.url,
      [0, 1, 2].map((i) => entry('s', i)),
    );
    const m2 = await monitor('reset-mon', l2.url);
    // size 3 after 5: the log went backwards and cannot prove size 5 from its new tree
    await waitFor('rollback alert', async () =>
      /alerts_total\{origin="e2e\.example\/log",kind="rollback"\} [1-9]/.test(
        await (await fetch(`${m2.url}/metrics`)).text(),
      ),
    );
    expect(await sizeOf(m2)).to.equal(5n);
    // once the new tree outgrows the old one, its consistency proof convicts it
    await addEntries(
      l2.url,
      [3, 4, 5, 6].map((i) => entry('s', i)),
    );
    const evs = await waitFor('evidence', async () => {
      const e = (await (await fetch(`${m2.url}/v1/evidence`)).json()) as Evidence[];
      return e.length > 0 && e;
    });
    expect(evs[0].kind).to.equal('inconsistent');
    expect(evs[0].checkpoints.map((c) => c.split('\n')[1])).to.deep.equal(['5', '7']);
    verifyEvidence(evs[0], parseVkey(key.vkey));
  });

  it('a log serving a bad signature is an alert, not a crash: --once exits 1 and the daemon keeps its view', async () => {
    const l = await log('badsig-log');
    await addEntries(l.url, [entry('x', 0), entry('x', 1)]);
    let tamper = false;
    // a relay in front of the real log that corrupts the checkpoint signature on demand
    const relay: Server = createServer(async (req, res) => {
      const r = await fetch(l.url + req.url);
      let body = Buffer.from(await r.arrayBuffer());
      if (tamper && req.url === '/checkpoint') {
        const text = body.toString('utf8');
        const sig = text.trimEnd().split(' ').pop()!;
        const i = 20;
        body = Buffer.from(text.replace(sig, sig.slice(0, i) + (sig[i] === 'A' ? 'B' : 'A') + sig.slice(i + 1)));
      }
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
      res.end(body);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => relay.close(() => r())));
    const relayUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}`;
    const m = await monitor('badsig-mon', relayUrl);
    await waitFor('view at 2', async () => (await sizeOf(m)) === 2n);
    tamper = true;
    await addEntries(l.url, [entry('x', 2)]);
    await waitFor('bad-signature alert', async () =>
      /kind="bad-signature"\} [1-9]/.test(await (await fetch(`${m.url}/metrics`)).text()),
    );
    expect(await sizeOf(m)).to.equal(2n);
    const once = await cli(['monitor', '--once', '--log', relayUrl, '--log-key', key.vkey]);
    expect(once.code, once.stdout + once.stderr).to.equal(1);
    expect(once.stdout).to.match(/does not verify/);
    // the daemon's logs are JSON lines (the one daemon logging style), the alert a structured error record
    const records = once.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.find((r) => r.alert === 'bad-signature')).to.include({
      level: 'error',
      component: 'monitor',
      origin,
    });
    tamper = false;
    await waitFor('view at 3 once the log behaves', async () => (await sizeOf(m)) === 3n);
  });

  it('refuses to compare against a stored view that the configured key did not sign (exit 2, no false evidence)', async () => {
    const l = await log('rekey-log');
    await addEntries(l.url, [entry('k', 0)]);
    const m1 = await monitor('rekey-mon', l.url, { follow: false });
    expect((await m1.monitor.checkOnce()).code).to.equal(0);
    await m1.close();
    const other = await keyFile(join(tmp.dir, 'other.key'), origin);
    const l2 = await startLogServer({
      dataDir: join(tmp.dir, 'rekey-log-2'),
      keyFile: other.file,
      create: true,
      listen: '127.0.0.1:0',
    });
    closers.push(() => l2.close());
    const m2 = await startMonitor({
      logs: [{ url: l2.url, vkey: other.vkey }],
      dataDir: join(tmp.dir, 'rekey-mon'),
      follow: false,
      logger: quiet,
    });
    closers.push(() => m2.close());
    const r = await m2.monitor.checkOnce();
    expect(r.code).to.equal(2);
    expect(r.outcomes[0].outcome.message).to.match(/stored view .* does not verify/);
    expect(r.evidence).to.deep.equal([]);
  });

  it('a log or peer that never answers does not hold up shutdown', async () => {
    const hang = await startSilentServer();
    const { sockets, url: hangUrl } = hang;
    const m = await startMonitor({
      logs: [{ url: hangUrl, vkey: key.vkey }],
      peers: [hangUrl],
      pollIntervalMs: 50,
      gossipIntervalMs: 50,
      logger: quiet,
    });
    await waitFor('requests at the silent server', async () => sockets.size > 0);
    const t0 = Date.now();
    await m.close();
    expect(Date.now() - t0).to.be.below(2000);
    await hang.close();
  });

  it('a peer answering with an endless body is cut off, not buffered', async () => {
    const big: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const more = () => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent < 64) res.once('drain', more);
        else res.end();
      };
      res.on('error', () => undefined);
      more();
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', () => r()));
    closers.push(
      () =>
        new Promise<void>((r) => {
          big.closeAllConnections();
          big.close(() => r());
        }),
    );
    const peer = `http://127.0.0.1:${(big.address() as { port: number }).port}`;
    const m = await monitor('big-peer', 'http://127.0.0.1:1', { follow: false });
    const out = await m.monitor.pullPeer(peer);
    expect(out[0].status).to.equal('error');
    expect(out[0].message).to.match(/larger than 16777216 bytes/);
  });
});
