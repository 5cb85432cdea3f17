/**
 * The monitor follows proxy streams (contract section 7), on a real log and real HTTP: events submitted with a
 * real stream key; a stream silent past the stall threshold, a dropped event and a forged heartbeat each raise
 * an alert in the log and at the webhook, and GET /v1/streams shows the state.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@trailmark/node';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import { startMonitor, type MonitoredStream, type RunningMonitor } from '@trailmark/monitor';
import { addEntries, BIN, cli, keyFile, startWebhook, tempDir, waitFor } from './lib/util.js';
import { StreamWriter, exchange } from './lib/streams.js';

interface Alert {
  alert: string;
  origin: string;
  stream: string;
  seqs: [number, number];
  detail: string;
}

describe('monitor: proxy streams (end to end)', function () {
  this.timeout(30_000);
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let key: Awaited<ReturnType<typeof keyFile>>;
  const origin = 'streams.example/log';
  const closers: (() => Promise<void>)[] = [];
  let hooks: Alert[];
  let hookUrl: string;
  let records: Record<string, unknown>[];
  const logger: Logger = {
    info: (msg, f) => records.push({ level: 'info', msg, ...f }),
    warn: (msg, f) => records.push({ level: 'warn', msg, ...f }),
    error: (msg, f) => records.push({ level: 'error', msg, ...f }),
  };

  before(async () => {
    tmp = await tempDir('monitor-streams');
    key = await keyFile(join(tmp.dir, 'log.key'), origin);
  });
  beforeEach(async () => {
    records = [];
    const hook = await startWebhook<Alert>();
    closers.push(() => hook.close());
    hooks = hook.bodies;
    hookUrl = hook.url;
  });
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });
  after(async () => tmp.cleanup());

  /** A real log (filled with `events` first) and a monitor following it with the stall threshold `stallMs`. */
  async function logAndMonitor(
    name: string,
    events: object[],
    stallMs: number,
  ): Promise<{ l: LogServer; m: RunningMonitor }> {
    const l = await startLogServer({
      dataDir: join(tmp.dir, `${name}-log`),
      keyFile: key.file,
      create: true,
      listen: '127.0.0.1:0',
    });
    closers.push(() => l.close());
    if (events.length > 0) await addEntries(l.url, events);
    const m = await startMonitor({
      logs: [{ url: l.url, vkey: key.vkey }],
      dataDir: join(tmp.dir, `${name}-mon`),
      listen: '127.0.0.1:0',
      pollIntervalMs: 100,
      gossipIntervalMs: 100,
      alertWebhook: hookUrl,
      streamStallMs: stallMs,
      logger,
    });
    closers.push(() => m.close());
    return { l, m };
  }
  const streamsOf = async (m: RunningMonitor) =>
    (await (await fetch(`${m.url}/v1/streams`)).json()) as MonitoredStream[];

  it('alerts when a stream has no heartbeat past the threshold, and clears once it speaks again', async () => {
    const w = new StreamWriter('worker-1', 'proxy-a');
    const { l, m } = await logAndMonitor('stall', [w.next('start'), ...exchange(w, 'r1'), w.next('heartbeat')], 4000);
    const first = await waitFor('stream listed', async () => (await streamsOf(m)).find((s) => s.id === 'worker-1'));
    expect(first).to.include({
      origin,
      proxy: 'proxy-a',
      first_seq: 0,
      last_seq: 3,
      events: 4,
      ended: false,
      stalled: false,
      failed: false,
    });
    // no heartbeat arrives: past 4 s the stream is stalled, alerted once in the log and at the webhook
    const alert = await waitFor(
      'stall alert at the webhook',
      async () => hooks.find((h) => h.alert === 'stream-stalled'),
      10_000,
    );
    expect(alert).to.include({ origin, stream: 'worker-1' });
    expect(alert.detail).to.match(/neither a heartbeat nor an end for more than 4 s/);
    expect(records.find((r) => r.alert === 'stream-stalled')).to.include({ level: 'error', origin });
    expect((await streamsOf(m))[0]).to.include({ stalled: true });
    expect(await (await fetch(`${m.url}/metrics`)).text()).to.match(
      /alerts_total\{origin="streams\.example\/log",kind="stream-stalled"\} 1/,
    );
    // a new heartbeat: no longer stalled; an end: never stalled again
    await addEntries(l.url, [w.next('heartbeat')]);
    await waitFor('stream alive again', async () => (await streamsOf(m))[0].stalled === false);
    await addEntries(l.url, [w.next('end')]);
    await waitFor('stream ended', async () => (await streamsOf(m))[0].ended);
    await new Promise((r) => setTimeout(r, 4500));
    expect((await streamsOf(m))[0]).to.include({ stalled: false, status: 'complete' });
    expect(hooks.filter((h) => h.alert === 'stream-stalled')).to.have.length(1);
  });

  it('raises the stall alert when a real proxy is SIGSTOPped past the threshold, and clears it once the proxy runs again', async () => {
    const upstream = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => upstream.close(() => r())));
    const { l, m } = await logAndMonitor('sigstop', [], 3000);
    const tokens = join(tmp.dir, 'sigstop-tokens.json');
    await writeFile(tokens, JSON.stringify({ 'stall-token': { id: 'alice', roles: [] } }));
    const args = [
      'proxy',
      '--workers',
      '1',
      '--upstream',
      `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      '--log',
      l.url,
      '--log-key',
      key.vkey,
      '--tokens',
      tokens,
      '--listen',
      '127.0.0.1:0',
      '--spool',
      join(tmp.dir, 'sigstop-spool'),
      '--name',
      'frozen',
      '--heartbeat-seconds',
      '0.3',
    ];
    const proxy: ChildProcess = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    closers.push(async () => {
      proxy.kill('SIGCONT');
      proxy.kill('SIGKILL');
    });
    let out = '';
    proxy.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const streamId = await waitFor('the proxy prints its stream', async () => /^stream: (\S+)$/m.exec(out)?.[1]);
    // heartbeats flow: the monitor lists the stream, alive
    await waitFor('stream alive with heartbeats', async () => {
      const s = (await streamsOf(m)).find((x) => x.id === streamId);
      return s !== undefined && s.events >= 3 && !s.stalled;
    });
    expect(hooks.filter((h) => h.alert === 'stream-stalled')).to.have.length(0);
    // frozen: no more heartbeats, so past 3 s the monitor alerts, naming the stream
    proxy.kill('SIGSTOP');
    const alert = await waitFor(
      'stall alert at the webhook',
      async () => hooks.find((h) => h.alert === 'stream-stalled' && h.stream === streamId),
      15_000,
      100,
    );
    expect(alert).to.include({ origin });
    expect((await streamsOf(m)).find((x) => x.id === streamId)).to.include({ stalled: true, proxy: 'frozen' });
    // thawed: heartbeats resume and the stream is no longer stalled
    proxy.kill('SIGCONT');
    await waitFor(
      'stream alive again',
      async () => (await streamsOf(m)).find((x) => x.id === streamId)?.stalled === false,
      15_000,
      100,
    );
  });

  it('alerts on a dropped event and a forged heartbeat; monitor --once exits 1 on them', async () => {
    const w = new StreamWriter('worker-2', 'proxy-b');
    const f = new StreamWriter('worker-3', 'proxy-b');
    const evs = [w.next('start'), ...exchange(w, 'a'), ...exchange(w, 'b'), w.next('heartbeat')];
    const dropped = evs.filter((e) => e.stream.seq !== 2);
    const { l, m } = await logAndMonitor(
      'hole',
      [...dropped, f.next('start'), f.build('heartbeat', {}, 1, f.prev, StreamWriter.forger())],
      60_000,
    );
    await waitFor(
      'both alerts',
      async () => hooks.some((h) => h.alert === 'stream-hole') && hooks.some((h) => h.alert === 'stream-bad-signature'),
    );
    expect(hooks.find((h) => h.alert === 'stream-hole')).to.deep.include({ stream: 'worker-2', seqs: [2, 2] });
    expect(hooks.find((h) => h.alert === 'stream-bad-signature')).to.deep.include({ stream: 'worker-3', seqs: [1, 1] });
    const byId = new Map((await streamsOf(m)).map((s) => [s.id, s]));
    expect(byId.get('worker-2')).to.deep.include({ holes: [[2, 2]], failed: true });
    expect(byId.get('worker-3')).to.deep.include({ bad_signatures: [1], failed: true });
    const once = await cli(['monitor', '--once', '--log', l.url, '--log-key', key.vkey]);
    expect(once.code, once.stdout + once.stderr).to.equal(1);
    expect(once.stdout).to.match(/misbehaviour +streams of .*stream worker-2 \(proxy proxy-b\): seq 2 missing/);
  });
});
