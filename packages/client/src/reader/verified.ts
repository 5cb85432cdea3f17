/**
 * The auditor's view of a log: a checkpoint verified with the log key, and every hash and entry read through
 * tiles authenticated against it. The log's own proof endpoints are never trusted; at most they are hints.
 */
import {
  TILE_WIDTH,
  TlogError,
  TileVerifyError,
  VerifiedTileReader,
  b64encode,
  CodedError,
  bytesEqual,
  consistencyProof,
  errorMessage,
  formatTlogProof,
  inclusionProof,
  openCheckpoint,
  toU64,
  verifyConsistency,
  type Checkpoint,
  type Hash,
  type Hasher,
  type NoteVerifier,
  type OpenCheckpointOptions,
  type OpenedCheckpoint,
} from '@trailmark/tlog';
import { nodeAccelerator, nodeHasher } from '@trailmark/node';
import { LogReadError, type LogReader } from './http.js';

/** RFC 6962 hashing on node:crypto (re-exported for the reader's callers). */
export { nodeHasher };

/** Codes of AuditError. */
export type AuditErrorCode =
  | 'rollback' // the log's checkpoint is smaller than one already verified: misbehaviour
  | 'inconsistent' // two checkpoints no consistency proof joins: misbehaviour
  | 'origin' // a checkpoint of another log than the one asked about
  | 'not-found'; // an entry or index the verified tree does not hold: the question was wrong, nothing misbehaved

/**
 * An audit's finding about a log as a whole, beyond a single tile or signature (those are TlogErrors: this is
 * not one, tlog's checks all passed). `expected` and `found` carry the sizes or roots that did not join.
 */
export class AuditError extends CodedError<AuditErrorCode> {}

/**
 * A log checkpoint verified with the log key, with a tile reader that checks everything it serves against that
 * checkpoint.
 */
export interface VerifiedLog {
  /** The checkpoint note exactly as served. */
  text: string;
  opened: OpenedCheckpoint;
  checkpoint: Checkpoint;
  /** Hashes and entries of this checkpoint's tree, each from a verified tile. */
  tiles: VerifiedTileReader;
}

/**
 * Fetches the latest checkpoint and verifies it with the log key (and witnesses/policy when given).
 * Precondition: none. Throws CheckpointError/NoteError (TlogError) when it does not verify, LogReadError
 * when the log cannot be read.
 */
export async function fetchVerifiedCheckpoint(
  reader: LogReader,
  logKey: NoteVerifier,
  opts: OpenCheckpointOptions & { hasher?: Hasher } = {},
): Promise<VerifiedLog> {
  const text = await reader.checkpoint();
  return verifiedLogFromNote(reader, text, logKey, opts);
}

/** Like fetchVerifiedCheckpoint, for a note already in hand. Precondition: none; throws as it does. */
export function verifiedLogFromNote(
  reader: LogReader,
  text: string,
  logKey: NoteVerifier,
  opts: OpenCheckpointOptions & { hasher?: Hasher } = {},
): VerifiedLog {
  const { hasher, ...open } = opts;
  const opened = openCheckpoint(text, logKey, open);
  const cp = opened.checkpoint;
  const tiles = new VerifiedTileReader(cp.size, cp.root, reader.fetchTile, {
    hasher: hasher ?? nodeHasher,
    accelerator: nodeAccelerator,
  });
  return { text, opened, checkpoint: cp, tiles };
}

/**
 * A c2sp.org/tlog-proof@v1 for leaf `index`, computed from verified tiles and bound to the verified checkpoint.
 * Precondition: index < checkpoint size; throws AuditError('not-found') otherwise.
 */
export async function proveInclusion(log: VerifiedLog, index: bigint): Promise<{ proof: string; leafHash: Hash }> {
  const size = log.checkpoint.size;
  if (index >= size)
    throw new AuditError('not-found', `leaf index ${index} is not below the checkpoint's tree size ${size}`);
  const [path, leafHash] = await Promise.all([
    inclusionProof(index, size, log.tiles.readHashes, log.tiles.hasher),
    log.tiles.leafHash(index),
  ]);
  return { proof: formatTlogProof({ index, proof: path, checkpoint: log.text }), leafHash };
}

