/** The pg-proxy test rig: a real PostgreSQL 15, a real log server, the proxy, and clients (psql, pgbench, pg). */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { makeVerifier, startPgProxy, type PgProxyOptions, type RunningPgProxy } from '../src/index.js';
import { logEntries, RestartableLog, tempDir, waitFor } from '../../proxy/test/helpers.js';
import { startPostgres, type Postgres } from '../../../test/lib/postgres.js';

export const USERS = {
  alice: { password: 'alice-Secret-pw-1', roles: ['dba'] },
  bob: { password: 'bob-Secret-pw-2', roles: ['analyst'] },
  carol: { password: 'carol-Secret-pw-3', roles: ['nobody'] },
};
export const RULES = {
  dba: { databases: ['app', 'postgres'], read_only: false },
  analyst: { databases: ['app'], read_only: true },
};

export type Ev = Record<string, any>;

/** One PostgreSQL for all the pg-proxy tests (each test gets fresh databases): starting one takes seconds. */
let shared: Promise<Postgres> | null = null;
function sharedPostgres(): Promise<Postgres> {
  shared ??= startPostgres();
  return shared;
}
export async function stopSharedPostgres(): Promise<void> {
  if (shared) await (await shared).stop();
  shared = null;
}

export class Rig {
  tmp!: ReturnType<typeof tempDir>;
  pg!: Postgres;
  log!: RestartableLog;
  proxy: RunningPgProxy | null = null;
  usersFile = '';
  rulesFile = '';
  spoolDir = '';
  warnings: string[] = [];

  async start(): Promise<void> {
    this.tmp = tempDir('tm-pgproxy-');
    this.pg = await sharedPostgres();
    this.pg.sql('DROP DATABASE IF EXISTS app WITH (FORCE)');
    this.pg.sql('DROP ROLE IF EXISTS dave');
    this.pg.sql('CREATE DATABASE app');
    this.pg.sql(
      'CREATE TABLE items (id int primary key, name text); CREATE TABLE kv (k text primary key, v text)',
      'app',
    );
    this.log = new RestartableLog(join(this.tmp.dir, 'log'));
    await this.log.start();
    this.usersFile = join(this.tmp.dir, 'users.json');
    this.rulesFile = join(this.tmp.dir, 'rules.json');
    this.spoolDir = join(this.tmp.dir, 'spool');
    const users: Record<string, { password: string; roles: string[] }> = {};
    for (const [name, u] of Object.entries(USERS)) users[name] = { password: makeVerifier(u.password), roles: u.roles };
    writeFileSync(this.usersFile, JSON.stringify(users));
    writeFileSync(this.rulesFile, JSON.stringify(RULES));
  }

  async startProxy(extra: Partial<PgProxyOptions> = {}): Promise<RunningPgProxy> {
    this.proxy = await startPgProxy({
      upstream: this.pg.url('app'),
      upstreamPassword: this.pg.password,
      log: this.log.url,
      logKey: this.log.vkey,
      users: this.usersFile,
      rules: this.rulesFile,
      listen: '127.0.0.1:0',
      spoolDir: this.spoolDir,
      name: 'pg-test',
      warn: (l) => this.warnings.push(l),
      ...extra,
    });
    return this.proxy;
  }

  async stop(): Promise<void> {
    await this.proxy?.close();
    this.proxy = null;
    await this.log?.stop();
    this.tmp?.cleanup();
  }

  /** Environment for psql/pgbench through the proxy as `user`. */
  env(user: keyof typeof USERS, db = 'app', port = this.proxy?.port): NodeJS.ProcessEnv {
    return {
      ...process.env,
      PGHOST: '127.0.0.1',
      PGPORT: String(port),
      PGUSER: user,
      PGPASSWORD: USERS[user].password,
      PGDATABASE: db,
      PGSSLMODE: 'disable',
      PGAPPNAME: 'psql-test',
    };
  }

  /** psql through the proxy (asynchronous: the proxy runs in this process); returns status, stdout, stderr. */
  psql(
    user: keyof typeof USERS,
    sql: string,
    opts: { db?: string; password?: string; args?: string[]; input?: string } = {},
  ): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const env = this.env(user, opts.db);
    if (opts.password !== undefined) env.PGPASSWORD = opts.password;
    return run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', ...(opts.args ?? []), '-c', sql], env, opts.input);
  }

  client(user: keyof typeof USERS, db = 'app'): pg.Client {
    return new pg.Client({
      host: '127.0.0.1',
      port: this.proxy!.port,
      user,
      password: USERS[user].password,
      database: db,
      application_name: 'node-postgres-test',
    });
  }

  /** The log's events once the spool is drained (each checked against the contract's common fields). */
  async events(): Promise<Ev[]> {
    if (this.proxy) {
      await this.proxy.settle();
      await waitFor('the spool to drain', () => this.proxy!.trail.spool.depth === 0);
    }
    const entries = await logEntries(this.log.url);
    for (const e of entries) {
      // neither the proxy users' passwords nor the upstream's ever reach the log
      for (const secret of [this.pg.password, ...Object.values(USERS).map((u) => u.password)])
        expect(e.raw).to.not.include(secret);
      expect(e.event.schema).to.equal('trailmark.access/v1');
      expect(e.event.proxy).to.equal('pg-test');
      expect(e.event.id).to.be.a('string');
      expect(e.event.time).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    return entries.map((e) => e.event);
  }
}

/** One Rig for a describe block: started before each test (with the proxy when `withProxy`), stopped after. */
export function useRig(withProxy = false): Rig {
  const rig = new Rig();
  beforeEach(async () => {
    rig.warnings = [];
    await rig.start();
    if (withProxy) await rig.startProxy();
  });
  afterEach(() => rig.stop());
  return rig;
}

/** Runs a client program; resolves with its exit status and output (killed after 30 s). */
export function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    if (input !== undefined) p.stdin!.end(input);
    p.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout: stdout.trim(), stderr });
    });
  });
}

/** Request events by statement text, each with its one response event (checked). */
export function statements(events: Ev[]): { request: Ev; response: Ev }[] {
  const responses = new Map<string, Ev>();
  for (const e of events.filter((e) => e.stage === 'response')) {
    expect(responses.has(e.request_id), `two responses for ${e.request_id}`).to.equal(false);
    responses.set(e.request_id, e);
  }
  return events
    .filter((e) => e.stage === 'request')
    .map((request) => {
      const response = responses.get(request.request_id);
      expect(response, `no response event for ${request.action.statement}`).to.not.equal(undefined);
      expect(response!.action.session_id).to.equal(request.action.session_id);
      return { request, response: response! };
    });
}

export function find(list: { request: Ev; response: Ev }[], sql: string): { request: Ev; response: Ev } {
  const hit = list.find((s) => s.request.action.statement === sql);
  expect(
    hit,
    `no request event for ${JSON.stringify(sql)} among ${JSON.stringify(list.map((s) => s.request.action.statement))}`,
  ).to.not.equal(undefined);
  return hit!;
}
