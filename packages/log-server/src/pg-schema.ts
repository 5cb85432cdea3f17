/**
 * The PostgreSQL schema of a log (contract section 9), versioned: every frontend runs the migrations it lacks
 * at start, one frontend at a time (a transaction-scoped advisory lock), so N frontends starting together
 * apply each migration once. One log per database.
 *
 *   tm_log           the log's identity (origin, vkey) and next_index, the sequencing counter: writers
 *                    assign indices under this row's lock, so indices are dense and fixed at insert
 *   tm_leaf_hashes   leaf hash -> index, the primary key is the dedup (strong, across every frontend)
 *   tm_pending       entries not yet in a full bundle, one row per writer batch (entries n from first_idx,
 *                    each a uint16 length then its bytes); deleted once every entry is in a bundle row
 *   tm_bundles       full entry bundles (tlog-tiles encoding), immutable
 *   tm_tiles         tiles: full ones immutable; the partial tile of each level >= 1 grows in place
 *   tm_checkpoint    the latest signed tree (one row), updated by compare-and-swap on its size
 *   tm_checkpoints   every signed size and its root (primary key size: one root per size, ever)
 *   tm_lease         the sequencer lease: holder, fencing token, expiry (database clock)
 */
import type { PoolClient } from 'pg';

/** Advisory lock key serialising migrations (any constant; 'tmlg' in ASCII). */
const MIGRATION_LOCK = 0x746d6c67;

/** The schema migrations, in version order; each runs once per database. */
export const MIGRATIONS: readonly { version: number; sql: string; optional?: boolean }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE tm_log (
  id int PRIMARY KEY CHECK (id = 1),
  origin text NOT NULL,
  vkey text NOT NULL,
  next_index bigint NOT NULL CHECK (next_index >= 0)
);
CREATE TABLE tm_leaf_hashes (
  leaf_hash bytea PRIMARY KEY CHECK (length(leaf_hash) = 32),
  idx bigint NOT NULL
);
CREATE TABLE tm_pending (
  first_idx bigint PRIMARY KEY,
  n int NOT NULL CHECK (n > 0),
  data bytea NOT NULL
);
CREATE TABLE tm_bundles (
  idx bigint PRIMARY KEY,
  data bytea NOT NULL
);
CREATE TABLE tm_tiles (
  level int NOT NULL,
  idx bigint NOT NULL,
  data bytea NOT NULL CHECK (length(data) % 32 = 0 AND length(data) BETWEEN 32 AND 8192),
  PRIMARY KEY (level, idx)
);
CREATE TABLE tm_checkpoint (
  id int PRIMARY KEY CHECK (id = 1),
  size bigint NOT NULL,
  state bytea NOT NULL
);
CREATE TABLE tm_checkpoints (
  size bigint PRIMARY KEY,
  root bytea NOT NULL,
  note text NOT NULL,
  signed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE tm_lease (
  id int PRIMARY KEY CHECK (id = 1),
  holder text,
  token bigint NOT NULL,
  expires timestamptz NOT NULL
);
INSERT INTO tm_lease (id, holder, token, expires) VALUES (1, NULL, 0, '-infinity');
`,
  },
  {
    // storage tuning, measured in scripts/bench-pgstore.ts: pending rows live for a moment and are written
    // once and deleted once, so compressing them (pglz, the default) costs CPU on the ingest path for
    // nothing; bundles stay compressed, with lz4 (several times cheaper than pglz per byte). PostgreSQL only
    // (its TOAST settings): an engine that refuses them keeps its defaults (see `optional`).
    version: 2,
    optional: true,
    sql: `
ALTER TABLE tm_pending ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE tm_bundles ALTER COLUMN data SET COMPRESSION lz4;
`,
  },
];

/** The schema version this code writes: the last migration's. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Whether the database holds a log (its schema and identity row), and whose. */
export async function inspectSchema(c: PoolClient): Promise<{ version: number; origin?: string; vkey?: string }> {
  const t = await c.query<{ reg: string | null }>(`SELECT to_regclass('tm_migrations')::text AS reg`);
  if (!t.rows[0].reg) return { version: 0 };
  const v = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM tm_migrations');
  const version = v.rows[0].v ?? 0;
  if (version === 0) return { version };
  const log = await c.query<{ origin: string; vkey: string }>('SELECT origin, vkey FROM tm_log WHERE id = 1');
  return { version, ...log.rows[0] };
}

/**
 * Applies the migrations the database lacks, each in the transaction that records it, under the migration
 * lock. Refuses a database migrated by newer code (it would not know that schema).
 */
export async function migrate(c: PoolClient): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query(
      'CREATE TABLE IF NOT EXISTS tm_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set(
      (await c.query<{ version: number }>('SELECT version FROM tm_migrations')).rows.map((r) => r.version),
    );
    const newest = Math.max(0, ...done);
    if (newest > SCHEMA_VERSION)
      throw new Error(
        `the store's schema is version ${newest}, newer than this trailmark (${SCHEMA_VERSION}): upgrade trailmark`,
      );
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      if (m.optional) {
        // each statement on its own: one the engine refuses is skipped, the rest still apply
        for (const stmt of m.sql
          .split(';')
          .map((x) => x.trim())
          .filter(Boolean)) {
          await c.query('SAVEPOINT optional');
          await c.query(stmt).then(
            () => c.query('RELEASE SAVEPOINT optional'),
            () => c.query('ROLLBACK TO SAVEPOINT optional'),
          );
        }
      } else await c.query(m.sql);
      await c.query('INSERT INTO tm_migrations (version) VALUES ($1)', [m.version]);
    }
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
