/**
 * Worker thread of the audit: checks full entry bundles against their level-0 tiles and the tiles against
 * the hash their verified parent holds, off the thread that does the HTTP. It only answers "matches" or
 * "does not"; the main thread re-checks any "does not" with the reference code, which says what differs.
 */
import { parentPort } from 'node:worker_threads';
import { nodeAccelerator } from './fasthash.js';

export interface BundleJob {
  id: number;
  bundle: Uint8Array;
  tile: Uint8Array;
  expected: Uint8Array;
}

parentPort?.on('message', (job: BundleJob) => {
  let ok = false;
  try {
    ok = nodeAccelerator.bundleMatches(job.bundle, job.tile, 256);
    if (ok) {
      const root = nodeAccelerator.fullTileRoot(job.tile);
      for (let k = 0; k < 32; k++) if (root[k] !== job.expected[k]) ok = false;
    }
  } catch {
    ok = false;
  }
  parentPort!.postMessage({ id: job.id, ok });
});
