/**
 * A full or incremental audit of a log: every entry bundle and tile since the last audited checkpoint is
 * fetched; every leaf hash, every tile and the root are recomputed and compared with the signed checkpoint;
 * and the new checkpoint is proven consistent with the last audited one (proof computed from verified tiles).
 */
import { readFile } from 'node:fs/promises';
import {
  errorMessage,
  TILE_WIDTH,
  b64encode,
  openCheckpoint,
  rightEdgeTiles,
  tilesChanged,
  type Checkpoint,
  type StreamCheckerState,
  type Hasher,
  type NoteVerifier,
  type TileRef,
} from '@trailmark/tlog';
import { writeFileDurably } from '@trailmark/node';
import type { LogReader } from './http.js';
import { BundleCheckPool } from './pool.js';
import { fetchVerifiedCheckpoint, proveConsistencyFromTiles } from './verified.js';

/** The state file could not be used (unreadable, malformed, or not signed by this log's key): exit 2, not evidence. */
export class AuditStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditStateError';
  }
}

/** What an audit remembers: the last checkpoint it verified (the note is re-verified on every load). */
export interface AuditState {
  version: 1;
  origin: string;
  /** The audited checkpoint note, verbatim. Only this field is trusted, after its signature verifies. */
  checkpoint: string;
  tree_size: string;
  root_hash: string;
  audited_at: string;
  /** The stream checker's state at tree_size (local bookkeeping, like the file itself). */
  streams?: StreamCheckerState;
}

/**
 * Reads an audit state file; null when it does not exist yet (a first audit).
 * Precondition: none. Throws AuditStateError when it is unreadable, malformed or not signed by `logKey`.
 */
export async function readAuditState(file: string, logKey: NoteVerifier): Promise<Checkpoint | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AuditStateError(
      `cannot read state file ${file}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
    );
  }
  let state: Partial<AuditState>;
  try {
    state = JSON.parse(text) as Partial<AuditState>;
  } catch {
    throw new AuditStateError(`state file ${file} is not JSON`);
  }
  if (state?.version !== 1 || typeof state.checkpoint !== 'string')
    throw new AuditStateError(`state file ${file} is not a version 1 audit state`);
  try {
    return openCheckpoint(state.checkpoint, logKey).checkpoint;
  } catch (e) {
    throw new AuditStateError(
      `state file ${file}: its checkpoint does not verify with log key ${logKey.name}: ${errorMessage(e)}`,
    );
  }
}

/** Writes the state atomically and durably (temp file, fsync, rename, fsync of the directory). */
export async function writeAuditState(file: string, state: AuditState): Promise<void> {
  try {
    await writeFileDurably(file, JSON.stringify(state, null, 2) + '\n');
  } catch (e) {
    throw new AuditStateError(
      `cannot write state file ${file}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
    );
  }
}

/** Progress of an audit, reported as entries are checked. */
export interface AuditProgress {
  entriesDone: bigint;
  entriesTotal: bigint;
}

/** How an audit runs: where it resumes, its parallelism and what it reports. */
export interface AuditOptions {
  /** The last audited checkpoint (from readAuditState): only what is newer is fetched. */
  previous?: Checkpoint | null;
  hasher?: Hasher;
  /** Entry bundles in flight at once. Default 16. */
  bundleConcurrency?: number;
  /**
   * Worker threads that fetch and check full bundles (default 2; 0: all on this thread). Their "does not
   * match" is always re-fetched and re-checked here, so errors are the reference code's.
   */
  workers?: number;
  onProgress?: (p: AuditProgress) => void;
}

/** What an audit verified: the checkpoint it covered and the counts of entries and tiles checked. */
export interface AuditReport {
  origin: string;
  treeSize: bigint;
  rootHash: string;
  /** The audited checkpoint note, verbatim. */
  checkpoint: string;
  /** Entries before this size were audited earlier (0 for a full audit). */
  fromSize: bigint;
  entriesVerified: bigint;
  tilesVerified: number;
  tilesTotal: number;
  /** The size of the earlier checkpoint this one was proven consistent with. */
  consistentWith?: bigint;
  /** CloudTrail-style one-line summary. */
  summary: string;
  /** The state to save for the next incremental audit. */
  state: AuditState;
}

