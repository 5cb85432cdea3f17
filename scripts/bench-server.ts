/**
 * Log server benchmark (issue 3). The log runs as `trailmark serve` in its own process; load comes from
 * another process (autocannon) over loopback. Each figure is printed beside a ceiling measured in this run:
 * raw SHA-256, raw LevelDB sync batches, a bare node:http server answering the same request pattern.
 *
 *   node --import=tsx scripts/bench-server.ts            full run (1,000,000-entry tree)
 *   BENCH_QUICK=1 node --import=tsx scripts/bench-server.ts   smoke run (100,000 entries, short phases)
 *   BENCH_SIZE=N overrides the tree size.
 *
 * Needs a build (npx tsc -b): it starts packages/cli/dist/bin.js.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  fmt,
  levelSyncBatchRate,
  levelSyncSingleRate,
  row,
  sha256Rates,
  startBareServer,
  waitForUrl,
} from './lib/ceilings.js';
import { decodeEntryBundle } from '@trailmark/tlog';
import { STORE_GROUP, storeCeiling } from './lib/store-ceiling.js';

const quick = process.env.BENCH_QUICK === '1';
const SIZE = Number(process.env.BENCH_SIZE ?? (quick ? 100_000 : 1_000_000));
const SECONDS = quick ? 3 : 10;
const BATCH = 1000;
const BATCH_CONNS = 16;
// BENCH_BIN: another build's CLI (an A/B run against an older checkout's packages/cli/dist/bin.js)
const BIN = process.env.BENCH_BIN ?? fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

/**
 * The load process: autocannon with a per-request body or path, so every submitted event is unique (a fixed
 * body would only measure dedup) and proof requests hit random leaves.
 */
const LOADER = `
const autocannon = require('autocannon');
const o = JSON.parse(process.argv[1]);
const tag = Math.random().toString(36).slice(2, 10);
let seq = 0;
function event() {
  const n = seq++;
  return '{"schema":"trailmark.access/v1","stage":"request","id":"' + tag + '-' + n + '","request_id":"r-' + tag + '-' + n +
    '","time":"2026-11-26T12:00:00.000Z","proxy":"bench","actor":{"id":"alice","roles":["dba"],"ip":"10.1.2.3","user_agent":"bench/1.0"},' +
    '"action":{"method":"GET","target":"http://db.internal:8080","path":"/v1/rows/' + n + '","query":{}},"decision":{"allowed":true,"reason":"role"}}';
}
let setup;
if (o.mode === 'single') setup = (req) => { req.body = event(); return req; };
else if (o.mode === 'batch') setup = (req) => { const a = []; for (let i = 0; i < o.batch; i++) a.push(event()); req.body = '[' + a.join(',') + ']'; return req; };
else if (o.mode === 'proof') setup = (req) => { req.path = '/v1/get-proof-by-index?leaf_index=' + Math.floor(Math.random() * o.size) + '&tree_size=' + o.size; return req; };
else if (o.mode === 'post') setup = (req) => { req.body = event(); return req; };
const opts = { url: o.url, connections: o.connections, pipelining: 1, headers: { 'content-type': 'application/json' },
  method: o.mode === 'proof' ? 'GET' : 'POST', requests: [{ setupRequest: setup }] };
if (o.amount) opts.amount = o.amount; else opts.duration = o.duration;
autocannon(opts, (err, r) => {
  if (err) { console.error(err); process.exit(2); }
  process.stdout.write(JSON.stringify({ total: r.requests.total, duration: r.duration, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx }));
});`;

