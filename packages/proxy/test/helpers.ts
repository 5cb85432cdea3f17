/** Real components for the proxy tests: an upstream node:http server, a log server, a relay that can misbehave. */
import { spawn, type ChildProcess } from 'node:child_process';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import { closeLingering } from '@trailmark/node';

export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function listen(server: http.Server, port = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

export function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bytes: number;
}

/**
 * An upstream: GET /big?n=BYTES streams n bytes (a repeating pattern); any other request answers JSON with the
 * method, path, headers it received and the SHA-256 and length of the body it read.
 */
export async function startUpstream(): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x');
    if (u.pathname === '/big') {
      const n = Number(u.searchParams.get('n'));
      const chunk = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789');
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': n,
        'set-cookie': 'upstream-session=zzz',
      });
      let left = n;
      const pump = () => {
        while (left > 0) {
          const c = chunk.subarray(0, Math.min(left, chunk.length));
          left -= c.length;
          if (!res.write(c)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, bytes: 0 });
      return;
    }
    if (u.pathname.endsWith('/refuse')) {
      // a body limit: refused at once, unread, closing as nginx does (lingering)
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, bytes: 0 });
      closeLingering(res);
      res.writeHead(413, { 'content-type': 'text/plain' });
      res.end('too large for this upstream');
      return;
    }
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      h.update(c);
    });
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, bytes });
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        bytes,
        sha256: h.digest('hex'),
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'set-cookie': 'upstream-session=zzz',
      });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  const url = await listen(server);
  return { url, seen, close: () => close(server) };
}

/** A log server that can be stopped and started again on the same port and data. */
export class RestartableLog {
  server: LogServer | null = null;
  url = '';
  vkey = '';
  private port = 0;
  constructor(readonly dataDir: string) {}

  async start(): Promise<void> {
    this.server = await startLogServer({
      dataDir: this.dataDir,
      listen: `127.0.0.1:${this.port}`,
      origin: 'test.example/log',
    });
    this.url = this.server.url;
    this.vkey = this.server.vkey;
    this.port = Number(new URL(this.url).port);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
  }
}

/** Every entry of a log, parsed as JSON, with its raw text (for secret scans). */
export async function logEntries(url: string): Promise<{ index: number; raw: string; event: Record<string, any> }[]> {
  const sth = (await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number };
  const out: { index: number; raw: string; event: Record<string, any> }[] = [];
  while (out.length < sth.tree_size) {
    const r = (await (await fetch(`${url}/v1/get-entries?start=${out.length}&end=${sth.tree_size - 1}`)).json()) as {
      entries: { leaf_index: number; leaf_input: string }[];
    };
    for (const e of r.entries) {
      const raw = Buffer.from(e.leaf_input, 'base64').toString('utf8');
      out.push({ index: e.leaf_index, raw, event: JSON.parse(raw) });
    }
  }
  return out;
}

/** Request and response events in a log (the stream's own start, heartbeat and end events not counted). */
export async function accessCount(url: string): Promise<number> {
  return (await logEntries(url)).filter((e) => e.event.stage === 'request' || e.event.stage === 'response').length;
}

