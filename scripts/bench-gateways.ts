/**
 * Trailmark beside nginx, in one run on this machine: the same Node upstream and the same load generator
 * (autocannon in its own process) against
 *
 *   1. the upstream directly (the ceiling);
 *   2. nginx as a plain reverse proxy with its access log (the peer every figure is divided by);
 *   2b. a bare node:http forwarder (it only pipes, records nothing): the most any Node proxy can do here;
 *   3. nginx with `auth_request` to `trailmark forward-auth` (the configuration of docs/gateways.md);
 *   4. `trailmark proxy --workers 1` and 5. `trailmark proxy --workers N` (N = the CPU count);
 *
 * at saturation (64 connections) and at a moderate fixed rate (1,000 req/s: the p99 each adds). Trailmark runs in
 * spool mode with the log stopped during the load (every request event is fsynced before the request goes on;
 * the events wait in the spool), so the log's own work does not share the two cores. nginx runs with one worker
 * per CPU, as `worker_processes auto`. Targets alternate within each round; medians are reported. Beside each
 * figure, the CPU time the target's own processes spent per request (from /proc): on a shared machine the work
 * per request is what other load does not distort.
 *
 * BENCH_BASELINE_BIN=/path/to/packages/cli/dist/bin.js adds `trailmark proxy --workers N` from another build
 * (say, before a change) as one more target, so before and after are measured in the same run.
 *
 *   node --import=tsx scripts/bench-gateways.ts   (BENCH_QUICK=1 for a smoke run)
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { autocannon, startBareForwarder, startBareServer, treeCpuMs, type LoadResult } from './lib/ceilings.js';
import { fmtRow, med, startCli, stop } from './lib/daemons.js';
import { documentedNginxConfig, ensureNginx, freePort, startNginx, type RunningNginx } from '../test/lib/nginx.js';

const quick = Boolean(process.env.BENCH_QUICK);
const duration = quick ? 3 : 5;
const rounds = quick ? 1 : 3;
const MODERATE_RATE = 1000;
const N = availableParallelism();

const PEER_CONFIG = (listen: number, upstream: number) => `
upstream peer_app {
    server 127.0.0.1:${upstream};
    keepalive 64;
}
server {
    listen 127.0.0.1:${listen};
    location / {
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_pass http://peer_app;
    }
}
`;

interface Target {
  url: string;
  /** Processes doing this target's work in front of the upstream (their descendants included). */
  pids: number[];
}

