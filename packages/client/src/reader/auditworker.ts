/**
 * Worker thread of the audit: fetches full entry bundles and their level-0 tiles itself and checks them (the
 * entries against the tile, the tile against the hash its verified parent holds), so HTTP parsing and
 * hashing spread over threads. It only answers "matches" or "does not"; the main thread re-fetches and
 * re-checks any "does not" with the reference code, which says exactly what differs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TILE_WIDTH } from '@trailmark/tlog';
import { nodeAccelerator } from '@trailmark/node';
import { LogReader, type LogReaderOptions } from './http.js';

/** Check full bundle `index`; `expected` is the verified parent hash of level-0 tile `index`. */
export interface BundleJob {
  id: number;
  index: string;
  expected: Uint8Array;
}

const { url, options } = workerData as { url: string; options: LogReaderOptions };
const reader = new LogReader(url, options);

async function check(job: BundleJob): Promise<boolean> {
  const index = BigInt(job.index);
  const ref = { level: 0, index, width: TILE_WIDTH };
  const [tile, bundle] = await Promise.all([reader.tile(ref), reader.tile({ ...ref, entries: true })]);
  if (!nodeAccelerator.bundleMatches(bundle, tile, TILE_WIDTH)) return false;
  const root = nodeAccelerator.fullTileRoot(tile);
  for (let k = 0; k < 32; k++) if (root[k] !== job.expected[k]) return false;
  return true;
}

parentPort?.on('message', (job: BundleJob | 'close') => {
  if (job === 'close') {
    reader.close();
    parentPort!.close();
    return;
  }
  check(job).then(
    (ok) => parentPort!.postMessage({ id: job.id, ok }),
    // a fetch that failed after its retries: the main thread tries again and reports it
    () => parentPort!.postMessage({ id: job.id, ok: false }),
  );
});
