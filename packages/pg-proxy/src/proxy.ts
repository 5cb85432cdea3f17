/**
 * `trailmark pg-proxy` (contract section 5b): a PostgreSQL wire-protocol proxy that authenticates proxy users
 * with SCRAM-SHA-256, logs in upstream with its own credentials, and records every statement on the access
 * trail (spool, shipper and log client shared with the HTTP proxy: @trailmark/proxy).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { hostname } from 'node:os';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { LogWriter, ReceiptError } from '@trailmark/client';
import { AccessTrail, ConfigError, parseListen, type TrailMode } from '@trailmark/recorder';
import { errorMessage, parseVkey, type NoteVerifier, errorCode } from '@trailmark/tlog';
import { PgRules, PgUsers } from './config.js';
import { PgTrail } from './events.js';
import { Session } from './session.js';
import { loginUpstream, parseUpstream, type UpstreamTarget } from './upstream.js';

/** Configuration of the PostgreSQL proxy: upstream logins, log, users and rules, spool, TLS and listen address. */
export interface PgProxyOptions {
  /** postgres://USER[:PASSWORD]@HOST:PORT/DB: the upstream and the proxy's own login there. */
  upstream: string;
  /** The upstream password (wins over one in the URL). */
  upstreamPassword?: string;
  /** Where read-only sessions log in (a role that can only read). */
  upstreamReadOnly?: string;
  /**
   * The read-only role's password when its URL has none. A password in that URL wins: the shared sources
   * (PGPASSWORD, --upstream-password-file) hold the main role's password, not the reader's.
   */
  upstreamReadOnlyPassword?: string;
  log: string;
  logKey: string | NoteVerifier;
  logToken?: string;
  /** The users file path, or loaded users. */
  users: string | PgUsers;
  rules?: string | PgRules;
  /** HOST:PORT (default 127.0.0.1:6432; port 0 picks one). */
  listen?: string;
  spoolDir: string;
  mode?: TrailMode;
  /** The events' `proxy` field (default: the host name). */
  name?: string;
  /** Record bound parameter values (default: only their number). */
  logParams?: boolean;
  /** TLS for clients (PEM file paths or contents). */
  tlsCert?: string | Buffer;
  tlsKey?: string | Buffer;
  /** Strict mode: how long to wait for the log (default 5 s). */
  strictDeadlineMs?: number;
  /** Log in upstream once at start, so a wrong password or an unreachable server fails fast (default true). */
  checkUpstream?: boolean;
  warn?: (line: string) => void;
}

/** A started PostgreSQL proxy: its address, trail and metrics registry, with settle() and close(). */
export interface RunningPgProxy {
  host: string;
  port: number;
  trail: AccessTrail;
  registry: Registry;
  /** Resolves once every event written so far is in the spool (response events may wait briefly to share a flush). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Spool mode: how long the shipper waits after a batch that was not full (the HTTP proxy's default is 100 ms). */
const SPOOL_LINGER_MS = 500;
/**
 * Spool mode: events per add-entries call (the shipper's default is 1,000). At a few thousand statements a
 * second 1,000 fills before the linger ends, so every batch was full and shipped at once: 4 to 8 calls a second,
 * each with its fixed cost in the proxy (receipt check, tiles) and in the log (sequencing, checkpoint).
 */
const SPOOL_BATCH = 4000;

function pem(v: string | Buffer, what: string): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return readFileSync(v);
  } catch (e) {
    throw new ConfigError('tls', `cannot read ${what} ${v}: ${errorCode(e) ?? errorMessage(e)}`, { cause: e });
  }
}

function withPassword(t: UpstreamTarget, password: string | undefined): UpstreamTarget {
  return password === undefined ? t : { ...t, password };
}

/**
 * Validates the configuration (users, rules, vkey, TLS files, the upstream login, the log key when the log
 * answers), opens the spool and listens. Like the HTTP proxy it starts while the log is down.
 * Precondition: opts as documented; throws ConfigError/PgProxyError/SpoolError with a clear message.
 */
