export * from './logger.js';
export * from './listen.js';