interface Load {
  rps: number;
  total: number;
  seconds: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(o: {
  url: string;
  mode: 'single' | 'batch' | 'proof' | 'post';
  connections: number;
  duration?: number;
  amount?: number;
  batch?: number;
  size?: number;
}): Promise<Load> {
  const proc = spawn(process.execPath, ['-e', LOADER, JSON.stringify(o)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code: number = await new Promise((r) => proc.on('exit', (c) => r(c ?? 1)));
  if (code !== 0) throw new Error(`load generator failed (${code})`);
  const r = JSON.parse(out);
  return {
    rps: r.total / r.duration,
    total: r.total,
    seconds: r.duration,
    p50: r.p50,
    p99: r.p99,
    errors: r.errors,
    non2xx: r.non2xx,
  };
}

function duBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    const s = statSync(p);
    n += s.isDirectory() ? duBytes(p) : s.size;
  }
  return n;
}

/** The server's own view of its memory, from prom-client's default metrics on /metrics. */
async function heapOf(url: string): Promise<{ used: number; total: number; external: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const metric = (name: string) =>
    Number(new RegExp(`^trailmark_log_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    used: metric('nodejs_heap_size_used_bytes'),
    total: metric('nodejs_heap_size_total_bytes'),
    external: metric('nodejs_external_memory_bytes'),
  };
}

function rssOf(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** The recommended V8 heap settings for a log server (docs/operations.md). */
const SERVER_NODE_ARGS = '--max-semi-space-size=2 --max-old-space-size=128';

async function serve(dir: string): Promise<{ proc: ChildProcess; url: string }> {
  // BENCH_NODE_ARGS: node flags for the server process (e.g. --cpu-prof to profile it); by default the V8 heap
  // settings docs/operations.md recommends for a log, which `npm start` uses too
  const extra = (process.env.BENCH_NODE_ARGS ?? SERVER_NODE_ARGS).split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...extra, BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return { proc, url: await waitForUrl(proc) };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await done;
}

const lines: string[] = [];
const print = (s: string) => {
  lines.push(s);
  console.log(s);
};

async function main(): Promise<void> {
  console.log(
    `log server benchmark: tree of ${fmt(SIZE)} entries, ${SECONDS}s phases${quick ? ' (quick)' : ''}; server node flags: ${process.env.BENCH_NODE_ARGS ?? SERVER_NODE_ARGS}`,
  );
  const sha = sha256Rates(quick ? 200 : 500);
  const levelBatch = await levelSyncBatchRate(1000, quick ? 10 : 30);
  const levelSingle = await levelSyncSingleRate(quick ? 100 : 300);
  const store = await storeCeiling(quick ? 100_000 : 400_000);

  const bare = await startBareServer('{"leaf_index":1,"tree_size":1}');
  const barePost = await load({ url: bare.url, mode: 'post', connections: 64, duration: SECONDS });
  const proofBody = JSON.stringify({
    leaf_index: 123456,
    leaf_hash: 'A'.repeat(43) + '=',
    audit_path: Array.from({ length: 20 }, () => 'B'.repeat(43) + '='),
  });
  bare.close();
  const bareProofSrv = await startBareServer(proofBody);
  const bareGet = await load({ url: bareProofSrv.url, mode: 'proof', connections: 64, duration: SECONDS, size: SIZE });
  bareProofSrv.close();

  const dir = mkdtempSync(join(tmpdir(), 'tm-bench-server-'));
  const { proc, url } = await serve(dir);
  try {
    // single add-entry, 64 clients: each answer is durable and carries a signed checkpoint and a proof
    const single = await load({ url: `${url}/v1/add-entry`, mode: 'single', connections: 64, duration: SECONDS });
    const rssSingle = rssOf(proc.pid!);
    // batched ingest up to SIZE entries
    const before = (await (await fetch(`${url}/v1/get-sth`)).json()).tree_size as number;
    const requests = Math.ceil((SIZE - before) / BATCH);
    const batch = await load({
      url: `${url}/v1/add-entries`,
      mode: 'batch',
      connections: BATCH_CONNS,
      amount: requests,
      batch: BATCH,
    });
    const rssBatch = rssOf(proc.pid!);
    const heapBatch = await heapOf(url);
    const sth = await (await fetch(`${url}/v1/get-sth`)).json();
    const size = sth.tree_size as number;
    const proofs = await load({ url, mode: 'proof', connections: 64, duration: SECONDS, size });
    const mem = rssOf(proc.pid!);
    await stop(proc);
    const disk = duBytes(join(dir, 'db'));
    const bundle = await measureEntryBytes(dir);

    print('');
    print(
      row('single add-entry, 64 clients (req/s)', single.rps, 'req/s', 'bare node:http POST, 64 conns', barePost.rps),
    );
    print(row('  p99 latency = submit to signed receipt (ms)', single.p99, 'ms', 'target', 100));
    print(row('  p50 latency (ms)', single.p50, 'ms', 'target p99', 100));
    print(
      row(
        '  (a commit is one fsync: group commit rate)',
        single.rps,
        'entries/s',
        'LevelDB sync batches of 1 put/s',
        levelSingle,
      ),
    );
    print(
      row(
        `batched ingest, ${BATCH} events/request, ${BATCH_CONNS} conns`,
        (batch.total * BATCH) / batch.seconds,
        'events/s',
        'LevelDB sync puts/s (1000/batch)',
        levelBatch,
      ),
    );
    print(
      row(
        '  same, against the store itself',
        (batch.total * BATCH) / batch.seconds,
        'events/s',
        `log-layout sync batches of ${fmt(STORE_GROUP)}`,
        store,
      ),
    );
    print(
      row(
        '  same, against raw SHA-256 of a 301-byte leaf',
        (batch.total * BATCH) / batch.seconds,
        'events/s',
        'node:crypto SHA-256/s',
        sha.node,
      ),
    );
    print(
      row(
        `inclusion proofs, tree of ${fmt(size)}, 64 conns`,
        proofs.rps,
        'req/s',
        'bare node:http, same GETs',
        bareGet.rps,
      ),
    );
    print(row('  proof p99 latency (ms)', proofs.p99, 'ms', 'bare node:http p99 (ms)', bareGet.p99));
    print(row(`server peak RSS at ${fmt(size)} entries (MB)`, mem.peak / 1e6, 'MB', 'limit (MB)', 256));
    print(
      `  RSS after single phase ${fmt(rssSingle.rss / 1e6)} MB, after ingest ${fmt(rssBatch.rss / 1e6)} MB (peak so far ${fmt(rssBatch.peak / 1e6)} MB), after proofs ${fmt(mem.rss / 1e6)} MB`,
    );
    print(
      `  after ingest, V8 heap used ${fmt(heapBatch.used / 1e6)} MB of ${fmt(heapBatch.total / 1e6)} MB, external (Buffers: tiles, bodies) ${fmt(heapBatch.external / 1e6)} MB`,
    );
    print(row('disk per entry (B)', disk / size, 'B', 'entry bytes + 80 (B)', bundle + 80));
    print(
      `  disk ${fmt(disk)} B for ${fmt(size)} entries of ${bundle.toFixed(1)} B average: ${(disk / size).toFixed(1)} B/entry (LevelDB compresses entries)`,
    );
    print(
      `  errors: single ${single.errors}/${single.non2xx} non-2xx, batch ${batch.errors}/${batch.non2xx}, proofs ${proofs.errors}/${proofs.non2xx}`,
    );
    print(
      `  ceilings: SHA-256 node ${fmt(sha.node)}/s noble ${fmt(sha.noble)}/s; LevelDB sync 1000-put batches ${fmt(levelBatch)} puts/s, single-put batches ${fmt(levelSingle)}/s; the store in log layout ${fmt(store)} entries/s`,
    );
  } finally {
    await stop(proc);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Average canonical entry size, from the first full bundle on disk. */
async function measureEntryBytes(dir: string): Promise<number> {
  const { Level } = await import('level');
  const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  try {
    let total = 0;
    let n = 0;
    for await (const v of db.values({ gt: Buffer.from([0x45]), lt: Buffer.from([0x46]) })) {
      for (const e of decodeEntryBundle(v)) {
        total += e.length;
        n++;
      }
    }
    return total / n;
  } finally {
    await db.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
