/**
 * Worker thread of verifiedBundlesOffThread: fetches the entry bundles of a range and checks each against its
 * level-0 tile, the tiles against the tree (size, root) of a checkpoint the main thread verified, and posts
 * each bundle with its tile, at most CREDIT ahead of what the main thread has taken. On any failure it posts
 * `failed` and stops; the main thread then reads on with the reference code, which reports exactly what
 * did not match (or retries what could not be read).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { VerifiedTileReader, errorMessage } from '@trailmark/tlog';
import { nodeAccelerator, nodeHasher } from '@trailmark/node';
import { LogReader, type LogReaderOptions } from './http.js';
import { verifiedBundles } from './entries.js';
import { loadBundlePrepare } from './bundleprepare.js';

/** What the main thread hands over: the log, the verified tree and the range. */
export interface BundleThreadData {
  url: string;
  options: LogReaderOptions;
  size: string;
  root: Uint8Array;
  start: string;
  end: string;
  prefetch: number;
  credit: number;
  /** The caller's per-bundle step (BundlePrepare, the module as a URL string). */
  prepare?: { module: string; name: string };
}

/** One message of the worker: a verified bundle, the end of the range, or a failure. */
export type BundleThreadMessage =
  | { start: string; offset: number; entries: Uint8Array[]; tile: Uint8Array; prepared?: unknown }
  | { done: true }
  | { failed: string };

const d = workerData as BundleThreadData;
const port = parentPort!;
const reader = new LogReader(d.url, d.options);
const tiles = new VerifiedTileReader(BigInt(d.size), d.root, reader.fetchTile, {
  hasher: nodeHasher,
  accelerator: nodeAccelerator,
});
let credit = d.credit;
let wake: (() => void) | null = null;
port.on('message', () => {
  // the main thread took a bundle
  credit++;
  wake?.();
});

async function run(): Promise<void> {
  try {
    const prepare = d.prepare
      ? await loadBundlePrepare({ module: new URL(d.prepare.module), name: d.prepare.name })
      : null;
    for await (const b of verifiedBundles({ tiles }, BigInt(d.start), BigInt(d.end), d.prefetch)) {
      while (credit === 0) await new Promise<void>((r) => (wake = r));
      credit--;
      // the tile is the reader's cached copy: posted as a copy (structured clone), never transferred
      port.postMessage({
        start: String(b.start),
        offset: b.offset,
        entries: b.entries,
        tile: b.tile,
        ...(prepare ? { prepared: prepare(b.entries, b.start) } : {}),
      } satisfies BundleThreadMessage);
    }
    port.postMessage({ done: true } satisfies BundleThreadMessage);
  } catch (e) {
    port.postMessage({ failed: errorMessage(e) } satisfies BundleThreadMessage);
  } finally {
    reader.close();
    port.close();
  }
}

void run();