export async function treeSize(url: string): Promise<number> {
  return ((await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
}

/**
 * Polls `fn` until it returns true. A throw counts as "not yet" (a server still starting), but the timeout names the
 * last one: a condition that throws to say what it saw, or that can never hold (an event logged twice), then says why.
 */
export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out waiting for ${what}${last === undefined ? '' : ` (last: ${last instanceof Error ? last.message : String(last)})`}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A relay in front of a log that can rewrite answers (a misbehaving log or man in the middle) or answer
 * with errors first, to exercise the client's verification and retries against a real log behind it.
 */
export async function startRelay(
  target: string,
  hook: {
    failFirst?: number;
    failStatus?: number;
    /** Answers the first POSTs with these statuses and Retry-After values, in order (then as failFirst). */
    failWith?: { status: number; retryAfter: string }[];
    rewrite?: (path: string, body: any) => any;
    holdMs?: (path: string) => number;
  },
): Promise<{ url: string; calls: number; posts: number[]; close(): Promise<void> }> {
  const state = { url: '', calls: 0, posts: [] as number[], close: async () => {} };
  let failures = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    state.calls++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method === 'POST') state.posts.push(performance.now());
    const fail = req.method === 'POST' ? hook.failWith?.[state.posts.length - 1] : undefined;
    if (fail) {
      res.writeHead(fail.status, { 'retry-after': fail.retryAfter, 'content-type': 'application/json' });
      return void res.end('{"error":"overloaded"}');
    }
    if (failures < (hook.failFirst ?? 0) && req.method === 'POST') {
      failures++;
      res.writeHead(hook.failStatus ?? 503, { 'retry-after': '0', 'content-type': 'application/json' });
      return void res.end('{"error":"overloaded"}');
    }
    const r = await fetch(target + req.url, {
      method: req.method,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body: req.method === 'POST' ? Buffer.concat(chunks) : undefined,
    });
    let body: Buffer = Buffer.from(await r.arrayBuffer());
    if (hook.rewrite && r.ok && (r.headers.get('content-type') ?? '').includes('json')) {
      body = Buffer.from(JSON.stringify(hook.rewrite(req.url!, JSON.parse(body.toString()))));
    }
    // the log has answered (and committed); the answer is held back, as by a slow network
    const hold = hook.holdMs?.(req.url!) ?? 0;
    if (hold > 0) await new Promise((r) => setTimeout(r, hold));
    if (res.destroyed) return;
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream' });
    res.end(body);
  };
  // a request the handler fails (the log behind went away): drop the connection as a dead upstream would
  const server = http.createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  state.url = await listen(server);
  state.close = () => close(server);
  return state;
}

type Ev = Record<string, any>;

/** Groups log events by request id and checks each request has exactly one request and one response event. */
export function byRequest(events: Ev[]): Map<string, { request: Ev; response: Ev }> {
  const m = new Map<string, { request?: Ev; response?: Ev }>();
  for (const e of events) {
    expect(e.schema).to.equal('trailmark.access/v1');
    if (e.stage !== 'request' && e.stage !== 'response') continue;
    const slot = m.get(e.request_id) ?? {};
    expect(slot[e.stage as 'request' | 'response'], `two ${e.stage} events for ${e.request_id}`).to.equal(undefined);
    slot[e.stage as 'request' | 'response'] = e;
    m.set(e.request_id, slot);
  }
  for (const [id, s] of m) {
    expect(s.request, `no request event for ${id}`).to.not.equal(undefined);
    expect(s.response, `no response event for ${id}`).to.not.equal(undefined);
  }
  return m as Map<string, { request: Ev; response: Ev }>;
}

/**
 * `trailmark proxy ARGS` (the CLI at `bin`) as a child process; resolves once it printed its URL, admin URL
 * (when `--admin-listen` is given) and stream key. The process is pushed to `children` for cleanup.
 */
export function spawnProxy(
  bin: string,
  args: string[],
  children: ChildProcess[],
  env: Record<string, string> = {},
): Promise<{ url: string; admin: string | null; key: string; proc: ChildProcess }> {
  // one process unless the test asks for workers: the tests look into <spool> itself (workers use <spool>/worker-<i>)
  const all = args.includes('--workers') ? args : ['--workers', '1', ...args];
  const c = spawn(process.execPath, [bin, 'proxy', ...all], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(c);
  const wantAdmin = args.includes('--admin-listen');
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const u = /^url: (\S+)$/m.exec(out);
      const a = /^admin: (\S+)$/m.exec(out);
      const k = /^stream key: (\S+)$/m.exec(out);
      if (u && k && (a || !wantAdmin)) resolve({ url: u[1], admin: a ? a[1] : null, key: k[1], proc: c });
    });
    c.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${err}`)));
  });
}
