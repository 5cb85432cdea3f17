export * from './errors.js';
export * from './auth.js';
export * from './gate.js';
export * from './middleware.js';
export * from './serving.js';
export * from './proxy.js';
export * from './forward-auth.js';
export * from './workers.js';
