/**
 * Ceilings measured in the same run as a benchmark, because this machine is shared and noisy: a figure
 * means something only next to what the raw primitives do at the same moment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/** Calls of `fn` per second over about `ms` milliseconds. */
export function rate(fn: () => void, ms: number): number {
  const end = performance.now() + ms;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) fn();
    n += 1000;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** SHA-256 of a 301-byte leaf per second: node:crypto and @noble/hashes. */
export function sha256Rates(ms = 500): { node: number; noble: number } {
  const leaf = randomBytes(301);
  return {
    node: rate(() => createHash('sha256').update(leaf).digest(), ms),
    noble: rate(() => nobleSha256(leaf), ms),
  };
}

/** Raw LevelDB puts/s: sync batches of `batch` random-key 300-byte puts, chained form. */
export async function levelSyncBatchRate(batch = 1000, rounds = 30): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tm-ceiling-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const value = randomBytes(300);
  try {
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      const b = db.batch();
      for (let i = 0; i < batch; i++) b.put(randomBytes(16), value);
      await b.write({ sync: true });
    }
    return (batch * rounds) / ((performance.now() - t0) / 1000);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Raw LevelDB sync batches of one put per second (the fsync bound). */
export async function levelSyncSingleRate(rounds = 300): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tm-ceiling-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  try {
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) await db.batch().put(randomBytes(16), randomBytes(300)).write({ sync: true });
    return rounds / ((performance.now() - t0) / 1000);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const BARE_SERVER = `
const http = require('node:http');
const body = Buffer.from(process.argv[1] || '{"ok":true}');
const s = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); });
});
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => process.stdout.write('url: http://127.0.0.1:' + s.address().port + '\\n'));
`;

/** Starts a bare node:http server in its own process answering every request with `body`. */
export async function startBareServer(
  body = '{"ok":true}',
): Promise<{ url: string; close(): void; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['-e', BARE_SERVER, body], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await waitForUrl(proc);
  return { url, proc, close: () => proc.kill('SIGTERM') };
}

const BARE_FORWARDER = `
const http = require('node:http');
const u = new URL(process.argv[1]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
const s = http.createServer((req, res) => {
  const up = http.request({ hostname: u.hostname, port: u.port, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
});
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => process.stdout.write('url: http://127.0.0.1:' + s.address().port + '\\n'));
`;

/**
 * Starts, in its own process, the least any Node proxy does: a node:http server piping each request to `upstream`
 * through a keep-alive node:http agent and the answer back (the ceiling of a Node proxy on this machine).
 */
export async function startBareForwarder(upstream: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['-e', BARE_FORWARDER, upstream], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { url: await waitForUrl(proc), proc };
}

const BARE_TCP_FORWARDER = `
const net = require('node:net');
const [host, port] = [process.argv[1], Number(process.argv[2])];
const s = net.createServer((c) => {
  const u = net.connect(port, host);
  c.setNoDelay(true);
  u.setNoDelay(true);
  c.pipe(u);
  u.pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.on('close', () => u.destroy());
  u.on('close', () => c.destroy());
});
s.listen(0, '127.0.0.1', () => process.stdout.write('url: tcp://127.0.0.1:' + s.address().port + '\\n'));
`;

/**
 * Starts, in its own process, the least any Node TCP proxy does: a net.Server piping each client socket to
 * host:port and back, looking at nothing (the ceiling of a Node process in a database connection's path).
 */
export async function startBareTcpForwarder(host: string, port: number): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['-e', BARE_TCP_FORWARDER, host, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await waitForUrl(proc);
  return { port: Number(new URL(url).port), proc };
}

/** Resolves with the `url: ...` line a server process prints on start. */
export function waitForUrl(proc: ChildProcess, timeoutMs = 30000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no url line after ${timeoutMs} ms: ${buf}`)), timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /^url: (\S+)$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code} before printing its url: ${buf}`)));
  });
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

/**
 * Runs autocannon in a separate process (so the load does not share the server's event loop).
 * `requests` follows autocannon's option shape; figures are requests/s and latency in ms.
 */
export async function autocannon(opts: {
  url: string;
  connections: number;
  duration?: number;
  amount?: number;
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  requests?: unknown[];
  pipelining?: number;
}): Promise<LoadResult> {
  const script = `
    const autocannon = require('autocannon');
    const o = JSON.parse(process.argv[1]);
    autocannon(o, (err, r) => {
      if (err) { console.error(err); process.exit(2); }
      process.stdout.write(JSON.stringify({ rps: r.requests.average, total: r.requests.total, duration: r.duration, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx }));
    });`;
  const proc = spawn(process.execPath, ['-e', script, JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: process.cwd(),
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code: number = await new Promise((r) => proc.on('exit', (c) => r(c ?? 1)));
  if (code !== 0) throw new Error(`autocannon failed (${code})`);
  const r = JSON.parse(out);
  const rps = r.duration > 0 ? r.total / r.duration : r.rps;
  return { rps, p50: r.p50, p99: r.p99, errors: r.errors, non2xx: r.non2xx };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** One line of a benchmark table: figure, ceiling and their ratio. */
export function row(what: string, figure: number, unit: string, ceilingWhat: string, ceiling: number): string {
  return `${what.padEnd(52)} ${fmt(figure).padStart(10)} ${unit.padEnd(10)} | ${ceilingWhat.padEnd(34)} ${fmt(ceiling).padStart(10)} | ${(figure / ceiling).toFixed(2)}x`;
}

/**
 * CPU time (user + system, ms) used so far by the processes `roots` and all their descendants, from /proc (Linux).
 * The figure a shared machine does not distort: the work done per request, whoever else runs.
 */
export function treeCpuMs(roots: number[]): number {
  const ticks = 100; // USER_HZ on Linux
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const f = statFields(stat);
    parent.set(Number(name), Number(f[1]));
    cpu.set(Number(name), ((Number(f[11]) + Number(f[12])) * 1000) / ticks);
  }
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (roots.includes(p)) return true;
    return false;
  };
  let total = 0;
  for (const [pid, ms] of cpu) if (inTree(pid)) total += ms;
  return total;
}

/**
 * CPU time (user + system, ms) used so far by one thread `tid` of process `pid` (the main thread's tid is the pid),
 * from /proc (Linux): which thread of a process does the work.
 */
export function threadCpuMs(pid: number, tid: number): number {
  return procCpuMs(`/proc/${pid}/task/${tid}/stat`).total;
}

/** The fields of a /proc stat line after the command name in parentheses (which may hold spaces): state, ppid, ... */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU time (ms) in a /proc stat file (`/proc/PID/stat` or a thread's): user + system, and system alone.
 * Precondition: the file exists (throws otherwise).
 */
export function procCpuMs(file: string): { total: number; system: number } {
  const f = statFields(readFileSync(file, 'utf8'));
  // utime and stime are fields 14 and 15 of the line, in clock ticks (USER_HZ, 100 on Linux)
  return { total: ((Number(f[11]) + Number(f[12])) * 1000) / 100, system: (Number(f[12]) * 1000) / 100 };
}

/**
 * CPU time (ms) the whole machine has spent busy and in total since boot, summed over its cores, from /proc/stat
 * (Linux): busy over a run, divided by the work done, is what every process together paid per unit of work.
 */
export function machineCpuMs(): { busy: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu;
  const busy = user + nice + system + irq + softirq + (steal ?? 0);
  return { busy: (busy * 1000) / 100, total: ((busy + idle + iowait) * 1000) / 100 };
}
