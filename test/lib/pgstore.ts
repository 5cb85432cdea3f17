/**
 * The log's store for a test suite that runs against both stores: nothing extra for LevelDB (the data
 * directory), a fresh database on one private PostgreSQL per process for PostgreSQL. The server is started on
 * first use and stopped when the mocha run ends.
 */
import { startPostgres, type Postgres } from './postgres.js';

export const STORES = ['LevelDB', 'PostgreSQL'] as const;
export type StoreKind = (typeof STORES)[number];

let server: Promise<Postgres> | undefined;
let dbs = 0;

/** The private PostgreSQL of this test process (started once); its password is put in PGPASSWORD for clients. */
export async function testPostgres(): Promise<Postgres> {
  server ??= startPostgres().then((pg) => {
    process.env.PGPASSWORD = pg.password;
    after(() => pg.stop());
    return pg;
  });
  return server;
}

/** A new empty database on the private server: its URL. */
export async function newPgDatabase(): Promise<string> {
  const pg = await testPostgres();
  const name = `tm_${process.pid}_${++dbs}`;
  pg.sql(`CREATE DATABASE ${name}`);
  return pg.url(name);
}

/** startLogServer options selecting `kind`'s store for a new log. */
export async function storeOption(kind: StoreKind): Promise<{ store?: string }> {
  return kind === 'PostgreSQL' ? { store: await newPgDatabase() } : {};
}
