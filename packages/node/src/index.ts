export * from './logger.js';
export * from './listen.js';
export * from './transport.js';
export * from './hasher.js';
export * from './ed25519.js';
export * from './durable.js';
export * from './lock.js';
