import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { parse as parseCsv } from 'csv-parse/sync';
import type { RunningExplorer } from '../src/index.js';
import { PG_STREAM, TRAFFIC, startTrail, type Trail } from './fixture.js';

type Ev = {
  leaf_index: number;
  leaf_hash: string;
  entry: Record<string, any>;
  response: { leaf_index: number; leaf_hash: string; entry: Record<string, any> } | null;
};
type Page = { tree_size: number; events: Ev[]; next: string | null };

describe('explorer API (a log filled through the real proxy)', function () {
  this.timeout(60_000);
  let trail: Trail;
  let x: RunningExplorer;

  before(async () => {
    trail = await startTrail();
    x = await trail.startExplorer();
    await x.indexer.waitForIndexed(trail.size);
  });
  after(async () => {
    await trail?.close();
  });

  async function get(q: string): Promise<Page> {
    const r = await fetch(`${x.url}/api/events?${q}`);
    expect(r.status, await r.clone().text()).to.equal(200);
    return (await r.json()) as Page;
  }
  /** Every match, following cursors. */
  async function all(q: string, limit = 1000): Promise<Ev[]> {
    const out: Ev[] = [];
    let cursor: string | null = null;
    do {
      const p = await get(`${q}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      out.push(...p.events);
      cursor = p.next;
    } while (cursor);
    return out;
  }
  const paths = (evs: Ev[]) => evs.map((e) => `${e.entry.action?.method} ${e.entry.action?.path}`);
  const trafficBy = (pred: (t: (typeof TRAFFIC)[number]) => boolean) =>
    TRAFFIC.filter(pred)
      .map(([, m, p]) => `${m} ${p.split('?')[0]}`)
      .reverse();
  /**
   * Whether the proxy logs the identity a rule refused (contract section 4; a proxy that does not logs
   * actor.id null for its 403s): the requests an actor filter must find depend on it.
   */
  let refusedIdentityLogged = false;
  /** The upstream behind the proxy (action.target of every proxied request). */
  let upstream = '';
  const byToken =
    (token: string) =>
    ([t, , , s]: (typeof TRAFFIC)[number]) =>
      t === token && (s !== 403 || refusedIdentityLogged);
  before(async () => {
    const [e] = (await get('path=/dbx')).events;
    refusedIdentityLogged = e.entry.actor.id === 'alice';
    upstream = e.entry.action.target;
    if (!refusedIdentityLogged)
      console.log('      (note: this proxy logs actor.id null for requests refused by the rules)');
  });

  it('answers with the verified tree size and each request joined with its response, newest first', async () => {
    const p = await get('actor=alice');
    expect(p.tree_size).to.equal(trail.size);
    const http = p.events.filter((e) => e.entry.schema);
    expect(paths(http)).to.deep.equal(trafficBy(byToken('alice-token')));
    for (const e of http) {
      expect(e.entry.stage).to.equal('request');
      expect(e.response, `response of ${e.entry.request_id}`).to.not.equal(null);
      expect(e.response!.entry.stage).to.equal('response');
      expect(e.response!.entry.request_id).to.equal(e.entry.request_id);
      expect(e.response!.leaf_index).to.be.greaterThan(e.leaf_index);
    }
    // the Kubernetes event by alice is found by the same actor filter
    expect(p.events.filter((e) => e.entry.kind === 'Event').map((e) => e.entry.verb)).to.deep.equal(['list']);
    const idx = p.events.map((e) => e.leaf_index);
    expect(idx).to.deep.equal([...idx].sort((a, b) => b - a));
  });

  it('never shows a joined response on its own, and every entry is reachable', async () => {
    const every = await all('x=1', 3);
    const shown = new Set<number>();
    for (const e of every) {
      shown.add(e.leaf_index);
      if (e.response) shown.add(e.response.leaf_index);
    }
    expect(shown.size).to.equal(trail.size);
    expect(every.some((e) => e.entry.stage === 'response')).to.equal(false);
  });

  it('joins a response logged before its request', async () => {
    const [e, ...rest] = await all('request_id=late-r');
    expect(rest).to.deep.equal([]);
    expect(e.entry.stage).to.equal('request');
    expect(e.response!.entry.id).to.equal('late-a');
    expect(e.response!.leaf_index).to.be.lessThan(e.leaf_index);
    expect((await all('status=204')).map((x) => x.entry.id)).to.deep.equal(['late-q']);
  });

  it('filters by target, method, protocol, decision, status, request id and stream', async () => {
    expect(paths(await all('method=POST'))).to.deep.equal(['POST /db/rows']);
    const target = (await get('actor=bob')).events[0].entry.action.target as string;
    expect((await all(`target=${encodeURIComponent(target)}`)).length).to.equal(TRAFFIC.length);
    expect(paths(await all('decision=denied&protocol=http'))).to.deep.equal(trafficBy(([, , , s]) => s !== 200));
    expect(paths(await all('status=403&protocol=http'))).to.deep.equal(trafficBy(([, , , s]) => s === 403));
    const pg = await all('protocol=postgres');
    expect(pg.map((e) => e.entry.stage)).to.deep.equal(['request', 'request', 'connect']);
    expect(pg[0].response!.entry.outcome.sqlstate).to.equal('25006');
    expect((await all('protocol=postgres&status=error')).map((e) => e.entry.action.statement)).to.deep.equal([
      'DELETE FROM invoices',
    ]);
    expect((await all('request_id=pg-r1')).map((e) => e.entry.id)).to.deep.equal(['pg-q1']);
    expect((await all(`stream=${encodeURIComponent(PG_STREAM)}`)).map((e) => e.entry.id)).to.deep.equal([
      'pg-q2',
      'pg-q1',
      'pg-c',
    ]);
    const k8s = await all('protocol=kubernetes&decision=denied');
    expect(k8s.map((e) => [e.entry.user.username, e.entry.verb, e.entry.objectRef.resource])).to.deep.equal([
      ['dave', 'get', 'secrets'],
    ]);
    expect((await all('target=secrets&method=get')).length).to.equal(1);
  });

  it('matches a path prefix on whole segments, and words in the path, query or statement', async () => {
    expect(paths(await all('path=/db'))).to.deep.equal(['GET /db/secret', 'POST /db/rows', 'GET /db/tables']);
    expect(paths(await all('path=/echo/public/'))).to.deep.equal([
      'GET /echo/public/invoice',
      'GET /echo/public/readme',
      'GET /echo/public/readme',
    ]);
    expect(paths(await all('path=/ech'))).to.deep.equal([]);
    expect(paths(await all('q=orders'))).to.deep.equal(['GET /db/tables']);
    expect((await all('q=invoices')).map((e) => e.entry.id)).to.deep.equal(['pg-q2', 'pg-q1']);
    expect((await all('q=invoices%20total')).map((e) => e.entry.id)).to.deep.equal(['pg-q1']);
    expect(paths(await all('q=acme'))).to.deep.equal(['GET /echo/public/invoice']);
  });

  it('filters by time (RFC 3339)', async () => {
    const pgOnly = await all('from=2026-01-02T10:00:00.500Z&to=2026-01-02T10:00:59Z');
    expect(pgOnly.map((e) => e.entry.id)).to.deep.equal(['pg-q1']);
    const r = await fetch(`${x.url}/api/events?from=yesterday`);
    expect(r.status).to.equal(400);
    expect(((await r.json()) as { error: string }).error).to.match(/RFC 3339/);
  });

  it('pages with cursors: every match once, in order, whatever the page size', async () => {
    const whole = (await get('limit=1000')).events.map((e) => e.leaf_index);
    for (const limit of [1, 2, 5]) {
      expect(
        (await all('x=1', limit)).map((e) => e.leaf_index),
        `limit ${limit}`,
      ).to.deep.equal(whole);
    }
    expect((await fetch(`${x.url}/api/events?limit=1001`)).status).to.equal(400);
    expect((await fetch(`${x.url}/api/events?cursor=garbage`)).status).to.equal(400);
  });

  it('exports every match as NDJSON that jq reads and CSV that a CSV parser reads', async () => {
    const ndjson = await (await fetch(`${x.url}/api/events.ndjson?actor=alice`)).text();
    const ids = execFileSync('jq', ['-r', '.entry.request_id // .entry.auditID'], { input: ndjson })
      .toString()
      .trim()
      .split('\n');
    expect(ids).to.deep.equal((await all('actor=alice')).map((e) => e.entry.request_id ?? e.entry.auditID));
    const statuses = execFileSync('jq', ['-r', 'select(.response != null) | .response.entry.outcome.status'], {
      input: ndjson,
    })
      .toString()
      .trim()
      .split('\n');
    expect(statuses).to.deep.equal(
      TRAFFIC.filter(byToken('alice-token'))
        .map((t) => String(t[3]))
        .reverse(),
    );

    const csv = await (await fetch(`${x.url}/api/events.csv?target=${encodeURIComponent(upstream)}`)).text();
    const rows = parseCsv<Record<string, string>>(csv, { columns: true });
    expect(rows.length).to.equal(TRAFFIC.length);
    expect(rows.map((r) => `${r.method} ${r.path} ${r.status} ${r.decision}`)).to.deep.equal(
      [...TRAFFIC].reverse().map(([, m, p, s]) => `${m} ${p.split('?')[0]} ${s} ${s === 200 ? 'allowed' : 'denied'}`),
    );
    expect(rows.find((r) => r.path === '/db/tables')!.query).to.equal('table=orders');
    expect(rows.every((r) => Number(r.response_leaf_index) > Number(r.leaf_index))).to.equal(true);
  });

  it('exports OCSF: HTTP Activity for HTTP events, Datastore Activity for PostgreSQL ones', async () => {
    const text = await (await fetch(`${x.url}/api/events.ocsf.ndjson`)).text();
    const classes = execFileSync('jq', ['-r', '.class_uid'], { input: text }).toString().trim().split('\n');
    expect(classes.filter((c) => c === '4002').length).to.equal(TRAFFIC.length + 1); // and the late DELETE
    expect(classes.filter((c) => c === '6005').length).to.equal(3);
    const events = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const post = events.find((e) => e.http_request?.http_method === 'POST');
    expect(post).to.include({
      category_uid: 4,
      class_uid: 4002,
      activity_id: 6,
      type_uid: 400206,
      status_id: 1,
      action_id: 1,
      disposition_id: 1,
    });
    expect(post.actor.user.name).to.equal('alice');
    expect(post.http_request.url.path).to.equal('/db/rows');
    expect(post.http_response.code).to.equal(200);
    expect(post.metadata.version).to.match(/^1\./);
    const denied = events.find((e) => e.http_request?.url.path === '/db/secret');
    expect(denied).to.include({ status_id: 2, action_id: 2, disposition_id: 2 });
    expect(denied.http_response.code).to.equal(403);
    const del = events.find((e) => e.query_info?.query_string === 'DELETE FROM invoices');
    expect(del).to.include({ category_uid: 6, class_uid: 6005, activity_id: 7, type_uid: 600507, status_id: 2 });
    expect(del.database.name).to.equal('app');
    const connect = events.find((e) => e.class_uid === 6005 && e.activity_id === 3);
    expect(connect.actor.user.name).to.equal('carol');
  });

  it('counts allowed and denied requests per time bucket', async () => {
    const r = (await (await fetch(`${x.url}/api/stats?bucket=minute&protocol=postgres`)).json()) as {
      buckets: { start: string; allowed: number; denied: number }[];
      total: { allowed: number; denied: number };
    };
    expect(r.buckets).to.deep.equal([
      { start: '2026-01-02T10:00:00.000Z', allowed: 1, denied: 0 },
      { start: '2026-01-02T10:01:00.000Z', allowed: 0, denied: 1 },
    ]);
    const http = (await (
      await fetch(`${x.url}/api/stats?bucket=day&protocol=http&target=${encodeURIComponent(upstream)}`)
    ).json()) as { total: { allowed: number; denied: number } };
    expect(http.total).to.deep.equal({
      allowed: TRAFFIC.filter((t) => t[3] === 200).length,
      denied: TRAFFIC.filter((t) => t[3] !== 200).length,
    });
    expect((await fetch(`${x.url}/api/stats?bucket=week`)).status).to.equal(400);
  });

  it('lists streams with their completeness', async () => {
    const r = (await (await fetch(`${x.url}/api/streams`)).json()) as { streams: Record<string, any>[] };
    const pg = r.streams.find((s) => s.id === PG_STREAM)!;
    expect(pg).to.include({ proxy: 'pg-proxy-1', first_seq: 0, last_seq: 4, events: 5, ended: false, complete: true });
    expect(pg.holes).to.deep.equal([]);
  });
});
