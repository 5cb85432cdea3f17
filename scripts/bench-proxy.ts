/**
 * The access proxy in spool mode against the same upstream called directly, in the same run.
 *
 * Every piece runs in its own process: a bare node:http upstream, a bare node:http forwarder (the least any
 * Node reverse proxy does: the ceiling for a proxy process here), a real log server (`trailmark serve`), the
 * proxy (`trailmark proxy`), and autocannon as the load generator. Targets alternate within each round and the
 * medians are reported.
 *
 *  1. moderate load (a fixed rate well below saturation): latency added by the proxy;
 *  2. saturation with the log on this machine ingesting the events during the load;
 *  3. strict mode at a moderate rate (each request waits for the log's verified receipt);
 *  4. and 5. moderate load and saturation with the log stopped (events wait in the spool): the proxy's own
 *     cost, as when the log runs elsewhere; then the log is restarted and the spool must drain into it.
 *
 * Beside the proxy, in the same rounds: the same proxy without streams (events without stream fields, as before
 * contract section 4's streams; a hidden flag, for this measurement only), so the cost of numbering, chaining and
 * signing shows against a figure taken under the same load; and while the log is up, the log's own ingest rate
 * (tree growth per second) during each figure.
 *
 * The proxies run with `--workers 1`, like the bare forwarder they are compared with (bench-gateways.ts compares
 * worker counts). At the end the log must hold exactly the events the shippers delivered; the script fails otherwise.   node --import=tsx scripts/bench-proxy.ts   (BENCH_QUICK=1 for a smoke run)
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { autocannon, startBareForwarder, startBareServer, type LoadResult } from './lib/ceilings.js';
import { fmtRow, med, startCli, stop } from './lib/daemons.js';

const quick = Boolean(process.env.BENCH_QUICK);
const duration = quick ? 3 : 5;
const rounds = quick ? 1 : 3;
const MODERATE_RATE = 1000;
const STRICT_RATE = 500;

interface Health {
  spool_depth: number;
  delivered: number;
  failed_deliveries: number;
  receipt_failures: number;
}

async function health(admin: string): Promise<Health> {
  return (await fetch(`${admin}/healthz`)).json() as Promise<Health>;
}

/** Runs each target once per round, alternating, and returns the medians. */
async function compare(
  targets: Record<string, string>,
  load: { connections: number; rate?: number },
  headers: Record<string, string>,
): Promise<Record<string, LoadResult>> {
  const runs: Record<string, LoadResult[]> = {};
  for (const [name, url] of Object.entries(targets)) {
    runs[name] = [];
    await autocannon({ url: url + '/warm', connections: load.connections, duration: 1, headers });
  }
  for (let r = 0; r < rounds; r++) {
    for (const [name, url] of Object.entries(targets)) {
      const opts = {
        url: url + '/rows?x=1',
        connections: load.connections,
        duration,
        headers,
        ...(load.rate ? { overallRate: load.rate } : {}),
      };
      runs[name].push(await autocannon(opts));
    }
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, med(v)]));
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'tm-bench-proxy-'));
  const procs: ChildProcess[] = [];
  try {
    const upstream = await startBareServer('{"ok":true,"rows":[1,2,3]}');
    procs.push(upstream.proc);
    const fwd = await startBareForwarder(upstream.url);
    procs.push(fwd.proc);
    const forwarderUrl = fwd.url;
    const logData = join(tmp, 'log');
    let log = await startCli(
      ['serve', '--data', logData, '--listen', '127.0.0.1:0'],
      [/^vkey: (\S+)$/m, /^url: (\S+)$/m],
    );
    procs.push(log.proc);
    const [vkey, logUrl] = log.lines;
    const tokens = join(tmp, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ 'bench-token-0123456789': { id: 'bench', roles: ['load'] } }));
    const proxyArgs = (spool: string, name: string) => [
      'proxy',
      '--workers',
      '1',
      '--upstream',
      upstream.url,
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
      '--spool',
      join(tmp, spool),
      '--name',
      name,
    ];
    const proxy = await startCli(proxyArgs('spool', 'bench'), [/^url: (\S+)$/m, /^admin: (\S+)$/m]);
    procs.push(proxy.proc);
    const [proxyUrl, admin] = proxy.lines;
    const plain = await startCli(
      [...proxyArgs('spool-plain', 'bench-plain'), '--bench-without-streams'],
      [/^url: (\S+)$/m, /^admin: (\S+)$/m],
    );
    procs.push(plain.proc);
    const [plainUrl, plainAdmin] = plain.lines;
    const headers = { authorization: 'Bearer bench-token-0123456789', 'user-agent': 'autocannon' };
    const targets = { direct: upstream.url, bare: forwarderUrl, proxy: proxyUrl, plain: plainUrl };

    console.log(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (2 cores)`,
    );
    console.log(
      `proxy benchmark: median of ${rounds} round(s) of ${duration} s per figure, GET of a small JSON answer, load from a separate process`,
    );

    const show = (title: string, r: Record<string, LoadResult>, proxyName = 'proxy (spool mode)') => {
      console.log(`\n${title}`);
      console.log(fmtRow('upstream directly', r.direct));
      console.log(fmtRow('bare node:http forwarder (ceiling)', r.bare));
      console.log(fmtRow(proxyName, r.proxy));
      if (r.plain) console.log(fmtRow('the same proxy without streams', r.plain));
      console.log(
        `  proxy/direct ${(r.proxy.rps / r.direct.rps).toFixed(2)}x, proxy/bare forwarder ${(r.proxy.rps / r.bare.rps).toFixed(2)}x; added p50 ${r.proxy.p50 - r.direct.p50} ms, added p99 ${r.proxy.p99 - r.direct.p99} ms`,
      );
      if (r.plain) console.log(`  with streams / without ${(r.proxy.rps / r.plain.rps).toFixed(2)}x`);
      if (r.ingest)
        console.log(
          `  log ingest meanwhile: ${Math.round(r.ingest.rps).toLocaleString('en-US')} entries/s (tree growth over the rounds)`,
        );
    };
    /** The log's tree growth per second while fn runs (its ingest rate under the load fn makes). */
    const ingest = async (fn: () => Promise<Record<string, LoadResult>>): Promise<Record<string, LoadResult>> => {
      const size = async () =>
        ((await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
      const s0 = await size();
      const t0 = Date.now();
      const r = await fn();
      const grown = (await size()) - s0;
      return { ...r, ingest: { rps: grown / ((Date.now() - t0) / 1000), p50: 0, p99: 0, errors: 0, non2xx: 0 } };
    };

    show(
      `1. moderate load: ${MODERATE_RATE} req/s over 16 connections, log ingesting on this machine`,
      await ingest(() => compare(targets, { connections: 16, rate: MODERATE_RATE }, headers)),
    );
    show(
      '2. saturation, 64 connections, log ingesting on this machine',
      await ingest(() => compare(targets, { connections: 64 }, headers)),
    );

    const strict = await startCli(
      [
        'proxy',
        '--workers',
        '1',
        '--mode',
        'strict',
        '--upstream',
        upstream.url,
        '--log',
        logUrl,
        '--log-key',
        vkey,
        '--tokens',
        tokens,
        '--listen',
        '127.0.0.1:0',
        '--spool',
        join(tmp, 'spool-strict'),
        '--name',
        'bench-strict',
        '--admin-listen',
        '127.0.0.1:0',
      ],
      [/^url: (\S+)$/m, /^admin: (\S+)$/m],
    );
    procs.push(strict.proc);
    show(
      `3. strict mode (forwarded only after the log's verified receipt): ${STRICT_RATE} req/s over 16 connections`,
      await compare(
        { direct: upstream.url, bare: forwarderUrl, proxy: strict.lines[0] },
        { connections: 16, rate: STRICT_RATE },
        headers,
      ),
      'proxy (strict mode)',
    );
    // the strict proxy's events all go through its spool (request events wait there for their receipt)
    let sh = await health(strict.lines[1]);
    for (let i = 0; sh.spool_depth > 0 && i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      sh = await health(strict.lines[1]);
    }
    const metrics = await (await fetch(`${strict.lines[1]}/metrics`)).text();
    const strictAcks = Number(/^trailmark_strict_acks_total (\d+)$/m.exec(metrics)?.[1] ?? NaN);
    const strictEvents = sh.delivered;
    await stop(strict.proc);

    await stop(log.proc);
    show(
      `4. moderate load: ${MODERATE_RATE} req/s over 16 connections, log stopped (events wait in the spool)`,
      await compare(targets, { connections: 16, rate: MODERATE_RATE }, headers),
      'proxy (spool mode, log down)',
    );
    show(
      '5. saturation, 64 connections, log stopped (events wait in the spool)',
      await compare(targets, { connections: 64 }, headers),
      'proxy (spool mode, log down)',
    );
    const before = await health(admin);
    const plainBefore = await health(plainAdmin);
    const t0 = Date.now();
    log = await startCli(
      ['serve', '--data', logData, '--listen', new URL(logUrl).host],
      [/^vkey: (\S+)$/m, /^url: (\S+)$/m],
    );
    procs.push(log.proc);
    let h = await health(admin);
    let ph = await health(plainAdmin);
    while ((h.spool_depth > 0 || ph.spool_depth > 0) && Date.now() - t0 < 300_000) {
      await new Promise((r) => setTimeout(r, 100));
      h = await health(admin);
      ph = await health(plainAdmin);
    }
    const drainMs = Date.now() - t0;
    const sth = (await (await fetch(`${logUrl}/v1/get-sth`)).json()) as { tree_size: number };
    const spooled = before.spool_depth + plainBefore.spool_depth;
    console.log(
      `\nafter the log restarted: ${spooled.toLocaleString('en-US')} spooled events (two proxies) drained in ${drainMs} ms (${Math.round(spooled / (drainMs / 1000)).toLocaleString('en-US')} events/s, verified receipts)`,
    );
    console.log(
      `shipper: ${h.delivered.toLocaleString('en-US')} events delivered, spool depth ${h.spool_depth}, ${h.failed_deliveries} failed deliveries (while the log was down), ${h.receipt_failures} receipt failures; log tree size ${sth.tree_size.toLocaleString('en-US')}`,
    );
    if (h.spool_depth > 0 || ph.spool_depth > 0) throw new Error('the spool did not drain');
    console.log(
      `strict proxy: ${strictAcks.toLocaleString('en-US')} request events acknowledged before forwarding, ${sh.delivered.toLocaleString('en-US')} events shipped from its spool`,
    );
    // stream events written after the counts were read (the strict proxy's end at its stop, a heartbeat) may
    // add a few entries; anything else is an event lost or delivered twice
    const extra = sth.tree_size - (h.delivered + ph.delivered + strictEvents);
    if (extra < 0 || extra > 3) {
      throw new Error(
        `log holds ${sth.tree_size} entries, the proxies delivered ${h.delivered} + ${ph.delivered} + ${strictEvents}`,
      );
    }
  } finally {
    await Promise.all(procs.map(stop));
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
