/**
 * The explorer's index: one SQLite database (better-sqlite3, WAL) under the data directory. Every row is an
 * entry that was checked against verified tiles; the verified checkpoint and the number of entries indexed
 * are written in the same transaction as the rows, so a restart resumes exactly where the last commit ended.
 *
 * Table `events`: one row per entry, by leaf index. A request event and its response are joined by
 * request_id: the request row points at its response (response_index, and takes its status), and the
 * response row is hidden from searches (top = 0). A response whose request is not in the log (yet) stays
 * visible on its own, so every entry is reachable.
 *
 * Meta `streams`: tlog's StreamChecker state (plain JSON), saved with each batch that touched a stream and
 * resumed on restart.
 *
 * Format 4 (PRAGMA user_version), shaped by the searches it serves (newest first, 100 at a time):
 * - secondary indexes only on visible rows (top = 1): a joined response costs no index work at all, and a
 *   response joined when written keeps only what a search shows of it (hash and entry; format 4);
 * - 64 KiB pages (format 4): rows carry their entries, and small pages made every insert split pages;
 * - no time index: table `time_blocks` keeps each block of 4,096 leaves' earliest and latest time, and a
 *   from/to filter becomes a leaf-index range (plus the exact time test), so it combines with any other
 *   filter in leaf order;
 * - no path index: each whole-segment prefix of the path is a token in the full-text table, so a path filter
 *   walks its matches newest first like a word does (the exact prefix test still decides);
 * - the full-text table keeps no document sizes (columnsize=0): results come in leaf order, never ranked, so
 *   the sizes only cost a B-tree insert per row (format 3; format 2 kept them).
 * Entries are parsed and normalized before any of this (prepare.ts), on the reader thread while catching up.
 * An index of another format is deleted and rebuilt from the log when opened (the log is the source).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StreamChecker, type StreamCheckerState } from '@trailmark/tlog';
import { KIND_REQUEST, KIND_RESPONSE } from './normalize.js';
import { pathToken, prepareEntry, type PreparedEntry } from './prepare.js';
import type { Filters, StoredEvent } from '@trailmark/client';

export type { StoredEvent };

/** How far the index has got: entries indexed and the checkpoint it follows. */
export interface IndexState {
  /** Entries indexed: leaves 0 .. indexed-1. */
  indexed: number;
  /** The last verified checkpoint note the index followed (null before the first). */
  checkpoint: string | null;
}

/** The time bucket of the statistics endpoint. */
export type Bucket = 'minute' | 'hour' | 'day';
/** Length of each Bucket in milliseconds. */
export const BUCKET_MS: Record<Bucket, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** Allowed and denied request counts per time bucket, and their totals. */
export interface Stats {
  buckets: { start: string; allowed: number; denied: number }[];
  total: { allowed: number; denied: number };
}

/** The on-disk format (PRAGMA user_version); an index of any other format is rebuilt from the log. */
export const INDEX_FORMAT = 4;

/** Leaves per `time_blocks` row (a power of two: block = leaf_index >> TIME_BLOCK_BITS). */
const TIME_BLOCK_BITS = 12;

