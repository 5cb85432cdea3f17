/**
 * @trailmark/client: what a program needs to talk to a Trailmark log and check what it says. The verified
 * reader (checkpoints, tiles, entries, audit, streams), the proof client a monitor polls with, the
 * receipt-checking writer the proxies submit through, the witness client, and the evidence format.
 */
export * from './errors.js';
export * from './evidence.js';
export * from './proofclient.js';
export * from './logwriter.js';
export { rememberingVerifier } from '@trailmark/node';
export {
  httpRequest,
  joinUrl,
  getJson,
  getOk,
  bodySummary,
  MAX_RESPONSE_BYTES,
  type RequestLimits,
  type HttpResponse,
} from './http.js';
export * from './reader/index.js';
export * from './explorer/errors.js';
export * from './explorer/filters.js';
export * from './explorer/formats.js';
export * from './explorer/search.js';
export * from './witnessclient.js';
