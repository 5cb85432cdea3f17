import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Spool } from '@trailmark/recorder';
import { startProxy, type RunningProxy } from '../src/index.js';
import { sendWhileRefused } from '../../../test/lib/http.js';
import {
  accessCount,
  byRequest,
  logEntries,
  spawnProxy,
  RestartableLog,
  startRelay,
  startUpstream,
  tempDir,
  treeSize,
  waitFor,
} from './helpers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'packages/cli/dist/bin.js');

const TOKENS = {
  'alice-secret-token-111': { id: 'alice', roles: ['dba'] },
  'bob-secret-token-222': { id: 'bob', roles: ['viewer'] },
};
const RULES = {
  dba: { methods: ['GET', 'POST', 'PUT'], paths: ['/db', '/echo', '/big'] },
  viewer: { methods: ['GET'], paths: ['/echo/public/'] },
};

async function req(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const r = await fetch(url, { method: opts.method ?? 'GET', headers: opts.headers, body: opts.body });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

type Ev = Record<string, any>;

describe('access proxy (real upstream, real log, real proxy)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let log: RestartableLog;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let tokensFile: string;
  let rulesFile: string;
  const running: RunningProxy[] = [];
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    tmp = tempDir('tm-proxy-');
    log = new RestartableLog(join(tmp.dir, 'log'));
    await log.start();
    upstream = await startUpstream();
    tokensFile = join(tmp.dir, 'tokens.json');
    rulesFile = join(tmp.dir, 'rules.json');
    writeFileSync(tokensFile, JSON.stringify(TOKENS));
    writeFileSync(rulesFile, JSON.stringify(RULES));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const p of running.splice(0)) await p.close();
    await log.stop();
    await upstream.close();
    tmp.cleanup();
  });

  async function proxy(extra: Partial<Parameters<typeof startProxy>[0]> = {}): Promise<RunningProxy> {
    const p = await startProxy({
      upstream: upstream.url,
      log: log.url,
      logKey: log.vkey,
      tokens: tokensFile,
      rules: rulesFile,
      listen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      spoolDir: join(tmp.dir, 'spool'),
      name: 'proxy-under-test',
      redactHeaders: ['x-api-key', 'user-agent'],
      redactQuery: ['password'],
      warn: () => {},
      ...extra,
    });
    running.push(p);
    return p;
  }

  it('logs allowed, 401 and 403 requests with the right identity and no secret anywhere', async () => {
    const p = await proxy();
    const secretHeaders = {
      cookie: 'session=cookie-secret-333',
      'x-api-key': 'api-key-secret-444',
      'user-agent': 'ua-secret-555',
    };
    const ok = await req(`${p.url}/db/tables?password=query-secret-666&access_token=query-secret-777&q=1`, {
      headers: { authorization: 'Bearer alice-secret-token-111', ...secretHeaders },
    });
    expect(ok.status).to.equal(200);
    const echoed = JSON.parse(ok.text);
    expect(echoed.url).to.equal('/db/tables?password=query-secret-666&access_token=query-secret-777&q=1');
    expect(echoed.headers.authorization, 'the proxy credential went upstream').to.equal(undefined);
    expect(echoed.headers['trailmark-request-id']).to.equal(ok.headers.get('trailmark-request-id'));
    const noToken = await req(`${p.url}/db/tables`, { headers: secretHeaders });
    const badToken = await req(`${p.url}/db/tables`, {
      headers: { authorization: 'Bearer wrong-secret-token-888', ...secretHeaders },
    });
    const forbidden = await req(`${p.url}/db/../admin/users`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer bob-secret-token-222', ...secretHeaders },
    });
    const dotdot = await req(`${p.url}/echo/public/%2e%2e/private`, {
      headers: { authorization: 'Bearer bob-secret-token-222' },
    });
    expect([noToken.status, badToken.status, forbidden.status, dotdot.status]).to.deep.equal([401, 401, 403, 403]);
    expect(upstream.seen).to.have.length(1);
    const ids = [ok, noToken, badToken, forbidden, dotdot].map((r) => r.headers.get('trailmark-request-id')!);
    ids.forEach((id) => expect(id).to.match(/^[0-9a-f-]{36}$/));

    // response events are spooled right after each answer completes: wait for all ten events
    await waitFor('ten events in the log', async () => (await accessCount(log.url)) === 10);
    await p.trail.shipper.drained();
    const entries = await logEntries(log.url);
    for (const s of [
      'upstream-session=zzz',
      'alice-secret-token-111',
      'bob-secret-token-222',
      'wrong-secret-token-888',
      'cookie-secret-333',
      'api-key-secret-444',
      'ua-secret-555',
      'query-secret-666',
      'query-secret-777',
    ]) {
      for (const e of entries) expect(e.raw, `secret ${s} reached the log`).to.not.include(s);
    }
    const m = byRequest(entries.map((e) => e.event));
    expect([...m.keys()].sort()).to.deep.equal([...ids].sort());
    const a = m.get(ids[0])!;
    expect(a.request).to.deep.include({ stage: 'request', proxy: 'proxy-under-test' });
    expect(a.request.actor).to.deep.equal({ id: 'alice', roles: ['dba'], ip: '127.0.0.1', user_agent: 'REDACTED' });
    expect(a.request.action).to.deep.equal({
      protocol: 'http',
      method: 'GET',
      target: upstream.url,
      path: '/db/tables',
      query: 'password=REDACTED&access_token=REDACTED&q=1',
    });
    expect(a.request.decision).to.deep.equal({ allowed: true, reason: 'allowed by role dba' });
    expect(a.request.time).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Object.keys(a.response).sort()).to.deep.equal([
      'id',
      'outcome',
      'proxy',
      'request_id',
      'schema',
      'stage',
      'stream',
      'time',
    ]);
    expect(a.response.outcome.status).to.equal(200);
    expect(a.response.outcome.bytes).to.equal(Buffer.byteLength(ok.text));
    expect(a.response.outcome.request_bytes).to.equal(0);
    expect(a.response.outcome.duration_ms).to.be.a('number').and.at.least(0);
    expect(a.request.id).to.not.equal(a.response.id);
    for (const [i, status] of [
      [1, 401],
      [2, 401],
    ] as const) {
      const r = m.get(ids[i])!;
      expect(r.request.actor).to.deep.equal({ id: null, roles: [], ip: '127.0.0.1', user_agent: 'REDACTED' });
      expect(r.request.decision.allowed).to.equal(false);
      expect(r.response.outcome.status).to.equal(status);
    }
    expect(m.get(ids[1])!.request.decision.reason).to.equal('no bearer token');
    expect(m.get(ids[2])!.request.decision.reason).to.equal('unknown bearer token');
    const f = m.get(ids[3])!;
    // refused by the rules: the identity refused (contract section 4)
    expect(f.request.actor).to.deep.equal({ id: 'bob', roles: ['viewer'], ip: '127.0.0.1', user_agent: 'REDACTED' });
    expect(f.request.action).to.deep.include({ method: 'DELETE', path: '/admin/users' });
    expect(f.request.decision).to.deep.equal({
      allowed: false,
      reason: 'no rule allows DELETE /admin/users for bob (roles [viewer])',
    });
    expect(f.response.outcome.status).to.equal(403);
    expect(m.get(ids[4])!.request.action.path).to.equal('/echo/private');

    const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
    expect(metrics).to.match(/^trailmark_spool_depth 0$/m);
    // ten access events and the stream's start
    expect(metrics).to.match(/^trailmark_spool_delivered_total 11$/m);
    expect(metrics).to.match(/^trailmark_proxy_requests_total\{outcome="unauthenticated"\} 2$/m);
    const health = await (await fetch(`${p.adminUrl}/healthz`)).json();
    expect(health).to.deep.include({ ok: true, spool_depth: 0, delivered: 11, receipt_failures: 0 });
  });

  it('records the request body size, forwarded or refused', async () => {
    const p = await proxy();
    const sent = await req(`${p.url}/echo/upload`, {
      method: 'POST',
      body: 'x'.repeat(12345),
      headers: { authorization: 'Bearer alice-secret-token-111' },
    });
    const refused = await req(`${p.url}/echo/upload`, {
      method: 'POST',
      body: 'y'.repeat(321),
      headers: { authorization: 'Bearer bob-secret-token-222' },
    });
    expect([sent.status, refused.status]).to.deep.equal([200, 403]);
    expect(JSON.parse(sent.text).bytes).to.equal(12345);
    await waitFor('four events in the log', async () => (await accessCount(log.url)) === 4);
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    expect(m.get(sent.headers.get('trailmark-request-id')!)!.response.outcome.request_bytes).to.equal(12345);
    const r = m.get(refused.headers.get('trailmark-request-id')!)!;
    expect(r.request.actor.id).to.equal('bob');
    expect(r.response.outcome.request_bytes).to.equal(321);
  });

  it('a client still sending a refused body reads the refusal, whether the proxy (403) or the upstream (413) refused it', async () => {
    const p = await proxy();
    const big = `connection: close\r\ncontent-length: ${20 * 2 ** 20}\r\n`;
    const denied = await sendWhileRefused(
      `${p.url}/echo/upload`,
      `authorization: Bearer bob-secret-token-222\r\n${big}`,
    );
    expect(denied.error, denied.answer).to.equal(undefined);
    expect(denied.answer).to.match(/^HTTP\/1.1 403 /);
    const upstreamSaid = await sendWhileRefused(
      `${p.url}/echo/refuse`,
      `authorization: Bearer alice-secret-token-111\r\n${big}`,
    );
    expect(upstreamSaid.error, upstreamSaid.answer).to.equal(undefined);
    expect(upstreamSaid.answer).to.match(/^HTTP\/1.1 413 /);
    expect(upstreamSaid.answer, upstreamSaid.answer).to.match(/too large for this upstream\r\n0\r\n\r\n$/);
    // both are in the log, with the status the client read
    await waitFor('four events in the log', async () => (await accessCount(log.url)) === 4);
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    for (const [answer, status] of [
      [denied.answer, 403],
      [upstreamSaid.answer, 413],
    ] as const) {
      const id = /trailmark-request-id: (\S+)/i.exec(answer)![1];
      expect(m.get(id)!.response.outcome.status).to.equal(status);
    }
    // the proxy still serves
    const after = await req(`${p.url}/echo/after`, { headers: { authorization: 'Bearer alice-secret-token-111' } });
    expect(after.status).to.equal(200);
  });

  /** Sends one raw HTTP/1.1 request (the exact request line given) and returns the status and headers. */
  function raw(
    url: string,
    requestLine: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; id: string | null; text: string }> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const sock = net.connect(Number(u.port), u.hostname);
      let data = '';
      sock.on('data', (d) => (data += d.toString()));
      sock.on('error', reject);
      sock.on('close', () => {
        const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
        resolve({
          status: m ? Number(m[1]) : 0,
          id: /trailmark-request-id: (\S+)/i.exec(data)?.[1] ?? null,
          text: data,
        });
      });
      const h = Object.entries({ host: u.host, connection: 'close', ...headers })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      sock.write(`${requestLine} HTTP/1.1\r\n${h}\r\n`);
    });
  }

  it('refuses paths an upstream would read differently (..;, encoded dots and semicolons, matrix params) before the rules', async () => {
    const p = await proxy();
    const bob = { authorization: 'Bearer bob-secret-token-222' };
    const allowed = await raw(p.url, 'GET /echo/public/a', bob);
    expect(allowed.status).to.equal(200);
    const tricks = [
      '/echo/public/..;/db',
      '/echo/public/..%3b/db',
      '/echo/public/%2e%2e%3b/db',
      '/echo/public/%2e%2e%3B/db',
      '/echo/public/x;jsessionid=1',
      '/echo/public/%2e%2e%2fdb',
      '/echo/public/..%5cdb',
    ];
    const rs = await Promise.all(tricks.map((t) => raw(p.url, `GET ${t}`, bob)));
    rs.forEach((r, i) => expect(r.status, tricks[i]).to.equal(400));
    expect(upstream.seen.map((x) => x.url)).to.deep.equal(['/echo/public/a']);
    await waitFor('all events', async () => (await accessCount(log.url)) === 2 * (tricks.length + 1));
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    for (const r of rs) {
      const ev = m.get(r.id!)!;
      expect(ev.request.actor.id).to.equal('bob');
      expect(ev.request.decision.allowed).to.equal(false);
      expect(ev.request.decision.reason).to.match(/^ambiguous path/);
      expect(ev.response.outcome.status).to.equal(400);
    }
  });

  it('redacts a query parameter in every spelling: name[], ;-separated, and as a matrix parameter', async () => {
    const p = await proxy();
    const alice = { authorization: 'Bearer alice-secret-token-111' };
    const rs = [
      await raw(p.url, 'GET /echo/a?password[]=sec-aaa1', alice),
      await raw(p.url, 'GET /echo/a?x=1;password=sec-bbb2', alice),
      await raw(p.url, 'GET /echo/a?PASSWORD%5B0%5D=sec-ccc3', alice),
      await raw(p.url, 'GET /echo/a;password=sec-ddd4', alice),
    ];
    // a matrix parameter is an ambiguous path under rules: refused, and still redacted in the event
    expect(rs.map((r) => r.status)).to.deep.equal([200, 200, 200, 400]);
    await waitFor('all events', async () => (await accessCount(log.url)) === 8);
    const entries = await logEntries(log.url);
    for (const e of entries) expect(e.raw).to.not.match(/sec-(aaa1|bbb2|ccc3|ddd4)/);
    const m = byRequest(entries.map((e) => e.event));
    expect(m.get(rs[0].id!)!.request.action.query).to.equal('password[]=REDACTED');
    expect(m.get(rs[1].id!)!.request.action.query).to.equal('x=1;password=REDACTED');
    expect(m.get(rs[3].id!)!.request.action.path).to.equal('/echo/a;password=REDACTED');
  });

  it('records CONNECT (refused, 501) and forwards OPTIONS * as OPTIONS *', async () => {
    const p = await proxy({ rules: undefined });
    const alice = { authorization: 'Bearer alice-secret-token-111' };
    const connect = await raw(p.url, 'CONNECT example.invalid:443', alice);
    expect(connect.status).to.equal(501);
    const star = await raw(p.url, 'OPTIONS *', alice);
    expect(star.status).to.equal(200);
    expect(upstream.seen.map((x) => `${x.method} ${x.url}`)).to.deep.equal(['OPTIONS *']);
    await waitFor('four events', async () => (await accessCount(log.url)) === 4);
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    const c = m.get(connect.id!)!;
    expect(c.request.action).to.deep.include({ method: 'CONNECT', path: 'example.invalid:443' });
    expect(c.request.decision).to.deep.equal({ allowed: false, reason: 'CONNECT is not supported' });
    expect(c.response.outcome.status).to.equal(501);
    expect(m.get(star.id!)!.request.action).to.deep.include({ method: 'OPTIONS', path: '*' });
  });

  it('spool mode: serves while the log is down, then every event reaches the log exactly once', async () => {
    const p = await proxy();
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const ids: string[] = [];
    const burst = async (n: number, tag: string) => {
      const rs = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          req(`${p.url}/echo/${tag}/${i}`, { method: 'POST', headers: auth, body: `body ${tag} ${i}` }),
        ),
      );
      for (const r of rs) {
        expect(r.status).to.equal(200);
        ids.push(r.headers.get('trailmark-request-id')!);
      }
    };
    await burst(10, 'before');
    await log.stop();
    await burst(30, 'during');
    await waitFor('response events spooled', () => p.trail.spool.depth >= 60);
    await waitFor('the shipper to hit the dead log', () => p.trail.client.stats.retries > 0);
    const health = (await (await fetch(`${p.adminUrl}/healthz`)).json()) as Ev;
    expect(health.spool_depth).to.be.at.least(60);
    expect(health.oldest_undelivered_age_seconds).to.be.greaterThan(0);
    await waitFor('a failed delivery', () => p.trail.shipper.stats.failedBatches > 0);
    expect(((await (await fetch(`${p.adminUrl}/healthz`)).json()) as Ev).last_error).to.match(/unavailable/);
    await log.start();
    await burst(10, 'after');
    p.trail.shipper.poke();
    await waitFor('a hundred events in the log', async () => (await accessCount(log.url)) >= 100);
    await p.trail.shipper.drained();
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    expect(m.size).to.equal(50);
    expect([...m.keys()].sort()).to.deep.equal([...ids].sort());
    expect(await accessCount(log.url)).to.equal(100);
    // delivery works again: the old error is gone from /healthz
    expect(((await (await fetch(`${p.adminUrl}/healthz`)).json()) as Ev).last_error).to.equal(null);
  });

  it("a log that refuses the proxy's token is a configuration error (exit 2); the token comes from a file or the environment", async () => {
    const { startLogServer } = await import('@trailmark/log-server');
    const guarded = await startLogServer({
      dataDir: join(tmp.dir, 'guarded'),
      listen: '127.0.0.1:0',
      submitTokens: ['log-submit-token-999'],
    });
    try {
      const args = (spool: string) => [
        'proxy',
        '--workers',
        '1',
        '--upstream',
        upstream.url,
        '--log',
        guarded.url,
        '--log-key',
        guarded.vkey,
        '--tokens',
        tokensFile,
        '--listen',
        '127.0.0.1:0',
        '--spool',
        join(tmp.dir, spool),
      ];
      const none = await cli(args('s1'));
      expect(none.code, none.err).to.equal(2);
      expect(none.err).to.match(/refuses writes without a log token.*401/);
      const wrong = await cli([...args('s2'), '--log-token-file', tokensFile]);
      expect(wrong.code, wrong.err).to.equal(2);
      expect(wrong.err).to.match(/refuses the log token/);
      expect(wrong.err).to.not.contain('alice-secret-token-111');
      const tokenFile = join(tmp.dir, 'log-token');
      writeFileSync(tokenFile, 'log-submit-token-999\n');
      const auth = { authorization: 'Bearer alice-secret-token-111' };
      for (const [spool, extra, env] of [
        ['s3', ['--log-token-file', tokenFile], {}],
        ['s4', [], { TRAILMARK_LOG_TOKEN: 'log-submit-token-999' }],
      ] as const) {
        const { url, proc: c } = await spawnProxy(bin, [...args(spool).slice(1), ...extra], children, env);
        const before = await treeSize(guarded.url);
        expect((await req(`${url}/echo/x`, { headers: auth })).status).to.equal(200);
        await waitFor('events delivered with the token', async () => (await treeSize(guarded.url)) >= before + 2);
        c.kill('SIGTERM');
        await new Promise((r) => c.once('exit', r));
      }
    } finally {
      await guarded.close();
    }
  });

  /** `trailmark proxy` as a child process; resolves with its URLs once it listens. */
  async function startChild(
    spool: string,
    logUrl = log.url,
  ): Promise<{ url: string; admin: string; proc: ChildProcess }> {
    const p = await spawnProxy(
      bin,
      [
        '--upstream',
        upstream.url,
        '--log',
        logUrl,
        '--log-key',
        log.vkey,
        '--tokens',
        tokensFile,
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--spool',
        spool,
        '--name',
        'child',
      ],
      children,
    );
    return { url: p.url, admin: p.admin!, proc: p.proc };
  }

  /** Runs the CLI to completion. */
  function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [bin, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      });
      children.push(c);
      let out = '';
      let err = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (err += d.toString()));
      c.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
    });
  }

  it('refuses to start on a damaged spool (exit 2, naming segment and offset); spool check and salvage ship what is valid', async () => {
    const spool = join(tmp.dir, 'spool-damaged');
    const s = await Spool.open({ dir: spool });
    for (let i = 0; i < 60; i++) await s.append(Buffer.from(JSON.stringify({ salvage_test: i })));
    await s.close();
    const name = readdirSync(spool).find((n) => n.endsWith('.seg'))!;
    const data = readFileSync(join(spool, name));
    let off = 0;
    for (let i = 0; i < 6; i++) off += 16 + JSON.stringify({ salvage_test: i }).length;
    data[off + 20] ^= 0x01;
    writeFileSync(join(spool, name), data);
    const refused = await cli([
      'proxy',
      '--workers',
      '1',
      '--upstream',
      upstream.url,
      '--log',
      log.url,
      '--log-key',
      log.vkey,
      '--tokens',
      tokensFile,
      '--listen',
      '127.0.0.1:0',
      '--spool',
      spool,
    ]);
    expect(refused.code, refused.err).to.equal(2);
    expect(refused.err).to.contain(name).and.to.contain(`byte ${off}`);
    const check = await cli(['spool', 'check', spool]);
    expect(check.code).to.equal(1);
    expect(check.out).to.contain(`damaged at offset ${off}`);
    const salvage = await cli(['spool', 'salvage', spool]);
    expect(salvage.code, salvage.err).to.equal(0);
    expect(salvage.out).to.contain('kept 59 undelivered records');
    expect((await cli(['spool', 'check', spool])).code).to.equal(0);
    const child = await startChild(spool);
    await waitFor(
      'salvaged events delivered',
      async () => (await logEntries(log.url)).filter((e) => 'salvage_test' in e.event).length === 59,
    );
    const got = (await logEntries(log.url)).filter((e) => 'salvage_test' in e.event).map((e) => e.event.salvage_test);
    expect(got).to.deep.equal([0, 1, 2, 3, 4, 5, ...Array.from({ length: 53 }, (_, i) => i + 7)]);
    // the loss is in the trail: the new stream's event after start says what salvage skipped
    await waitFor('the salvage event', async () =>
      (await logEntries(log.url)).some((e) => e.event.stage === 'salvage'),
    );
    const salvaged = (await logEntries(log.url)).find((e) => e.event.stage === 'salvage')!.event;
    expect(salvaged.stream.seq).to.equal(1);
    expect(salvaged.salvage).to.deep.include({
      kept: 59,
      skipped: [{ segment: name, offset: off, bytes: 16 + JSON.stringify({ salvage_test: 6 }).length }],
    });
    child.proc.kill('SIGTERM');
    await new Promise((r) => child.proc.once('exit', r));
  });

  it('spool mode: nothing lost or duplicated when the proxy is SIGKILLed after the log took a batch, before its ack', async () => {
    const spool = join(tmp.dir, 'spool-held');
    // the relay passes batches to the log but holds the answers back: the proxy dies before it can ack
    const relay = await startRelay(log.url, { holdMs: (path) => (path === '/v1/add-entries' ? 60_000 : 0) });
    try {
      const first = await startChild(spool, relay.url);
      const auth = { authorization: 'Bearer alice-secret-token-111' };
      const rs = await Promise.all(
        Array.from({ length: 10 }, (_, i) => req(`${first.url}/echo/held/${i}`, { headers: auth })),
      );
      const ids = rs.map((r) => r.headers.get('trailmark-request-id')!);
      rs.forEach((r) => expect(r.status).to.equal(200));
      // a first batch is in the log, its answer held back; everything is still in the spool
      // (the stream's start event and the twenty access events)
      await waitFor(
        'a batch committed by the log, not acked',
        async () =>
          (await treeSize(log.url)) >= 1 &&
          ((await (await fetch(`${first.admin}/healthz`)).json()) as Ev).spool_depth === 21,
      );
      const committedBeforeCrash = await treeSize(log.url);
      first.proc.kill('SIGKILL');
      await new Promise((r) => first.proc.once('exit', r));
      const second = await startChild(spool);
      await waitFor(
        'spool empty',
        async () => ((await (await fetch(`${second.admin}/healthz`)).json()) as Ev).spool_depth === 0,
      );
      // the resend of the batch the log already had was answered with the original indexes
      expect(committedBeforeCrash).to.be.within(1, 21);
      expect(await accessCount(log.url)).to.equal(20);
      const m = byRequest((await logEntries(log.url)).map((e) => e.event));
      expect([...m.keys()].sort()).to.deep.equal([...ids].sort());
      second.proc.kill('SIGTERM');
      await new Promise((r) => second.proc.once('exit', r));
    } finally {
      await relay.close();
    }
  });

  it('spool mode: nothing lost or duplicated when the proxy is SIGKILLed while the log is down', async () => {
    const spool = join(tmp.dir, 'spool-child');
    const start = () => startChild(spool);
    const first = await start();
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const ids: string[] = [];
    const burst = async (url: string, n: number, tag: string) => {
      const rs = await Promise.all(
        Array.from({ length: n }, (_, i) => req(`${url}/echo/${tag}/${i}`, { headers: auth })),
      );
      for (const r of rs) {
        expect(r.status).to.equal(200);
        ids.push(r.headers.get('trailmark-request-id')!);
      }
    };
    await burst(first.url, 5, 'a');
    await waitFor('first events delivered', async () => (await accessCount(log.url)) === 10);
    // and acknowledged: a batch the log took but whose receipt was still being checked would stay spooled
    await waitFor(
      'first events acknowledged',
      async () => ((await (await fetch(`${first.admin}/healthz`)).json()) as Ev).spool_depth === 0,
    );
    await log.stop();
    await burst(first.url, 25, 'b');
    // the response event is spooled just after the answer: wait until the proxy says all 50 are on disk
    await waitFor(
      'events spooled',
      async () => ((await (await fetch(`${first.admin}/healthz`)).json()) as Ev).spool_depth === 50,
    );
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    await log.start();
    const second = await start();
    await burst(second.url, 5, 'c');
    await waitFor('every event delivered', async () => (await accessCount(log.url)) >= 70, 30_000);
    await waitFor(
      'spool empty',
      async () => ((await (await fetch(`${second.admin}/healthz`)).json()) as Ev).spool_depth === 0,
    );
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    expect(m.size).to.equal(35);
    expect([...m.keys()].sort()).to.deep.equal([...ids].sort());
    expect(await accessCount(log.url)).to.equal(70);
    second.proc.kill('SIGTERM');
    await new Promise((r) => second.proc.once('exit', r));
  });

  it('strict mode: forwards after the log acknowledged, answers 503 while it is down', async () => {
    const p = await proxy({ mode: 'strict', strictDeadlineMs: 1500 });
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const ok = await req(`${p.url}/echo/1`, { headers: auth });
    expect(ok.status).to.equal(200);
    // the request event is in the log before the upstream saw the request, so it is there now
    const first = (await logEntries(log.url)).map((e) => e.event);
    expect(
      first.some((e) => e.stage === 'request' && e.request_id === ok.headers.get('trailmark-request-id')),
    ).to.equal(true);
    await log.stop();
    const seenBefore = upstream.seen.length;
    const down = await req(`${p.url}/echo/2`, { headers: auth });
    expect(down.status).to.equal(503);
    expect(JSON.parse(down.text).error).to.equal('the log is unavailable');
    expect(upstream.seen.length, 'forwarded without an acknowledgement').to.equal(seenBefore);
    // while the log is known to be down, the next refusals come at once rather than after the retries
    const t0 = Date.now();
    const down2 = await req(`${p.url}/echo/2b`, { headers: auth });
    expect(down2.status).to.equal(503);
    expect(Date.now() - t0).to.be.below(1000);
    await log.start();
    const again = await req(`${p.url}/echo/3`, { headers: auth });
    expect(again.status).to.equal(200);
    p.trail.shipper.poke();
    await waitFor('eight events in the log', async () => (await accessCount(log.url)) >= 8);
    await p.trail.shipper.drained();
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    expect(m.size).to.equal(4);
    expect(await accessCount(log.url)).to.equal(8);
    expect(m.get(down.headers.get('trailmark-request-id')!)!.response.outcome).to.deep.include({
      status: 503,
      bytes: Buffer.byteLength(down.text),
    });
  });

  it('streams large bodies both ways without buffering them', async () => {
    const p = await proxy();
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const size = 24 * 1024 * 1024;
    const h = createHash('sha256');
    let sent = 0;
    const chunk = Buffer.alloc(256 * 1024, 7);
    const body = Readable.from(
      (function* () {
        while (sent < size) {
          const c = chunk.subarray(0, Math.min(chunk.length, size - sent));
          sent += c.length;
          h.update(c);
          yield c;
        }
      })(),
    );
    const up = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = http.request(
        `${p.url}/db/upload`,
        { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' } },
        (res) => {
          let t = '';
          res.on('data', (d: Buffer) => (t += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, text: t }));
        },
      );
      r.on('error', reject);
      body.pipe(r);
    });
    expect(up.status).to.equal(200);
    const echoed = JSON.parse(up.text);
    expect(echoed.bytes).to.equal(size);
    expect(echoed.sha256).to.equal(h.digest('hex'));
    expect(echoed.headers['transfer-encoding']).to.equal('chunked');
    // a slow reader: the proxy must apply backpressure, not buffer the whole answer
    const down = await new Promise<{ bytes: number; id: string }>((resolve, reject) => {
      http
        .get(`${p.url}/db/../big?n=${size}`, { headers: auth }, (res) => {
          let bytes = 0;
          res.on('data', (d: Buffer) => {
            bytes += d.length;
            if (bytes < 2 * 1024 * 1024) {
              res.pause();
              setTimeout(() => res.resume(), 5);
            }
          });
          res.on('end', () => resolve({ bytes, id: String(res.headers['trailmark-request-id']) }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    expect(down.bytes).to.equal(size);
    // the response event is spooled once the answer is complete, just after the client saw its end
    await waitFor('both requests logged', async () => (await accessCount(log.url)) === 4);
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    expect(m.get(down.id)!.response.outcome).to.deep.include({ status: 200, bytes: size });
    expect(m.get(down.id)!.request.action.path).to.equal('/big');
  });

  it('puts the path of --upstream before every forwarded path', async () => {
    const p = await proxy({ upstream: upstream.url + '/base/', rules: undefined });
    const r = await req(`${p.url}/db/x?y=1`, { headers: { authorization: 'Bearer bob-secret-token-222' } });
    expect(r.status).to.equal(200);
    expect(JSON.parse(r.text).url).to.equal('/base/db/x?y=1');
    await waitFor('both events in the log', async () => (await accessCount(log.url)) === 2);
    const ev = byRequest((await logEntries(log.url)).map((e) => e.event)).get(r.headers.get('trailmark-request-id')!)!;
    expect(ev.request.action).to.deep.include({ target: upstream.url, path: '/db/x', query: 'y=1' });
    expect(ev.request.decision.reason).to.equal('valid bearer token');
  });

  it('answers 502 when the upstream goes away, and logs it', async () => {
    const p = await proxy();
    await upstream.close();
    const r = await req(`${p.url}/db/x`, { headers: { authorization: 'Bearer alice-secret-token-111' } });
    expect(r.status).to.equal(502);
    expect(JSON.parse(r.text).error).to.match(/^upstream failed: ECONNREFUSED/);
    await waitFor('both events in the log', async () => (await accessCount(log.url)) === 2);
    const m = byRequest((await logEntries(log.url)).map((e) => e.event));
    const ev = m.get(r.headers.get('trailmark-request-id')!)!;
    expect(ev.request.decision.allowed).to.equal(true);
    expect(ev.response.outcome).to.deep.include({ status: 502, bytes: Buffer.byteLength(r.text) });
    upstream = await startUpstream();
  });

  it('refuses protocol upgrades with 501 and still logs them', async () => {
    const p = await proxy();
    const r = await new Promise<{ status: number; id: string }>((resolve, reject) => {
      const q = http.request(`${p.url}/db/ws`, {
        headers: { authorization: 'Bearer alice-secret-token-111', connection: 'Upgrade', upgrade: 'websocket' },
      });
      q.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode!, id: String(res.headers['trailmark-request-id']) });
      });
      q.on('upgrade', () => reject(new Error('upgraded')));
      q.on('error', reject);
      q.end();
    });
    expect(r.status).to.equal(501);
    await waitFor('both events in the log', async () => (await accessCount(log.url)) === 2);
    const ev = byRequest((await logEntries(log.url)).map((e) => e.event)).get(r.id)!;
    expect(ev.request.actor.id).to.equal('alice');
    expect(ev.request.decision).to.deep.equal({ allowed: false, reason: 'protocol upgrades are not supported' });
    expect(ev.response.outcome.status).to.equal(501);
    expect(upstream.seen).to.have.length(0);
  });

  it('fails fast on bad configuration', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; err: string }>((resolve) => {
        const c = spawn(process.execPath, [bin, 'proxy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(c);
        let err = '';
        c.stderr.on('data', (d: Buffer) => (err += d.toString()));
        c.on('exit', (code) => resolve({ code: code ?? -1, err }));
      });
    const base = (o: Record<string, string>) => {
      const v = {
        '--workers': '1',
        '--upstream': upstream.url,
        '--log': log.url,
        '--log-key': log.vkey,
        '--tokens': tokensFile,
        '--listen': '127.0.0.1:0',
        '--spool': join(tmp.dir, 'sp'),
        ...o,
      };
      return Object.entries(v).flat();
    };
    const cases: [Record<string, string>, RegExp][] = [
      [{ '--tokens': join(tmp.dir, 'missing.json') }, /cannot read tokens file .*missing\.json: ENOENT/],
      [{ '--log-key': 'not-a-key' }, /--log-key "not-a-key" is neither a vkey|not a valid vkey/],
      [{ '--upstream': 'http://127.0.0.1:9' }, /upstream http:\/\/127\.0\.0\.1:9 is unreachable: ECONNREFUSED/],
      [{ '--rules': join(tmp.dir, 'tokens.json') }, /rules file .*: role "alice-secret-token-111" rule 1: "methods"/],
      [{ '--mode': 'lossy' }, /--mode must be spool or strict/],
      [{ '--stream-key': join(tmp.dir, 'no-such.key') }, /cannot read stream key .*no-such\.key: ENOENT/],
      [{ '--stream-key': tokensFile }, /stream key .* is not a signed-note private key/],
    ];
    writeFileSync(join(tmp.dir, 'bad-tokens.json'), '{"t": {"roles": ["x"]}}');
    cases.push([{ '--tokens': join(tmp.dir, 'bad-tokens.json') }, /entry 1: "id" must be a non-empty string/]);
    const results = await Promise.all(cases.map(([o]) => run(base(o))));
    results.forEach((r, i) => {
      expect(r.code, r.err).to.equal(2);
      expect(r.err).to.match(cases[i][1]);
    });
  });
});
