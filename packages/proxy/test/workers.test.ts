/**
 * `trailmark proxy --workers N` as a real process tree (node:cluster): a worker SIGKILLed under load while the log
 * is down is restarted on its spool and what it had spooled is delivered; a change of N leaves no spool behind, even
 * one that a process of the previous run still held when the new workers started.
 * Every request event reaches the log exactly once.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Spool } from '@trailmark/recorder';
import { logEntries, RestartableLog, startUpstream, tempDir, waitFor } from './helpers.js';

const bin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const AUTH = { authorization: 'Bearer w-token-1' };

interface Child {
  proc: ChildProcess;
  url: string;
  admin: string;
  pids: Map<number, number>;
  /** What the primary and its workers wrote to stderr so far (warnings: delivery failures, adopted spools). */
  stderr(): string;
}

interface Health {
  ok: boolean;
  spool_depth: number;
  leftover_spools: number;
  workers?: { index: number; pid: number | null; ok: boolean }[];
}

describe('proxy --workers (real processes, real log)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let log: RestartableLog;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let tokens: string;
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    tmp = tempDir('tm-workers-');
    log = new RestartableLog(join(tmp.dir, 'log'));
    await log.start();
    upstream = await startUpstream();
    tokens = join(tmp.dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ 'w-token-1': { id: 'walt', roles: [] } }));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await new Promise((r) => c.once('exit', r));
      }
    }
    await log.stop();
    await upstream.close();
    tmp.cleanup();
  });

  function start(workers: number): Promise<Child> {
    const args = [
      'proxy',
      '--workers',
      String(workers),
      '--upstream',
      upstream.url,
      '--log',
      log.url,
      '--log-key',
      log.vkey,
      '--tokens',
      tokens,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--spool',
      join(tmp.dir, 'spool'),
      '--name',
      'w',
    ];
    const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      c.stderr.on('data', (d: Buffer) => (err += d.toString()));
      c.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const u = /^url: (\S+)$/m.exec(out);
        const a = /^admin: (\S+)$/m.exec(out);
        const pids = new Map([...out.matchAll(/^worker (\d+): pid (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]));
        if (u && a && (workers === 1 || pids.size === workers))
          resolve({ proc: c, url: u[1], admin: a[1], pids, stderr: () => err });
      });
      c.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err}`)));
    });
  }

  const health = async (c: Child) => (await (await fetch(`${c.admin}/healthz`)).json()) as Health;

  /**
   * A waitFor condition: `c` reports an empty spool (when asked) and the log holds `want` request events. Otherwise it
   * throws what it saw, so that a timeout says which spool was stuck and why (the daemons' warnings included).
   */
  function delivered(c: Child, want: number, spoolEmpty: boolean): () => Promise<boolean> {
    return async () => {
      const h = spoolEmpty ? await health(c) : null;
      const n = (await requestEvents()).size;
      if ((!h || (h.spool_depth === 0 && h.leftover_spools === 0)) && n === want) return true;
      const spools = h?.workers?.map((w) => `worker ${w.index}: ${JSON.stringify(w)}`).join('; ') ?? '';
      throw new Error(
        `${n} of ${want} request events in the log${h ? `; spool depth ${h.spool_depth} (${spools})` : ''}; stderr: ${c.stderr().slice(-2000)}`,
      );
    };
  }

  /** `clients` loops each sending `each` requests in turn; returns the request ids of the 200 answers. */
  async function load(
    url: string,
    clients: number,
    each: number,
    tag: string,
    during?: (done: number) => void,
  ): Promise<{ ok: string[]; failed: number }> {
    const ok: string[] = [];
    let failed = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = 0; i < each; i++) {
          try {
            const r = await fetch(`${url}/echo/${tag}/${c}/${i}`, { headers: AUTH });
            await r.arrayBuffer();
            if (r.status === 200) ok.push(r.headers.get('trailmark-request-id')!);
            else failed++;
          } catch {
            failed++; // a connection the killed worker held
          }
          during?.(++done);
        }
      }),
    );
    return { ok, failed };
  }

  /** Request events in the log by request id; fails on a request event (or a response event) logged twice. */
  async function requestEvents(): Promise<Map<string, Record<string, any>>> {
    const seen = new Map<string, Record<string, any>>();
    const responses = new Set<string>();
    for (const { event } of await logEntries(log.url)) {
      if (event.stage === 'request') {
        expect(seen.has(event.request_id), `request event ${event.request_id} logged twice`).to.equal(false);
        seen.set(event.request_id, event);
      } else if (event.stage === 'response') {
        expect(responses.has(event.request_id), `response event ${event.request_id} logged twice`).to.equal(false);
        responses.add(event.request_id);
      }
    }
    return seen;
  }

  it('a worker SIGKILLed under load while the log is down is restarted on its spool; every request event reaches the log exactly once', async () => {
    const p = await start(2);
    expect(p.pids.size).to.equal(2);
    const a = await load(p.url, 4, 5, 'a');
    expect(a.failed).to.equal(0);
    await log.stop();
    const victim = p.pids.get(0)!;
    let killed = false;
    const b = await load(p.url, 8, 25, 'b', (done) => {
      if (done === 60 && !killed) {
        killed = true;
        process.kill(victim, 'SIGKILL');
      }
    });
    expect(killed).to.equal(true);
    // the primary restarts worker 0 with a new process on the same spool
    await waitFor('worker 0 restarted', async () => {
      const h = await health(p);
      return h.ok && h.workers!.length === 2 && h.workers!.every((w) => w.ok) && h.workers![0].pid !== victim;
    });
    const c = await load(p.url, 4, 5, 'c');
    expect(c.failed).to.equal(0);
    await log.start();
    await waitFor('every spool delivered', async () => (await health(p)).spool_depth === 0, 60_000);
    const events = await requestEvents();
    const answered = [...a.ok, ...b.ok, ...c.ok];
    // some requests were on worker 0's connections when it died; the others were all answered
    expect(b.ok.length).to.be.above(100);
    for (const id of answered)
      expect(events.has(id), `request ${id} was answered 200 but its event is not in the log`).to.equal(true);
    // each event names one of the workers' streams by its proxy name
    for (const e of events.values()) expect(e.proxy).to.equal('w');
  });

  /** With the log down, three workers spool 60 requests' events, then stop: their spools are left undelivered. */
  async function spoolWithThreeWorkers(): Promise<{ ok: string[]; failed: number }> {
    await log.stop();
    const three = await start(3);
    const first = await load(three.url, 6, 5, 'three');
    expect(first.failed).to.equal(0);
    // 60 request events, plus each worker's stream events (start, heartbeats)
    await waitFor('60 events spooled', async () => (await health(three)).spool_depth >= 60);
    three.proc.kill('SIGTERM');
    await new Promise((r) => three.proc.once('exit', r));
    return first;
  }

  it('changing the number of workers leaves no spool undelivered, and /metrics adds up the workers', async () => {
    const first = await spoolWithThreeWorkers();
    await log.start();
    // two workers now: worker-2's spool is adopted by one of them
    const two = await start(2);
    const second = await load(two.url, 4, 5, 'two');
    expect(second.failed).to.equal(0);
    await waitFor('every spool delivered to two workers', delivered(two, 50, true), 60_000);
    const metrics = await (await fetch(`${two.admin}/metrics`)).text();
    expect(metrics).to.match(/^trailmark_proxy_requests_total\{outcome="forwarded"\} 20$/m);
    two.proc.kill('SIGTERM');
    await new Promise((r) => two.proc.once('exit', r));
    // and back to one process on the root spool: the workers' spools are its leftovers
    const one = await start(1);
    const third = await load(one.url, 2, 5, 'one');
    expect(third.failed).to.equal(0);
    await waitFor('every spool delivered to one process', delivered(one, 60, false), 60_000);
    const events = await requestEvents();
    for (const id of [...first.ok, ...second.ok, ...third.ok]) expect(events.has(id)).to.equal(true);
  });

  it('a leftover spool that a process of the previous run still holds is delivered once it lets go, however late', async () => {
    await spoolWithThreeWorkers();
    // worker-2's spool stays open elsewhere (an old process still draining) for longer than a successor waits for a
    // dying predecessor's lock
    const held = await Spool.open({ dir: join(tmp.dir, 'spool', 'worker-2') });
    await log.start();
    const two = await start(2);
    await new Promise((r) => setTimeout(r, 12_000));
    // meanwhile /healthz does not report everything delivered: one spool of the earlier run is still to go
    const waiting = await health(two);
    expect(waiting.leftover_spools).to.equal(1);
    expect((await requestEvents()).size).to.be.below(30);
    await held.close();
    await waitFor('the spool let go of delivered', delivered(two, 30, true), 20_000);
  });
});
