/** Daemons for the benchmarks: `trailmark` commands as child processes, stopped cleanly; load results as rows. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, type LoadResult } from './ceilings.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '../../packages/cli/dist/bin.js');

/**
 * Starts `trailmark ARGS` (this tree's build, or the `trailmark` bin.js at `binPath`); resolves with the first group
 * of each pattern once its output matched them all.
 */
export function startCli(
  args: string[],
  want: RegExp[],
  binPath = bin,
): Promise<{ proc: ChildProcess; lines: string[] }> {
  const proc = spawn(process.execPath, [binPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = want.map((re) => re.exec(out));
      if (m.every(Boolean)) resolve({ proc, lines: m.map((x) => x![1]) });
    });
    proc.on('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
  });
}

/** SIGTERM, and resolves once the process exited. */
export function stop(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

/** Medians of several runs (errors and non-2xx added up). */
export function med(xs: LoadResult[]): LoadResult {
  return {
    rps: median(xs.map((x) => x.rps)),
    p50: median(xs.map((x) => x.p50)),
    p99: median(xs.map((x) => x.p99)),
    errors: xs.reduce((a, x) => a + x.errors, 0),
    non2xx: xs.reduce((a, x) => a + x.non2xx, 0),
  };
}

export function fmtRow(what: string, r: LoadResult): string {
  return `  ${what.padEnd(40)} ${Math.round(r.rps).toLocaleString('en-US').padStart(8)} req/s   p50 ${String(r.p50).padStart(4)} ms   p99 ${String(r.p99).padStart(4)} ms   errors ${r.errors}   non-2xx ${r.non2xx}`;
}
