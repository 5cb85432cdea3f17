/**
 * The log on PostgreSQL (contract section 9), implementing LogStorage like the LevelDB store, so that the
 * Sequencer and the HTTP layer do not change. Any number of frontends on one store and key are one log.
 *
 * Writing takes two steps, after Tessera's MySQL/Aurora design:
 * - every frontend's `prepare` assigns indices itself, in one transaction under the row lock of the
 *   `tm_log` counter: leaves already stored (the `tm_leaf_hashes` primary key, strong across frontends) get
 *   their index, new ones the next indices, and their data goes to `tm_pending`. Indices are dense and fixed
 *   once this commits (synchronous commit), so every sequencer computes the same tree for a given size;
 * - one frontend at a time holds the sequencer lease (`tm_lease`: holder, fencing token, expiry on the
 *   database clock), integrates pending entries into bundles and tiles, signs, and stores the checkpoint in
 *   one transaction that renews the lease only if it still holds it with its token and compare-and-swaps
 *   `tm_checkpoint` on its old size. A sequencer that lost the lease (paused, cut off) fails that
 *   transaction: it signed in memory only, and nothing it signed is stored or served.
 * `commit` answers once the frontend's durable view holds a signed checkpoint covering the entries.
 *
 * Reads use DurableReads over the store's rows; a frontend that is not the sequencer refreshes its view
 * when the sequencer notifies a new checkpoint (LISTEN/NOTIFY) and at least every `pollMs`.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { errorMessage, openCheckpoint, parseVkey, rootPlan } from '@trailmark/tlog';
import { LogStateError, UnavailableError } from './errors.js';
import type { LogKey } from './keys.js';
import { BUNDLE, buf, parseState, PENDING, readU64, TILE } from './layout.js';
import type { AppendResult, Leaf, LogStorage, Prepared } from './log-storage.js';
import { silentLogger, type Logger } from './logger.js';
import { inspectSchema, migrate } from './pg-schema.js';
import { checkRoot, edgeState } from './recovery.js';
import { DurableReads, locate, type CacheOptions, type Db, type EdgeSnapshot } from './reads.js';
import { emptyEdge, EdgeWriter, type BatchWriter, type EdgeState } from './sequencing.js';
import { nodeHasher } from '@trailmark/node';
import { TILE_W, TileNode } from './tilecache.js';

/**
 * Settings of the PostgreSQL store: lease, polling, integration batch size, write acknowledgement timeout and caches.
 */
export interface PgStoreOptions extends CacheOptions {
  logger?: Logger;
  /** Sequencer lease length (default 3,000 ms): a dead sequencer is replaced within about this plus pollMs. */
  leaseMs?: number;
  /** How often a frontend renews or tries for the lease and refreshes its view (default 500 ms). */
  pollMs?: number;
  /** Most entries integrated in one sequencer transaction (default 20,000). */
  maxIntegrate?: number;
  /** How long a write waits for a checkpoint covering it before a 503 (default 30,000 ms; its index is kept). */
  ackTimeoutMs?: number;
  /** Connections in this frontend's pool (default 6). */
  poolSize?: number;
}

/** A frontend's batch: indices assigned and durable, not yet covered by a checkpoint. */
interface PgPrepared extends Prepared {
  /** Size a checkpoint must reach to cover every index of the batch. */
  need: number;
}

const STATE = 0x53; // 'S', layout's STATE_KEY

/** Rows a sequencer transaction writes, collected from EdgeWriter's LevelDB-shaped puts (layout.ts keys). */
class PgBatch implements BatchWriter {
  readonly tiles = new Map<string, { level: number; idx: number; data: Buffer }>();
  readonly bundles: { idx: number; data: Buffer }[] = [];
  delFrom = Infinity;
  delTo = -1;
  state: Buffer | undefined;

  put(k: Uint8Array, v: Uint8Array): void {
    if (k[0] === TILE)
      this.tiles.set(`${k[1]}/${readU64(k, 2)}`, { level: k[1], idx: readU64(k, 2), data: Buffer.from(v) });
    else if (k[0] === BUNDLE) this.bundles.push({ idx: readU64(k, 1), data: buf(v) });
    else if (k[0] === STATE && k.length === 1) this.state = buf(v);
    // PENDING: the entries are in tm_pending already, written by the frontend that took them
  }

  del(k: Uint8Array): void {
    if (k[0] !== PENDING) return;
    const i = readU64(k, 1);
    this.delFrom = Math.min(this.delFrom, i);
    this.delTo = Math.max(this.delTo, i);
  }
}

