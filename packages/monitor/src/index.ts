export * from './errors.js';
export * from './store.js';
export * from './witness.js';
export * from './monitor.js';
export * from './server.js';
