/**
 * Explorer: indexing rate and search latency on a log of 1,000,000 events (BENCH_QUICK=1: 100,000), served by
 * `trailmark serve` in its own process, and the page's time to verify 100 results in headless Chromium.
 *
 * Same-run ceilings: indexing is printed beside the verified read of the same entries with no indexing
 * (what the indexer cannot beat: fetch, check against tiles, hand out); search latency beside the latency of
 * a trivial request to the same server; the page's verification beside the same 100 checks done by
 * `trailmark search`'s code in Node.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseVkey, type NoteVerifier } from '@trailmark/tlog';
import { LogStore, loadLogKey } from '@trailmark/log-server';
import { LogReader, fetchVerifiedCheckpoint, nodeHasher, verifiedEntries } from '@trailmark/client';
import { VerifiedSearch, parseFilters } from '@trailmark/client';
import { IndexStore, Indexer, prepareBundle, preparedEntry, type VerifiedLeaf } from '@trailmark/explorer';
import { fmt, median, procCpuMs, threadCpuMs, treeCpuMs, waitForUrl } from './lib/ceilings.js';
import { T0, benchLeaves } from './lib/explorer-events.js';
import { launchChromium } from '../test/lib/chromium.js';

const quick = process.env.BENCH_QUICK === '1';
const N = Number(process.env.BENCH_EXPLORER_EVENTS ?? (quick ? 100_000 : 1_000_000));
const QUERIES = quick ? 200 : 1000;
const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

async function buildLog(dir: string): Promise<void> {
  const key = loadLogKey(join(dir, 'log.key'), { create: true });
  const store = await LogStore.open(join(dir, 'db'), key);
  const t0 = performance.now();
  let prev: string | null = null;
  for (let start = 0; start < N; start += 10_000) {
    const r = benchLeaves(start, Math.min(N, start + 10_000), N, prev);
    prev = r.prev;
    await store.append(r.leaves.map((l) => ({ data: l.data, hash: l.hash })));
  }
  await store.close();
  console.log(`built a log of ${fmt(N)} events in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/**
 * Entries/s of reading every entry verified against tiles, indexing nothing (the indexer's read side), and
 * the leaves read, for the store-only measurement.
 */
async function verifiedRead(url: string, logKey: NoteVerifier): Promise<{ rate: number; leaves: VerifiedLeaf[] }> {
  const reader = new LogReader(url);
  const t0 = performance.now();
  const log = await fetchVerifiedCheckpoint(reader, logKey, { hasher: nodeHasher });
  const leaves: VerifiedLeaf[] = [];
  for await (const e of verifiedEntries(log, 0n, log.checkpoint.size, 8)) {
    leaves.push({ index: Number(e.index), leafHash: e.leafHash, data: e.data });
  }
  const rate = leaves.length / ((performance.now() - t0) / 1000);
  reader.close();
  if (leaves.length !== N) throw new Error(`read ${leaves.length} entries, want ${N}`);
  return { rate, leaves };
}

/**
 * Entries/s of the index store alone: the same leaves, from memory, into a fresh index (the write side). With
 * `prepared`, each bundle is first prepared as the reader thread does (not timed): the index thread's share.
 */
function storeOnlyRate(dir: string, leaves: VerifiedLeaf[], prepared: boolean): number {
  if (prepared) {
    for (let i = 0; i < leaves.length; i += 256) {
      const b = prepareBundle(leaves.slice(i, i + 256).map((l) => l.data));
      for (let k = 0; k < 256 && i + k < leaves.length; k++) leaves[i + k].prepared = preparedEntry(b, k);
    }
  } else for (const l of leaves) delete l.prepared;
  const store = new IndexStore(dir);
  const t0 = performance.now();
  for (let i = 0; i < leaves.length; i += 4096) store.add(leaves.slice(i, i + 4096));
  const rate = leaves.length / ((performance.now() - t0) / 1000);
  store.close();
  rmSync(dir, { recursive: true, force: true });
  return rate;
}

/**
 * Entries/s of raw better-sqlite3 inserts of the same leaves (leaf index, leaf hash, entry text) into a table
 * with no other index, in one transaction, same pragmas: what any SQLite index of these entries must write.
 */
