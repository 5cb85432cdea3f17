/**
 * What the server and witness cosigning (--policy, witnessing.ts) say to each other: the server calls
 * `createWitnessing(ctx)` when a policy file is given, feeds it every new durable checkpoint, and serves
 * /checkpoint from it.
 */
import type { Logger } from './logger.js';

/**
 * What witnessing gets from the server: policy file, data directory, log identity, logger and access to checkpoints and
 * proofs.
 */
export interface WitnessingContext {
  policyFile: string;
  dataDir: string;
  origin: string;
  vkey: string;
  logger: Logger;
  /** The latest durable log-signed checkpoint, with its size and root. */
  latest(): { size: bigint; root: Uint8Array; checkpoint: string };
  /** RFC 9162 consistency proof between two sizes of this log. Precondition: first <= second <= latest size. */
  consistencyProof(first: bigint, second: bigint): Promise<Uint8Array[]>;
  /** Brings `latest` up to the store's newest checkpoint (a store shared by several frontends); absent: no-op. */
  refresh?(): Promise<void>;
}

/**
 * Witness cosigning as the server sees it: fed new checkpoints, it provides the latest checkpoint meeting the quorum.
 */
export interface Witnessing {
  /** Called (not awaited) with every new durable log-signed checkpoint; must not throw. */
  onCheckpoint(checkpoint: string, size: bigint): void;
  /** The newest checkpoint meeting the policy's quorum, with its cosignatures; undefined while there is none. */
  checkpoint(): string | undefined;
  close(): Promise<void>;
}
