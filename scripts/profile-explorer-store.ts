/**
 * Profiling harness of the explorer's index store (the write side): PROFILE_EVENTS (default 100,000) bench
 * events from memory into a fresh index, 4,096 per add, printing CPU µs per event. Run it under
 * `node --cpu-prof` to see where the time goes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IndexStore, type VerifiedLeaf } from '@trailmark/explorer';
import { benchLeaves } from './lib/explorer-events.js';

const N = Number(process.env.PROFILE_EVENTS ?? 100_000);
const { leaves: raw } = benchLeaves(0, N, N, null);
const leaves: VerifiedLeaf[] = raw.map((l) => ({ index: l.index, leafHash: l.hash, data: l.data }));
const dir = mkdtempSync(join(tmpdir(), 'tm-prof-explorer-'));
const store = new IndexStore(dir);
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < leaves.length; i += 4096) store.add(leaves.slice(i, i + 4096));
const wall = performance.now() - t0;
const c = process.cpuUsage(c0);
store.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  `${N} events: ${((c.user + c.system) / N).toFixed(1)} µs CPU/event (user ${(c.user / N).toFixed(1)}, sys ${(c.system / N).toFixed(1)}), wall ${((wall * 1000) / N).toFixed(1)} µs/event, ${Math.round(N / (wall / 1000))} events/s`,
);
