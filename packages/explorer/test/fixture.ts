/**
 * A real trail for the explorer tests: a log server, a small upstream, the access proxy in front of it with
 * tokens and rules, traffic sent through the proxy, plus PostgreSQL-proxy-shaped and Kubernetes audit events
 * appended through the log's write API. Then an explorer indexing it.
 */
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import { startProxy, type RunningProxy } from '@trailmark/proxy';
import { b64encode, canonicalJson, hashLeaf, parseVkey } from '@trailmark/tlog';
import { startExplorer, type RunningExplorer } from '../src/index.js';

export const TOKENS = {
  'alice-token': { id: 'alice', roles: ['dba'] },
  'bob-token': { id: 'bob', roles: ['viewer'] },
};
const RULES = {
  dba: { methods: ['GET', 'POST'], paths: ['/db', '/echo'] },
  viewer: { methods: ['GET'], paths: ['/echo/public'] },
};

/** The requests sent through the proxy: [token or null, method, path+query, expected status]. */
export const TRAFFIC: [string | null, string, string, number][] = [
  ['alice-token', 'GET', '/db/tables?table=orders', 200],
  ['alice-token', 'POST', '/db/rows', 200],
  ['alice-token', 'GET', '/dbx/other', 403],
  ['bob-token', 'GET', '/echo/public/readme', 200],
  ['bob-token', 'GET', '/db/secret', 403],
  [null, 'GET', '/echo/public/readme', 401],
  ['alice-token', 'GET', '/echo/public/invoice?customer=acme', 200],
];

export const PG_STREAM = 'pg-proxy-1/0';

/** PostgreSQL proxy events (contract section 4) with a stream whose prev links are real leaf hashes. */
export function pgEvents(): Record<string, unknown>[] {
  const base = { schema: 'trailmark.access/v1', proxy: 'pg-proxy-1' };
  const actor = { id: 'carol', roles: ['analyst'], ip: '127.0.0.1', user_agent: 'psql' };
  const target = 'postgres://127.0.0.1:5432/app';
  const raw: Record<string, unknown>[] = [
    {
      ...base,
      stage: 'connect',
      id: 'pg-c',
      time: '2026-01-02T10:00:00.000Z',
      actor,
      action: { protocol: 'postgres', target, database: 'app', session_id: 's1' },
      decision: { allowed: true, reason: 'rule analyst' },
    },
    {
      ...base,
      stage: 'request',
      id: 'pg-q1',
      request_id: 'pg-r1',
      time: '2026-01-02T10:00:01.000Z',
      actor,
      action: {
        protocol: 'postgres',
        target,
        database: 'app',
        session_id: 's1',
        statement: 'SELECT name FROM invoices WHERE total > $1',
        params: 1,
      },
      decision: { allowed: true, reason: 'rule analyst' },
    },
    {
      ...base,
      stage: 'response',
      id: 'pg-a1',
      request_id: 'pg-r1',
      time: '2026-01-02T10:00:01.020Z',
      outcome: { status: 'ok', command: 'SELECT 3', rows: 3, duration_ms: 2.5 },
    },
    {
      ...base,
      stage: 'request',
      id: 'pg-q2',
      request_id: 'pg-r2',
      time: '2026-01-02T10:01:00.000Z',
      actor,
      action: {
        protocol: 'postgres',
        target,
        database: 'app',
        session_id: 's1',
        statement: 'DELETE FROM invoices',
        params: 0,
      },
      decision: { allowed: false, reason: 'read-only session' },
    },
    {
      ...base,
      stage: 'response',
      id: 'pg-a2',
      request_id: 'pg-r2',
      time: '2026-01-02T10:01:00.001Z',
      outcome: { status: 'error', command: null, rows: 0, sqlstate: '25006', duration_ms: 0.1 },
    },
  ];
  let prev: string | null = null;
  return raw.map((e, seq) => {
    const withStream = { ...e, stream: { id: PG_STREAM, seq, prev } };
    prev = b64encode(hashLeaf(canonicalJson(withStream)));
    return withStream;
  });
}

/** A Kubernetes audit event (audit.k8s.io/v1 Event) as kube-apiserver's webhook sends it. */
export function k8sEvent(
  user: string,
  verb: string,
  resource: string,
  decision: 'allow' | 'forbid',
  code: number,
): Record<string, unknown> {
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: `k8s-${user}-${verb}-${resource}`,
    stage: 'ResponseComplete',
    requestURI: `/api/v1/namespaces/prod/${resource}`,
    verb,
    user: { username: user, groups: ['system:authenticated'] },
    sourceIPs: ['10.0.0.9'],
    objectRef: { resource, namespace: 'prod', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code },
    requestReceivedTimestamp: '2026-01-02T11:00:00.000000Z',
    stageTimestamp: '2026-01-02T11:00:00.010000Z',
    annotations: { 'authorization.k8s.io/decision': decision, 'authorization.k8s.io/reason': '' },
  };
}

export async function addEntries(logUrl: string, entries: object[]): Promise<number> {
  const r = await fetch(`${logUrl}/v1/add-entries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(entries),
  });
  if (r.status !== 200) throw new Error(`add-entries: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { tree_size: number }).tree_size;
}

