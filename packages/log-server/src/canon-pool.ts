/**
 * The main-thread side of canon-worker: a few workers (each request to the least busy), answers matched to
 * requests by id, a worker that dies is replaced on the next request. The worker is this module's sibling
 * with this module's extension: .js from dist, .ts from sources (tests), where the worker inherits the
 * parent's execArgv and so its TypeScript loader and export conditions.
 */
import { extname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { HttpError } from './errors.js';
import { preparers, type BodyKind, type PackedLeaves, type PrepError } from './canon.js';
import type { Leaf } from './log-storage.js';
import { errorMessage } from '@trailmark/tlog';

/** Bodies below this size are prepared inline: the worker round trip would cost more than it saves. */
export const INLINE_BODY_BYTES = 64 * 1024;

interface Waiter {
  resolve(p: PackedLeaves): void;
  reject(e: unknown): void;
}

/** Splits packed leaves into Leaf views (no copies; plain Uint8Arrays, which cost a quarter of Buffer views). */
export function unpack(p: PackedLeaves): Leaf[] {
  const n = p.offsets.length - 1;
  const out = new Array<Leaf>(n);
  const data = p.data.buffer;
  const d0 = p.data.byteOffset;
  const hashes = p.hashes.buffer;
  const h0 = p.hashes.byteOffset;
  for (let i = 0; i < n; i++) {
    const o = p.offsets[i] + 1;
    out[i] = {
      data: new Uint8Array(data, d0 + o, p.offsets[i + 1] - o),
      hash: new Uint8Array(hashes, h0 + i * 32, 32),
    };
  }
  return out;
}

/** A PrepError as the HttpError to answer with; anything else unchanged. */
export function asHttp(e: unknown): unknown {
  const err = e as PrepError;
  if (typeof err?.status === 'number' && err.status < 500) return new HttpError(err.status, err.message);
  return e;
}

interface Slot {
  worker: Worker | undefined;
  waiting: Map<number, Waiter>;
}

/**
 * Prepares add-entries bodies (parse, canonicalize, hash) on worker threads, inline when `workers` is 0 (see the file
 * comment).
 */
export class CanonPool {
  private readonly slots: Slot[];
  private next = 1;
  private closed = false;

  /** `workers` = 0 prepares everything inline. */
  constructor(workers = 1) {
    this.slots = Array.from({ length: Math.max(0, workers) }, () => ({ worker: undefined, waiting: new Map() }));
  }

  private start(slot: Slot): Worker {
    // the worker's heap holds a few request bodies at a time; keep its share of the RSS small
    const resourceLimits = { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 };
    const w = new Worker(new URL(`./canon-worker${extname(new URL(import.meta.url).pathname)}`, import.meta.url), {
      resourceLimits,
    });
    w.unref();
    w.on(
      'message',
      (m: {
        id: number;
        ok: boolean;
        data: Uint8Array;
        offsets: Uint32Array;
        hashes: Uint8Array;
        status: number;
        message: string;
      }) => {
        const waiter = slot.waiting.get(m.id);
        if (!waiter) return;
        slot.waiting.delete(m.id);
        if (m.ok)
          waiter.resolve({
            data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength),
            offsets: m.offsets,
            hashes: Buffer.from(m.hashes.buffer, m.hashes.byteOffset, m.hashes.byteLength),
          });
        else
          waiter.reject(
            m.status < 500 ? new HttpError(m.status, m.message) : new Error(`entry preparation failed: ${m.message}`),
          );
      },
    );
    const fail = (e: unknown) => {
      if (slot.worker === w) slot.worker = undefined;
      for (const waiter of slot.waiting.values())
        waiter.reject(new Error(`entry preparation worker stopped: ${errorMessage(e)}`));
      slot.waiting.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    return w;
  }

  /**
   * Parses and canonicalizes a body of many entries into leaves. Rejects with HttpError (4xx) for client
   * mistakes. Bodies of any size may go to the worker: preparation parses one element at a time, so its heap
   * holds one element's objects, and the packed result lives outside the heap.
   */
  async prepare(body: Buffer, kind: BodyKind = 'batch'): Promise<Leaf[]> {
    if (this.slots.length === 0 || this.closed || body.length < INLINE_BODY_BYTES) {
      try {
        return unpack(preparers[kind](body));
      } catch (e) {
        throw asHttp(e);
      }
    }
    let slot = this.slots[0];
    for (const s of this.slots) if (s.waiting.size < slot.waiting.size) slot = s;
    const worker = (slot.worker ??= this.start(slot));
    const id = this.next++;
    // hand the bytes over without a copy when the buffer is the body's own
    const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const msg = own ? body : Buffer.from(body);
    return new Promise<PackedLeaves>((resolve, reject) => {
      slot.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, body: msg, kind }, [msg.buffer as ArrayBuffer]);
    }).then(unpack);
  }

  /** Terminates the workers; bodies prepared after close are prepared inline. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(async (s) => {
        const w = s.worker;
        s.worker = undefined;
        if (w) await w.terminate();
      }),
    );
  }
}
