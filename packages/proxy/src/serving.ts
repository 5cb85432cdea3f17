/**
 * What every recording daemon of this package shares (the access proxy, forward-auth, and their worker
 * processes): checking the common options, opening the trail, listening, the admin server (/healthz, /metrics).
 */
import http, { type ServerResponse } from 'node:http';
import type net from 'node:net';
import { hostname } from 'node:os';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { errorMessage, parseVkey, type NoteVerifier } from '@trailmark/tlog';
import { Rules, TokenStore } from './auth.js';
import { ConfigError } from './errors.js';
import { DEFAULT_REDACT_QUERY, type GateOptions } from './gate.js';
import { LogWriter, ReceiptError } from '@trailmark/client';
import { lingerIfBodyUnread } from '@trailmark/node';
import { AccessTrail, type TrailMode } from '@trailmark/recorder';

/** The options every recording daemon takes (contract section 5). */
export interface RecorderOptions {
  /** Log URL. */
  log: string;
  /** The log's vkey, as text or parsed. */
  logKey: string | NoteVerifier;
  logToken?: string;
  /** Tokens: a file path or a loaded store. */
  tokens: string | TokenStore;
  /** Optional rules: a file path or loaded rules. */
  rules?: string | Rules;
  spoolDir: string;
  mode?: TrailMode;
  /** The event's `proxy` field (default: the host name). */
  name?: string;
  redactHeaders?: string[];
  redactQuery?: string[];
  /** HOST:PORT of the admin server (/healthz, /metrics). */
  adminListen?: string;
  /** Strict mode: how long to wait for the log (default 5 s). */
  strictDeadlineMs?: number;
  /** Where warnings go (default stderr). */
  warn?: (line: string) => void;
  /** The stream key file (default: stream.key in the spool directory, created on first start). */
  streamKey?: string;
  /** Milliseconds between the stream's signed heartbeats (default 30 s). */
  heartbeatMs?: number;
  /** false: no stream fields (for measuring their cost only; see AccessTrailOptions.streams). */
  streams?: boolean;
}

/** The checked options: everything that can be wrong in them is reported before any file or port is touched. */
export interface Recorder {
  mode: TrailMode;
  client: LogWriter;
  /** The gate's options; `target` is filled in by each daemon. */
  gate: Omit<GateOptions, 'target'>;
  warn: (line: string) => void;
}

/** Checks mode, tokens, rules and the log key. Precondition: none; throws ConfigError saying what is wrong. */
export function checkRecorder(opts: RecorderOptions, daemon: string): Recorder {
  const warn = opts.warn ?? ((l: string) => process.stderr.write(`trailmark ${daemon}: ${l}\n`));
  const mode = opts.mode ?? 'spool';
  if (mode !== 'spool' && mode !== 'strict')
    throw new ConfigError('mode', `--mode must be spool or strict, got ${JSON.stringify(mode)}`);
  const tokens = typeof opts.tokens === 'string' ? TokenStore.fromFile(opts.tokens) : opts.tokens;
  const rules = typeof opts.rules === 'string' ? Rules.fromFile(opts.rules) : opts.rules;
  let verifier: NoteVerifier;
  try {
    verifier = typeof opts.logKey === 'string' ? parseVkey(opts.logKey.trim()) : opts.logKey;
  } catch (e) {
    throw new ConfigError('log-key', `--log-key is not a valid vkey: ${errorMessage(e)}`, { cause: e });
  }
  const client = new LogWriter({ url: opts.log, vkey: verifier, ...(opts.logToken ? { token: opts.logToken } : {}) });
  return {
    mode,
    client,
    warn,
    gate: {
      tokens,
      ...(rules ? { rules } : {}),
      proxy: opts.name ?? hostname(),
      redactQuery: new Set([...DEFAULT_REDACT_QUERY, ...(opts.redactQuery ?? [])].map((n) => n.toLowerCase())),
      redactHeaders: new Set((opts.redactHeaders ?? []).map((n) => n.toLowerCase())),
    },
  };
}

/**
 * Checks that the log's key matches (a log that answers with another key is a configuration error; one that
 * does not answer is only a warning), then opens the spool and starts the shipper.
 * Precondition: r from checkRecorder; throws ConfigError or SpoolError.
 */
export async function openTrail(
  r: Recorder,
  opts: RecorderOptions,
  /** false for a daemon that writes request events only (forward-auth): a crash leaves no response owed. */
  trackResponses = true,
): Promise<{ trail: AccessTrail; registry: Registry }> {
  let reachable = true;
  try {
    await r.client.checkpoint({ attempts: 1, deadlineMs: 3000 });
  } catch (e) {
    if (e instanceof ReceiptError)
      throw new ConfigError('log-key', `the log at ${r.client.url} does not match --log-key: ${e.message}`);
    reachable = false;
    r.warn(
      `log not reachable at start (${errorMessage(e)}); ${r.mode === 'strict' ? 'requests get 503 until it answers' : 'events wait in the spool'}`,
    );
  }
  if (reachable) {
    // a log that refuses our token would leave every event in the spool, retried forever: a configuration error
    const access = await r.client.checkWriteAccess();
    if (access.access === 'refused') {
      throw new ConfigError(
        'log-token',
        `the log at ${r.client.url} refuses ${opts.logToken ? 'the log token' : 'writes without a log token (give --log-token-file FILE or TRAILMARK_LOG_TOKEN)'}: ${access.detail}`,
      );
    }
  }
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const trail = await AccessTrail.open({
    spoolDir: opts.spoolDir,
    log: r.client,
    mode: r.mode,
    registry,
    proxy: r.gate.proxy,
    trackResponses,
    ...(opts.streamKey !== undefined ? { streamKey: opts.streamKey } : {}),
    ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}),
    ...(opts.streams === false ? { streams: false } : {}),
    onError: (e) => r.warn(`could not write a heartbeat: ${e.message}`),
    ...(opts.strictDeadlineMs !== undefined ? { strictDeadlineMs: opts.strictDeadlineMs } : {}),
    shipper: { onError: (e) => r.warn(`delivery to the log failed, will retry: ${e.message}`) },
  });
  return { trail, registry };
}

