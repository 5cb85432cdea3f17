/**
 * The log on PostgreSQL (issue 16) beside the LevelDB store, in one run: batched ingest and inclusion proofs
 * for a LevelDB log, a PostgreSQL-backed log with one frontend, and the same with two frontends sharing the
 * store (the load split between them). Ceilings from the same run: raw PostgreSQL bulk inserts of the same
 * bytes in synchronous-commit transactions, raw LevelDB sync batches.
 *
 * PostgreSQL is a private server (test/lib/postgres.ts) with fsync ON, so its commits cost what LevelDB's do.
 *
 * Beside the 1,000-event batches, each store also takes batches of 100 from 4 clients, the size the proxies'
 * shippers send under load, and the log's CPU per event is printed for both.
 *
 *   node --import=tsx scripts/bench-pgstore.ts           (BENCH_QUICK=1 for a smoke run; BENCH_PG_EVENTS=N;
 *                                                         BENCH_CPU_PROF=DIR writes the frontends' CPU profiles;
 *                                                         BENCH_INGEST_ONLY=1 skips ceilings, proofs and the
 *                                                         2-frontend run, for profiling ingest alone)
 *
 * Needs a build (npx tsc -b): the frontends are `trailmark serve` processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error autocannon ships no types
import autocannon from 'autocannon';
import pg from 'pg';
import { fmt, levelSyncBatchRate, row, treeCpuMs, waitForUrl } from './lib/ceilings.js';
import { startPostgres, type Postgres } from '../test/lib/postgres.js';

const quick = process.env.BENCH_QUICK === '1';
const EVENTS = Number(process.env.BENCH_PG_EVENTS ?? (quick ? 40_000 : 200_000));
const BATCH = 1000;
const CLIENTS = 8;
/** Batches as the proxies' shippers send them under load: tens to hundreds of events from a few shippers. */
const SMALL_BATCH = 100;
const SMALL_CLIENTS = 4;
const INGEST_ONLY = process.env.BENCH_INGEST_ONLY === '1';
const SMALL_EVENTS = Math.ceil(EVENTS / 2 / SMALL_BATCH) * SMALL_BATCH;
const PROOF_SECONDS = quick ? 3 : 8;
/** A directory for the frontends' CPU profiles (node --cpu-prof), when set. */
const PROF = process.env.BENCH_CPU_PROF;
const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

const tag = Math.random().toString(36).slice(2, 8);
let seq = 0;
/**
 * One access event like the proxy's (about 450 bytes), unique so that dedup does not shortcut it. It is sent in
 * RFC 8785 canonical form, as the proxies' shippers send the bytes they spooled (the stream's `prev` is the log's
 * leaf hash of them); `BENCH_NONCANONICAL=1` sends the same event with its members out of order instead.
 */
const NONCANONICAL = process.env.BENCH_NONCANONICAL === '1';
function event(): string {
  const n = seq++;
  if (NONCANONICAL)
    return `{"schema":"trailmark.access/v1","stage":"request","id":"${tag}-${n}","request_id":"r-${tag}-${n}","time":"2026-11-26T12:00:00.000Z","proxy":"bench","stream":{"seq":${n},"id":"bench-${tag}","prev":"${PREV}"},"actor":{"id":"alice","roles":["dba"],"ip":"10.1.2.3","user_agent":"bench/1.0"},"action":{"protocol":"http","method":"GET","target":"http://db.internal:8080","path":"/v1/rows/${n}","query":{}},"decision":{"allowed":true,"reason":"role"}}`;
  return `{"action":{"method":"GET","path":"/v1/rows/${n}","protocol":"http","query":{},"target":"http://db.internal:8080"},"actor":{"id":"alice","ip":"10.1.2.3","roles":["dba"],"user_agent":"bench/1.0"},"decision":{"allowed":true,"reason":"role"},"id":"${tag}-${n}","proxy":"bench","request_id":"r-${tag}-${n}","schema":"trailmark.access/v1","stage":"request","stream":{"id":"bench-${tag}","prev":"${PREV}","seq":${n}},"time":"2026-11-26T12:00:00.000Z"}`;
}
const PREV = 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=';

