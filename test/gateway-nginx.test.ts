/**
 * forward-auth behind a real nginx (Debian's package), running the configuration docs/gateways.md shows: a
 * real log server, a real upstream, forward-auth on its real spool, and nginx's auth_request in front.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import type { TrailMode } from '@trailmark/recorder';
import { startForwardAuth, TokenStore, type RunningForwardAuth } from '@trailmark/proxy';
import { documentedNginxConfig, ensureNginx, onFreePort, startNginx, type RunningNginx } from './lib/nginx.js';
import { tempDir, waitFor } from './lib/util.js';

const doc = readFileSync(fileURLToPath(new URL('../docs/gateways.md', import.meta.url)), 'utf8');
const TOKENS = { 'alice-gateway-token-1': { id: 'alice', roles: ['ops'] } };
type Ev = Record<string, any>;

/** The request events in the log (the stream's own start and heartbeat events are in it too). */
async function logEvents(url: string): Promise<Ev[]> {
  const { tree_size: n } = (await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number };
  if (n === 0) return [];
  const r = (await (await fetch(`${url}/v1/get-entries?start=0&end=${n - 1}`)).json()) as {
    entries: { leaf_input: string }[];
  };
  return r.entries
    .map((e) => JSON.parse(Buffer.from(e.leaf_input, 'base64').toString('utf8')) as Ev)
    .filter((e) => e.stage === 'request');
}

describe('forward-auth behind a real nginx (auth_request, the documented configuration)', function () {
  this.timeout(60_000);
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let log: LogServer | null;
  let logPort: number;
  let upstream: Server;
  let seen: { url: string; headers: IncomingHttpHeaders }[];
  let fa: RunningForwardAuth | null;
  let nginx: RunningNginx | null;

  before(function () {
    // installs Debian's nginx when missing and root, else fails naming the package
    this.timeout(600_000);
    ensureNginx();
  });

  beforeEach(async () => {
    tmp = await tempDir('gw-nginx');
    log = await startLogServer({
      dataDir: join(tmp.dir, 'log'),
      listen: '127.0.0.1:0',
      origin: 'test.example/gateway',
    });
    // a restart later in the test comes back on this port
    logPort = Number(new URL(log.url).port);
    seen = [];
    upstream = createServer((req, res) => {
      seen.push({ url: req.url!, headers: req.headers });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('from the upstream');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    fa = null;
    nginx = null;
  });
  afterEach(async () => {
    await nginx?.close();
    await fa?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    await log?.close();
    await tmp.cleanup();
  });

  async function setUp(mode: TrailMode): Promise<RunningNginx> {
    fa = await startForwardAuth({
      log: log!.url,
      logKey: log!.vkey,
      tokens: new TokenStore(TOKENS),
      listen: '127.0.0.1:0',
      spoolDir: join(tmp.dir, 'spool'),
      mode,
      strictDeadlineMs: 1500,
      name: 'gateway-test',
      warn: () => {},
    });
    const faPort = Number(new URL(fa.url).port);
    const upstreamPort = (upstream.address() as { port: number }).port;
    nginx = await onFreePort((listen) =>
      startNginx(documentedNginxConfig(doc, { listen, forwardAuth: faPort, upstream: upstreamPort }), listen),
    );
    return nginx;
  }

  it('a request with a valid token reaches the upstream and is in the log with its actor; one without gets 401 and is logged', async () => {
    const ng = await setUp('spool');
    const ok = await fetch(`${ng.url}/invoices/2024?access_token=hidden&page=2`, {
      headers: { authorization: 'Bearer alice-gateway-token-1', 'user-agent': 'gateway-test/1' },
    });
    expect(ok.status).to.equal(200);
    expect(await ok.text()).to.equal('from the upstream');
    expect(seen).to.have.length(1);
    const id = seen[0].headers['trailmark-request-id'] as string;
    expect(id).to.match(/^[0-9a-f-]{36}$/);
    expect(seen[0].headers['x-forwarded-user']).to.equal('alice');
    expect(seen[0].headers.authorization, 'the bearer token went on to the service').to.equal(undefined);

    const denied = await fetch(`${ng.url}/invoices/2024`, { headers: { 'user-agent': 'gateway-test/1' } });
    expect(denied.status).to.equal(401);
    expect(denied.headers.get('www-authenticate')).to.equal('Bearer');
    await denied.text();
    expect(seen, 'the upstream saw the refused request').to.have.length(1);

    fa!.trail.shipper.poke();
    let evs: Ev[] = [];
    await waitFor('both events in the log', async () => (evs = await logEvents(log!.url)).length >= 2);
    expect(evs).to.have.length(2);
    const allowed = evs.find((e) => e.request_id === id)!;
    expect(allowed).to.deep.include({ stage: 'request', proxy: 'gateway-test' });
    expect(allowed.actor).to.deep.equal({ id: 'alice', roles: ['ops'], ip: '127.0.0.1', user_agent: 'gateway-test/1' });
    expect(allowed.action).to.deep.equal({
      protocol: 'http',
      method: 'GET',
      target: 'http://127.0.0.1',
      path: '/invoices/2024',
      query: 'access_token=REDACTED&page=2',
    });
    const refused = evs.find((e) => e.request_id !== id)!;
    expect(refused.actor.id).to.equal(null);
    expect(refused.decision).to.deep.equal({ allowed: false, reason: 'no bearer token' });
    expect(JSON.stringify(evs)).to.not.include('alice-gateway-token-1');
    // nginx's own access log keeps the outcomes
    expect(ng.accessLog()).to.match(/"GET \/invoices\/2024\?access_token=hidden&page=2 HTTP\/1.1" 200 /);
  });

  it('strict mode with the log down: nginx refuses (503) and the upstream sees nothing; with the log back, it passes', async () => {
    const ng = await setUp('strict');
    const auth = { authorization: 'Bearer alice-gateway-token-1' };
    const first = await fetch(`${ng.url}/a`, { headers: auth });
    expect(first.status).to.equal(200);
    await first.text();
    expect(seen).to.have.length(1);
    // acknowledged by the log before nginx passed it on
    expect((await logEvents(log!.url)).map((e) => e.request_id)).to.deep.equal([
      seen[0].headers['trailmark-request-id'],
    ]);

    const vkey = log!.vkey;
    await log!.close();
    log = null;
    const down = await fetch(`${ng.url}/b`, { headers: auth });
    expect(down.status).to.equal(503);
    expect(((await down.json()) as { error: string }).error).to.match(/cannot record/);
    expect(seen, 'the upstream saw a request the log did not acknowledge').to.have.length(1);

    log = await startLogServer({
      dataDir: join(tmp.dir, 'log'),
      listen: `127.0.0.1:${logPort}`,
      origin: 'test.example/gateway',
    });
    expect(log.vkey).to.equal(vkey);
    await waitFor('the log acknowledging again', async () => {
      const r = await fetch(`${ng.url}/c`, { headers: auth });
      await r.text();
      return r.status === 200;
    });
    expect(seen.length).to.be.at.least(2);
    expect(seen.every((s) => s.url !== '/b')).to.equal(true);
  });
});