export async function startPgProxy(opts: PgProxyOptions): Promise<RunningPgProxy> {
  const warn = opts.warn ?? ((l: string) => process.stderr.write(`trailmark pg-proxy: ${l}\n`));
  const mode = opts.mode ?? 'spool';
  if (mode !== 'spool' && mode !== 'strict')
    throw new ConfigError('mode', `--mode must be spool or strict, got ${JSON.stringify(mode)}`);
  const upstream = withPassword(parseUpstream(opts.upstream), opts.upstreamPassword);
  const readOnlyTarget = opts.upstreamReadOnly ? parseUpstream(opts.upstreamReadOnly, '--upstream-read-only') : null;
  const upstreamReadOnly =
    readOnlyTarget && !readOnlyTarget.password
      ? withPassword(readOnlyTarget, opts.upstreamReadOnlyPassword)
      : readOnlyTarget;
  const users = typeof opts.users === 'string' ? PgUsers.fromFile(opts.users) : opts.users;
  const rules =
    opts.rules === undefined ? null : typeof opts.rules === 'string' ? PgRules.fromFile(opts.rules) : opts.rules;
  let verifier: NoteVerifier;
  try {
    verifier = typeof opts.logKey === 'string' ? parseVkey(opts.logKey.trim()) : opts.logKey;
  } catch (e) {
    throw new ConfigError('log-key', `--log-key is not a valid vkey: ${errorMessage(e)}`, { cause: e });
  }
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined))
    throw new ConfigError('tls', '--tls-cert and --tls-key go together');
  let secureContext: tls.SecureContext | null = null;
  if (opts.tlsCert !== undefined && opts.tlsKey !== undefined) {
    try {
      secureContext = tls.createSecureContext({
        cert: pem(opts.tlsCert, '--tls-cert'),
        key: pem(opts.tlsKey, '--tls-key'),
      });
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError('tls', `--tls-cert/--tls-key are not a usable certificate and key: ${errorMessage(e)}`, {
        cause: e,
      });
    }
  }
  const listenAddr = parseListen(opts.listen ?? '127.0.0.1:6432');
  if (opts.checkUpstream !== false) {
    for (const t of upstreamReadOnly ? [upstream, upstreamReadOnly] : [upstream]) {
      const s = await loginUpstream(t, t.database, { application_name: 'trailmark-pg-proxy-check' });
      s.socket.end();
    }
  }
  const client = new LogWriter({ url: opts.log, vkey: verifier, ...(opts.logToken ? { token: opts.logToken } : {}) });
  try {
    await client.checkpoint({ attempts: 1, deadlineMs: 3000 });
  } catch (e) {
    if (e instanceof ReceiptError)
      throw new ConfigError('log-key', `the log at ${client.url} does not match --log-key: ${e.message}`);
    warn(
      `log not reachable at start (${errorMessage(e)}); ${mode === 'strict' ? 'statements get an error until it answers' : 'events wait in the spool'}`,
    );
  }
  const registry = new Registry();
  const trail = await AccessTrail.open({
    spoolDir: opts.spoolDir,
    log: client,
    mode,
    registry,
    // the stream's own events (start, heartbeat, end) carry the same proxy name as the session events
    proxy: opts.name ?? hostname(),
    onError: (e) => warn(`could not write a heartbeat: ${e.message}`),
    ...(opts.strictDeadlineMs !== undefined ? { strictDeadlineMs: opts.strictDeadlineMs } : {}),
    shipper: {
      // spool mode: every batch costs the proxy and the log a fixed amount (an add-entries call, the receipts'
      // tiles, a checkpoint, the ack); nobody waits for delivery, so fewer, larger batches (strict mode waits
      // for each event's receipt and keeps the trail's no-linger setting)
      ...(mode === 'spool' ? { lingerMs: SPOOL_LINGER_MS, batchSize: SPOOL_BATCH } : {}),
      onError: (e) => warn(`delivery to the log failed, will retry: ${e.message}`),
    },
  });
  const sessions = new Set<Session>();
  const pgTrail = new PgTrail(trail, warn);
  const cfg = {
    proxy: opts.name ?? hostname(),
    users,
    rules,
    upstream,
    upstreamReadOnly,
    trail: pgTrail,
    logParams: opts.logParams === true,
    tls: secureContext,
    mockSecret: randomBytes(32),
    warn,
    sessions,
  };
  const server = net.createServer((sock) => new Session(sock, cfg));
  let addr: net.AddressInfo;
  try {
    addr = await new Promise<net.AddressInfo>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new ConfigError('listen', `cannot listen on ${listenAddr.host}:${listenAddr.port}: ${e.code ?? e.message}`),
        ),
      );
      server.listen(listenAddr.port, listenAddr.host, () => resolve(server.address() as net.AddressInfo));
    });
  } catch (e) {
    await trail.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    host: addr.address,
    port: addr.port,
    trail,
    registry,
    settle: () => pgTrail.settle(),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        for (const s of [...sessions]) s.close('proxy shutting down');
        await closed;
        await pgTrail.settle();
        await trail.close();
      })();
      return closing;
    },
  };
}