async function serve(args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(
    process.execPath,
    [
      '--max-semi-space-size=2',
      '--max-old-space-size=256',
      ...(PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`] : []),
      BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      ...args,
    ],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  return { proc, url: await waitForUrl(proc) };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await done;
}

/** CPU time per event (µs) of each side of an ingest run: frontends, PostgreSQL, this load generator. */
interface CpuSplit {
  serve: number;
  pg: number;
  load: number;
}

/** Where each event's CPU goes: `serve` processes, the PostgreSQL server (postmaster and backends), this process. */
function cpuMeter(servePids: number[], pgPid: number | undefined): () => CpuSplit {
  const read = () => ({
    serve: treeCpuMs(servePids),
    pg: pgPid ? treeCpuMs([pgPid]) : 0,
    load: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
  });
  const t0 = read();
  return () => {
    const t1 = read();
    return { serve: t1.serve - t0.serve, pg: t1.pg - t0.pg, load: t1.load - t0.load };
  };
}

const perEvent = (c: CpuSplit, events: number): string =>
  `serve ${fmt((c.serve * 1000) / events)}, PostgreSQL ${fmt((c.pg * 1000) / events)}, load generator ${fmt((c.load * 1000) / events)} µs CPU/event`;

/** Batched ingest: `clients` loops posting `batch`-event add-entries, round-robin over `urls`; events/s. */
async function ingest(
  urls: string[],
  events: number,
  meter?: () => () => CpuSplit,
  batch = BATCH,
  clients = CLIENTS,
): Promise<{ rate: number; size: number; cpu?: CpuSplit }> {
  const stopMeter = meter?.();
  let left = Math.ceil(events / batch);
  let turn = 0;
  let size = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left-- > 0) {
        const body = '[' + Array.from({ length: batch }, event).join(',') + ']';
        const url = urls[turn++ % urls.length];
        const r = await fetch(`${url}/v1/add-entries`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        if (r.status !== 200) throw new Error(`add-entries: ${r.status} ${await r.text()}`);
        size = Math.max(size, ((await r.json()) as { tree_size: number }).tree_size);
      }
    }),
  );
  return { rate: (Math.ceil(events / batch) * batch) / ((performance.now() - t0) / 1000), size, cpu: stopMeter?.() };
}

/** get-proof-by-index at random leaves of a tree of `size`, 32 connections per URL; req/s and p99 ms. */
async function proofs(urls: string[], size: number): Promise<{ rps: number; p99: number }> {
  const results = await Promise.all(
    urls.map(
      (url) =>
        new Promise<any>((resolve, reject) => {
          autocannon(
            {
              url,
              connections: 32,
              duration: PROOF_SECONDS,
              requests: [
                {
                  setupRequest: (req: any) => ({
                    ...req,
                    path: `/v1/get-proof-by-index?leaf_index=${Math.floor(Math.random() * size)}&tree_size=${size}`,
                  }),
                },
              ],
            },
            (err: Error | null, r: any) => (err ? reject(err) : resolve(r)),
          );
        }),
    ),
  );
  for (const r of results)
    if (r.non2xx || r.errors) throw new Error(`proof load: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return {
    rps: results.reduce((s, r) => s + r.requests.total / r.duration, 0),
    p99: Math.max(...results.map((r) => r.latency.p99)),
  };
}

/** Raw PostgreSQL ceiling: entries/s inserted in synchronous-commit transactions of BATCH 300-byte rows. */
async function pgInsertRate(db: Postgres): Promise<number> {
  db.sql('CREATE DATABASE ceiling');
  const c = new pg.Client({ connectionString: db.url('ceiling'), password: db.password });
  await c.connect();
  try {
    await c.query('CREATE TABLE t (idx bigint PRIMARY KEY, h bytea UNIQUE, data bytea)');
    const rounds = quick ? 10 : 30;
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      const idx = Array.from({ length: BATCH }, (_, i) => r * BATCH + i);
      await c.query(
        `INSERT INTO t SELECT i, sha256(int8send(i)), convert_to(repeat('x', 300), 'UTF8') FROM unnest($1::bigint[]) i`,
        [idx],
      );
    }
    return (rounds * BATCH) / ((performance.now() - t0) / 1000);
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  console.log(
    `log on PostgreSQL beside LevelDB: ${fmt(EVENTS)} events per log in batches of ${BATCH} from ${CLIENTS} clients${quick ? ' (quick)' : ''}`,
  );
  const db = await startPostgres({
    settings: { fsync: 'on', synchronous_commit: 'on', max_wal_size: '4GB', shared_buffers: '256MB' },
  });
  process.env.PGPASSWORD = db.password;
  const tmp = mkdtempSync(join(tmpdir(), 'tm-bench-pg-'));
  const procs: ChildProcess[] = [];
  const lines: string[] = [];
  try {
    const pgPid = Number(readFileSync(join(db.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
    const levelCeiling = INGEST_ONLY ? NaN : await levelSyncBatchRate(BATCH, quick ? 10 : 30);
    const pgCeiling = INGEST_ONLY ? NaN : await pgInsertRate(db);
    const noProofs = { rps: NaN, p99: NaN };
    const small = (url: string, pids: number[], pgp: number | undefined) =>
      ingest([url], SMALL_EVENTS, () => cpuMeter(pids, pgp), SMALL_BATCH, SMALL_CLIENTS);

    // LevelDB, the embedded default
    const level = await serve(['--data', join(tmp, 'level')]);
    procs.push(level.proc);
    const li = await ingest([level.url], EVENTS, () => cpuMeter([level.proc.pid!], undefined));
    const ls = await small(level.url, [level.proc.pid!], undefined);
    const lp = INGEST_ONLY ? noProofs : await proofs([level.url], ls.size);
    await stop(level.proc);

    // PostgreSQL, one frontend
    db.sql('CREATE DATABASE one');
    const one = await serve(['--store', db.url('one'), '--key', join(tmp, 'one.key')]);
    procs.push(one.proc);
    const oi = await ingest([one.url], EVENTS, () => cpuMeter([one.proc.pid!], pgPid));
    const os = await small(one.url, [one.proc.pid!], pgPid);
    const op = INGEST_ONLY ? noProofs : await proofs([one.url], os.size);
    await stop(one.proc);

    // PostgreSQL, two frontends on one store and key, the load split between them
    let ti: { rate: number; size: number; cpu?: CpuSplit } = {
      rate: NaN,
      size: 0,
      cpu: { serve: NaN, pg: NaN, load: NaN },
    };
    let tp = noProofs;
    if (!INGEST_ONLY) {
      db.sql('CREATE DATABASE two');
      const a = await serve(['--store', db.url('two'), '--key', join(tmp, 'two.key')]);
      const b = await serve(['--store', db.url('two'), '--key', join(tmp, 'two.key')]);
      procs.push(a.proc, b.proc);
      ti = await ingest([a.url, b.url], EVENTS, () => cpuMeter([a.proc.pid!, b.proc.pid!], pgPid));
      // the other frontend's view catches up within a second
      await new Promise((r) => setTimeout(r, 1200));
      tp = await proofs([a.url, b.url], ti.size);
    }

    lines.push('');
    lines.push(
      row(
        `LevelDB: batched ingest, ${BATCH}/request`,
        li.rate,
        'events/s',
        'LevelDB sync batches, puts/s',
        levelCeiling,
      ),
    );
    lines.push(
      row('PostgreSQL, 1 frontend: batched ingest', oi.rate, 'events/s', 'PostgreSQL sync-commit inserts/s', pgCeiling),
    );
    lines.push(
      row(
        'PostgreSQL, 2 frontends: batched ingest',
        ti.rate,
        'events/s',
        'PostgreSQL sync-commit inserts/s',
        pgCeiling,
      ),
    );
    lines.push(row('  target for PostgreSQL ingest', oi.rate, 'events/s', 'target', 20_000));
    lines.push(
      row(
        '  PostgreSQL, 1 frontend, against LevelDB',
        oi.rate,
        'events/s',
        'LevelDB batched ingest, same run',
        li.rate,
      ),
    );
    lines.push(
      row(
        `PostgreSQL, 1 frontend: proofs, tree of ${fmt(oi.size)}`,
        op.rps,
        'req/s',
        'LevelDB proofs, same run',
        lp.rps,
      ),
    );
    lines.push(
      row(
        `PostgreSQL, 2 frontends: proofs, tree of ${fmt(ti.size)}`,
        tp.rps,
        'req/s',
        'LevelDB proofs, same run',
        lp.rps,
      ),
    );
    lines.push(
      `  proofs: LevelDB ${fmt(lp.rps)} req/s (p99 ${fmt(lp.p99)} ms), PostgreSQL 1 frontend p99 ${fmt(op.p99)} ms, 2 frontends p99 ${fmt(tp.p99)} ms`,
    );
    lines.push(`  ingest CPU, LevelDB: ${perEvent(li.cpu!, EVENTS)}`);
    lines.push(`  ingest CPU, PostgreSQL 1 frontend: ${perEvent(oi.cpu!, EVENTS)}`);
    lines.push(`  ingest CPU, PostgreSQL 2 frontends: ${perEvent(ti.cpu!, EVENTS)}`);
    for (const [name, big, small] of [
      ['LevelDB', li, ls],
      ['PostgreSQL 1 frontend', oi, os],
    ] as const) {
      const perEventSmall = (small.cpu!.serve * 1000) / SMALL_EVENTS;
      const perEventBig = (big.cpu!.serve * 1000) / EVENTS;
      lines.push(
        row(
          `  log CPU/event, ${name}, ${SMALL_BATCH}/request`,
          perEventSmall,
          'µs',
          `${BATCH}/request, same run`,
          perEventBig,
        ),
      );
      lines.push(
        `  ingest CPU, ${name}, ${SMALL_BATCH}/request from ${SMALL_CLIENTS}: ${perEvent(small.cpu!, SMALL_EVENTS)} (${fmt(small.rate)} events/s)`,
      );
    }
    lines.push(
      `  load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    lines.push('  the machine is shared: compare each figure with its same-run ceiling, not with other runs');
    for (const l of lines) console.log(l);
  } finally {
    for (const p of procs) await stop(p);
    await db.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