/** The store's rows as the key-value reads DurableReads makes (tiles and bundles; never synchronous). */
class PgRows {
  /** Always usable: the pool reconnects by itself (a failed query rejects, and the read answers 5xx). */
  readonly status = 'open';
  constructor(private readonly pool: pg.Pool) {}

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    if (key[0] === TILE) {
      const r = await this.pool.query<{ data: Buffer }>('SELECT data FROM tm_tiles WHERE level = $1 AND idx = $2', [
        key[1],
        readU64(key, 2),
      ]);
      return r.rows[0]?.data;
    }
    if (key[0] === BUNDLE) {
      const r = await this.pool.query<{ data: Buffer }>('SELECT data FROM tm_bundles WHERE idx = $1', [
        readU64(key, 1),
      ]);
      return r.rows[0]?.data;
    }
    return undefined;
  }

  /** PostgreSQL has no synchronous reads: undefined sends DurableReads down its asynchronous path. */
  getSync(): undefined {
    return undefined;
  }
}

/** The sequencer lost its lease or the checkpoint moved under it: what it signed must not be stored. */
class FencedError extends Error {}

function connectionOptions(url: string, max: number): pg.PoolConfig {
  return {
    connectionString: url,
    max,
    application_name: 'trailmark',
    // acknowledgements rely on synchronous commit whatever the server's default; a session paused inside a
    // transaction (a SIGSTOPped sequencer) is ended by the server, which releases its row locks
    options: '-c synchronous_commit=on -c idle_in_transaction_session_timeout=2000',
    connectionTimeoutMillis: 10_000,
    // no call waits forever on a connection that died silently (the tick loop must keep running)
    query_timeout: 60_000,
  };
}

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  // a checked-out connection the server ends (the idle-in-transaction timeout after this process was paused,
  // a restart) emits 'error' on the client, which the pool only handles for idle clients: unhandled, it would
  // kill the process. The query in flight fails with it; the connection is then discarded, not reused.
  let broken: Error | undefined;
  const onError = (e: Error) => {
    broken = e;
  };
  c.on('error', onError);
  try {
    return await fn(c);
  } finally {
    c.off('error', onError);
    c.release(broken);
  }
}

