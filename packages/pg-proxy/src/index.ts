export * from './errors.js';
export * from './scram.js';
export * from './config.js';
export * from './events.js';
export * from './readonly.js';
export * from './upstream.js';
export { errorResponse, FrameReader, tagRows } from './wire.js';
export { startPgProxy, type PgProxyOptions, type RunningPgProxy } from './proxy.js';
export { servePgProxy, type PgProxyService, type StreamInfo } from './workers.js';
