/**
 * @trailmark/recorder: what every recording proxy shares. The durable spool, the shipper that delivers it with
 * verified receipts, the signed event stream, the AccessTrail tying them together, and the access-event format.
 */
export * from './errors.js';
export * from './config.js';
export * from './spool.js';
export * from './spool-repair.js';
export * from './shipper.js';
export * from './events.js';
export * from './stream.js';
export * from './trail.js';
