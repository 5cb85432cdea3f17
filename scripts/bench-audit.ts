/**
 * Audit replay: `trailmark audit` of a local log of 1,000,000 entries (BENCH_QUICK=1: 100,000), served by
 * `trailmark serve` in its own process over real HTTP, printed beside the raw SHA-256 rates of the same run.
 *
 * An audit of n entries computes n leaf hashes (SHA-256 of 0x00 || ~300 bytes) and about n node hashes
 * (SHA-256 of 65 bytes: 255 per full level-0 tile, plus the tiles above), so its single-thread ceiling is
 * 1 / (1/leafRate + 1/nodeRate) entries/s; the log server shares the same two cores. The other bound is
 * HTTP itself: fetching the same bundles and tiles with no checks at all is measured in the same run.
 */
import { spawn } from 'node:child_process';
import { hash as nodeHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalJson, parseVkey } from '@trailmark/tlog';
import { LogStore, loadLogKey } from '@trailmark/log-server';
import { LogReader, auditLog } from '@trailmark/client';
import { fmt, median, rate, row, sha256Rates, waitForUrl } from './lib/ceilings.js';

const quick = process.env.BENCH_QUICK === '1';
const N = Number(process.env.BENCH_AUDIT_ENTRIES ?? (quick ? 100_000 : 1_000_000));
const RUNS = quick ? 1 : 3;
const WORKERS = (process.env.BENCH_AUDIT_WORKERS ?? '2').split(',').map(Number);
const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

/** An access event of about 300 canonical bytes, like the proxy writes. */
function event(i: number): Uint8Array {
  return canonicalJson({
    schema: 'trailmark.access/v1',
    stage: 'request',
    id: `01J${i.toString(36).padStart(10, '0')}`,
    request_id: `req-${i}`,
    time: new Date(1_760_000_000_000 + i).toISOString(),
    proxy: 'bench-proxy',
    actor: { id: `user${i % 97}`, roles: ['dba'], ip: '10.0.0.7', user_agent: 'psql/16' },
    action: { method: 'GET', target: 'https://db.internal', path: `/tables/t${i % 13}/rows`, query: 'limit=100' },
    decision: { allowed: true, reason: 'role dba' },
  });
}

async function buildLog(dir: string): Promise<number> {
  const key = loadLogKey(join(dir, 'log.key'), { create: true });
  const store = await LogStore.open(join(dir, 'db'), key);
  const t0 = performance.now();
  let bytes = 0;
  for (let start = 0; start < N; start += 10_000) {
    const leaves = [];
    for (let i = start; i < Math.min(N, start + 10_000); i++) {
      const data = event(i);
      bytes += data.length;
      const buf = new Uint8Array(data.length + 1);
      buf.set(data, 1);
      leaves.push({ data, hash: nodeHash('sha256', buf, 'buffer') });
    }
    await store.append(leaves);
  }
  await store.close();
  console.log(
    `built a log of ${fmt(N)} entries (${Math.round(bytes / N)} bytes each on average) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return bytes / N;
}

/** Entries/s of fetching every full bundle and level-0 tile with no checks at all: the HTTP floor. */
async function fetchOnly(url: string): Promise<number> {
  const reader = new LogReader(url, { concurrency: 16 });
  const bundles = Math.floor(N / 256);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < bundles) {
      const index = BigInt(next++);
      await Promise.all([
        reader.tile({ level: 0, index, width: 256, entries: true }),
        reader.tile({ level: 0, index, width: 256 }),
      ]);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  reader.close();
  return (bundles * 256) / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tm-bench-audit-'));
  const server = { kill: () => undefined as unknown };
  try {
    const avg = await buildLog(dir);
    const proc = spawn(process.execPath, [BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    server.kill = () => proc.kill('SIGTERM');
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const url = await waitForUrl(proc);
    const vkey = /^vkey: (\S+)$/m.exec(out)?.[1];
    if (!vkey) throw new Error(`trailmark serve printed no vkey line: ${out}`);
    const logKey = parseVkey(vkey);

    const rates: number[] = [];
    const fetchRates: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      fetchRates.push(await fetchOnly(url));
      const reader = new LogReader(url, { concurrency: 16 });
      const t0 = performance.now();
      const report = await auditLog(reader, logKey, { bundleConcurrency: 32, workers: WORKERS[r % WORKERS.length] });
      const s = (performance.now() - t0) / 1000;
      reader.close();
      if (report.treeSize !== BigInt(N)) throw new Error(`audited ${report.treeSize} entries, want ${N}`);
      rates.push(N / s);
      console.log(`run ${r + 1} (${WORKERS[r % WORKERS.length]} workers): ${report.summary} in ${s.toFixed(2)} s`);
    }

    // same-run ceilings: the audit hashes with crypto.hash(..., 'binary') (see fasthash.ts), so that is the rate shown
    const sample = Buffer.alloc(1 + Math.round(avg), 7);
    const node = Buffer.alloc(65, 1);
    const leafRate = rate(() => nodeHash('sha256', sample, 'binary'), 500);
    const nodeRate = rate(() => nodeHash('sha256', node, 'binary'), 500);
    const sha = sha256Rates(300);
    const hashBound = 1 / (1 / leafRate + 1 / nodeRate);
    const fetchFloor = median(fetchRates);
    const fig = median(rates);
    console.log('');
    console.log(
      row(
        `audit replay, ${fmt(N)} entries (median of ${RUNS})`,
        fig,
        'entries/s',
        'SHA-256 leaf+node, one thread',
        hashBound,
      ),
    );
    console.log(row('  same', fig, 'entries/s', 'HTTP fetch of the same, no checks', fetchFloor));
    console.log(row('  same', fig, 'entries/s', `SHA-256 ${sample.length} B leaf, crypto.hash`, leafRate));
    console.log(row('  same', fig, 'entries/s', 'SHA-256 65 B node, crypto.hash', nodeRate));
    console.log(row('  same', fig, 'entries/s', 'SHA-256 301 B, createHash', sha.node));
    console.log(`target: 300,000 entries/s -> ${fig >= 300_000 ? 'met' : 'NOT met'} in this run`);
  } finally {
    server.kill();
    await new Promise((r) => setTimeout(r, 300));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
