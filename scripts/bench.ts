/**
 * `npm run bench`: every benchmark in turn, each printing its figures beside ceilings measured in the same run.
 * BENCH_QUICK=1 shrinks the sizes for a smoke run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const benches = [
  'bench-tlog.ts',
  'bench-server.ts',
  'bench-audit.ts',
  'bench-proxy.ts',
  'bench-gateways.ts',
  'bench-pg.ts',
  'bench-pgstore.ts',
  'bench-explorer.ts',
];
let failed = 0;
for (const b of benches) {
  const p = join(here, b);
  if (!existsSync(p)) continue;
  console.log(`\n=== ${b} ===`);
  const r = spawnSync(process.execPath, ['--import=tsx', p, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