async function inTransaction<T>(c: pg.PoolClient, begin: string, fn: () => Promise<T>): Promise<T> {
  await c.query(begin);
  try {
    const v = await fn();
    await c.query('COMMIT');
    return v;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/**
 * Many byte strings as one bytea parameter (node-postgres sends a Buffer in binary) and their 1-based offsets
 * and lengths: text-encoded bytea[] arrays cost seconds per 20,000 entries to escape and parse.
 * SQL unpacks it with `substring($blob from o for l)` over `unnest(offsets, lengths)`.
 */
function pack(items: readonly Uint8Array[]): [Buffer, number[], number[]] {
  const offs = new Array<number>(items.length);
  const lens = new Array<number>(items.length);
  let o = 0;
  for (let i = 0; i < items.length; i++) {
    offs[i] = o + 1;
    lens[i] = items[i].length;
    o += items[i].length;
  }
  return [Buffer.concat(items, o), offs, lens];
}

/** Rows (blob offset, length, ordinal) of a packed parameter pair: `FROM ${UNPACK(2)}` binds $2 and $3. */
const UNPACK = (n: number) => `unnest($${n}::int[], $${n + 1}::int[]) WITH ORDINALITY AS u(o, l, i)`;

/** A pending batch row's entries: each a big-endian uint16 length then its bytes (as in entry bundles). */
function encodeBatch(entries: readonly Uint8Array[]): Buffer {
  let len = 0;
  for (const e of entries) len += 2 + e.length;
  const out = Buffer.allocUnsafe(len);
  let o = 0;
  for (const e of entries) {
    out.writeUInt16BE(e.length, o);
    out.set(e, o + 2);
    o += 2 + e.length;
  }
  return out;
}

function decodeBatch(blob: Buffer, n: number, first: number): Buffer[] {
  const out: Buffer[] = [];
  let o = 0;
  while (o < blob.length) {
    if (o + 2 > blob.length) break;
    const len = blob.readUInt16BE(o);
    out.push(blob.subarray(o + 2, o + 2 + len));
    o += 2 + len;
  }
  if (out.length !== n || o !== blob.length)
    throw new LogStateError(
      'entries',
      `the pending batch from entry ${first} holds ${out.length} entries in ${blob.length} bytes, expected ${n}`,
    );
  return out;
}

const toNum = (v: string | number): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new LogStateError('state', `a stored index or size ${v} is beyond 2^53`);
  return n;
};

/** The log on PostgreSQL, shared by any number of frontends (see the file comment). */
export class PgStore extends DurableReads implements LogStorage {
  readonly logger: Logger;
  /** This frontend's name in the lease row. */
  readonly id = `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
  private writer: EdgeWriter | undefined;
  private token: string | undefined;
  private listener: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private waiters: { size: number; resolve(): void }[] = [];
  /**
   * The pending rows this frontend wrote while sequencing, by first index: integration takes them from here
   * instead of reading them back (base64 text) and hashing every leaf again. Rows are immutable once their
   * prepare transaction committed, so the copy is the row; at most the sequencer's pipeline of batches.
   */
  private own = new Map<number, { data: Uint8Array[]; hashes: Uint8Array[] }>();
  private integrating: Promise<void> | undefined;
  private integrateAgain = false;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private failure: Error | undefined;
  private closed = false;
  private ticking = false;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly maxIntegrate: number;
  private readonly ackTimeoutMs: number;
  /** Sequencer transactions refused because the lease or checkpoint had moved (the fencing at work). */
  fenced = 0;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    readonly key: LogKey,
    opts: PgStoreOptions,
  ) {
    super(new PgRows(pool) as unknown as Db, opts);
    this.logger = opts.logger ?? silentLogger;
    this.leaseMs = opts.leaseMs ?? 3000;
    this.pollMs = opts.pollMs ?? 500;
    this.maxIntegrate = opts.maxIntegrate ?? 20_000;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 30_000;
  }

  /** Whether the database at `url` holds a log, and whose. Throws LogStateError when it cannot be reached. */
  static async inspect(url: string): Promise<{ hasLog: boolean; origin?: string; vkey?: string }> {
    const pool = new pg.Pool(connectionOptions(url, 1));
    try {
      const s = await withClient(pool, inspectSchema);
      return { hasLog: s.vkey !== undefined, origin: s.origin, vkey: s.vkey };
    } catch (e) {
      throw new LogStateError('store', `cannot read the log store ${redact(url)}: ${errorMessage(e)}`, { cause: e });
    } finally {
      await pool.end();
    }
  }

  /**
   * Opens the log in the database at `url` (running the migrations it lacks, creating the log signed by
   * `key` when the database holds none) and starts taking part in sequencing. Throws LogStateError when the
   * store belongs to another key or does not match its signed checkpoint.
   */
  static async open(url: string, key: LogKey, opts: PgStoreOptions = {}): Promise<PgStore> {
    const pool = new pg.Pool(connectionOptions(url, opts.poolSize ?? 6));
    const logger = opts.logger ?? silentLogger;
    // an idle pooled connection the server ended (restart, timeout) is replaced on next use
    pool.on('error', (e) => logger.warn('log store connection lost', { error: e.message }));
    const store = new PgStore(pool, url, key, opts);
    try {
      await withClient(pool, async (c) => {
        await migrate(c);
        await store.createIfEmpty(c);
      });
      const state = await store.loadEdge();
      store.snap = { tree: state.tree!, tiles: state.tiles, bundle: state.bundle };
      logger.info('log store opened', { store: redact(url), size: store.size, frontend: store.id });
    } catch (e) {
      await pool.end();
      if (e instanceof LogStateError) throw e;
      throw new LogStateError('store', `cannot open the log store ${redact(url)}: ${errorMessage(e)}`, { cause: e });
    }
    await store.tick();
    store.timer = setInterval(() => void store.tick(), store.pollMs);
    return store;
  }

  /** Creates the log's identity row and its signed empty tree, unless some frontend already did. */
  private async createIfEmpty(c: pg.PoolClient): Promise<void> {
    await inTransaction(c, 'BEGIN', async () => {
      const ins = await c.query(
        'INSERT INTO tm_log (id, origin, vkey, next_index) VALUES (1, $1, $2, 0) ON CONFLICT (id) DO NOTHING',
        [this.key.origin, this.key.vkey],
      );
      if (ins.rowCount === 1) {
        const batch = new PgBatch();
        const tree = new EdgeWriter(this.key, emptyEdge(), { fullTile() {}, fullBundle() {} }).sign(
          batch,
          0,
          Date.now(),
        );
        await c.query('INSERT INTO tm_checkpoint (id, size, state) VALUES (1, 0, $1)', [batch.state]);
        await c.query('INSERT INTO tm_checkpoints (size, root, note) VALUES (0, $1, $2)', [tree.root, tree.checkpoint]);
        this.logger.info('new log created', { origin: this.key.origin, vkey: this.key.vkey });
      }
      const log = await c.query<{ origin: string; vkey: string }>('SELECT origin, vkey FROM tm_log WHERE id = 1');
      const { origin, vkey } = log.rows[0];
      if (origin !== this.key.origin || vkey !== this.key.vkey) {
        throw new LogStateError(
          'key-mismatch',
          `this store belongs to log ${vkey}, not to the configured key ${this.key.vkey}`,
          { expected: this.key.vkey, found: vkey },
        );
      }
    });
  }

  /**
   * The durable right edge at the latest checkpoint, read in one snapshot (REPEATABLE READ) and checked as
   * LevelDB recovery checks it: the checkpoint verifies with the key, the pending entries and partial tiles
   * match its size, and the root recomputed from the rows is the signed one.
   */
  private async loadEdge(): Promise<EdgeState> {
    return withClient(this.pool, (c) =>
      inTransaction(c, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async () => {
        const row = (
          await c.query<{ size: string; state: Buffer }>('SELECT size, state FROM tm_checkpoint WHERE id = 1')
        ).rows[0];
        if (!row) throw new LogStateError('no-state', 'the store holds no checkpoint');
        const st = parseState(row.state);
        if (st.origin !== this.key.origin || st.vkey !== this.key.vkey)
          throw new LogStateError(
            'key-mismatch',
            `this store belongs to log ${st.vkey}, not to the configured key ${this.key.vkey}`,
            { expected: this.key.vkey, found: st.vkey },
          );
        let size: number;
        try {
          size = Number(openCheckpoint(st.checkpoint, parseVkey(this.key.vkey)).checkpoint.size);
        } catch (e) {
          throw new LogStateError(
            'checkpoint',
            `the stored checkpoint does not verify with the log key: ${errorMessage(e)}`,
            { cause: e },
          );
        }
        if (String(size) !== st.size || toNum(row.size) !== size)
          throw new LogStateError('state', `stored size ${row.size} differs from the signed checkpoint's size ${size}`);

        const bIndex = Math.floor(size / TILE_W);
        const from = bIndex * TILE_W;
        const entries: Buffer[] = [];
        if (size > from) {
          // rows never straddle a bundle boundary (prepare cuts them there)
          const pend = await c.query<{ first_idx: string; n: number; data: Buffer }>(
            'SELECT first_idx, n, data FROM tm_pending WHERE first_idx >= $1 AND first_idx < $2 ORDER BY first_idx',
            [from, size],
          );
          for (const r of pend.rows) {
            const first = toNum(r.first_idx);
            const list = decodeBatch(r.data, r.n, first);
            for (let i = 0; i < list.length; i++) {
              const idx = first + i;
              if (idx < from || idx >= size) continue;
              if (idx !== from + entries.length)
                throw new LogStateError(
                  'entries',
                  `pending entry ${from + entries.length} is missing for size ${size}`,
                );
              entries.push(list[i]);
            }
          }
        }
        if (entries.length !== size % TILE_W)
          throw new LogStateError(
            'entries',
            `the partial bundle ${bIndex} should hold ${size % TILE_W} entries for size ${size}, found ${entries.length}`,
          );

        const tiles: TileNode[] = [];
        for (let level = 0, n = size; ; level++, n = Math.floor(n / TILE_W)) {
          const index = Math.floor(n / TILE_W);
          const width = n % TILE_W;
          const node = new TileNode(level, index);
          if (level === 0) for (const e of entries) node.push(nodeHasher.leaf(e));
          else if (width > 0) {
            const t = (
              await c.query<{ data: Buffer }>('SELECT data FROM tm_tiles WHERE level = $1 AND idx = $2', [level, index])
            ).rows[0]?.data;
            if (!t || t.length !== width * 32)
              throw new LogStateError(
                'tile',
                `tile ${level}/${index} should hold ${width} hashes for size ${size}, found ${t ? t.length / 32 : 'none'}`,
              );
            node.buf.set(t, 0);
            node.width = width;
          }
          tiles[level] = node;
          if (n === 0) break;
        }

        // the root from the rows must be the signed one: never sign over another tree
        const plan = rootPlan(BigInt(size));
        const hashes: Buffer[] = [];
        for (const n of plan.nodes) {
          const { L, k, tIndex, p } = locate(n);
          let t = tiles[L]?.index === tIndex ? tiles[L] : undefined;
          if (!t) {
            const raw = (
              await c.query<{ data: Buffer }>('SELECT data FROM tm_tiles WHERE level = $1 AND idx = $2', [L, tIndex])
            ).rows[0]?.data;
            if (!raw || raw.length !== TILE_W * 32)
              throw new LogStateError(
                'tile',
                `tile ${L}/${tIndex} is ${raw ? 'not full' : 'missing'} below the right edge`,
              );
            t = new TileNode(L, tIndex, raw);
          }
          hashes.push(t.node(k, p));
        }
        const signedRoot = Buffer.from(st.root, 'base64');
        checkRoot(plan, hashes, signedRoot, size);
        return edgeState(st, size, signedRoot, hashes, tiles, { index: bIndex, entries });
      }),
    );
  }

  /** Makes `snap` what reads see when it is newer, and answers the writes it covers. */
  private install(snap: EdgeSnapshot): void {
    if (snap.tree.size < this.snap.tree.size) return;
    this.snap = snap;
    const size = snap.tree.size;
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.size <= size) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Whether this frontend is the sequencer (holds the lease, as far as it knows). */
  get sequencing(): boolean {
    return this.writer !== undefined;
  }

  /** The failure that stopped writing, if any (LogWrites.failed). */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** The 503 writes get while shutting down or after a failure, else undefined (LogWrites.writeStopped). */
  get writeStopped(): UnavailableError | undefined {
    if (this.closed) return new UnavailableError('the log is shutting down', 5);
    if (this.failure) return new UnavailableError(`the log stopped writing: ${this.failure.message}`, 3600);
    return undefined;
  }

  /**
   * Gives the leaves their indices durably: existing leaves (stored by any frontend) their index, new ones the
   * next indices, all in one transaction under the counter's row lock. Precondition: serial (the Sequencer).
   */
  async prepare(leaves: readonly Leaf[]): Promise<Prepared> {
    const stopped = this.writeStopped;
    if (stopped) throw stopped;
    // within the batch: each distinct leaf once (latin1: the cheapest string of the 32 bytes)
    const first = new Map<string, number>();
    const uniq: Leaf[] = [];
    const pos = leaves.map((l) => {
      const h = buf(l.hash).toString('latin1');
      let p = first.get(h);
      if (p === undefined) {
        first.set(h, (p = uniq.length));
        uniq.push(l);
      }
      return p;
    });
    const hashBlob = Buffer.concat(uniq.map((l) => l.hash));
    let assigned: number[];
    const mine: { first: number; data: Uint8Array[]; hashes: Uint8Array[] }[] = [];
    let added = 0;
    try {
      assigned = await withClient(this.pool, (c) =>
        inTransaction(c, 'BEGIN', async () => {
          const base = toNum(
            (await c.query<{ next_index: string }>('SELECT next_index FROM tm_log WHERE id = 1 FOR UPDATE')).rows[0]
              .next_index,
          );
          if (base + uniq.length > Number.MAX_SAFE_INTEGER) throw new UnavailableError('the log is full', 3600);
          // Every leaf first takes the index it gets when all are new (the common case), in one statement
          // whose unique key does the dedup: a leaf already stored (committed under this same row lock, by
          // any frontend) is skipped. Only when some were skipped are the new ones renumbered densely below,
          // in this transaction, so no reader ever sees the gap.
          const ins = await c.query<{ n: number }>(
            `WITH ins AS (INSERT INTO tm_leaf_hashes (leaf_hash, idx) SELECT substring($1::bytea from 32 * g + 1 for 32), $2::bigint + g FROM generate_series(0, length($1::bytea) / 32 - 1) g ON CONFLICT (leaf_hash) DO NOTHING RETURNING 1) SELECT count(*)::int AS n FROM ins`,
            [hashBlob, base],
          );
          const out = new Array<number>(uniq.length);
          const isNew: boolean[] = new Array(uniq.length).fill(true);
          let next = base + uniq.length;
          if (ins.rows[0].n !== uniq.length) {
            // some were stored already: their index is below base; ours are at base + position
            const ex = await c.query<{ leaf_hash: Buffer; idx: string }>(
              `SELECT leaf_hash, idx FROM tm_leaf_hashes WHERE leaf_hash IN (SELECT substring($1::bytea from 32 * g + 1 for 32) FROM generate_series(0, length($1::bytea) / 32 - 1) g)`,
              [hashBlob],
            );
            const found = new Map<string, number>();
            for (const r of ex.rows) found.set(r.leaf_hash.toString('latin1'), toNum(r.idx));
            next = base;
            const moveHash: Uint8Array[] = [];
            const moveTo: number[] = [];
            for (let i = 0; i < uniq.length; i++) {
              const had = found.get(buf(uniq[i].hash).toString('latin1'));
              if (had === undefined)
                throw new LogStateError('state', `leaf ${i} of the batch was neither stored nor new`);
              if (had < base) {
                out[i] = had;
                isNew[i] = false;
                continue;
              }
              if (had !== next) {
                moveHash.push(uniq[i].hash);
                moveTo.push(next);
              }
              out[i] = next++;
            }
            if (moveHash.length > 0)
              await c.query(
                `UPDATE tm_leaf_hashes h SET idx = m.t FROM (SELECT substring($1::bytea from 32 * (o::int - 1) + 1 for 32) AS lh, t FROM unnest($2::bigint[]) WITH ORDINALITY AS u(t, o)) m WHERE h.leaf_hash = m.lh`,
                [Buffer.concat(moveHash), moveTo],
              );
          } else for (let i = 0; i < uniq.length; i++) out[i] = base + i;
          const newData: Uint8Array[] = [];
          const newHash: Uint8Array[] = [];
          for (let i = 0; i < uniq.length; i++)
            if (isNew[i]) {
              newData.push(uniq[i].data);
              newHash.push(uniq[i].hash);
            }
          if (newData.length > 0) {
            // a row per bundle's worth (a row per entry costs PostgreSQL more than the entries' bytes), cut at
            // bundle boundaries so that a full bundle frees whole rows and a view loads at most one bundle's
            // rows; every row a slice of one encoded blob
            const blob = encodeBatch(newData);
            const firsts: number[] = [];
            const counts: number[] = [];
            const offs: number[] = [];
            const lens: number[] = [];
            for (let i = 0, o = 0; i < newData.length;) {
              const first = base + i;
              const n = Math.min(newData.length - i, TILE_W - (first % TILE_W));
              let len = 0;
              for (let j = i; j < i + n; j++) len += 2 + newData[j].length;
              mine.push({ first, data: newData.slice(i, i + n), hashes: newHash.slice(i, i + n) });
              firsts.push(first);
              counts.push(n);
              offs.push(o + 1);
              lens.push(len);
              o += len;
              i += n;
            }
            // the rows and the counter in one statement; the notification wakes the sequencer wherever it
            // runs (delivered at commit)
            await c.query(
              `WITH p AS (INSERT INTO tm_pending (first_idx, n, data) SELECT ($4::bigint[])[i], ($5::int[])[i], substring($1::bytea from o for l) FROM ${UNPACK(2)})
               UPDATE tm_log SET next_index = $6::bigint WHERE id = 1 RETURNING CASE WHEN $7::boolean THEN pg_notify('tm_pending', $6::bigint::text) END`,
              [blob, offs, lens, firsts, counts, next, !this.writer],
            );
          }
          added = newData.length;
          return out;
        }),
      );
    } catch (e) {
      if (e instanceof UnavailableError || e instanceof LogStateError) throw e;
      throw new UnavailableError(`the log store is unavailable: ${errorMessage(e)}`, 1);
    }
    // committed: the rows are the store's now, and this frontend's sequencer may take them from memory
    if (this.writer) for (const r of mine) this.own.set(r.first, r);
    const indices = pos.map((p) => assigned[p]);
    const need = indices.length === 0 ? 0 : Math.max(...assigned) + 1;
    if (added > 0) this.kick();
    const prepared: PgPrepared = { indices, added, tree: undefined, need };
    return prepared;
  }

  /** Waits until a signed checkpoint covering the batch is durable and in this frontend's view. */
  async commit(prepared: Prepared): Promise<AppendResult> {
    const p = prepared as PgPrepared;
    if (this.snap.tree.size < p.need) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(
            new UnavailableError(
              `entries stored at indices up to ${p.need - 1} are not yet covered by a checkpoint (no sequencer?); resubmitting returns the same indices`,
              5,
            ),
          );
        }, this.ackTimeoutMs);
        const waiter = {
          size: p.need,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        };
        this.waiters.push(waiter);
        if (!this.writer) void this.refresh();
      });
    }
    return { indices: p.indices, added: p.added, tree: this.snap.tree };
  }

  /** prepare then commit. Precondition: serial, as prepare. */
  async append(leaves: readonly Leaf[]): Promise<AppendResult> {
    return this.commit(await this.prepare(leaves));
  }

  /** Starts integrating (when sequencer), or notes to go again after the round in flight. */
  private kick(): void {
    if (!this.writer) return;
    if (this.integrating) {
      this.integrateAgain = true;
      return;
    }
    this.integrating = (async () => {
      try {
        do {
          this.integrateAgain = false;
          while (this.writer && (await this.integrateOnce()));
        } while (this.integrateAgain && this.writer);
      } finally {
        this.integrating = undefined;
      }
    })();
  }

  /**
   * One sequencer transaction: takes pending entries in index order, appends them to the tree, signs it, and
   * stores bundles, tiles and the checkpoint, fenced by the lease token and the checkpoint's old size.
   * Returns whether it integrated anything.
   */
  private async integrateOnce(): Promise<boolean> {
    const w = this.writer!;
    const token = this.token!;
    const start = w.size;
    try {
      const batch = new PgBatch();
      let next = 0;
      // this frontend's own rows from memory, as long as they follow on without a gap
      for (let r = this.own.get(start); r && next < this.maxIntegrate; r = this.own.get(start + next)) {
        if (next === 0) w.begin(batch);
        this.own.delete(start + next);
        const take = Math.min(r.data.length, this.maxIntegrate - next);
        for (let i = 0; i < take; i++) w.append(r.hashes[i], r.data[i]);
        if (take < r.data.length)
          this.own.set(start + next + take, { data: r.data.slice(take), hashes: r.hashes.slice(take) });
        next += take;
      }
      // else rows from the store (another frontend's, or written before this one held the lease)
      // one row per writer batch (node-postgres's binary results decode values as UTF-8 text, so hex it is)
      // base64 text: half the bytes of bytea's hex output
      const rows =
        next > 0
          ? []
          : (
              await this.pool.query<{ rel: number; n: number; d: string }>(
                `SELECT (first_idx - $1)::int AS rel, n, encode(data, 'base64') AS d FROM tm_pending WHERE first_idx >= $2 AND first_idx + n > $1 ORDER BY first_idx LIMIT $3`,
                [start, start - (start % TILE_W), Math.ceil(this.maxIntegrate / TILE_W) + 1],
              )
            ).rows;
      for (const r of rows) {
        // dense by construction: indices come from one counter, in the transaction that writes the row
        if (r.rel > next)
          throw new LogStateError('entries', `pending entries ${start + next} to ${start + r.rel - 1} are missing`);
        const list = decodeBatch(Buffer.from(r.d, 'base64'), r.n, start + r.rel);
        if (next === 0) w.begin(batch);
        for (let i = next - r.rel; i < list.length; i++, next++) w.append(nodeHasher.leaf(list[i]), list[i]);
        if (next >= this.maxIntegrate) break;
      }
      if (next === 0) return false;
      // rows read from the store that this frontend also holds (its prepare answered late) are integrated now
      for (const first of this.own.keys()) if (first < start + next) this.own.delete(first);
      const snap = w.finish();
      const size = snap.tree.size;
      await withClient(this.pool, (c) =>
        inTransaction(c, 'BEGIN', async () => {
          const lease = await c.query(
            `UPDATE tm_lease SET expires = clock_timestamp() + make_interval(secs => $3::float8 / 1000) WHERE id = 1 AND holder = $1 AND token = $2 AND expires > clock_timestamp()`,
            [this.id, token, this.leaseMs],
          );
          if (lease.rowCount !== 1) throw new FencedError('the sequencer lease was lost');
          if (batch.bundles.length > 0) {
            const [blob, offs, lens] = pack(batch.bundles.map((b) => b.data));
            await c.query(
              `INSERT INTO tm_bundles (idx, data) SELECT $4::bigint + i - 1, substring($1::bytea from o for l) FROM ${UNPACK(2)}`,
              [blob, offs, lens, batch.bundles[0].idx],
            );
          }
          const tiles = [...batch.tiles.values()];
          await c.query(
            `INSERT INTO tm_tiles (level, idx, data) SELECT ($4::int[])[i], ($5::bigint[])[i], substring($1::bytea from o for l) FROM ${UNPACK(2)}
             ON CONFLICT (level, idx) DO UPDATE SET data = EXCLUDED.data WHERE length(EXCLUDED.data) > length(tm_tiles.data)`,
            [...pack(tiles.map((t) => t.data)), tiles.map((t) => t.level), tiles.map((t) => t.idx)],
          );
          // batch rows whose entries are all in full bundles now
          if (batch.delTo >= 0)
            await c.query('DELETE FROM tm_pending WHERE first_idx <= $1 AND first_idx + n <= $1 + 1', [batch.delTo]);
          const cas = await c.query('UPDATE tm_checkpoint SET size = $1, state = $2 WHERE id = 1 AND size = $3', [
            size,
            batch.state,
            start,
          ]);
          if (cas.rowCount !== 1) throw new FencedError(`the stored checkpoint is no longer at size ${start}`);
          await c.query('INSERT INTO tm_checkpoints (size, root, note) VALUES ($1, $2, $3)', [
            size,
            snap.tree.root,
            snap.tree.checkpoint,
          ]);
          await c.query(`SELECT pg_notify('tm_checkpoint', $1)`, [String(size)]);
        }),
      );
      this.install(snap);
      return true;
    } catch (e) {
      // the writer may be ahead of the store: drop it; the next tick re-acquires the lease and reloads
      this.resign();
      if (e instanceof FencedError) {
        this.fenced++;
        this.logger.warn('not the sequencer any more: what it signed is discarded', {
          frontend: this.id,
          reason: e.message,
          size: start,
        });
      } else {
        this.logger.warn('sequencing failed; this frontend steps down and retries', {
          frontend: this.id,
          error: errorMessage(e),
        });
      }
      if (e instanceof LogStateError) this.failure = e;
      return false;
    }
  }

  private resign(): void {
    this.own.clear();
    this.writer = undefined;
    this.token = undefined;
  }

  /** Renews or tries for the lease, keeps the listener up, refreshes the view. Never throws. */
  private async tick(): Promise<void> {
    // one at a time: two overlapping acquisitions by one frontend would fence each other
    if (this.closed || this.ticking) return;
    this.ticking = true;
    try {
      await this.tickOnce();
    } finally {
      this.ticking = false;
    }
  }

  private async tickOnce(): Promise<void> {
    try {
      await this.lease();
    } catch (e) {
      this.resign();
      this.logger.warn('sequencer lease check failed; this frontend steps down and retries', {
        frontend: this.id,
        error: errorMessage(e),
      });
    }
    if (!this.listener && !this.closed)
      await this.listen().catch((e) =>
        this.logger.warn('cannot listen for log notifications', { error: errorMessage(e) }),
      );
    // a notification can be missed (listener reconnecting): the poll covers it
    if (this.writer) this.kick();
    else await this.refresh();
  }

  private async lease(): Promise<void> {
    if (this.writer) {
      const r = await this.pool.query(
        `UPDATE tm_lease SET expires = clock_timestamp() + make_interval(secs => $3::float8 / 1000) WHERE id = 1 AND holder = $1 AND token = $2 AND expires > clock_timestamp()`,
        [this.id, this.token, this.leaseMs],
      );
      if (r.rowCount !== 1) {
        this.logger.warn('lost the sequencer lease', { frontend: this.id });
        this.resign();
      }
      return;
    }
    if (this.failure) return;
    const r = await this.pool.query<{ token: string }>(
      `UPDATE tm_lease SET holder = $1, token = token + 1, expires = clock_timestamp() + make_interval(secs => $2::float8 / 1000)
       WHERE id = 1 AND (holder IS NULL OR holder = $1 OR expires <= clock_timestamp()) RETURNING token`,
      [this.id, this.leaseMs],
    );
    if (r.rowCount !== 1) return;
    const token = r.rows[0].token;
    let state: EdgeState;
    try {
      state = await this.loadEdge();
    } catch (e) {
      if (e instanceof LogStateError) {
        this.failure = e;
        this.logger.error('the store does not match its signed checkpoint; this frontend stops writing', {
          error: e.message,
        });
      }
      throw e;
    }
    this.token = token;
    this.writer = new EdgeWriter(this.key, state, {
      fullTile: (level, index, node) => this.cacheFullTile(level, index, node),
      fullBundle: (index, encoded) => this.cacheBundle(index, encoded),
    });
    this.install(this.writer.snapshot(state.tree!));
    this.logger.info('sequencing: this frontend holds the sequencer lease', {
      frontend: this.id,
      token,
      size: state.tree!.size,
    });
    this.kick();
  }

  private async listen(): Promise<void> {
    const c = new pg.Client(connectionOptions(this.url, 1));
    c.on('error', () => {
      if (this.listener === c) this.listener = undefined;
      void c.end().catch(() => {});
    });
    await c.connect();
    c.on('notification', (n) => {
      if (n.channel === 'tm_pending') this.kick();
      else if (!this.writer && Number(n.payload) > this.snap.tree.size) void this.refresh();
    });
    await c.query('LISTEN tm_pending');
    await c.query('LISTEN tm_checkpoint');
    if (this.closed) await c.end();
    else this.listener = c;
  }

  /** Loads the newest checkpoint's view when it is newer than this one (one load at a time, coalesced). */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.refreshAgain = false;
          if (this.writer || this.closed) return;
          const r = await this.pool.query<{ size: string }>('SELECT size FROM tm_checkpoint WHERE id = 1');
          if (toNum(r.rows[0].size) <= this.snap.tree.size) continue;
          const state = await this.loadEdge();
          if (!this.writer) this.install({ tree: state.tree!, tiles: state.tiles, bundle: state.bundle });
        } while (this.refreshAgain);
      } catch (e) {
        if (e instanceof LogStateError) this.failure = e;
        this.logger.warn('cannot refresh the log view from the store', { error: errorMessage(e) });
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Index of the leaf with this hash within the durable tree, from the tm_leaf_hashes primary key. */
  override async findLeaf(leafHash: Uint8Array): Promise<number | undefined> {
    const size = this.snap.tree.size;
    const r = await this.pool.query<{ idx: string }>('SELECT idx FROM tm_leaf_hashes WHERE leaf_hash = $1', [
      buf(leafHash),
    ]);
    const idx = r.rows[0] ? toNum(r.rows[0].idx) : undefined;
    return idx !== undefined && idx < size ? idx : undefined;
  }

  /** Stops sequencing (handing the lease back so another frontend takes over at once) and closes the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    while (this.integrating) await this.integrating;
    if (this.token) {
      await this.pool
        .query(`UPDATE tm_lease SET expires = '-infinity' WHERE id = 1 AND holder = $1 AND token = $2`, [
          this.id,
          this.token,
        ])
        .catch(() => {});
      this.resign();
    }
    await this.refreshing;
    await this.listener?.end().catch(() => {});
    this.listener = undefined;
    await this.pool.end();
  }
}

/** The store URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
