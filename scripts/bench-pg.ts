/**
 * pgbench through the pg-proxy, beside the same PostgreSQL called directly (the ceiling) and through pgbouncer
 * (the peer: a pooler that records nothing), in one run on one private server. A fourth row, `node fwd`, is a bare
 * Node TCP forwarder (net.Server piping each client socket to PostgreSQL, looking at nothing, pgbench logging in
 * with the server's own credentials through it): what a Node process in the data path costs by itself.
 *
 * Workloads: select-only (-S) and TPC-B-like (the default script), both with -M extended (Parse/Bind/Execute, as
 * GUI clients and drivers send), CLIENTS clients. TPS is pgbench's; p99 is computed from its per-transaction log.
 * The pg-proxy runs in spool mode as `trailmark pg-proxy` with a real log server (`trailmark serve`) in its own
 * process ingesting the events during the load. At the end every statement pgbench completed must have its
 * request event in the log (the script fails otherwise). The PostgreSQL server runs with fsync off (the
 * test harness's setting), which makes the server as fast as it gets here: the proxy's cost shows in full.
 *
 *   node --import=tsx scripts/bench-pg.ts   (BENCH_QUICK=1 for a smoke run)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { hash } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { LogWriter } from '@trailmark/client';
import { makeVerifier } from '@trailmark/pg-proxy';
import { Spool } from '@trailmark/recorder';
import { freePort, startPgbouncer, startPostgres } from '../test/lib/postgres.js';
import { machineCpuMs, procCpuMs, startBareTcpForwarder, treeCpuMs } from './lib/ceilings.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'packages/cli/dist/bin.js');
const quick = Boolean(process.env.BENCH_QUICK);
const duration = quick ? 4 : 10;
const CLIENTS = 16;
const cores = availableParallelism();

function startCli(
  args: string[],
  want: RegExp,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ proc: ChildProcess; match: string }> {
  // BENCH_CPU_PROF=DIR: V8 CPU profiles of the proxy and the log server (written when they stop)
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d: Buffer) => {
      out += d.toString();
      const m = want.exec(out);
      if (m) resolve({ proc, match: m[1] });
    };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
    proc.on('exit', (code) => reject(new Error(`trailmark ${args[0]} exited ${code}: ${out}`)));
  });
}

function stop(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (status) => resolve({ status, out }));
  });
}

interface Result {
  tps: number;
  p99: number;
  transactions: number;
}

/** One pgbench run; p99 (ms) from the per-transaction latency log (third field, microseconds). */
/**
 * An unmeasured run first, so every target is measured warm (the proxy's code compiled, its sessions' first
 * statements behind it); returns the transactions it completed (they count in the log check).
 */
async function warmUp(env: NodeJS.ProcessEnv, selectOnly: boolean): Promise<number> {
  const args = ['-n', '-M', 'extended', '-c', String(CLIENTS), '-j', '2', '-T', '2', ...(selectOnly ? ['-S'] : [])];
  const r = await run('pgbench', args, env);
  if (r.status !== 0) throw new Error(`pgbench (warm-up) failed: ${r.out}`);
  return Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1] ?? 0);
}

async function pgbench(env: NodeJS.ProcessEnv, selectOnly: boolean, logDir: string): Promise<Result> {
  const prefix = join(logDir, `pgb-${Date.now()}`);
  const args = [
    '-n',
    '-M',
    'extended',
    '-c',
    String(CLIENTS),
    '-j',
    '2',
    '-T',
    String(duration),
    '-l',
    `--log-prefix=${prefix}`,
    // BENCH_RATE=N: every target at the same fixed rate (pgbench -R), so their CPU per transaction compares
    // like for like (a slower target's clients sleep more, and waking them costs its writes more)
    ...(process.env.BENCH_RATE ? ['-R', process.env.BENCH_RATE] : []),
    ...(selectOnly ? ['-S'] : []),
  ];
  const r = await run('pgbench', args, env);
  if (r.status !== 0) throw new Error(`pgbench failed: ${r.out}`);
  const tps = Number(
    /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(r.out)?.[1],
  );
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1]);
  const lat: number[] = [];
  for (const f of readdirSync(logDir).filter((f) => join(logDir, f).startsWith(prefix))) {
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (line && Number.isFinite(us)) lat.push(us);
    }
  }
  lat.sort((a, b) => a - b);
  return {
    tps,
    p99: lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] / 1000 : NaN,
    transactions,
  };
}

