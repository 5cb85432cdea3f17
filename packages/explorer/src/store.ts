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
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StreamChecker, type StreamCheckerState } from '@trailmark/tlog';
import { KIND_REQUEST, KIND_RESPONSE, normalize } from './normalize.js';
import type { Filters, StoredEvent } from '@trailmark/client';

export type { StoredEvent };

export interface IndexState {
  /** Entries indexed: leaves 0 .. indexed-1. */
  indexed: number;
  /** The last verified checkpoint note the index followed (null before the first). */
  checkpoint: string | null;
}

export type Bucket = 'minute' | 'hour' | 'day';
export const BUCKET_MS: Record<Bucket, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

export interface Stats {
  buckets: { start: string; allowed: number; denied: number }[];
  total: { allowed: number; denied: number };
}

// partial indexes: response events (half of all rows) carry no actor, target or path, and cost no index work
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
  stream_seq INTEGER,
  response_index INTEGER,
  entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_actor ON events(actor) WHERE actor IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_target ON events(target) WHERE target IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_path ON events(path) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_stream ON events(stream_id, stream_seq);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);
CREATE TABLE IF NOT EXISTS orphans (request_id TEXT PRIMARY KEY, leaf_index INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(text, content='', detail='none');
`;

/** The meta key holding the StreamChecker state (plain JSON, resumed on restart). */
const STREAMS_KEY = 'streams';

/** Requests awaiting their response kept in memory (about 100 bytes each). */
const MAX_PENDING = 100_000;

/** One entry to index: its leaf index, leaf hash and canonical bytes (already checked against a verified tile). */
export interface VerifiedLeaf {
  index: number;
  leafHash: Uint8Array;
  data: Uint8Array;
}

/** FTS5 query for the words in `q`: each word quoted (no operators from users), all required. */
export function ftsQuery(q: string): string | null {
  const words = q.match(/[\p{L}\p{N}]+/gu);
  return words ? words.map((w) => `"${w}"`).join(' ') : null;
}

/**
 * The FROM and WHERE clauses (without the cursor) for `f`, over table alias e, and the column results are
 * ordered by. With words, the full-text index drives the query (FTS5 walks its matches in rowid order, newest
 * first, and stops at the page's end) rather than collecting every match first.
 */
function whereOf(f: Filters): { from: string; key: string; sql: string[]; params: unknown[] } {
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
  if (f.decision !== undefined) eq('decision', f.decision === 'allowed' ? 1 : 0);
  if (f.path !== undefined) {
    // whole segments: /api matches /api and /api/..., never /apix ('0' is the character after '/')
    const p = f.path.replace(/\/+$/, '');
    if (p !== '') {
      // one range scan of the path index: [p, p + '0') holds p and every p + c... with c <= '/'
      sql.push("e.path >= ? AND e.path < ? AND (e.path = ? OR substr(e.path, ?, 1) = '/')");
      params.push(p, p + '0', p, [...p].length + 1); // SQLite counts characters (code points)
    }
  }
  if (f.fromMs !== undefined) {
    sql.push('e.time_ms >= ?');
    params.push(f.fromMs);
  }
  if (f.toMs !== undefined) {
    sql.push('e.time_ms <= ?');
    params.push(f.toMs);
  }
  if (f.q !== undefined) {
    const m = ftsQuery(f.q);
    if (m === null) sql.push('0');
    else {
      from = 'words w CROSS JOIN events e ON e.leaf_index = w.rowid';
      key = 'w.rowid';
      sql.unshift('words MATCH ?');
      params.unshift(m);
    }
  }
  return { from, key, sql, params };
}

export class IndexStore {
  readonly db: Database.Database;
  /** The stream checker (tlog's, as the audit and the monitor use), fed every indexed entry in log order. */
  private checker: StreamChecker;
  /** Whether the checker changed since its state was last saved. */
  private streamsDirty = false;
  private readonly insertEvent: Database.Statement;
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
  private readonly batch: (leaves: VerifiedLeaf[], indexed: number, checkpoint: string | null) => void;

  /** Opens (creating when absent) the index under `dir`. Precondition: none; throws on an unusable directory. */
  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.db = new Database(join(dir, 'index.sqlite'));
    this.db.pragma('journal_mode = WAL');
    // WAL with synchronous=NORMAL: a crash may lose the last commits but never corrupts; the index is
    // rebuilt from the log, so losing a tail only means indexing it again
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('cache_size = -65536');
    this.db.exec(SCHEMA);
    this.insertEvent = this.db.prepare(
      `INSERT INTO events (leaf_index, leaf_hash, kind, top, request_id, time_ms, actor, target, method, path, protocol, decision, status, stream_id, stream_seq, response_index, entry)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertWords = this.db.prepare('INSERT INTO words (rowid, text) VALUES (?, ?)');
    this.findRequest = this.db
      .prepare(
        `SELECT leaf_index FROM events WHERE request_id = ? AND kind = ${KIND_REQUEST} AND response_index IS NULL LIMIT 1`,
      )
      .pluck();
    this.putOrphan = this.db.prepare('INSERT OR IGNORE INTO orphans (request_id, leaf_index) VALUES (?, ?)');
    this.takeOrphan = this.db.prepare('DELETE FROM orphans WHERE request_id = ? RETURNING leaf_index');
    this.orphanIds = new Set(this.db.prepare('SELECT request_id FROM orphans').pluck().all() as string[]);
    this.joinRequest = this.db.prepare('UPDATE events SET response_index = ?, status = ? WHERE leaf_index = ?');
    this.hide = this.db.prepare('UPDATE events SET top = 0 WHERE leaf_index = ?');
    this.putMeta = this.db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
    this.checker = new StreamChecker(this.loadStreams());
    this.batch = this.db.transaction((leaves: VerifiedLeaf[], indexed: number, checkpoint: string | null) => {
      for (const l of leaves) this.insertOne(l);
      if (this.streamsDirty) {
        this.putMeta.run(STREAMS_KEY, JSON.stringify(this.checker.state()));
        this.streamsDirty = false;
      }
      this.putMeta.run('indexed', String(indexed));
      if (checkpoint !== null) this.putMeta.run('checkpoint', checkpoint);
    });
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

  private insertOne(l: VerifiedLeaf): void {
    const text = Buffer.from(l.data.buffer, l.data.byteOffset, l.data.byteLength).toString('utf8');
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* a log entry that is not JSON: indexed by leaf index only */
    }
    const f = normalize(parsed);
    let top = 1;
    let responseIndex: number | null = null;
    let status = f.status;
    if (f.kind === KIND_RESPONSE) {
      const rid = f.requestId!;
      let req = this.pending.get(rid);
      if (req !== undefined) this.pending.delete(rid);
      else req = this.findRequest.get(rid) as number | undefined;
      if (req !== undefined) {
        this.joinRequest.run(l.index, f.status, req);
        top = 0;
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
          this.hide.run(resp.leaf_index);
          responseIndex = resp.leaf_index;
          status =
            (this.db.prepare('SELECT status FROM events WHERE leaf_index = ?').pluck().get(resp.leaf_index) as
              string | null) ?? null;
        }
      } else {
        if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
        this.pending.set(rid, l.index);
      }
    }
    this.insertEvent.run(
      l.index,
      l.leafHash,
      f.kind,
      top,
      f.requestId,
      f.timeMs,
      f.actor,
      f.target,
      f.method,
      f.path,
      f.protocol,
      f.decision,
      status,
      f.streamId,
      f.streamSeq,
      responseIndex,
      text,
    );
    if (f.words) this.insertWords.run(l.index, f.words);
    if (typeof parsed === 'object' && parsed !== null && (parsed as { stream?: unknown }).stream !== undefined) {
      this.checker.add(l.index, l.leafHash, parsed, Date.now());
      this.streamsDirty = true;
    }
  }

  /**
   * One page of matches of `f`, newest first, below leaf index `before` (all when null), with each request's
   * response joined.
   */
  search(f: Filters, limit: number, before: number | null): StoredEvent[] {
    const w = whereOf(f);
    const sql = ['e.top = 1', ...w.sql];
    const params = [...w.params];
    if (before !== null) {
      sql.push(`${w.key} < ?`);
      params.push(before);
    }
    const rows = this.db
      .prepare(
        `SELECT e.leaf_index, e.leaf_hash, e.entry, r.leaf_index AS r_index, r.leaf_hash AS r_hash, r.entry AS r_entry
         FROM ${w.from} LEFT JOIN events r ON r.leaf_index = e.response_index
         WHERE ${sql.join(' AND ')} ORDER BY ${w.key} DESC LIMIT ?`,
      )
      .all(...params, limit) as {
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

  /** Refreshes the query planner's statistics (after many rows were added). */
  optimize(): void {
    this.db.pragma('optimize');
  }

  /** Allowed and denied request events per time bucket (UTC), oldest first. */
  stats(f: Filters, bucket: Bucket): Stats {
    const w = whereOf(f);
    const size = BUCKET_MS[bucket];
    const rows = this.db
      .prepare(
        `SELECT (e.time_ms / ${size}) * ${size} AS b, SUM(e.decision = 1) AS allowed, SUM(e.decision = 0) AS denied
         FROM ${w.from} WHERE ${['e.kind = ' + KIND_REQUEST, 'e.decision IS NOT NULL', 'e.time_ms IS NOT NULL', ...w.sql].join(' AND ')}
         GROUP BY b ORDER BY b`,
      )
      .all(...w.params) as { b: number; allowed: number; denied: number }[];
    const total = { allowed: 0, denied: 0 };
    const buckets = rows.map((r) => {
      total.allowed += r.allowed;
      total.denied += r.denied;
      return { start: new Date(r.b).toISOString(), allowed: r.allowed, denied: r.denied };
    });
    return { buckets, total };
  }

  close(): void {
    this.db.close();
  }
}