export { parseListen } from '@trailmark/recorder';

/** Listens; resolves with the server's URL. Precondition: server not listening; throws ConfigError. */
export function listen(server: http.Server, addr: { host: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new ConfigError('listen', `cannot listen on ${addr.host}:${addr.port}: ${e.code ?? e.message}`)),
    );
    server.listen(addr.port, addr.host, () => {
      const a = server.address() as net.AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`http://${host}:${a.port}`);
    });
  });
}

/** Stops accepting, closes idle keep-alive connections at once and the rest after 2 s. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  });
}

/** Answers with a JSON body; returns the body's length in bytes (for the response event). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): number {
  const data = JSON.stringify(body);
  const n = Buffer.byteLength(data);
  // a refusal before the body was read (401, 403, 503) closes without resetting a client still sending it
  if (status >= 400) lingerIfBodyUnread(res);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': n, ...headers });
  res.end(data);
  return n;
}

/** What /healthz reports for one trail (numbers add up across workers). */
export interface TrailHealth {
  ok: boolean;
  mode: TrailMode;
  spool_depth: number;
  /** Spools an earlier run with another number of workers left, not delivered yet (see workers.ts). */
  leftover_spools: number;
  oldest_undelivered_age_seconds: number;
  delivered: number;
  failed_deliveries: number;
  receipt_failures: number;
  last_error: string | null;
  /** This trail's stream (null without streams). */
  stream: { id: string; next_seq: number; open_requests: number } | null;
}

/** The health of one trail. Precondition: the trail is open. */
export function trailHealth(trail: AccessTrail): TrailHealth {
  const t = trail.spool.oldestTime;
  return {
    ok: true,
    mode: trail.mode,
    spool_depth: trail.spool.depth,
    leftover_spools: 0,
    oldest_undelivered_age_seconds: t === null ? 0 : (Date.now() - t) / 1000,
    delivered: trail.shipper.stats.delivered,
    failed_deliveries: trail.shipper.stats.failedBatches,
    receipt_failures: trail.client.stats.receiptFailures,
    last_error: trail.shipper.stats.lastError,
    stream: trail.stream
      ? { id: trail.stream.id, next_seq: trail.stream.next.seq, open_requests: trail.stream.openRequests }
      : null,
  };
}

/**
 * The admin server: GET /healthz (JSON from `health`) and /metrics (Prometheus text from `metrics`).
 * Precondition: addr parsed by parseListen; throws ConfigError when it cannot listen.
 */
export async function startAdmin(
  addr: { host: string; port: number },
  health: () => Promise<object> | object,
  metrics: () => Promise<{ contentType: string; text: string }>,
): Promise<{ server: http.Server; url: string }> {
  const fail = (res: ServerResponse, e: Error) => {
    if (!res.headersSent) sendJson(res, 500, { error: e.message });
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return void sendJson(res, 405, { error: 'method not allowed' });
    if (path === '/healthz') {
      Promise.resolve()
        .then(health)
        .then(
          (h) => sendJson(res, 200, h as Record<string, unknown>),
          (e: Error) => fail(res, e),
        );
      return;
    }
    if (path === '/metrics') {
      metrics().then(
        ({ contentType, text }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(text);
        },
        (e: Error) => fail(res, e),
      );
      return;
    }
    sendJson(res, 404, { error: 'not found' });
  });
  return { server, url: await listen(server, addr) };
}

/** /metrics from one registry. */
export function registryMetrics(registry: Registry): () => Promise<{ contentType: string; text: string }> {
  return async () => ({ contentType: registry.contentType, text: await registry.metrics() });
}

/** A recording daemon that is up: its URLs, its trail, and how to stop it. */
export interface RunningRecorder {
  url: string;
  adminUrl: string | null;
  /** The stream key's vkey and the stream's id (null with `streams: false`). */
  streamKey: string | null;
  streamId: string | null;
  trail: AccessTrail;
  registry: Registry;
  close(): Promise<void>;
}

/**
 * Listens with `server` (and the admin server when asked); close() stops both, calls `release`, then closes
 * the trail. If listening fails, the trail is closed and the error thrown. Precondition: the trail is open.
 */
export async function serveTrail(
  server: http.Server,
  listenAddr: { host: string; port: number },
  adminAddr: { host: string; port: number } | null,
  trail: AccessTrail,
  registry: Registry,
  release: () => void = () => {},
): Promise<RunningRecorder> {
  let admin: http.Server | null = null;
  let url: string;
  let adminUrl: string | null = null;
  try {
    url = await listen(server, listenAddr);
    if (adminAddr) {
      const a = await startAdmin(adminAddr, () => trailHealth(trail), registryMetrics(registry));
      admin = a.server;
      adminUrl = a.url;
    }
  } catch (e) {
    server.close();
    release();
    await trail.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    url,
    adminUrl,
    streamKey: trail.stream?.vkey ?? null,
    streamId: trail.stream?.id ?? null,
    trail,
    registry,
    close() {
      closing ??= (async () => {
        await closeServer(server);
        if (admin) await closeServer(admin);
        release();
        await trail.close();
      })();
      return closing;
    },
  };
}