// every search is over visible rows (top = 1), so the indexes hold only those: responses joined to their
// request (half of all rows) are in none of them. "Who was denied" is the question an investigation asks most:
// denied requests (a few percent of rows) get their own actor index, so actor + denied is a range scan rather
// than a walk of the actor's requests
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  leaf_index INTEGER PRIMARY KEY,
  leaf_hash BLOB NOT NULL,
  kind INTEGER NOT NULL,
  top INTEGER NOT NULL,
  request_id TEXT,
  time_ms INTEGER,
  actor TEXT,
  target TEXT,
  method TEXT COLLATE NOCASE,
  path TEXT,
  protocol TEXT,
  decision INTEGER,
  status TEXT,
  stream_id TEXT,
  response_index INTEGER,
  entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_actor ON events(actor) WHERE top = 1 AND actor IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_actor_denied ON events(actor) WHERE top = 1 AND decision = 0 AND actor IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_target ON events(target) WHERE top = 1 AND target IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_request ON events(request_id) WHERE top = 1 AND request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_stream ON events(stream_id) WHERE top = 1 AND stream_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS time_blocks (block INTEGER PRIMARY KEY, min_ms INTEGER NOT NULL, max_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orphans (request_id TEXT PRIMARY KEY, leaf_index INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(text, content='', detail='none', columnsize=0);
PRAGMA user_version = ${INDEX_FORMAT};
`;

/** The meta key holding the StreamChecker state (plain JSON, resumed on restart). */
const STREAMS_KEY = 'streams';

/** Requests awaiting their response kept in memory (about 100 bytes each). */
const MAX_PENDING = 100_000;

/** A leaf of a batch being indexed, with what the join decided for its row. */
interface Row {
  leaf: VerifiedLeaf;
  p: PreparedEntry;
  top: number;
  responseIndex: number | null;
  status: string | null;
}

/**
 * One entry to index: its leaf index, leaf hash and canonical bytes (already checked against a verified tile),
 * and, when the reader thread made it, prepareEntry(data).
 */
export interface VerifiedLeaf {
  index: number;
  leafHash: Uint8Array;
  data: Uint8Array;
  prepared?: PreparedEntry;
}

/** FTS5 query for the words in `q`: each word quoted (no operators from users), all required. */
export function ftsQuery(q: string): string | null {
  const words = q.match(/[\p{L}\p{N}]+/gu);
  return words ? words.map((w) => `"${w}"`).join(' ') : null;
}

/**
 * The FROM and WHERE clauses (without the cursor) for `f`, over table alias e, and the column results are
 * ordered by. With words or a path, the full-text index drives the query (FTS5 walks its matches in rowid
 * order, newest first, and stops at the page's end) rather than collecting every match first. `leafRange`
 * turns a time range into the leaf indices that can hold it (null: none can).
 */
function whereOf(
  f: Filters,
  leafRange: (fromMs: number, toMs: number) => [number, number] | null,
): { from: string; key: string; sql: string[]; params: unknown[] } {
  const sql: string[] = [];
  let from = 'events e';
  let key = 'e.leaf_index';
  const params: unknown[] = [];
  const eq = (col: string, v: unknown) => {
    if (v !== undefined) {
      sql.push(`e.${col} = ?`);
      params.push(v);
    }
  };
  eq('actor', f.actor);
  eq('target', f.target);
  eq('method', f.method);
  eq('protocol', f.protocol);
  eq('status', f.status);
  eq('request_id', f.requestId);
  eq('stream_id', f.stream);
  // a literal, not a parameter: the planner can then use events_actor_denied, whose WHERE names decision = 0
  if (f.decision !== undefined) sql.push(`e.decision = ${f.decision === 'allowed' ? 1 : 0}`);
  const match: string[] = [];
  if (f.path !== undefined) {
    const p = f.path.replace(/\/+$/, '');
    if (p !== '') {
      // whole segments: /api matches /api and /api/..., never /apix; the token finds the rows, this decides
      sql.push("(e.path = ? OR (substr(e.path, 1, ?) = ? AND substr(e.path, ?, 1) = '/'))");
      const n = [...p].length; // SQLite counts characters (code points)
      params.push(p, n, p, n + 1);
      match.push(`"${pathToken(p)}"`);
    }
  }
  if (f.q !== undefined) {
    const m = ftsQuery(f.q);
    if (m === null) sql.push('0');
    else match.unshift(m);
  }
  if (match.length > 0) {
    from = 'words w CROSS JOIN events e ON e.leaf_index = w.rowid';
    key = 'w.rowid';
  }
  if (f.fromMs !== undefined || f.toMs !== undefined) {
    const from = f.fromMs ?? Number.MIN_SAFE_INTEGER;
    const to = f.toMs ?? Number.MAX_SAFE_INTEGER;
    const r = leafRange(from, to);
    if (r === null) sql.push('0');
    else {
      // on the ordering key, so the walk newest first starts and stops at the range's ends
      sql.push(`${key} >= ? AND ${key} <= ?`);
      params.push(r[0], r[1]);
    }
    sql.push('e.time_ms >= ? AND e.time_ms <= ?');
    params.push(from, to);
  }
  if (match.length > 0) {
    sql.unshift('words MATCH ?');
    params.unshift(match.join(' '));
  }
  return { from, key, sql, params };
}

/**
 * The explorer's SQLite index (better-sqlite3) of log entries: search fields, request/response joins, time blocks and
 * stream state, rebuilt from the log when its format is not INDEX_FORMAT.
 */
export class IndexStore {
  readonly db: Database.Database;
  /** The stream checker (tlog's, as the audit and the monitor use), fed every indexed entry in log order. */
  private checker: StreamChecker;
  /** Whether the checker changed since its state was last saved. */
  private streamsDirty = false;
  private readonly insertEvent: Database.Statement;
  /** A response joined to its request when written: only what a search shows of it (it matches no filter). */
  private readonly insertHidden: Database.Statement;
  private readonly insertWords: Database.Statement;
  private readonly findRequest: Database.Statement;
  private readonly putOrphan: Database.Statement;
  private readonly takeOrphan: Database.Statement;
  /**
   * Requests indexed recently that have no response yet (request_id -> leaf index): a response normally
   * follows its request closely, so most joins need no index lookup. Bounded; a miss falls back to the index.
   */
  private readonly pending = new Map<string, number>();
  /** request_ids of responses indexed before their request (rare: only across streams), mirrored in `orphans`. */
  private readonly orphanIds: Set<string>;
  private readonly joinRequest: Database.Statement;
  private readonly hide: Database.Statement;
  private readonly putMeta: Database.Statement;
  private readonly putTimeBlock: Database.Statement;
  private readonly blockRange: Database.Statement;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly batch: (leaves: VerifiedLeaf[], indexed: number, checkpoint: string | null) => void;

  /**
   * Opens (creating when absent) the index under `dir`. An index of another format (an older explorer's) is
   * deleted and rebuilt from the log, said on `log`. Precondition: none; throws on an unusable directory.
   */
  constructor(dir: string, log: (line: string) => void = (l) => process.stderr.write(l + '\n')) {
    mkdirSync(dir, { recursive: true });
    this.db = IndexStore.open(join(dir, 'index.sqlite'), log);
    this.db.exec(SCHEMA);
    this.insertEvent = this.db.prepare(
      `INSERT INTO events (leaf_index, leaf_hash, kind, top, request_id, time_ms, actor, target, method, path, protocol, decision, status, stream_id, response_index, entry)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertHidden = this.db.prepare(
      'INSERT INTO events (leaf_index, leaf_hash, kind, top, entry) VALUES (?, ?, ?, 0, ?)',
    );
    this.insertWords = this.db.prepare('INSERT INTO words (rowid, text) VALUES (?, ?)');
    this.findRequest = this.db
      .prepare(
        `SELECT leaf_index FROM events WHERE top = 1 AND request_id = ? AND kind = ${KIND_REQUEST} AND response_index IS NULL LIMIT 1`,
      )
      .pluck();
    this.putOrphan = this.db.prepare('INSERT OR IGNORE INTO orphans (request_id, leaf_index) VALUES (?, ?)');
    this.takeOrphan = this.db.prepare('DELETE FROM orphans WHERE request_id = ? RETURNING leaf_index');
    this.orphanIds = new Set(this.db.prepare('SELECT request_id FROM orphans').pluck().all() as string[]);
    this.joinRequest = this.db.prepare('UPDATE events SET response_index = ?, status = ? WHERE leaf_index = ?');
    this.hide = this.db.prepare('UPDATE events SET top = 0 WHERE leaf_index = ?');
    this.putMeta = this.db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
    this.putTimeBlock = this.db.prepare(
      `INSERT INTO time_blocks (block, min_ms, max_ms) VALUES (?, ?, ?)
       ON CONFLICT(block) DO UPDATE SET min_ms = min(min_ms, excluded.min_ms), max_ms = max(max_ms, excluded.max_ms)`,
    );
    this.blockRange = this.db.prepare(
      'SELECT min(block) AS lo, max(block) AS hi FROM time_blocks WHERE max_ms >= ? AND min_ms <= ?',
    );
    this.checker = new StreamChecker(this.loadStreams());
    this.batch = this.db.transaction((leaves: VerifiedLeaf[], indexed: number, checkpoint: string | null) => {
      this.insertAll(leaves);
      if (this.streamsDirty) {
        this.putMeta.run(STREAMS_KEY, JSON.stringify(this.checker.state()));
        this.streamsDirty = false;
      }
      this.putMeta.run('indexed', String(indexed));
      if (checkpoint !== null) this.putMeta.run('checkpoint', checkpoint);
    });
  }

  /** The database in `file`, emptied first when it holds an index of another format. */
  private static open(file: string, log: (line: string) => void): Database.Database {
    let db = IndexStore.connect(file);
    const format = db.pragma('user_version', { simple: true }) as number;
    const used = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'events'").get() !== undefined;
    if (used && format !== INDEX_FORMAT) {
      log(
        `trailmark explorer: the index ${file} is in format ${format}, this version uses format ${INDEX_FORMAT}: ` +
          'deleting it and rebuilding it from the log (nothing is lost: the log holds every entry)',
      );
      db.close();
      for (const f of [file, file + '-wal', file + '-shm']) rmSync(f, { force: true });
      db = IndexStore.connect(file);
    }
    return db;
  }

  private static connect(file: string): Database.Database {
    const db = new Database(file);
    // 64 KiB pages (the largest SQLite has; only a new database takes it): a row here carries its ~400-byte
    // entry, and with 4 KiB pages the table and its five indexes split and spill pages so often that each row
    // cost about 50% more to insert (measured on the benchmark's events); searches read rows through the
    // memory map, so a larger page costs them nothing
    db.pragma('page_size = 65536');
    db.pragma('journal_mode = WAL');
    // WAL with synchronous=NORMAL: a crash may lose the last commits but never corrupts, and `indexed` is
    // committed with the rows it counts, so the index never claims entries it lacks; a lost tail is read
    // from the log again
    db.pragma('synchronous = NORMAL');
    db.pragma('cache_size = -65536');
    // searches read the database through a memory map (up to 1 GiB): a filter that walks a few thousand rows
    // spread over the file reads them from the OS page cache without a system call each (2-4x faster p50 for
    // such filters, measured); an I/O error then kills the process rather than failing a query, acceptable
    // for an index that is rebuilt from the log
    db.pragma('mmap_size = 1073741824');
    // checkpoint the WAL into the database every 16 MB (256 pages of 64 KiB; SQLite's default is 1,000 pages):
    // fewer, larger copies while catching up
    db.pragma('wal_autocheckpoint = 256');
    // the planner's statistics from a sample of each index (SQLite's advice for PRAGMA optimize): about half
    // the time of a full ANALYZE, which blocks searches while it runs
    db.pragma('analysis_limit = 400');
    return db;
  }

  /** The stream checker, with every stream in the entries indexed so far. */
  get streams(): StreamChecker {
    return this.checker;
  }

  /** The saved StreamChecker state (meta `streams`), or none before the first stream event. */
  private loadStreams(): StreamCheckerState | undefined {
    const v = this.db.prepare('SELECT v FROM meta WHERE k = ?').pluck().get(STREAMS_KEY) as string | undefined;
    return v === undefined ? undefined : (JSON.parse(v) as StreamCheckerState);
  }

  /** The stored progress: entries indexed and the checkpoint followed. */
  state(): IndexState {
    const rows = this.db.prepare("SELECT k, v FROM meta WHERE k IN ('indexed', 'checkpoint')").all() as {
      k: string;
      v: string;
    }[];
    const m = new Map(rows.map((r) => [r.k, r.v]));
    return { indexed: Number(m.get('indexed') ?? 0), checkpoint: m.get('checkpoint') ?? null };
  }

  /** Records a newly verified checkpoint (before its entries are indexed). */
  setCheckpoint(note: string): void {
    this.putMeta.run('checkpoint', note);
  }

  /**
   * Indexes `leaves` (consecutive, starting at the current `indexed`) in one transaction, and sets
   * `indexed` to the index after the last. Precondition: each leaf was checked against a verified tile.
   */
  add(leaves: VerifiedLeaf[]): void {
    if (leaves.length === 0) return;
    const next = leaves[leaves.length - 1].index + 1;
    try {
      this.batch(leaves, next, null);
    } catch (e) {
      // memory must not run ahead of what was committed
      this.checker = new StreamChecker(this.loadStreams());
      this.streamsDirty = false;
      this.pending.clear();
      this.orphanIds.clear();
      for (const r of this.db.prepare('SELECT request_id FROM orphans').pluck().all() as string[])
        this.orphanIds.add(r);
      throw e;
    }
  }

  /**
   * Parses and normalizes every leaf of a batch first and joins each response to its request in memory when
   * both are in the batch (the common case: a response follows its request closely), so the request row is
   * written once, complete, and the response row is written hidden; only a join across batches updates a row.
   */
  private insertAll(leaves: VerifiedLeaf[]): void {
    const rows: Row[] = new Array(leaves.length);
    const awaiting = new Map<string, Row>(); // this batch's requests without a response yet
    for (let i = 0; i < leaves.length; i++) {
      const l = leaves[i];
      const p = l.prepared ?? prepareEntry(l.data);
      const f = p.f;
      const row: Row = { leaf: l, p, top: 1, responseIndex: null, status: f.status };
      rows[i] = row;
      if (f.kind === KIND_RESPONSE) {
        const rid = f.requestId!;
        const mate = awaiting.get(rid);
        if (mate !== undefined) {
          awaiting.delete(rid);
          this.pending.delete(rid);
          mate.responseIndex = l.index;
          mate.status = f.status;
          row.top = 0;
          continue;
        }
        let req = this.pending.get(rid);
        if (req !== undefined) this.pending.delete(rid);
        else req = this.findRequest.get(rid) as number | undefined;
        if (req !== undefined) {
          this.joinRequest.run(l.index, f.status, req);
          row.top = 0;
        } else {
          this.putOrphan.run(rid, l.index);
          this.orphanIds.add(rid);
        }
      } else if (f.kind === KIND_REQUEST && f.requestId !== null) {
        const rid = f.requestId;
        if (this.orphanIds.has(rid)) {
          // a response logged before its request (never from one stream; possible across two): join it now
          const resp = this.takeOrphan.get(rid) as { leaf_index: number } | undefined;
          this.orphanIds.delete(rid);
          if (resp) {
            row.responseIndex = resp.leaf_index;
            const k = resp.leaf_index - leaves[0].index; // in this batch: its row is not written yet
            if (k >= 0 && k < i) {
              rows[k].top = 0;
              row.status = rows[k].p.f.status;
            } else {
              this.hide.run(resp.leaf_index);
              row.status =
                (this.db.prepare('SELECT status FROM events WHERE leaf_index = ?').pluck().get(resp.leaf_index) as
                  string | null) ?? null;
            }
          }
        } else {
          if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
          this.pending.set(rid, l.index);
          awaiting.set(rid, row);
        }
      }
    }
    const blocks = new Map<number, [number, number]>();
    const now = Date.now();
    for (const r of rows) {
      const l = r.leaf;
      const { f, words, stream } = r.p;
      if (r.top === 0) this.insertHidden.run(l.index, l.leafHash, f.kind, r.p.text);
      else
        this.insertEvent.run(
          l.index,
          l.leafHash,
          f.kind,
          r.top,
          f.requestId,
          f.timeMs,
          f.actor,
          f.target,
          f.method,
          f.path,
          f.protocol,
          f.decision,
          r.status,
          f.streamId,
          r.responseIndex,
          r.p.text,
        );
      if (words) this.insertWords.run(l.index, words);
      if (f.timeMs !== null) {
        const b = Math.floor(l.index / 2 ** TIME_BLOCK_BITS);
        const m = blocks.get(b);
        if (m === undefined) blocks.set(b, [f.timeMs, f.timeMs]);
        else {
          if (f.timeMs < m[0]) m[0] = f.timeMs;
          if (f.timeMs > m[1]) m[1] = f.timeMs;
        }
      }
      if (stream !== null) {
        // the hash as base64 from Buffer (native), which the checker would otherwise encode in JavaScript
        this.checker.add(
          l.index,
          Buffer.from(l.leafHash.buffer, l.leafHash.byteOffset, 32).toString('base64'),
          stream,
          now,
        );
        this.streamsDirty = true;
      }
    }
    for (const [b, [lo, hi]] of blocks) this.putTimeBlock.run(b, lo, hi);
  }

  /** The leaf indices that can hold events timed in [fromMs, toMs], or null when none can. */
  private leafRange = (fromMs: number, toMs: number): [number, number] | null => {
    const r = this.blockRange.get(fromMs, toMs) as { lo: number | null; hi: number | null };
    if (r.lo === null || r.hi === null) return null;
    return [r.lo * 2 ** TIME_BLOCK_BITS, (r.hi + 1) * 2 ** TIME_BLOCK_BITS - 1];
  };

  /**
   * One page of matches of `f`, newest first, below leaf index `before` (all when null), with each request's
   * response joined.
   */
  search(f: Filters, limit: number, before: number | null): StoredEvent[] {
    const w = whereOf(f, this.leafRange);
    const sql = ['e.top = 1', ...w.sql];
    const params = [...w.params];
    if (before !== null) {
      sql.push(`${w.key} < ?`);
      params.push(before);
    }
    const rows = this.prepared(
      `SELECT e.leaf_index, e.leaf_hash, e.entry, r.leaf_index AS r_index, r.leaf_hash AS r_hash, r.entry AS r_entry
         FROM ${w.from} LEFT JOIN events r ON r.leaf_index = e.response_index
         WHERE ${sql.join(' AND ')} ORDER BY ${w.key} DESC LIMIT ?`,
    ).all(...params, limit) as {
      leaf_index: number;
      leaf_hash: Uint8Array;
      entry: string;
      r_index: number | null;
      r_hash: Uint8Array | null;
      r_entry: string | null;
    }[];
    return rows.map((r) => ({
      leaf_index: r.leaf_index,
      leaf_hash: r.leaf_hash,
      entry: r.entry,
      response: r.r_index === null ? null : { leaf_index: r.r_index, leaf_hash: r.r_hash!, entry: r.r_entry! },
    }));
  }

  /**
   * The statement for `sql`, compiled once: a search's SQL depends only on which filters are set, so a few
   * dozen shapes cover every search, and compiling costs as much as running a selective one.
   */
  private prepared(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (st === undefined) {
      if (this.statements.size >= 256) this.statements.clear();
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /** Refreshes the query planner's statistics (after many rows were added). */
  optimize(): void {
    this.db.pragma('optimize');
  }

  /** Allowed and denied request events per time bucket (UTC), oldest first. */
  stats(f: Filters, bucket: Bucket): Stats {
    const w = whereOf(f, this.leafRange);
    const size = BUCKET_MS[bucket];
    const rows = this.prepared(
      `SELECT (e.time_ms / ${size}) * ${size} AS b, SUM(e.decision = 1) AS allowed, SUM(e.decision = 0) AS denied
         FROM ${w.from} WHERE ${['e.kind = ' + KIND_REQUEST, 'e.decision IS NOT NULL', 'e.time_ms IS NOT NULL', ...w.sql].join(' AND ')}
         GROUP BY b ORDER BY b`,
    ).all(...w.params) as { b: number; allowed: number; denied: number }[];
    const total = { allowed: 0, denied: 0 };
    const buckets = rows.map((r) => {
      total.allowed += r.allowed;
      total.denied += r.denied;
      return { start: new Date(r.b).toISOString(), allowed: r.allowed, denied: r.denied };
    });
    return { buckets, total };
  }

  /** Closes the database; the store must not be used afterwards. */
  close(): void {
    this.db.close();
  }
}