function rawInsertRate(dir: string, leaves: VerifiedLeaf[]): number {
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, 'raw.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (leaf_index INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL, entry TEXT NOT NULL)');
  const ins = db.prepare('INSERT INTO t VALUES (?, ?, ?)');
  const t0 = performance.now();
  db.transaction(() => {
    for (const l of leaves)
      ins.run(l.index, l.leafHash, Buffer.from(l.data.buffer, l.data.byteOffset, l.data.byteLength).toString('utf8'));
  })();
  const rate = leaves.length / ((performance.now() - t0) / 1000);
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return rate;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function timeGet(url: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(url);
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tm-bench-explorer-'));
  let kill = () => undefined as unknown;
  try {
    await buildLog(dir);
    const proc = spawn(process.execPath, [BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    kill = () => proc.kill('SIGTERM');
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const url = await waitForUrl(proc);
    const vkey = /^vkey: (\S+)$/m.exec(out)?.[1];
    if (!vkey) throw new Error(`trailmark serve printed no vkey line: ${out}`);
    const logKey = parseVkey(vkey);

    // indexing, beside the verified read of the same entries in the same run
    const read = await verifiedRead(url, logKey);
    const readRate = read.rate;
    // the write side, three rounds each on the same slice, interleaved so the machine's load hits both alike
    const slice = read.leaves.slice(0, Math.min(N, 200_000));
    const storeRates: number[] = [];
    const writeRates: number[] = [];
    const rawRates: number[] = [];
    for (let r = 0; r < 3; r++) {
      rawRates.push(rawInsertRate(join(dir, 'raw'), slice));
      storeRates.push(storeOnlyRate(join(dir, 'store-only'), slice, false));
      writeRates.push(storeOnlyRate(join(dir, 'store-only'), slice, true));
    }
    const storeRate = median(storeRates);
    const writeRate = median(writeRates);
    const rawRate = median(rawRates);
    read.leaves.length = 0;
    const store = new IndexStore(join(dir, 'explorer'));
    const reader = new LogReader(url);
    const indexer = new Indexer({ reader, logKey, store });
    const cpu0 = { main: threadCpuMs(process.pid, process.pid), all: process.cpuUsage(), log: treeCpuMs([proc.pid!]) };
    const t0 = performance.now();
    await indexer.syncOnce();
    const indexRate = N / ((performance.now() - t0) / 1000);
    // where the CPU went, per entry: a rate on 2 shared cores is bounded by the busiest thread and by the sum
    const all = process.cpuUsage(cpu0.all);
    const perEntry = (ms: number) => ((ms * 1000) / N).toFixed(1);
    const mainMs = threadCpuMs(process.pid, process.pid) - cpu0.main;
    const cpuLine =
      `  CPU per entry (from /proc): the index's thread ${perEntry(mainMs)} µs, the reader thread and V8's ` +
      `helpers ${perEntry((all.user + all.system) / 1000 - mainMs)} µs, the log server ${perEntry(treeCpuMs([proc.pid!]) - cpu0.log)} µs`;
    reader.close();
    store.close();
    if (indexer.status.indexed !== N) throw new Error(`indexed ${indexer.status.indexed}, want ${N}`);
    console.log('');
    const serial = 1 / (1 / readRate + 1 / storeRate);
    const pipeline = Math.min(readRate, writeRate);
    console.log(`indexing ${fmt(N)} events: ${fmt(indexRate)} events/s (target 50,000)`);
    console.log(cpuLine);
    console.log(
      `  same-run ceilings: verified read of the same entries, no index ${fmt(readRate)} entries/s; the index store alone, same entries from memory ${fmt(storeRate)} entries/s (its writes alone, entries prepared as the reader thread hands them, ${fmt(writeRate)}/s); read then store one after the other ${fmt(serial)} entries/s; the slower of read and writes (a perfect pipeline on spare cores) ${fmt(pipeline)} entries/s (indexing is ${Math.round((100 * indexRate) / serial)}% and ${Math.round((100 * indexRate) / pipeline)}% of these)`,
    );
    console.log(
      `  write side on the first ${fmt(slice.length)} entries, median of 3: the index store ${fmt(storeRate)} entries/s, its writes alone ${fmt(writeRate)} | raw better-sqlite3 inserts of the same rows (leaf index, hash, entry; no index; one transaction) ${fmt(rawRate)} entries/s (the store is ${Math.round((100 * storeRate) / rawRate)}%, its writes ${Math.round((100 * writeRate) / rawRate)}% of that)`,
    );

    // search latency over HTTP, filtered pages of 100, from `trailmark explorer` in its own process on the index
    // just built (so the client's thread is not the server's); the page fetches tiles from the log itself
    // (trailmark serve answers with CORS headers)
    const xproc = spawn(
      process.execPath,
      [BIN, 'explorer', '--log', url, '--key', vkey, '--data', join(dir, 'explorer'), '--listen', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const killServe = kill;
    kill = () => {
      xproc.kill('SIGTERM');
      killServe();
    };
    const x = { url: await waitForUrl(xproc) };
    for (;;) {
      const info = (await (await fetch(`${x.url}/api/info`)).json()) as { tree_size?: number };
      if (info.tree_size === N) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    /** CPU milliseconds the explorer process has used (utime + stime, from /proc). */
    const explorerCpuMs = () => procCpuMs(`/proc/${xproc.pid}/stat`).total;
    const filters = [
      (i: number) => `actor=user${i % 97}`,
      (i: number) => `actor=user${i % 97}&decision=denied`,
      (i: number) => `path=/tables/t${i % 13}&method=POST`,
      (i: number) => `target=https://svc${i % 7}.internal&status=403`,
      (i: number) => `q=t${i % 13}`,
      (i: number) =>
        `from=${new Date(T0 + (i % 10) * 86_400_000).toISOString()}&to=${new Date(T0 + ((i % 10) + 1) * 86_400_000).toISOString()}&actor=user${i % 97}`,
    ];
    for (let i = 0; i < 20; i++) await timeGet(`${x.url}/api/events?${filters[i % filters.length](i)}&limit=100`); // warm-up
    const lat: number[] = [];
    const base: number[] = [];
    const byShape: number[][] = filters.map(() => []);
    let searchCpu = 0;
    for (let i = 0; i < QUERIES; i++) {
      const c0 = explorerCpuMs();
      const ms = await timeGet(`${x.url}/api/events?${filters[i % filters.length](i * 31)}&limit=100`);
      searchCpu += explorerCpuMs() - c0;
      lat.push(ms);
      byShape[i % filters.length].push(ms);
      base.push(await timeGet(`${x.url}/api/info`));
    }
    // the queries alone, in this process on the same index (a second connection): what SQLite takes
    const reading = new IndexStore(join(dir, 'explorer'), () => {});
    const inProc: number[][] = filters.map(() => []);
    for (let i = 0; i < QUERIES; i++) {
      const f = parseFilters(new URLSearchParams(filters[i % filters.length](i * 31)));
      const t = performance.now();
      reading.search(f, 100, null);
      inProc[i % filters.length].push(performance.now() - t);
    }
    reading.close();
    const deep = await timeGet(
      `${x.url}/api/events?actor=user3&limit=100&cursor=${Buffer.from(`b:${Math.floor(N / 3)}`).toString('base64url')}`,
    );
    const shapeNames = ['actor', 'actor+decision', 'path+method', 'target+status', 'words', 'time+actor'];
    const perShape = byShape.map((xs, k) => `${shapeNames[k]} ${pct(xs, 50).toFixed(1)}/${pct(xs, 99).toFixed(1)}`);
    console.log(
      `search, filtered page of 100 on ${fmt(N)} events (${QUERIES} queries, 6 filter shapes): p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms (target p99 <= 50 ms) | trivial request to the same server: p50 ${pct(base, 50).toFixed(1)} ms, p99 ${pct(base, 99).toFixed(1)} ms; a page deep in the log (cursor): ${deep.toFixed(1)} ms`,
    );
    console.log(`  per filter shape, p50/p99 ms: ${perShape.join('; ')}`);
    console.log(
      `  the explorer process's CPU per filtered page (from /proc, little affected by load): ${(searchCpu / QUERIES).toFixed(1)} ms (10 ms clock ticks, averaged)`,
    );
    console.log(
      `  the query alone (IndexStore.search in this process, same index), p50/p99 ms: ${inProc.map((xs, k) => `${shapeNames[k]} ${pct(xs, 50).toFixed(1)}/${pct(xs, 99).toFixed(1)}`).join('; ')}`,
    );

    // the page verifying 100 results in headless Chromium, beside the same checks in Node
    const browser = await launchChromium();
    try {
      const times: number[] = [];
      for (let r = 0; r < 3; r++) {
        const page = await browser.context.newPage();
        const t = performance.now();
        await page.goto(`${x.url}/?actor=user${r + 1}`);
        await page.waitForFunction(
          () => {
            const rows = [...document.querySelectorAll('#results tbody tr')];
            return rows.length === 100 && rows.every((row) => row.getAttribute('data-verified') === 'true');
          },
          undefined,
          { timeout: 120_000, polling: 20 },
        );
        times.push(performance.now() - t);
        await page.close();
      }
      const nodeTimes: number[] = [];
      for (let r = 0; r < 3; r++) {
        const t = performance.now();
        let n = 0;
        for await (const _ of new VerifiedSearch({
          explorer: x.url,
          logKey,
          filters: { actor: `user${r + 1}` },
          max: 100,
        }).results())
          n++;
        if (n !== 100) throw new Error(`node search verified ${n} results`);
        nodeTimes.push(performance.now() - t);
      }
      console.log(
        `page: load and verify 100 results in headless Chromium: ${median(times).toFixed(0)} ms (median of 3) | the same 100 checks in Node (trailmark search): ${median(nodeTimes).toFixed(0)} ms`,
      );
    } finally {
      await browser.close();
    }
    console.log('(the machine is shared with other work: figures are noisy; compare each with its same-run ceiling)');
  } finally {
    kill();
    await new Promise((r) => setTimeout(r, 300));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
