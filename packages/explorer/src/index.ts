export * from './filters.js';
export * from './normalize.js';
export * from './streams.js';
export * from './store.js';
export * from './indexer.js';
export * from './formats.js';
export * from './server.js';
export * from './search.js';
