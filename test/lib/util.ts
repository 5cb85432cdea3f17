/** Test helpers shared by the end-to-end tests: temp dirs, keys on disk, entries, polling. */
import { spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, generateKey, KEY_TYPE_COSIGNATURE, KEY_TYPE_ED25519 } from '@trailmark/tlog';

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `trailmark-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes a private key to `file` (and FILE.pub), returns the vkey and private key text. */
export async function keyFile(
  file: string,
  name: string,
  witness = false,
): Promise<{ file: string; vkey: string; privateKey: string }> {
  const k = generateKey(name, witness ? KEY_TYPE_COSIGNATURE : KEY_TYPE_ED25519);
  await writeFile(file, k.privateKey + '\n', { mode: 0o600 });
  await writeFile(file + '.pub', k.vkey + '\n');
  return { file, vkey: k.vkey, privateKey: k.privateKey };
}

/** Appends entries through the log's write API; returns the answer. */
export async function addEntries(
  logUrl: string,
  entries: object[],
): Promise<{ tree_size: number; checkpoint: string }> {
  const r = await fetch(`${logUrl}/v1/add-entries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(entries),
  });
  if (r.status !== 200) throw new Error(`add-entries: ${r.status} ${await r.text()}`);
  return (await r.json()) as { tree_size: number; checkpoint: string };
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  ms = 10_000,
  every = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${errorMessage(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * A port that was free a moment ago. Another process may take it before it is used: tests use onFreePort,
 * or listen on port 0 and read the port back; this stays for the benchmark scripts.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether an error (or the output it quotes) says the address was already in use. */
export function addressInUse(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | undefined;
  return err?.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(String(err?.message ?? e));
}

/**
 * For what must be told its port before it listens (a server process, a daemon whose URL others need first):
 * calls `start` with a port that was free a moment ago, and again with another (up to 5 tries) when it fails
 * because something took the port in between. Precondition: `start` cleans up after itself when it throws.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (e) {
      if (attempt >= 5 || !addressInUse(e)) throw e;
    }
  }
}

export const entry = (tag: string, i: number) => ({
  schema: 'trailmark.access/v1',
  stage: 'request',
  id: `${tag}-${i}`,
  request_id: `${tag}-${i}`,
});

/** The built `trailmark` bin. */
export const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

/** Runs `trailmark ARGS` as a child process and collects its exit status and output. */
export function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A TCP server that accepts connections and never answers: a log, peer or witness gone silent. */
export async function startSilentServer(): Promise<{ url: string; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    sockets.add(c);
    c.on('error', () => undefined);
    // read and drop what arrives, so a client closing the connection is seen (socket.closed)
    c.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    sockets,
    close: async () => {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** An alert webhook: an HTTP server keeping the JSON body of every POST it receives. */
export async function startWebhook<T>(): Promise<{ url: string; bodies: T[]; close(): Promise<void> }> {
  const bodies: T[] = [];
  const server = createHttpServer((req, res) => {
    let b = '';
    req.on('data', (d) => (b += d));
    req.on('end', () => {
      bodies.push(JSON.parse(b) as T);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/alert`,
    bodies,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
