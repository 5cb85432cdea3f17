/**
 * The read side of a log for auditors and monitors: LogReader (HTTP, retries, bounded concurrency) and
 * everything read through tiles verified against a signed checkpoint.
 */
export * from './http.js';
export * from './verified.js';
export { nodeAccelerator } from '@trailmark/node';
export * from './audit.js';
export * from './entries.js';
export * from './streams.js';
export * from './bundlethread.js';
export * from './bundleprepare.js';
