import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { b64decode, parseVkey, streamSignatureMessage, checkStreamPosition } from '@trailmark/tlog';
import { AccessTrail, requestEvent, responseEvent, SpoolError } from '@trailmark/recorder';
import { byRequest, logEntries, spawnProxy, RestartableLog, startUpstream, tempDir, waitFor } from './helpers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'packages/cli/dist/bin.js');

type Entry = { index: number; raw: string; event: Record<string, any> };

function leaf(raw: string): string {
  return createHash('sha256')
    .update(Buffer.from([0]))
    .update(Buffer.from(raw, 'utf8'))
    .digest('base64');
}

/**
 * What a checker of contract section 4 sees: per stream, in log order, seqs 0..n-1 without holes or repeats,
 * each prev the leaf hash of the event before, event 0 a start with the stream key, every heartbeat and end
 * signed by it. Returns the streams' events in order.
 */
function checkStreams(entries: Entry[]): Map<string, Entry[]> {
  const streams = new Map<string, Entry[]>();
  for (const e of entries) {
    const pos = checkStreamPosition(e.event.stream);
    if (!streams.has(pos.id)) streams.set(pos.id, []);
    streams.get(pos.id)!.push(e);
  }
  for (const [id, evs] of streams) {
    expect(evs[0].event.stage, `stream ${id} starts with start`).to.equal('start');
    const key = parseVkey(evs[0].event.stream_key);
    evs.forEach((e, i) => {
      expect(e.event.stream.seq, `stream ${id}: event ${i} of the log has seq ${e.event.stream.seq}`).to.equal(i);
      expect(e.event.stream.prev, `stream ${id} seq ${i}: prev`).to.equal(i === 0 ? null : leaf(evs[i - 1].raw));
      expect(e.event.schema).to.equal('trailmark.access/v1');
      expect(e.event.proxy).to.be.a('string');
      if (e.event.stage === 'heartbeat' || e.event.stage === 'end') {
        expect(
          key.verify(streamSignatureMessage(e.event.stream), b64decode(e.event.signature)),
          `stream ${id} seq ${i}: signature`,
        ).to.equal(true);
      } else expect(e.event.signature).to.equal(undefined);
    });
  }
  return streams;
}

