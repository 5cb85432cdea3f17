/**
 * The access proxy in spool mode against the same upstream called directly, in the same run.
 *
 * Every piece runs in its own process, as in production: a bare node:http upstream, a real log server
 * (`trailmark serve`), the proxy (`trailmark proxy`), and autocannon as the load generator. Direct and proxied
 * runs alternate, and the medians are reported. At the end the shipper must have delivered every event
 * (2 per request) to the log; the script fails if it did not.
 *
 *   node --import=tsx scripts/bench-proxy.ts        (BENCH_QUICK=1 for a smoke run)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { autocannon, median, startBareServer, waitForUrl, type LoadResult } from './lib/ceilings.js';

// The least any node:http reverse proxy does (no auth, no events, no spool, no header hygiene): the ceiling for
// a proxy process on this machine, measured in the same run.
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

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'packages/cli/dist/bin.js');
const quick = Boolean(process.env.BENCH_QUICK);
const duration = quick ? 3 : 8;
const rounds = quick ? 1 : 3;

function startCli(args: string[], want: RegExp[]): Promise<{ proc: ChildProcess; lines: string[] }> {
  const proc = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = want.map((re) => re.exec(out));
      if (m.every(Boolean)) resolve({ proc, lines: m.map((x) => x![1]) });
    });
    proc.on('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
  });
}

async function health(admin: string): Promise<{ spool_depth: number; delivered: number; failed_deliveries: number; receipt_failures: number }> {
  return (await fetch(`${admin}/healthz`)).json() as never;
}

function fmtRow(what: string, r: LoadResult): string {
  return `${what.padEnd(34)} ${Math.round(r.rps).toLocaleString('en-US').padStart(8)} req/s   p50 ${String(r.p50).padStart(4)} ms   p99 ${String(r.p99).padStart(4)} ms   errors ${r.errors}   non-2xx ${r.non2xx}`;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'tm-bench-proxy-'));
  const procs: ChildProcess[] = [];
  try {
    const upstream = await startBareServer('{"ok":true,"rows":[1,2,3]}');
    procs.push(upstream.proc);
    const log = await startCli(['serve', '--data', join(tmp, 'log'), '--listen', '127.0.0.1:0'], [/^vkey: (\S+)$/m, /^url: (\S+)$/m]);
    procs.push(log.proc);
    const [vkey, logUrl] = log.lines;
    const tokens = join(tmp, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ 'bench-token-0123456789': { id: 'bench', roles: ['load'] } }));
    const proxy = await startCli(
      ['proxy', '--upstream', upstream.url, '--log', logUrl, '--log-key', vkey, '--tokens', tokens, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spool', join(tmp, 'spool'), '--name', 'bench'],
      [/^url: (\S+)$/m, /^admin: (\S+)$/m],
    );
    procs.push(proxy.proc);
    const [proxyUrl, admin] = proxy.lines;
    const fwd = spawn(process.execPath, ['-e', BARE_FORWARDER, upstream.url], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(fwd);
    const forwarderUrl = await waitForUrl(fwd);
    const headers = { authorization: 'Bearer bench-token-0123456789', 'user-agent': 'autocannon' };

    console.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (2 cores)`);
    console.log(`proxy benchmark: ${rounds} round(s) of ${duration} s per figure, GET of a small JSON answer; load from a separate process`);
    for (const connections of [16, 64]) {
      const direct: LoadResult[] = [];
      const bare: LoadResult[] = [];
      const proxied: LoadResult[] = [];
      // warm up both paths (JIT, keep-alive pools)
      await autocannon({ url: upstream.url + '/warm', connections, duration: 1, headers });
      await autocannon({ url: forwarderUrl + '/warm', connections, duration: 1, headers });
      await autocannon({ url: proxyUrl + '/warm', connections, duration: 1, headers });
      for (let r = 0; r < rounds; r++) {
        direct.push(await autocannon({ url: upstream.url + '/rows?x=1', connections, duration, headers }));
        bare.push(await autocannon({ url: forwarderUrl + '/rows?x=1', connections, duration, headers }));
        proxied.push(await autocannon({ url: proxyUrl + '/rows?x=1', connections, duration, headers }));
      }
      const med = (xs: LoadResult[]): LoadResult => ({
        rps: median(xs.map((x) => x.rps)),
        p50: median(xs.map((x) => x.p50)),
        p99: median(xs.map((x) => x.p99)),
        errors: xs.reduce((a, x) => a + x.errors, 0),
        non2xx: xs.reduce((a, x) => a + x.non2xx, 0),
      });
      const d = med(direct);
      const b = med(bare);
      const p = med(proxied);
      console.log(`\n${connections} connections:`);
      console.log(fmtRow('upstream directly', d));
      console.log(fmtRow('bare node:http forwarder (ceiling)', b));
      console.log(fmtRow('through the proxy (spool mode)', p));
      console.log(`proxy/direct throughput ${(p.rps / d.rps).toFixed(2)}x   added p50 ${p.p50 - d.p50} ms   added p99 ${p.p99 - d.p99} ms`);
      console.log(`proxy/bare forwarder throughput ${(p.rps / b.rps).toFixed(2)}x   p99 beyond the bare forwarder ${p.p99 - b.p99} ms`);
    }

    const t0 = Date.now();
    let h = await health(admin);
    while (h.spool_depth > 0 && Date.now() - t0 < 120_000) {
      await new Promise((r) => setTimeout(r, 200));
      h = await health(admin);
    }
    const sth = (await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number };
    console.log(`\nshipper: ${h.delivered.toLocaleString('en-US')} events delivered with verified receipts, spool depth ${h.spool_depth} ${Date.now() - t0} ms after the load stopped, ${h.failed_deliveries} failed deliveries, ${h.receipt_failures} receipt failures; log tree size ${sth.tree_size.toLocaleString('en-US')}`);
    if (h.spool_depth > 0) throw new Error('the spool did not drain');
    if (sth.tree_size !== h.delivered) throw new Error(`log holds ${sth.tree_size} entries, the shipper delivered ${h.delivered}`);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
