import { expect } from 'chai';
import { join } from 'node:path';
import { Rules, startForwardAuth, TokenStore, type ForwardAuthOptions, type RunningForwardAuth } from '../src/index.js';
import { logEntries, RestartableLog, tempDir, waitFor } from './helpers.js';

const TOKENS = {
  'alice-secret-token-111': { id: 'alice', roles: ['dba'] },
  'bob-secret-token-222': { id: 'bob', roles: ['viewer'] },
};
const RULES = {
  dba: { methods: ['*'], paths: ['/'] },
  viewer: { methods: ['GET'], paths: ['/public'] },
};

type Ev = Record<string, any>;

/** A subrequest as nginx's auth_request sends it with the configuration of docs/gateways.md. */
function nginxHeaders(method: string, uri: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'x-original-method': method,
    'x-original-uri': uri,
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'billing.internal',
    'x-forwarded-for': '203.0.113.9',
    'user-agent': 'curl/8',
    ...extra,
  };
}

describe('forward-auth (real log, real spool)', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let log: RestartableLog;
  const running: RunningForwardAuth[] = [];

  beforeEach(async () => {
    tmp = tempDir('tm-fwdauth-');
    log = new RestartableLog(join(tmp.dir, 'log'));
    await log.start();
  });
  afterEach(async () => {
    for (const p of running.splice(0)) await p.close();
    await log.stop();
    tmp.cleanup();
  });

  async function start(extra: Partial<ForwardAuthOptions> = {}): Promise<RunningForwardAuth> {
    const f = await startForwardAuth({
      log: log.url,
      logKey: log.vkey,
      tokens: new TokenStore(TOKENS),
      rules: new Rules(RULES),
      listen: '127.0.0.1:0',
      spoolDir: join(tmp.dir, 'spool'),
      name: 'fa-test',
      warn: () => {},
      ...extra,
    });
    running.push(f);
    return f;
  }

  async function events(f: RunningForwardAuth, n: number): Promise<Ev[]> {
    f.trail.shipper.poke();
    // the stream's own events (start, heartbeat) are in the log too: count request events
    const requests = async () => (await logEntries(log.url)).map((e) => e.event).filter((e) => e.stage === 'request');
    await waitFor(`${n} request events in the log`, async () => (await requests()).length >= n);
    return requests();
  }

  it('answers 200 for an allowed request once its event is durable, 401/403 for refused ones, and logs each with the original request', async () => {
    const f = await start();
    const before = f.trail.spool.depth + f.trail.shipper.stats.delivered;
    const ok = await fetch(f.url + '/auth', {
      headers: nginxHeaders('DELETE', '/rows/7?access_token=leak&x=1', {
        authorization: 'Bearer alice-secret-token-111',
      }),
    });
    expect(ok.status).to.equal(200);
    expect(ok.headers.get('trailmark-actor')).to.equal('alice');
    const okId = ok.headers.get('trailmark-request-id');
    // durable before the answer: in the spool now, or already delivered from it
    expect(f.trail.spool.depth + f.trail.shipper.stats.delivered).to.equal(before + 1);
    const none = await fetch(f.url + '/auth', { headers: nginxHeaders('GET', '/rows') });
    expect(none.status).to.equal(401);
    expect(none.headers.get('www-authenticate')).to.equal('Bearer');
    const forbidden = await fetch(f.url + '/auth', {
      headers: nginxHeaders('POST', '/public/x', { authorization: 'Bearer bob-secret-token-222' }),
    });
    expect(forbidden.status).to.equal(403);
    // a path upstreams read differently is refused before the rules: 403 too, which gateways pass on (a 400
    // from auth_request is an error to nginx)
    const ambiguous = await fetch(f.url + '/auth', {
      headers: nginxHeaders('GET', '/rows/..;/admin', { authorization: 'Bearer alice-secret-token-111' }),
    });
    expect(ambiguous.status).to.equal(403);

    const evs = await events(f, 4);
    expect(evs).to.have.length(4);
    for (const e of evs) {
      expect(e).to.include({ schema: 'trailmark.access/v1', stage: 'request', proxy: 'fa-test' });
      expect(e.action.target).to.equal('https://billing.internal');
      expect(e.actor.ip).to.equal('203.0.113.9');
      expect(e.actor.user_agent).to.equal('curl/8');
    }
    const byId = new Map(evs.map((e) => [e.request_id, e]));
    const allowed = byId.get(okId)!;
    expect(allowed.actor).to.include({ id: 'alice' });
    expect(allowed.action).to.include({ method: 'DELETE', path: '/rows/7', query: 'access_token=REDACTED&x=1' });
    expect(allowed.decision.allowed).to.equal(true);
    const anon = byId.get(none.headers.get('trailmark-request-id'))!;
    expect(anon.actor.id).to.equal(null);
    expect(anon.decision).to.deep.equal({ allowed: false, reason: 'no bearer token' });
    const refused = byId.get(forbidden.headers.get('trailmark-request-id'))!;
    expect(refused.decision.allowed).to.equal(false);
    expect(refused.action).to.include({ method: 'POST', path: '/public/x' });
    const odd = byId.get(ambiguous.headers.get('trailmark-request-id'))!;
    expect(odd.actor.id).to.equal('alice');
    expect(odd.decision.allowed).to.equal(false);
    expect(odd.decision.reason).to.match(/^ambiguous path/);
    // no secret reached the log
    const raw = (await logEntries(log.url)).map((e) => e.raw).join('\n');
    expect(raw).to.not.match(/secret-token|leak/);
    // forward-auth sees no answer from the upstream: request events only
    expect(evs.every((e) => e.stage === 'request')).to.equal(true);
  });

  it("reads Traefik's and Caddy's X-Forwarded-* headers, and falls back to the subrequest itself and --target (Envoy)", async () => {
    const f = await start({ target: 'http://orders.internal:9000/ignored-path' });
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const traefik = await fetch(f.url + '/', {
      headers: {
        ...auth,
        'x-forwarded-method': 'PUT',
        'x-forwarded-uri': '/a/../b/c?q=1',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'Shop.Internal:8443',
        'x-forwarded-for': '198.51.100.1, 10.0.0.7',
      },
    });
    expect(traefik.status).to.equal(200);
    // Envoy's ext_authz: the original method and path on the subrequest itself
    const envoy = await fetch(f.url + '/orders/42?z=2', { method: 'PATCH', headers: auth });
    expect(envoy.status).to.equal(200);
    // a forwarded host that is not a host name is not trusted as the target
    const odd = await fetch(f.url + '/x', {
      headers: { ...auth, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil/path' },
    });
    expect(odd.status).to.equal(200);
    const byId = new Map((await events(f, 3)).map((e) => [e.request_id, e]));
    const t = byId.get(traefik.headers.get('trailmark-request-id'))!;
    expect(t.action).to.deep.equal({
      protocol: 'http',
      method: 'PUT',
      target: 'http://shop.internal:8443',
      path: '/b/c',
      query: 'q=1',
    });
    // the last X-Forwarded-For entry is the one the gateway appended
    expect(t.actor.ip).to.equal('10.0.0.7');
    const e = byId.get(envoy.headers.get('trailmark-request-id'))!;
    expect(e.action).to.deep.equal({
      protocol: 'http',
      method: 'PATCH',
      target: 'http://orders.internal:9000',
      path: '/orders/42',
      query: 'z=2',
    });
    expect(e.actor.ip).to.equal('127.0.0.1');
    expect(byId.get(odd.headers.get('trailmark-request-id'))!.action.target).to.equal('http://orders.internal:9000');
  });

  it('strict mode: 200 only after the log acknowledged the event, 503 while the log is down', async () => {
    const f = await start({ mode: 'strict', strictDeadlineMs: 1500 });
    const auth = { authorization: 'Bearer alice-secret-token-111' };
    const ok = await fetch(f.url + '/auth', { headers: nginxHeaders('GET', '/rows/1', auth) });
    expect(ok.status).to.equal(200);
    // acknowledged, so already in the log (nothing went through the spool)
    const inLog = (await logEntries(log.url)).map((e) => e.event).filter((e) => e.stage === 'request');
    expect(inLog.map((e) => e.request_id)).to.deep.equal([ok.headers.get('trailmark-request-id')]);
    await log.stop();
    const down = await fetch(f.url + '/auth', { headers: nginxHeaders('GET', '/rows/2', auth) });
    expect(down.status).to.equal(503);
    expect(((await down.json()) as { error: string }).error).to.equal('the log is unavailable');
    await log.start();
    const again = await fetch(f.url + '/auth', { headers: nginxHeaders('GET', '/rows/3', auth) });
    expect(again.status).to.equal(200);
    // the refused request's event was spooled and reaches the log too: a refusal is on the record
    const evs = await events(f, 3);
    const ids = evs.map((e) => e.request_id).sort();
    expect(ids).to.deep.equal([ok, down, again].map((r) => r.headers.get('trailmark-request-id')).sort());
  });

  it('refuses a bad --target and a bad --mode before opening anything', async () => {
    for (const [extra, msg] of [
      [{ target: 'not a url' }, /--target/],
      [{ target: 'ftp://x' }, /http or https/],
      [{ mode: 'lax' as never }, /--mode/],
    ] as const) {
      let err: Error | null = null;
      try {
        await start(extra);
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).to.match(msg);
    }
  });
});
