export * from './normalize.js';
export * from './streams.js';
export * from './store.js';
export * from './prepare.js';
export * from './indexer.js';
export * from './server.js';
