/** A small pool of audit worker threads (see auditworker.ts). */
import { Worker } from 'node:worker_threads';

/**
 * Checks full bundles against full level-0 tiles and their expected parent hash on worker threads.
 * Precondition: call close() when done (workers keep the process alive).
 */
export class BundleCheckPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (ok: boolean) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private turn = 0;

  constructor(size: number) {
    const url = new URL('./auditworker.js', import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
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
   * Whether the 256 entries hash to the tile and the tile to `expected`. Never trusted to say "no".
   * Precondition: the caller gives up `bundle` and `tile`: when they own their whole ArrayBuffer it is
   * transferred to the worker (copying 100 KB bundles cost more than hashing them), leaving them empty.
   */
  check(bundle: Uint8Array, tile: Uint8Array, expected: Uint8Array): Promise<boolean> {
    const id = this.nextId++;
    const w = this.workers[this.turn++ % this.workers.length];
    const transfer: ArrayBuffer[] = [];
    for (const b of [bundle, tile]) {
      if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer && !transfer.includes(b.buffer)) transfer.push(b.buffer);
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, bundle, tile, expected: expected.slice() }, transfer);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