/** Medians per target, each with the CPU its processes spent per request (ms) over the measured runs. */
async function compare(
  targets: Record<string, Target>,
  load: { connections: number; rate?: number },
  headers: Record<string, string>,
): Promise<Record<string, LoadResult & { cpu: number }>> {
  const runs: Record<string, LoadResult[]> = {};
  const cpu: Record<string, { ms: number; requests: number }> = {};
  for (const [name, t] of Object.entries(targets)) {
    runs[name] = [];
    cpu[name] = { ms: 0, requests: 0 };
    // long enough for each process's JIT to settle: a short warm-up leaves multi-process targets paying more of it
    await autocannon({ url: t.url + '/warm', connections: load.connections, duration: quick ? 1 : 3, headers });
  }
  for (let r = 0; r < rounds; r++) {
    for (const [name, t] of Object.entries(targets)) {
      const opts = {
        url: t.url + '/rows?x=1',
        connections: load.connections,
        duration,
        headers,
        ...(load.rate ? { overallRate: load.rate } : {}),
      };
      const before = treeCpuMs(t.pids);
      const res = await autocannon(opts);
      cpu[name].ms += treeCpuMs(t.pids) - before;
      cpu[name].requests += res.rps * duration;
      runs[name].push(res);
    }
  }
  return Object.fromEntries(
    Object.entries(runs).map(([k, v]) => [k, { ...med(v), cpu: cpu[k].ms / Math.max(1, cpu[k].requests) }]),
  );
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'tm-bench-gw-'));
  const procs: ChildProcess[] = [];
  let nginx: RunningNginx | null = null;
  try {
    const upstream = await startBareServer('{"ok":true,"rows":[1,2,3]}');
    procs.push(upstream.proc);
    const upstreamPort = Number(new URL(upstream.url).port);
    const bare = await startBareForwarder(upstream.url);
    procs.push(bare.proc);
    const log = await startCli(
      ['serve', '--data', join(tmp, 'log'), '--listen', '127.0.0.1:0'],
      [/^vkey: (\S+)$/m, /^url: (\S+)$/m],
    );
    procs.push(log.proc);
    const [vkey, logUrl] = log.lines;
    const tokens = join(tmp, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ 'bench-token-0123456789': { id: 'bench', roles: ['load'] } }));
    const common = [
      '--log',
      logUrl,
      '--log-key',
      vkey,
      '--tokens',
      tokens,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--name',
      'bench',
    ];
    const want = [/^url: (\S+)$/m, /^admin: (\S+)$/m];
    const fa = await startCli(
      ['forward-auth', ...common, '--workers', String(N), '--spool', join(tmp, 'spool-fa')],
      want,
    );
    const p1 = await startCli(
      ['proxy', ...common, '--upstream', upstream.url, '--workers', '1', '--spool', join(tmp, 'spool-1')],
      want,
    );
    const pN = await startCli(
      ['proxy', ...common, '--upstream', upstream.url, '--workers', String(N), '--spool', join(tmp, 'spool-n')],
      want,
    );
    procs.push(fa.proc, p1.proc, pN.proc);
    const baselineBin = process.env.BENCH_BASELINE_BIN;
    const base = baselineBin
      ? await startCli(
          ['proxy', ...common, '--upstream', upstream.url, '--workers', String(N), '--spool', join(tmp, 'spool-base')],
          want,
          baselineBin,
        )
      : null;
    if (base) procs.push(base.proc);

    const peerPort = await freePort();
    const gwPort = await freePort();
    const doc = readFileSync(fileURLToPath(new URL('../docs/gateways.md', import.meta.url)), 'utf8');
    const gateway = documentedNginxConfig(doc, {
      listen: gwPort,
      forwardAuth: Number(new URL(fa.lines[0]).port),
      upstream: upstreamPort,
    });
    nginx = await startNginx(PEER_CONFIG(peerPort, upstreamPort) + gateway, peerPort, { workers: 'auto' });
    const nginxVersion = /nginx\/(\S+)/.exec(spawnSync(ensureNginx(), ['-v']).stderr.toString())?.[1] ?? '?';

    // the log's work would share the two cores with the proxies: events wait in the spools during the load
    await stop(log.proc);

    const headers = { authorization: 'Bearer bench-token-0123456789', 'user-agent': 'autocannon' };
    const pid = (p: ChildProcess) => p.pid!;
    const targets: Record<string, Target> = {
      direct: { url: upstream.url, pids: [pid(upstream.proc)] },
      nginx: { url: nginx.url, pids: [nginx.pid] },
      bare: { url: bare.url, pids: [pid(bare.proc)] },
      gateway: { url: `http://127.0.0.1:${gwPort}`, pids: [nginx.pid, pid(fa.proc)] },
      proxy1: { url: p1.lines[0], pids: [pid(p1.proc)] },
      proxyN: { url: pN.lines[0], pids: [pid(pN.proc)] },
      ...(base ? { baseline: { url: base.lines[0], pids: [pid(base.proc)] } } : {}),
    };
    const names: Record<string, string> = {
      direct: 'upstream directly',
      nginx: `nginx ${nginxVersion} reverse proxy (peer)`,
      bare: 'bare node:http forwarder (Node ceiling)',
      gateway: `nginx + auth_request -> forward-auth x${N}`,
      proxy1: 'trailmark proxy --workers 1',
      proxyN: `trailmark proxy --workers ${N}`,
      baseline: `baseline build: proxy --workers ${N}`,
    };
    console.log(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (${N} cores, shared with other work: figures are noisy, compare within a run)`,
    );
    console.log(
      `gateway benchmark: median of ${rounds} round(s) of ${duration} s per figure, GET of a small JSON answer, load from a separate process`,
    );
    console.log(
      'trailmark in spool mode, every request event fsynced before the request goes on, the log stopped during the load',
    );

    const show = (title: string, r: Record<string, LoadResult & { cpu: number }>) => {
      console.log(`\n${title}`);
      for (const k of Object.keys(targets)) {
        const ratio = k === 'nginx' || k === 'direct' ? '' : `   ${(r[k].rps / r.nginx.rps).toFixed(2)}x nginx`;
        console.log(`${fmtRow(names[k], r[k])}   cpu ${r[k].cpu.toFixed(3)} ms/req${ratio}`);
      }
      return r;
    };
    const sat = show('1. saturation, 64 connections', await compare(targets, { connections: 64 }, headers));
    const mod = show(
      `2. moderate load: ${MODERATE_RATE} req/s over 16 connections (added p99 against the upstream directly)`,
      await compare(targets, { connections: 16, rate: MODERATE_RATE }, headers),
    );
    console.log('\nsummary');
    for (const k of ['bare', 'gateway', 'proxy1', 'proxyN', ...(base ? ['baseline'] : [])]) {
      console.log(
        `  ${names[k].padEnd(40)} ${(sat[k].rps / sat.nginx.rps).toFixed(2)}x nginx's req/s at saturation (${(sat[k].rps / sat.bare.rps).toFixed(2)}x the bare forwarder's); CPU per request ${(sat[k].cpu / sat.nginx.cpu).toFixed(1)}x nginx's; added p99 at ${MODERATE_RATE} req/s ${mod[k].p99 - mod.direct.p99} ms (nginx adds ${mod.nginx.p99 - mod.direct.p99} ms)`,
      );
    }
    const spooled = await Promise.all(
      [fa, p1, pN].map(
        async (d) => ((await (await fetch(`${d.lines[1]}/healthz`)).json()) as { spool_depth: number }).spool_depth,
      ),
    );
    console.log(
      `  events waiting in the spools: forward-auth ${spooled[0].toLocaleString('en-US')}, proxy x1 ${spooled[1].toLocaleString('en-US')}, proxy x${N} ${spooled[2].toLocaleString('en-US')}`,
    );
    if (Object.values(sat).some((r) => r.errors > 0 || r.non2xx > 0))
      throw new Error('some requests failed under load');
  } finally {
    await nginx?.close();
    await Promise.all(procs.map(stop));
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
