export * from './errors.js';
export * from './evidence.js';
export * from './logclient.js';
export * from './store.js';
export * from './witness.js';
export * from './monitor.js';
export * from './server.js';
export { httpRequest, joinUrl } from './http.js';
export * from './reader/index.js';
