/**
 * Private PostgreSQL 15 (and pgbouncer) instances for tests and benchmarks: started in a temporary directory on a
 * port picked here, stopped and removed by stop(). Never a system service.
 *
 * initdb, postgres and pgbouncer refuse to run as root (CI runs as root), so under root they run as `nobody`
 * through setpriv (which execs: the child's pid is the server's own, so signals reach it), in a directory chowned
 * to that user. A missing binary is installed with apt-get when running as root, else the setup fails naming
 * the Debian package.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addressInUse, freePort, onFreePort } from './util.js';

export { freePort };

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const UNPRIVILEGED = { uid: 65534, gid: 65534 }; // nobody:nogroup
const installed = new Set<string>();

/** Makes sure `binary` exists, installing Debian package `pkg` once when root; else throws naming the package. */
export function requireBinary(binary: string, pkg: string): void {
  if (existsSync(binary)) return;
  if (process.getuid?.() !== 0)
    throw new Error(`${binary} is missing: install the Debian package "${pkg}" (apt-get install -y ${pkg})`);
  if (!installed.has(pkg)) {
    installed.add(pkg);
    execFileSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkg}`], {
      stdio: 'inherit',
    });
  }
  if (!existsSync(binary)) throw new Error(`${binary} is still missing after installing the Debian package "${pkg}"`);
}

const asRoot = () => process.getuid?.() === 0;

/** The argv that runs `cmd args` as the unprivileged user when we are root (setpriv execs, keeping the pid). */
function unprivileged(cmd: string, args: string[]): [string, string[]] {
  if (!asRoot()) return [cmd, args];
  return [
    'setpriv',
    ['--reuid', String(UNPRIVILEGED.uid), '--regid', String(UNPRIVILEGED.gid), '--clear-groups', '--', cmd, ...args],
  ];
}

/** A temporary directory the server's user owns (mode 0700). */
function serverDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (asRoot()) chownSync(dir, UNPRIVILEGED.uid, UNPRIVILEGED.gid);
  chmodSync(dir, 0o700);
  return dir;
}

function writeOwned(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  if (asRoot()) chownSync(file, UNPRIVILEGED.uid, UNPRIVILEGED.gid);
}

function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Waits until a server on `port` answers pg_isready; else stops it and throws with its stderr. */
async function waitReady(
  what: string,
  port: number,
  child: ChildProcess,
  stderr: () => string,
  stop: () => Promise<void>,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = spawnSync(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '1'], {
      encoding: 'utf8',
    });
    // ready, and it is ours: a server that could not bind exits, whoever else answers on the port
    if (r.status === 0 && child.exitCode === null) return;
    if (child.exitCode !== null || Date.now() > deadline) {
      const said = stderr();
      await stop();
      throw new Error(`${what} did not start: ${said}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Postgres {
  host: string;
  port: number;
  /** The superuser's name and password. */
  user: string;
  password: string;
  /** postgres://user@127.0.0.1:port/postgres (no password: tests pass it separately, as pg-proxy wants). */
  url(db?: string, user?: string): string;
  /** Runs SQL as the superuser with psql; returns its unaligned, tuples-only output. */
  sql(sql: string, db?: string): string;
  /** Environment for psql/pgbench against this server as the superuser. */
  env: NodeJS.ProcessEnv;
  dir: string;
  stop(): Promise<void>;
}

export interface PostgresOptions {
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
}

/**
 * Starts a private PostgreSQL 15 with a SCRAM-authenticated superuser `postgres` (random password), listening
 * on 127.0.0.1 only. Precondition: none (installs `postgresql` when root and missing).
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<Postgres> {
  requireBinary(join(PG_BIN, 'postgres'), 'postgresql');
  const dir = serverDir('trailmark-pg-');
  const data = join(dir, 'data');
  const password = `pw-${Math.random().toString(36).slice(2)}-${process.pid}`;
  const pwfile = join(dir, 'pwfile');
  writeOwned(pwfile, password + '\n');
  const [icmd, iargs] = unprivileged(join(PG_BIN, 'initdb'), [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth=scram-sha-256',
    `--pwfile=${pwfile}`,
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
  ]);
  const init = spawnSync(icmd, iargs, { encoding: 'utf8', cwd: dir });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  rmSync(pwfile);
  // the port is taken by someone else between choosing and binding it now and then: start again on another
  const { port, child } = await onFreePort(async (port) => {
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: dir,
      max_connections: '200',
      fsync: 'off',
      ...opts.settings,
    };
    const [cmd, args] = unprivileged(join(PG_BIN, 'postgres'), [
      '-D',
      data,
      ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    ]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const kill = async () => {
      child.kill('SIGINT');
      await waitExit(child, 10_000);
    };
    try {
      await waitReady('postgres', port, child, () => stderr, kill, 30_000);
    } catch (e) {
      if (!addressInUse(e)) rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return { port, child };
  });
  const env = {
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(port),
    PGUSER: 'postgres',
    PGPASSWORD: password,
    PGDATABASE: 'postgres',
  };
  const stop = async () => {
    child.kill('SIGINT'); // fast shutdown
    await waitExit(child, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  const sql = (text: string, db = 'postgres') => {
    const r = spawnSync('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-d', db, '-c', text], {
      encoding: 'utf8',
      env,
    });
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    url: (db = 'postgres', user = 'postgres') => `postgres://${user}@127.0.0.1:${port}/${db}`,
    sql,
    env,
    dir,
    stop,
  };
}

export interface Pgbouncer {
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts a private pgbouncer (session pooling) in front of `pg`, with one user `user`/`password` it checks with
 * SCRAM and uses upstream too. Precondition: a running Postgres (installs `pgbouncer` when root and missing).
 */
export async function startPgbouncer(
  pg: Postgres,
  user: string,
  password: string,
  poolMode = 'session',
): Promise<Pgbouncer> {
  requireBinary('/usr/sbin/pgbouncer', 'pgbouncer');
  // the port is taken by someone else between choosing and binding it now and then: start again on another
  return onFreePort(async (port) => {
    const dir = serverDir('trailmark-pgb-');
    writeOwned(join(dir, 'users.txt'), `"${user}" "${password}"\n`);
    writeOwned(
      join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `* = host=127.0.0.1 port=${pg.port}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        `unix_socket_dir = ${dir}`,
        'auth_type = scram-sha-256',
        `auth_file = ${join(dir, 'users.txt')}`,
        `pool_mode = ${poolMode}`,
        'max_client_conn = 200',
        'default_pool_size = 50',
        `logfile = ${join(dir, 'pgbouncer.log')}`,
        '',
      ].join('\n'),
    );
    const [cmd, args] = unprivileged('/usr/sbin/pgbouncer', [join(dir, 'pgbouncer.ini')]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const stop = async () => {
      child.kill('SIGINT');
      await waitExit(child, 10_000);
      rmSync(dir, { recursive: true, force: true });
    };
    // pgbouncer may say why it did not start in its log file only
    const said = () =>
      stderr +
      (existsSync(join(dir, 'pgbouncer.log')) ? readFileSync(join(dir, 'pgbouncer.log'), 'utf8').slice(-4000) : '');
    await waitReady('pgbouncer', port, child, said, stop, 15_000);
    return { port, stop };
  });
}