export async function treeSize(logUrl: string): Promise<number> {
  return ((await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
}

export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function listen(server: http.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** A small upstream: answers every request with a short JSON body naming its method and path. */
async function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

/**
 * A relay in front of `target` that can rewrite JSON answers (a lying explorer or log, or a man in the middle)
 * and add headers. Bodies are passed through as bytes unless `rewrite` returns a new body for the path.
 */
export async function startRelay(
  target: string,
  hook: { rewrite?: (path: string, body: Buffer) => Buffer | undefined; headers?: Record<string, string> } = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    try {
      const r = await fetch(target + req.url, { method: req.method });
      let body: Buffer = Buffer.from(await r.arrayBuffer());
      body = hook.rewrite?.(req.url ?? '/', body) ?? body;
      const headers: Record<string, string> = { ...hook.headers };
      for (const h of ['content-type', 'cache-control', 'access-control-allow-origin', 'content-security-policy']) {
        const v = r.headers.get(h);
        if (v !== null && headers[h] === undefined) headers[h] = v;
      }
      res.writeHead(r.status, { ...headers, 'content-length': body.length });
      res.end(body);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  };
  // a request the handler fails (the log behind went away): drop the connection as a dead upstream would
  const server = http.createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

export interface Trail {
  dir: string;
  log: LogServer;
  vkey: string;
  proxy: RunningProxy;
  /** Entries in the log once the fixture is filled. */
  size: number;
  startExplorer(opts?: { log?: string; dataDir?: string; notice?: (line: string) => void }): Promise<RunningExplorer>;
  close(): Promise<void>;
}

/** The log, upstream and proxy, with TRAFFIC, pgEvents() and two Kubernetes events logged. */
export async function startTrail(): Promise<Trail> {
  const dir = await mkdtemp(join(tmpdir(), 'trailmark-explorer-'));
  const log = await startLogServer({ dataDir: join(dir, 'log'), listen: '127.0.0.1:0', origin: 'explorer.test/log' });
  const upstream = await startUpstream();
  await writeFile(join(dir, 'tokens.json'), JSON.stringify(TOKENS));
  await writeFile(join(dir, 'rules.json'), JSON.stringify(RULES));
  const proxy = await startProxy({
    upstream: upstream.url,
    log: log.url,
    logKey: log.vkey,
    tokens: join(dir, 'tokens.json'),
    rules: join(dir, 'rules.json'),
    listen: '127.0.0.1:0',
    spoolDir: join(dir, 'spool'),
    name: 'http-proxy-1',
    warn: () => {},
    heartbeatMs: 60_000,
  });
  for (const [token, method, path, status] of TRAFFIC) {
    const r = await fetch(proxy.url + path, {
      method,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: method === 'POST' ? '{"row":1}' : undefined,
    });
    await r.arrayBuffer();
    if (r.status !== status) throw new Error(`${method} ${path}: status ${r.status}, want ${status}`);
  }
  // a request and a response event per request, after the stream's start event (heartbeats are a minute apart)
  await waitFor('every proxy event in the log', async () => (await treeSize(log.url)) >= TRAFFIC.length * 2 + 1);
  await addEntries(log.url, pgEvents());
  // a response logged before its request (two streams can interleave so): the index joins them all the same
  await addEntries(log.url, [
    {
      schema: 'trailmark.access/v1',
      stage: 'response',
      id: 'late-a',
      request_id: 'late-r',
      time: '2026-01-02T12:00:00.500Z',
      proxy: 'http-proxy-2',
      outcome: { status: 204, bytes: 0, request_bytes: 0, duration_ms: 1 },
    },
    {
      schema: 'trailmark.access/v1',
      stage: 'request',
      id: 'late-q',
      request_id: 'late-r',
      time: '2026-01-02T12:00:00.000Z',
      proxy: 'http-proxy-2',
      actor: { id: 'erin', roles: [], ip: null, user_agent: null },
      action: { method: 'DELETE', target: 'http://other', path: '/jobs/7', query: '' },
      decision: { allowed: true, reason: 'ok' },
    },
  ]);
  const size = await addEntries(log.url, [
    k8sEvent('dave', 'get', 'secrets', 'forbid', 403),
    k8sEvent('alice', 'list', 'pods', 'allow', 200),
  ]);
  const explorers: RunningExplorer[] = [];
  parseVkey(log.vkey);
  return {
    dir,
    log,
    vkey: log.vkey,
    proxy,
    size,
    async startExplorer(opts = {}) {
      const x = await startExplorer({
        log: opts.log ?? log.url,
        logKey: parseVkey(log.vkey),
        dataDir: opts.dataDir ?? join(dir, 'explorer'),
        listen: '127.0.0.1:0',
        intervalMs: 100,
        alert: () => {},
        ...(opts.notice ? { notice: opts.notice } : {}),
      });
      explorers.push(x);
      return x;
    },
    async close() {
      for (const x of explorers) await x.close();
      await proxy.close();
      await upstream.close();
      await log.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
