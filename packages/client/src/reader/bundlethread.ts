/**
 * verifiedBundles on a worker thread: the fetching, HTTP parsing and hashing of a long range overlap with what
 * the caller does with each bundle (an indexer's writes) instead of taking turns with it on one thread.
 */
import { Worker } from 'node:worker_threads';
import { errorMessage } from '@trailmark/tlog';
import type { LogReader } from './http.js';
import { verifiedBundles, type VerifiedBundle } from './entries.js';
import { workerScript } from './pool.js';
import type { VerifiedLog } from './verified.js';
import type { BundleThreadData, BundleThreadMessage } from './bundleworker.js';
import { loadBundlePrepare, type BundlePrepare } from './bundleprepare.js';

const script = workerScript('bundleworker');

/** verifiedBundles with `prepare` run on each bundle here (the fallback of the reader thread). */
async function* preparedHere(
  log: VerifiedLog,
  start: bigint,
  end: bigint,
  prefetch: number,
  prepare: BundlePrepare | undefined,
): AsyncGenerator<VerifiedBundle> {
  const fn = prepare ? await loadBundlePrepare(prepare) : null;
  for await (const b of verifiedBundles(log, start, end, prefetch)) {
    if (fn) b.prepared = fn(b.entries, b.start);
    yield b;
  }
}

/**
 * The same bundles as verifiedBundles(log, start, end, prefetch), fetched and checked on a worker thread with
 * its own LogReader on `reader`'s log, against the tree of the verified `log`. The worker runs at most
 * `prefetch` bundles ahead of the caller. If it fails (a bundle that does not match, a read that failed, no
 * worker script), the rest of the range is read on this thread with verifiedBundles, which throws exactly
 * what it throws; `onFallback` is told why. Precondition: as verifiedBundles; `log` was verified from
 * `reader`'s log.
 */
export async function* verifiedBundlesOffThread(
  reader: LogReader,
  log: VerifiedLog,
  start: bigint,
  end: bigint,
  prefetch = 4,
  onFallback?: (why: string) => void,
  prepare?: BundlePrepare,
): AsyncGenerator<VerifiedBundle> {
  if (script === null || start >= end) {
    if (script === null) onFallback?.('no reader thread script');
    yield* preparedHere(log, start, end, prefetch, prepare);
    return;
  }
  const data: BundleThreadData = {
    url: reader.url,
    options: reader.options,
    size: String(log.checkpoint.size),
    root: log.checkpoint.root,
    start: String(start),
    end: String(end),
    prefetch,
    credit: prefetch,
    ...(prepare ? { prepare: { module: prepare.module.href, name: prepare.name } } : {}),
  };
  const worker = new Worker(script, { workerData: data });
  const inbox: BundleThreadMessage[] = [];
  let wake: (() => void) | null = null;
  const deliver = (m: BundleThreadMessage) => {
    inbox.push(m);
    wake?.();
  };
  worker.on('message', deliver);
  worker.on('error', (e) => deliver({ failed: errorMessage(e) }));
  worker.on('exit', (code) => deliver({ failed: `the reader thread exited (${code})` }));
  let pos = start;
  try {
    for (;;) {
      while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
      const m = inbox.shift()!;
      if ('done' in m) return;
      if ('failed' in m) {
        // the reference code, on this thread, from the first entry not handed out yet
        onFallback?.(m.failed);
        yield* preparedHere(log, pos, end, prefetch, prepare);
        return;
      }
      worker.postMessage(1);
      const b: VerifiedBundle = { start: BigInt(m.start), offset: m.offset, entries: m.entries, tile: m.tile };
      if (prepare) b.prepared = m.prepared;
      pos = b.start + BigInt(b.entries.length);
      yield b;
    }
  } finally {
    await worker.terminate();
  }
}
