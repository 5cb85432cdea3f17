/** Shared by the auditor CLI tests: a real log server with entries, the CLI as a child process, a tampering proxy. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLogServer, type LogServer } from '@trailmark/log-server';

export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `trailmark ARGS` in a child process (asynchronously: the log under test lives in this process). */
export function cli(args: string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function event(i: number, tag = 'honest'): Record<string, unknown> {
  return {
    schema: 'trailmark.access/v1',
    stage: 'request',
    id: `${tag}-${i}`,
    actor: { id: `user${i % 5}`, roles: ['dba'] },
    n: i,
  };
}

export interface TestLog {
  server: LogServer;
  dir: string;
  /** Appends `count` entries (in batches); returns the signed checkpoint of each batch's tree size. */
  add(count: number, tag?: string): Promise<{ size: number; checkpoint: string }[]>;
  size: number;
  close(): Promise<void>;
}

/** Starts a real log server in a temp dir (with `keyFile`, the same key as another log: a fork). */
export async function startTestLog(opts: { keyFile?: string } = {}): Promise<TestLog> {
  const dir = tmp('tm-audit-log-');
  const server = await startLogServer({
    dataDir: dir,
    ...(opts.keyFile ? { keyFile: opts.keyFile, create: true } : {}),
  });
  const log: TestLog = {
    server,
    dir,
    size: 0,
    async add(count, tag = 'honest') {
      const out: { size: number; checkpoint: string }[] = [];
      for (let done = 0; done < count;) {
        const k = Math.min(2000, count - done);
        const body = Array.from({ length: k }, (_, j) => event(log.size + j, tag));
        const res = await fetch(`${server.url}/v1/add-entries`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        if (!res.ok) throw new Error(`add-entries: HTTP ${res.status} ${await res.text()}`);
        const j = (await res.json()) as { tree_size: number; checkpoint: string };
        log.size = j.tree_size;
        out.push({ size: j.tree_size, checkpoint: j.checkpoint });
        done += k;
      }
      return out;
    },
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return log;
}

export interface TamperProxy {
  url: string;
  /** Which upstream serves a path (default: the first). */
  route: (path: string) => string;
  /** Rewrites a response body (default: unchanged). */
  rewrite: (path: string, body: Buffer) => Buffer;
  reset(): void;
  close(): Promise<void>;
}

/** An HTTP proxy in front of one or more logs that can reroute and rewrite responses. */
export async function startTamperProxy(upstream: string): Promise<TamperProxy> {
  const proxy: TamperProxy = {
    url: '',
    route: () => upstream,
    rewrite: (_p, b) => b,
    reset() {
      proxy.route = () => upstream;
      proxy.rewrite = (_p, b) => b;
    },
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    fetch(proxy.route(path) + path)
      .then(async (up) => {
        const body = proxy.rewrite(path.replace(/\?.*$/, ''), Buffer.from(await up.arrayBuffer()));
        const headers: Record<string, string> = {};
        for (const h of ['content-type', 'cache-control', 'retry-after']) {
          const v = up.headers.get(h);
          if (v) headers[h] = v;
        }
        res.writeHead(up.status, headers);
        res.end(body);
      })
      .catch((e) => {
        res.writeHead(502);
        res.end(String(e));
      });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return proxy;
}

/** A copy of `b` with one bit flipped at byte `at`. */
export function flipByte(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] ^= 0x01;
  return c;
}

/** A local port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface TamperedLog {
  dir: string;
  log: TestLog;
  proxy: TamperProxy;
}

/**
 * Registers the hooks of an auditor CLI suite: a temp dir, a test log filled by `fill`, and a tampering proxy
 * in front of it (reset after each test); `use` receives them once they are up.
 */
export function tamperedLogSuite(
  prefix: string,
  fill: (log: TestLog) => Promise<unknown>,
  use: (s: TamperedLog) => void,
): void {
  let s: TamperedLog;
  before(async () => {
    const dir = tmp(prefix);
    const log = await startTestLog();
    await fill(log);
    s = { dir, log, proxy: await startTamperProxy(log.server.url) };
    use(s);
  });
  after(async () => {
    await s.proxy.close();
    await s.log.close();
    rmSync(s.dir, { recursive: true, force: true });
  });
  afterEach(() => s.proxy.reset());
}