/** Request events in the log whose statement is `sql`, counted by walking every entry. */
async function countStatements(
  logUrl: string,
  match: (sql: string) => boolean,
): Promise<{ matched: number; size: number }> {
  const size = ((await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
  let matched = 0;
  for (let i = 0; i < size;) {
    const r = (await (
      await fetch(`${logUrl}/v1/get-entries?start=${i}&end=${Math.min(size, i + 1000) - 1}`)
    ).json()) as { entries: { leaf_input: string }[] };
    for (const e of r.entries) {
      const ev = JSON.parse(Buffer.from(e.leaf_input, 'base64').toString('utf8'));
      if (ev.stage === 'request' && match(ev.action?.statement ?? '')) matched++;
    }
    i += r.entries.length;
  }
  return { matched, size };
}

/**
 * The same-run ceiling for a proxy that makes each statement's event durable before forwarding it: the mean
 * latency of one spool append (an O_DSYNC write) on this disk now. A client can do at most one statement per
 * flush, so CLIENTS / latency bounds the TPS even with every client's event in every flush.
 */
async function spoolAppendMs(dir: string): Promise<number> {
  const spool = await Spool.open({ dir });
  const rec = Buffer.alloc(600, 0x61);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 1500) {
    await spool.append(rec);
    n++;
  }
  const ms = (performance.now() - t0) / n;
  await spool.close();
  return ms;
}

/** CPU time (user + system, ms) a process has used so far, from /proc (load distorts it far less than rates). */
function cpuMs(pid: number | undefined, part: 'total' | 'system' = 'total'): number {
  if (pid === undefined) return NaN;
  try {
    return procCpuMs(`/proc/${pid}/stat`)[part];
  } catch {
    return NaN;
  }
}

/** The system (kernel) part of cpuMs: socket and file system calls, and on loopback the receiver's TCP path. */
const sysMs = (pid: number | undefined): number => cpuMs(pid, 'system');

/** Read and write system calls a process has made so far (/proc/PID/io: syscr, syscw). */
function syscalls(pid: number | undefined): { r: number; w: number } {
  try {
    const t = readFileSync(`/proc/${pid}/io`, 'utf8');
    return { r: Number(/syscr: (\d+)/.exec(t)?.[1]), w: Number(/syscw: (\d+)/.exec(t)?.[1]) };
  } catch {
    return { r: NaN, w: NaN };
  }
}

/**
 * The shipper's side of delivery, alone: LogWriter.addEntries with batches of SHIP_BATCH statement-sized events
 * (what the pg-proxy's shipper sends under load), the caller's CPU per event (the receipt check: leaf hashes,
 * the tree through tiles, the checkpoint) beside hashing each event once (its floor), the log server's CPU per
 * event, and how long the caller's event loop waited meanwhile (a proxy's sessions wait as long).
 */
const SHIP_BATCH = 4000;
async function shipperCost(logUrl: string, vkey: string, logPid: number | undefined): Promise<string> {
  const writer = new LogWriter({ url: logUrl, vkey });
  let n = 0;
  const event = () =>
    Buffer.from(
      `{"action":{"database":"postgres","method":"extended","params":1,"protocol":"postgres","session_id":"ship-cost","statement":"SELECT shipper_cost($1)","target":"postgres://127.0.0.1:5432/postgres"},"actor":{"id":"bench","ip":"127.0.0.1","roles":["dba"],"user_agent":"pgbench"},"decision":{"allowed":true,"reason":"session authenticated"},"id":"ship-${process.pid}-${n}","proxy":"bench","request_id":"r-${n++}","schema":"trailmark.access/v1","stage":"request","stream":{"id":"ship-cost","prev":null,"seq":${n}},"time":"2026-12-05T10:00:00.000Z"}`,
    );
  const rounds = quick ? 5 : 15;
  const batches = Array.from({ length: rounds + 2 }, () => Array.from({ length: SHIP_BATCH }, event));
  try {
    for (const b of batches.slice(0, 2)) await writer.addEntries(b); // warm-up
    const delay = monitorEventLoopDelay({ resolution: 1 });
    const tick = setInterval(() => {}, 1);
    delay.enable();
    const c0 = process.cpuUsage();
    const l0 = cpuMs(logPid);
    for (const b of batches.slice(2)) await writer.addEntries(b);
    const c1 = process.cpuUsage(c0);
    const l1 = cpuMs(logPid);
    delay.disable();
    clearInterval(tick);
    const events = rounds * SHIP_BATCH;
    const h0 = process.cpuUsage();
    for (const b of batches.slice(2)) for (const e of b) hash('sha256', e, 'buffer');
    const h1 = process.cpuUsage(h0);
    const us = (c: NodeJS.CpuUsage) => (c.user + c.system) / events;
    return (
      `  shipper's log client, ${SHIP_BATCH} events a call: ${us(c1).toFixed(1)} µs of CPU per event (one SHA-256 of each: ${us(h1).toFixed(1)} µs), ` +
      `log server ${(((l1 - l0) * 1000) / events).toFixed(1)} µs; the caller's event loop waited p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, at most ${(delay.max / 1e6).toFixed(1)} ms`
    );
  } finally {
    writer.close();
  }
}

async function treeSize(logUrl: string): Promise<number> {
  return ((await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'tm-bench-pg-'));
  const procs: ChildProcess[] = [];
  const pg = await startPostgres();
  let bouncer: Awaited<ReturnType<typeof startPgbouncer>> | null = null;
  try {
    const init = await run('pgbench', ['-i', '-q', '-s', '4'], pg.env);
    if (init.status !== 0) throw new Error(`pgbench -i failed: ${init.out}`);
    bouncer = await startPgbouncer(pg, 'postgres', pg.password);
    const logPort = await freePort();
    const log = await startCli(
      ['serve', '--data', join(tmp, 'log'), '--listen', `127.0.0.1:${logPort}`, '--origin', 'bench.example/log'],
      /(http:\/\/127\.0\.0\.1:\d+)/,
    );
    procs.push(log.proc);
    const logUrl = log.match;
    const vkey = readFileSync(join(tmp, 'log', 'log.key.pub'), 'utf8').trim();
    const userPassword = 'bench-user-password';
    writeFileSync(
      join(tmp, 'users.json'),
      JSON.stringify({ bench: { password: makeVerifier(userPassword), roles: ['dba'] } }),
    );
    const proxyPort = await freePort();
    const proxy = await startCli(
      [
        'pg-proxy',
        '--upstream',
        pg.url('postgres'),
        '--log',
        logUrl,
        '--log-key',
        vkey,
        '--users',
        join(tmp, 'users.json'),
        '--listen',
        `127.0.0.1:${proxyPort}`,
        '--spool',
        join(tmp, 'spool'),
        '--name',
        'bench',
        // BENCH_PG_WORKERS=N: the proxy with --workers N (its CPU is then counted over all its processes)
        ...(process.env.BENCH_PG_WORKERS ? ['--workers', process.env.BENCH_PG_WORKERS] : []),
      ],
      /listening: (postgres:\S+)/,
      { ...process.env, PGPASSWORD: pg.password },
    );
    procs.push(proxy.proc);
    const fwd = await startBareTcpForwarder(pg.host, pg.port);
    procs.push(fwd.proc);

    const targets: Record<string, NodeJS.ProcessEnv> = {
      direct: pg.env,
      pgbouncer: { ...pg.env, PGPORT: String(bouncer.port) },
      'node fwd': { ...pg.env, PGPORT: String(fwd.port) },
      'pg-proxy': { ...pg.env, PGPORT: String(proxyPort), PGUSER: 'bench', PGPASSWORD: userPassword },
    };
    console.log(
      `pgbench -M extended, ${CLIENTS} clients, ${duration} s each, scale 4; PostgreSQL 15 (fsync off) on this machine; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(
          ' ',
        )} (the machine is shared: figures are noisy, read them beside the same-run direct and pgbouncer rows)`,
    );
    const results: Record<string, Record<string, Result>> = {};
    let proxyTransactions = { select: 0, tpcb: 0 };
    const fsyncMs = await spoolAppendMs(join(tmp, 'ceiling-spool'));
    console.log(
      `  ceiling: one spool append (fsync) takes ${fsyncMs.toFixed(2)} ms on this disk now: at most ${Math.round((CLIENTS / fsyncMs) * 1000)} TPS for ${CLIENTS} clients when each statement waits for its event's flush`,
    );
    // BENCH_WORKLOAD=select or tpcb: only that one (while iterating)
    const only = process.env.BENCH_WORKLOAD;
    for (const [workload, selectOnly] of (
      [
        ['select-only (-S)', true],
        ['TPC-B-like', false],
      ] as const
    ).filter(([, sel]) => !only || only === (sel ? 'select' : 'tpcb'))) {
      results[workload] = {};
      // BENCH_TARGETS=pg-proxy,... : only those (while iterating; the ratios need all four)
      const pick = process.env.BENCH_TARGETS?.split(',');
      for (const [name, env] of Object.entries(targets).filter(([n]) => !pick || pick.includes(n))) {
        const warm = await warmUp(env, selectOnly);
        if (name === 'pg-proxy') {
          const key = selectOnly ? 'select' : 'tpcb';
          proxyTransactions = { ...proxyTransactions, [key]: proxyTransactions[key] + warm };
          // the log server ingests the warm-up's events: let it finish before its CPU is counted
          await new Promise((res) => setTimeout(res, 1500));
        }
        const proxyCpu = () => (process.env.BENCH_PG_WORKERS ? treeCpuMs([proxy.proc.pid!]) : cpuMs(proxy.proc.pid));
        const cpu0 = { proxy: proxyCpu(), log: cpuMs(log.proc.pid), fwd: cpuMs(fwd.proc.pid) };
        const kern0 = { proxy: sysMs(proxy.proc.pid), fwd: sysMs(fwd.proc.pid) };
        const sys0 = { proxy: syscalls(proxy.proc.pid), fwd: syscalls(fwd.proc.pid) };
        const m0 = machineCpuMs();
        const r = await pgbench(env, selectOnly, tmp);
        const m1 = machineCpuMs();
        // every process together (pgbench, PostgreSQL, pooler or proxy, log server): the rate the cores could
        // carry at that cost is the CPU-bound ceiling of this path on this machine
        const busyUs = ((m1.busy - m0.busy) / r.transactions) * 1000;
        const machine = `   machine ${busyUs.toFixed(0)} µs/txn, ${(((m1.busy - m0.busy) / (m1.total - m0.total)) * 100).toFixed(0)}% busy, CPU-bound ceiling ${Math.round((cores * 1e6) / busyUs)} TPS`;
        results[workload][name] = r;
        let cpu = '';
        const per = (ms: number) => ((ms / r.transactions) * 1000).toFixed(0);
        // read and write system calls per transaction (sockets, spool, log): what the kernel share of the CPU follows
        const sys = (pid: number | undefined, s0: { r: number; w: number }) => {
          const s1 = syscalls(pid);
          return `, syscalls ${((s1.r - s0.r) / r.transactions).toFixed(2)} reads ${((s1.w - s0.w) / r.transactions).toFixed(2)} writes`;
        };
        if (name === 'node fwd')
          cpu = `   CPU per transaction: forwarder ${per(cpuMs(fwd.proc.pid) - cpu0.fwd)} µs (system ${per(sysMs(fwd.proc.pid) - kern0.fwd)})${sys(fwd.proc.pid, sys0.fwd)}`;
        if (name === 'pg-proxy') {
          // the log server keeps ingesting after the run ends: give it a moment so its share is counted
          await new Promise((res) => setTimeout(res, 1500));
          cpu = `   CPU per transaction: pg-proxy ${per(proxyCpu() - cpu0.proxy)} µs (system ${per(sysMs(proxy.proc.pid) - kern0.proxy)}), log server ${per(cpuMs(log.proc.pid) - cpu0.log)} µs${sys(proxy.proc.pid, sys0.proxy)}`;
        }
        if (name === 'pg-proxy') {
          const key = selectOnly ? 'select' : 'tpcb';
          proxyTransactions = { ...proxyTransactions, [key]: proxyTransactions[key] + r.transactions };
        }
        console.log(
          `  ${workload.padEnd(18)} ${name.padEnd(10)} ${r.tps.toFixed(0).padStart(7)} TPS   p99 ${r.p99.toFixed(2).padStart(7)} ms${machine}${cpu}`,
        );
      }
      if (Object.keys(results[workload]).length < Object.keys(targets).length) continue;
      const ratio = results[workload]['pg-proxy'].tps / results[workload].pgbouncer.tps;
      const ceiling = results[workload]['pg-proxy'].tps / results[workload].direct.tps;
      const bare = results[workload]['node fwd'].tps / results[workload].pgbouncer.tps;
      console.log(
        `  ${workload.padEnd(18)} pg-proxy / pgbouncer TPS: ${ratio.toFixed(2)} (target >= 0.5); pg-proxy / direct: ${ceiling.toFixed(2)}; bare Node forwarder / pgbouncer: ${bare.toFixed(2)}`,
      );
    }
    // every statement durably recorded: wait for the log to stop growing, then count
    let last = -1;
    for (;;) {
      const size = await treeSize(logUrl);
      if (size === last) break;
      last = size;
      await new Promise((r) => setTimeout(r, 2000));
    }
    const selects = await countStatements(logUrl, (s) =>
      s.startsWith('SELECT abalance FROM pgbench_accounts WHERE aid = $1'),
    );
    const updates = await countStatements(logUrl, (s) => s.startsWith('UPDATE pgbench_tellers'));
    const wantSelects = proxyTransactions.select + proxyTransactions.tpcb;
    console.log(
      `  log: ${selects.size} entries; SELECT abalance request events ${selects.matched} for ${wantSelects} completed transactions, UPDATE pgbench_tellers ${updates.matched} for ${proxyTransactions.tpcb}`,
    );
    if (selects.matched < wantSelects || updates.matched < proxyTransactions.tpcb) {
      console.error('FAIL: statements completed through the pg-proxy without their request events in the log');
      process.exitCode = 1;
    }
    console.log(await shipperCost(logUrl, vkey, log.proc.pid));
  } finally {
    for (const p of procs.reverse()) await stop(p);
    await bouncer?.stop();
    await pg.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