/**
 * The index of the entry with `leafHash` in the verified tree. The log's get-proof-by-hash answer is only a
 * hint, checked against a verified tile; without a good hint the verified level-0 tiles are scanned.
 * Precondition: leafHash is 32 bytes. Throws AuditError('not-found') when no leaf has that hash.
 */
export async function findLeafIndex(reader: LogReader, log: VerifiedLog, leafHash: Hash): Promise<bigint> {
  const size = log.checkpoint.size;
  if (size === 0n) throw new AuditError('not-found', `the log is empty: no entry has leaf hash ${b64encode(leafHash)}`);
  try {
    const hint = (await reader.getJson(
      `v1/get-proof-by-hash?hash=${encodeURIComponent(b64encode(leafHash))}&tree_size=${size}`,
    )) as { leaf_index?: unknown };
    const idx = toU64(hint.leaf_index as number, 'leaf_index');
    if (idx < size && bytesEqual(await log.tiles.leafHash(idx), leafHash)) return idx;
  } catch (e) {
    // a missing or wrong hint costs a scan; a tile that does not verify is evidence, not a miss
    if (e instanceof TileVerifyError || !(e instanceof LogReadError || e instanceof TlogError)) throw e;
  }
  const bundles = (size + BigInt(TILE_WIDTH) - 1n) / BigInt(TILE_WIDTH);
  const window = 16n;
  for (let start = 0n; start < bundles; start += window) {
    const ids: bigint[] = [];
    for (let i = start; i < bundles && i < start + window; i++) ids.push(i);
    const tiles = await Promise.all(ids.map((i) => log.tiles.tileBytes(0, i)));
    for (let t = 0; t < tiles.length; t++) {
      for (let o = 0; o < tiles[t].length; o += 32) {
        if (bytesEqual(tiles[t].subarray(o, o + 32), leafHash)) return ids[t] * BigInt(TILE_WIDTH) + BigInt(o / 32);
      }
    }
  }
  throw new AuditError('not-found', `no entry with leaf hash ${b64encode(leafHash)} in the log at tree size ${size}`);
}

/**
 * The consistency proof from an older verified checkpoint to this one, computed from verified tiles and
 * checked before it is returned. Precondition: `old` verified with the same log key. Throws AuditError
 * 'origin', 'rollback' or 'inconsistent' saying which sizes and roots did not join.
 */
export async function proveConsistencyFromTiles(log: VerifiedLog, old: Checkpoint): Promise<Hash[]> {
  const cur = log.checkpoint;
  if (old.origin !== cur.origin)
    throw new AuditError(
      'origin',
      `old checkpoint is for log ${JSON.stringify(old.origin)}, not ${JSON.stringify(cur.origin)}`,
      { expected: cur.origin, found: old.origin },
    );
  if (old.size > cur.size) {
    throw new AuditError(
      'rollback',
      `the log's checkpoint has tree size ${cur.size}, smaller than the verified older checkpoint of size ${old.size}`,
      { expected: `tree size >= ${old.size}`, found: `tree size ${cur.size}` },
    );
  }
  if (old.size === cur.size) {
    if (!bytesEqual(old.root, cur.root)) {
      throw new AuditError(
        'inconsistent',
        `two checkpoints of tree size ${cur.size} have different roots: ${b64encode(old.root)} (old) and ${b64encode(cur.root)} (current)`,
        { expected: b64encode(old.root), found: b64encode(cur.root) },
      );
    }
    return [];
  }
  const proof = await consistencyProof(old.size, cur.size, log.tiles.readHashes, log.tiles.hasher);
  try {
    verifyConsistency(old.size, cur.size, proof, old.root, cur.root, log.tiles.hasher);
  } catch (e) {
    throw new AuditError(
      'inconsistent',
      `checkpoint ${cur.size} (root ${b64encode(cur.root)}) is not consistent with checkpoint ${old.size} (root ${b64encode(old.root)}): ${errorMessage(e)}`,
      { cause: e },
    );
  }
  return proof;
}