/**
 * Audits the log at `reader` against its latest checkpoint. Precondition: `logKey` is the log's key.
 * Throws a TlogError (CheckpointError, TileVerifyError, AuditError) on the first mismatch, saying exactly
 * what did not match; LogReadError when the log cannot be read.
 */
export async function auditLog(reader: LogReader, logKey: NoteVerifier, opts: AuditOptions = {}): Promise<AuditReport> {
  const log = await fetchVerifiedCheckpoint(reader, logKey, opts.hasher ? { hasher: opts.hasher } : {});
  const cp = log.checkpoint;
  const prev = opts.previous ?? null;
  let from = 0n;
  if (prev) {
    await proveConsistencyFromTiles(log, prev);
    from = prev.size;
  }
  const W = BigInt(TILE_WIDTH);
  const firstBundle = from / W;
  const endBundle = (cp.size + W - 1n) / W;
  const total = cp.size - from;
  opts.onProgress?.({ entriesDone: 0n, entriesTotal: total });

  // every bundle (with its level-0 tile, checked against its parent or the root), in order, K at a time
  const k = BigInt(Math.max(1, opts.bundleConcurrency ?? 16));
  const nworkers = Math.max(0, opts.workers ?? 2);
  const pool =
    nworkers > 0 && endBundle - firstBundle > 1n && BundleCheckPool.available()
      ? new BundleCheckPool(nworkers, reader.url, reader.options)
      : null;
  const verifyBundle = async (n: bigint): Promise<void> => {
    if (pool && (n + 1n) * W <= cp.size && (await pool.check(n, await log.tiles.parentHash(0, n)))) return;
    // the reference check: the partial bundle, no pool, or a mismatch to be reported exactly
    await log.tiles.verifyEntryBundle(n);
  };
  const inflight: Promise<unknown>[] = [];
  let next = firstBundle;
  const launch = () => {
    if (next >= endBundle) return;
    const p = verifyBundle(next++);
    p.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
    inflight.push(p);
  };
  for (let i = 0n; i < k; i++) launch();
  let b = firstBundle;
  try {
    while (inflight.length > 0) {
      await inflight.shift();
      const bundleEnd = (b + 1n) * W < cp.size ? (b + 1n) * W : cp.size;
      const done = bundleEnd - from;
      b++;
      opts.onProgress?.({ entriesDone: done, entriesTotal: total });
      launch();
    }
  } finally {
    await pool?.close();
  }

  // every tile that changed since the last audit, and the right edge (which recomputes the root)
  const want = new Map<string, TileRef>();
  for (const t of [...tilesChanged(from, cp.size), ...rightEdgeTiles(cp.size)]) want.set(`${t.level}/${t.index}`, t);
  let tilesVerified = 0;
  for (const t of want.values()) {
    // level-0 tiles were verified with their bundles above; the others are few
    if (t.level > 0 || t.width < TILE_WIDTH) await log.tiles.tileBytes(t.level, t.index);
    tilesVerified++;
  }
  if (cp.size > 0n) await log.tiles.rightEdge();

  const parts = [
    prev ? `${total}/${total} new entries verified (${from} to ${cp.size})` : `${cp.size}/${cp.size} entries verified`,
    `${tilesVerified}/${want.size} tiles verified`,
    `root matches checkpoint ${cp.size}`,
  ];
  if (prev) parts.push(`consistent with ${prev.size}`);
  return {
    origin: cp.origin,
    treeSize: cp.size,
    rootHash: b64encode(cp.root),
    checkpoint: log.text,
    fromSize: from,
    entriesVerified: total,
    tilesVerified,
    tilesTotal: want.size,
    ...(prev ? { consistentWith: prev.size } : {}),
    summary: parts.join(', '),
    state: {
      version: 1,
      origin: cp.origin,
      checkpoint: log.text,
      tree_size: cp.size.toString(),
      root_hash: b64encode(cp.root),
      audited_at: new Date().toISOString(),
    },
  };
}
