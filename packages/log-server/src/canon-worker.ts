/** Worker thread: prepares add-entries bodies (see canon.ts). Messages: {id, body, kind} → {id, ok, ...}. */
import { parentPort } from 'node:worker_threads';
import { preparers, type BodyKind, type PrepError } from './canon.js';
import { errorMessage } from '@trailmark/tlog';

parentPort!.on('message', (m: { id: number; body: Uint8Array; kind: BodyKind }) => {
  try {
    const p = preparers[m.kind](m.body);
    parentPort!.postMessage({ id: m.id, ok: true, data: p.data, offsets: p.offsets, hashes: p.hashes }, [
      p.data.buffer as ArrayBuffer,
      p.offsets.buffer as ArrayBuffer,
      p.hashes.buffer as ArrayBuffer,
    ]);
  } catch (e) {
    const err = e as PrepError;
    if (typeof err?.status === 'number')
      parentPort!.postMessage({ id: m.id, ok: false, status: err.status, message: err.message });
    else parentPort!.postMessage({ id: m.id, ok: false, status: 500, message: errorMessage(e) });
  }
});
