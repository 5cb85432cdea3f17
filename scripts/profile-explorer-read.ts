/**
 * Profiling harness of the explorer's read side: builds (once, under PROFILE_LOG) a log of PROFILE_EVENTS
 * bench events, serves it with `trailmark serve`, then reads every entry three ways, printing entries/s and
 * CPU µs per entry of this process and of the server: raw (bundles fetched, not verified), verified
 * (verifiedEntries) and indexed (Indexer.syncOnce into a fresh index). Run under `node --cpu-prof`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseVkey, TILE_WIDTH } from '@trailmark/tlog';
import { LogStore, loadLogKey } from '@trailmark/log-server';
import { LogReader, fetchVerifiedCheckpoint, verifiedEntries } from '@trailmark/client';
import { IndexStore, Indexer } from '@trailmark/explorer';
import { procCpuMs, waitForUrl } from './lib/ceilings.js';
import { benchLeaves } from './lib/explorer-events.js';

const N = Number(process.env.PROFILE_EVENTS ?? 100_000);
const dir = process.env.PROFILE_LOG ?? join(tmpdir(), `tm-prof-explorer-log-${N}`);
const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
const modes = (process.env.PROFILE_MODES ?? 'raw,verified,indexed').split(',');

if (!existsSync(join(dir, 'db'))) {
  const store = await LogStore.open(join(dir, 'db'), loadLogKey(join(dir, 'log.key'), { create: true }));
  let prev: string | null = null;
  for (let s = 0; s < N; s += 10_000) {
    const r = benchLeaves(s, Math.min(N, s + 10_000), N, prev);
    prev = r.prev;
    await store.append(r.leaves.map((l) => ({ data: l.data, hash: l.hash })));
  }
  await store.close();
}
const proc = spawn(process.execPath, [BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], {
  stdio: ['ignore', 'pipe', 'ignore'],
});
let out = '';
proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
const url = await waitForUrl(proc);
const logKey = parseVkey(/^vkey: (\S+)$/m.exec(out)![1]);
/** CPU seconds of the server process so far (utime + stime). */
const serverCpu = () => procCpuMs(`/proc/${proc.pid}/stat`).total / 1000;

async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  const s0 = serverCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const s = serverCpu() - s0;
  console.log(
    `${name}: ${Math.round(N / wall)} entries/s; CPU µs/entry: this process ${((c.user + c.system) / N).toFixed(1)}, server ${((s * 1e6) / N).toFixed(1)}`,
  );
}

try {
  for (const m of modes) {
    if (m === 'raw')
      await measure('raw read (bundles, no verification)', async () => {
        const reader = new LogReader(url);
        const bundles = Math.ceil(N / TILE_WIDTH);
        let next = 0;
        const worker = async () => {
          while (next < bundles) {
            const i = next++;
            const w = Math.min(TILE_WIDTH, N - i * TILE_WIDTH);
            await reader.tile({ level: 0, index: BigInt(i), width: w, entries: true });
          }
        };
        await Promise.all(Array.from({ length: 8 }, worker));
        reader.close();
      });
    if (m === 'verified')
      await measure('verified read (verifiedEntries)', async () => {
        const reader = new LogReader(url);
        const log = await fetchVerifiedCheckpoint(reader, logKey);
        let n = 0;
        for await (const _ of verifiedEntries(log, 0n, log.checkpoint.size, 32)) n++;
        if (n !== N) throw new Error(`read ${n}`);
        reader.close();
      });
    if (m === 'indexed') {
      const idx = process.env.PROFILE_INDEX ?? mkdtempSync(join(tmpdir(), 'tm-prof-explorer-idx-'));
      await measure('indexed (Indexer.syncOnce)', async () => {
        const reader = new LogReader(url);
        const store = new IndexStore(idx);
        await new Indexer({ reader, logKey, store }).syncOnce();
        store.close();
        reader.close();
      });
      if (!process.env.PROFILE_INDEX) rmSync(idx, { recursive: true, force: true });
    }
  }
} finally {
  proc.kill('SIGTERM');
}