describe('streams: every event numbered, chained and signed (contract section 4)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let log: RestartableLog;
  const children: ChildProcess[] = [];
  beforeEach(async () => {
    tmp = tempDir('tm-stream-');
    log = new RestartableLog(join(tmp.dir, 'log'));
    await log.start();
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await log.stop();
    tmp.cleanup();
  });

  const ev = (i: number, pad = 0) =>
    requestEvent({
      requestId: `req-${i}`,
      proxy: 'unit',
      actor: { id: 'alice', roles: [], ip: '127.0.0.1', user_agent: 'x'.repeat(pad) },
      action: { protocol: 'http', method: 'GET', target: 'http://upstream', path: `/x/${i}`, query: '' },
      decision: { allowed: true, reason: 'test' },
    });

  it('numbers events as they become durable: a refused event takes no seq; heartbeats and end are signed; a clean end starts a new stream', async () => {
    const spoolDir = join(tmp.dir, 'spool');
    let trail = await AccessTrail.open({
      spoolDir,
      log: { url: log.url, vkey: log.vkey },
      proxy: 'unit',
      heartbeatMs: 50,
      shipper: { lingerMs: 0 },
    });
    const firstId = trail.stream!.id;
    await trail.before(ev(1));
    // an event the spool refuses (over the log's entry limit) gets no number: no hole after it
    const huge = { ...ev(2), actor: { ...ev(2).actor, user_agent: 'x'.repeat(70_000) } };
    await trail.before(huge).then(
      () => expect.fail('spooled an event over the entry limit'),
      (e) => expect((e as SpoolError).code).to.equal('too-large'),
    );
    await trail.after(
      responseEvent({
        requestId: 'req-1',
        proxy: 'unit',
        outcome: { status: 200, bytes: 1, request_bytes: 0, duration_ms: 1 },
      }),
    );
    await waitFor('two heartbeats', () => trail.stream!.next.seq >= 5);
    await trail.close();
    trail = await AccessTrail.open({
      spoolDir,
      log: { url: log.url, vkey: log.vkey },
      proxy: 'unit',
      heartbeatMs: 0,
      shipper: { lingerMs: 0 },
    });
    expect(trail.stream!.id).to.not.equal(firstId);
    await trail.before(ev(3));
    await trail.after(
      responseEvent({
        requestId: 'req-3',
        proxy: 'unit',
        outcome: { status: 200, bytes: 1, request_bytes: 0, duration_ms: 1 },
      }),
    );
    await trail.shipper.drained();
    await trail.close();
    const streams = checkStreams(await logEntries(log.url));
    expect([...streams.keys()]).to.deep.equal([firstId, trail.stream!.id]);
    const first = streams.get(firstId)!.map((e) => e.event.stage);
    // heartbeats come on their timer, anywhere after start
    expect(first.filter((s) => s !== 'heartbeat')).to.deep.equal(['start', 'request', 'response', 'end']);
    expect(first.filter((s) => s === 'heartbeat').length).to.be.at.least(2);
    expect(first[first.length - 1]).to.equal('end');
    expect(streams.get(trail.stream!.id)!.map((e) => e.event.stage)).to.deep.equal([
      'start',
      'request',
      'response',
      'end',
    ]);
    byRequest((await logEntries(log.url)).map((e) => e.event));
  });

  it('a proxy run with SIGKILLs: streams without holes, chained, signed; every request with exactly one response', async () => {
    const upstream = await startUpstream();
    // an upstream that never answers one path: a request in flight when the proxy is killed
    const hang = http.createServer((req, res) => {
      if (req.url === '/hang') return;
      // one that sends its head and part of a body, then hangs: a status went out before the crash
      if (req.url === '/hang-head') {
        res.writeHead(202, { 'content-type': 'text/plain' });
        res.write('partial');
        return;
      }
      res.end('ok');
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const hangUrl = `http://127.0.0.1:${(hang.address() as { port: number }).port}`;
    const tokens = join(tmp.dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ 'alice-token-1': { id: 'alice', roles: [] } }));
    const spool = join(tmp.dir, 'spool');
    const start = (up: string) =>
      spawnProxy(
        bin,
        [
          '--upstream',
          up,
          '--log',
          log.url,
          '--log-key',
          log.vkey,
          '--tokens',
          tokens,
          '--listen',
          '127.0.0.1:0',
          '--spool',
          spool,
          '--name',
          'crashy',
          '--heartbeat-seconds',
          '0.2',
        ],
        children,
      );
    const auth = { authorization: 'Bearer alice-token-1' };
    const burst = (url: string, n: number) =>
      Array.from({ length: n }, (_, i) =>
        fetch(`${url}/b/${i}`, { headers: auth })
          .then((r) => r.text())
          .catch(() => null),
      );
    const kill = async (p: ChildProcess) => {
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
    };
    try {
      // run 1: a burst, and a request left hanging upstream when the proxy is killed
      const a = await start(hangUrl);
      const hung = fetch(`${a.url}/hang`, { headers: auth }).catch(() => null);
      // fetch resolves once the head is in: the proxy has sent 202 when it is killed (the body is left unread, so
      // the client stays connected until then)
      const head = await fetch(`${a.url}/hang-head`, { headers: auth });
      expect(head.status).to.equal(202);
      await Promise.all(burst(a.url, 40));
      await new Promise((r) => setTimeout(r, 300));
      await kill(a.proc);
      await hung;
      // run 2: killed in the middle of a burst
      const b = await start(upstream.url);
      expect(b.key).to.equal(a.key);
      const inflight = burst(b.url, 60);
      await new Promise((r) => setTimeout(r, 30));
      await kill(b.proc);
      await Promise.all(inflight);
      // run 3: a clean stop
      const c = await start(upstream.url);
      await Promise.all(burst(c.url, 20));
      c.proc.kill('SIGTERM');
      await new Promise((r) => c.proc.once('exit', r));
      // run 4 ships whatever run 3 could not
      const d = await start(upstream.url);
      await waitFor('the spool empty', async () => {
        const all = await logEntries(log.url);
        return (
          all.some((e) => e.event.stage === 'start' && e.event.stream.id !== all[0].event.stream.id && e.index > 0) &&
          all.filter((e) => e.event.stage === 'end').length >= 1
        );
      });
      await new Promise((r) => setTimeout(r, 500));
      d.proc.kill('SIGTERM');
      await new Promise((r) => d.proc.once('exit', r));
      const entries = await logEntries(log.url);
      const streams = checkStreams(entries);
      // runs 1 and 2 share a stream (a crash continues it); run 3 ends it; run 4 starts another
      expect(streams.size).to.equal(2);
      const [s1, s2] = [...streams.values()];
      expect(s1[s1.length - 1].event.stage).to.equal('end');
      expect(s1.filter((e) => e.event.stage === 'start')).to.have.length(1);
      expect(s1[0].event.stream_key).to.equal(a.key);
      expect(s2[0].event.stage).to.equal('start');
      const pairs = byRequest(entries.map((e) => e.event));
      expect(pairs.size).to.be.at.least(61);
      // the hanging request: its response event written at the restart, aborted, status unknown
      const h = [...pairs.values()].find((p) => p.request.action.path === '/hang')!;
      expect(h.response.outcome).to.deep.include({ aborted: true, status: null });
      // the one whose head went out: aborted, with the status sent (contract section 4)
      const hh = [...pairs.values()].find((p) => p.request.action.path === '/hang-head')!;
      expect(hh.response.outcome).to.deep.include({ aborted: true, status: 202 });
    } finally {
      await upstream.close();
      hang.closeAllConnections();
      await new Promise((r) => hang.close(r));
    }
  });
});
