/** A small pool of audit worker threads (see auditworker.ts). */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { LogReaderOptions } from './http.js';

/**
 * The worker script `name`: this module's sibling with this module's extension (.js from dist, .ts from
 * sources, where the worker inherits the parent's execArgv and so its TypeScript loader and export conditions),
 * or null when it is not there (a bundler may have dropped it): the caller then works on its own thread.
 */
export function workerScript(name: string): URL | null {
  const url = new URL(`./${name}${extname(new URL(import.meta.url).pathname)}`, import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : null;
}

/**
 * Fetches and checks full bundles on worker threads, each with its own LogReader on the same log.
 * Precondition: call close() when done (workers keep the process alive).
 */
export class BundleCheckPool {
  /** The worker script (see workerScript). */
  static readonly script = workerScript('auditworker');
  /** Whether the worker script is there; without it the caller checks on one thread. */
  static available(): boolean {
    return BundleCheckPool.script !== null;
  }

  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (ok: boolean) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private turn = 0;

  constructor(size: number, url: string, options: LogReaderOptions) {
    const script = BundleCheckPool.script!;
    for (let i = 0; i < size; i++) {
      const w = new Worker(script, { workerData: { url, options } });
      w.on('message', (m: { id: number; ok: boolean }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        p?.resolve(m.ok);
      });
      w.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  /**
   * Whether full bundle `index` and its level-0 tile, as fetched by a worker, match each other and the
   * verified parent hash `expected`. Never trusted to say "no" (the caller re-checks with the reference).
   */
  check(index: bigint, expected: Uint8Array): Promise<boolean> {
    const id = this.nextId++;
    const w = this.workers[this.turn++ % this.workers.length];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, index: index.toString(), expected: expected.slice() });
    });
  }

  /** Terminates every worker thread; the pool must not be used afterwards. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
