export {
  startLogServer,
  parseListen,
  readSubmitTokens,
  isLoopback,
  type LogServer,
  type LogServerOptions,
} from './server.js';
export { LogStore, type StoreOptions } from './storage.js';
export type {
  Leaf,
  SignedTree,
  AppendResult,
  Prepared,
  LogStorage,
  LogReads,
  LogWrites,
  LeafTile,
} from './log-storage.js';
export { Sequencer, type SequencerOptions, type Sequenced, type CommitInfo } from './sequencer.js';
export { loadLogKey, generateLogKey, writeLogKey, parseLogKey, type LogKey, type NewLogKey } from './keys.js';
export { toLeaf, MAX_BODY_BYTES, MAX_GET_ENTRIES } from './http.js';
export { MAX_ENTRY_BYTES, MAX_BATCH_ENTRIES, prepareBatch, type PackedLeaves } from './canon.js';
export { CanonPool, unpack } from './canon-pool.js';
export { treeHeadSignatureInput, signTreeHead } from './sth.js';
export {
  ConfigError,
  HttpError,
  LogServerError,
  LogStateError,
  UnavailableError,
  type ConfigCode,
  type LogServerErrorCode,
  type LogStateCode,
} from './errors.js';
export { jsonLogger, silentLogger, type Logger } from './logger.js';
export { nodeHasher, sha256 } from '@trailmark/node';
export type { Witnessing, WitnessingContext } from './witness-hook.js';
export { auditStore, type StoreAuditReport, type StoreAuditOptions } from './store-audit.js';
export { PgStore, type PgStoreOptions } from './pg-store.js';
