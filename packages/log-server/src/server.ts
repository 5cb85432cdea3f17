/** startLogServer: the log as a library call (the CLI's `trailmark serve` is a thin wrapper). */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { answerClientError, sha256, splitHostPort } from '@trailmark/node';
import { ConfigError, HttpError, LogServerError, LogStateError } from './errors.js';
import { logApiRoutes, opsApp, type ApiContext } from './http.js';
import { generateLogKey, parseLogKey, writeLogKey, type LogKey } from './keys.js';
import { silentLogger, type Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { Sequencer } from './sequencer.js';
import { CanonPool } from './canon-pool.js';
import { BodyBudget, capConnections, defaultMaxConnections } from './limits.js';
import { LogStore } from './storage.js';
import type { LogStorage } from './log-storage.js';
import { PgStore } from './pg-store.js';
import type { Witnessing } from './witness-hook.js';
import { createWitnessing, loadWitnessPolicy } from './witnessing.js';
import { errorMessage } from '@trailmark/tlog';

/**
 * Configuration of a log server: data directory or PostgreSQL store, key, listen address, tokens, limits and
 * witnessing.
 */
export interface LogServerOptions {
  /** Data directory: the LevelDB lives in DIR/db; the key defaults to DIR/log.key. */
  dataDir: string;
  /**
   * A PostgreSQL URL (contract section 9): the log lives in that database instead of DIR/db, shared by every
   * frontend started on it with the same key. DIR still holds the default key file.
   */
  store?: string;
  /** Private key file; when omitted DIR/log.key (created on first start, named `origin`). */
  keyFile?: string;
  /** Key name for a newly created key; when given it must equal the key's name. */
  origin?: string;
  /**
   * Create a new log for an existing key file on a data directory that holds no log (`serve --create`).
   * Without it that start is refused: it would publish a second history under the same key.
   */
  create?: boolean;
  /** HOST:PORT, default 127.0.0.1:0 (an ephemeral port). */
  listen?: string;
  /** Bearer tokens accepted by the write API; undefined or empty = writes are open. */
  submitTokens?: string[];
  /** A tlog-policy file: witnesses cosign, and /checkpoint serves the newest checkpoint meeting the quorum. */
  policyFile?: string;
  logger?: Logger;
  /** Most entries waiting for a commit before 503s (default 200,000). */
  maxQueuedEntries?: number;
  /** Most entries per group commit (default 8,000). */
  maxBatchEntries?: number;
  /** Full tiles cached whole (~12 KiB each; default 4,096). */
  tileCacheTiles?: number;
  /** Full tiles whose upper Merkle nodes are cached (2 KiB each; default 32,768). */
  upperCacheTiles?: number;
  /** Worker threads preparing large add-entries bodies (default 1; 0 = on the main thread). */
  canonWorkers?: number;
  /** Most open connections (default: from the open-file limit, see limits.ts). */
  maxConnections?: number;
  /** Request-body memory all requests together may hold (default 64 MiB). */
  bodyBudgetBytes?: number;
}

/** A started log server: its URL, vkey and origin, and close(). */
export interface LogServer {
  url: string;
  vkey: string;
  origin: string;
  /** Stops accepting, commits what was accepted, closes the database. Idempotent. */
  close(): Promise<void>;
}

/**
 * Reads a submit-tokens file: one bearer token a line, blank lines and `#` comments ignored.
 * Precondition: none; throws ConfigError('submit-tokens') when it cannot be read, lists no token, or a token has spaces.
 */
export function readSubmitTokens(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError('submit-tokens', `cannot read submit tokens ${file}: ${errorMessage(e)}`, { cause: e });
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  for (const t of tokens)
    if (/\s/.test(t))
      throw new ConfigError('submit-tokens', `submit tokens file ${file}: a token may not contain spaces`);
  if (tokens.length === 0) throw new ConfigError('submit-tokens', `submit tokens file ${file} lists no token`);
  return tokens;
}

/** Parses HOST:PORT ("[::1]:8080" for IPv6). Precondition: none; throws ConfigError('listen') on a malformed value. */
export function parseListen(listen: string): { host: string; port: number } {
  const hp = splitHostPort(listen);
  if (!hp || hp.host === undefined)
    throw new ConfigError('listen', `--listen must be HOST:PORT (port 0-65535), got ${JSON.stringify(listen)}`);
  return { host: hp.host, port: hp.port };
}

/** Whether `host` only ever reaches this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * The process holding LevelDB's lock on `lockFile`, if any (Linux: /proc/locks lists POSIX locks by device
 * and inode). Checked before opening: LevelDB rotates its LOG file before it finds the lock taken, so a
 * refused start would otherwise still change the directory.
 */
function lockHolder(lockFile: string): number | undefined {
  let st;
  let locks: string;
  try {
    st = statSync(lockFile);
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  // the kernel prints MAJOR:MINOR:INODE, major and minor in hex
  const major = Math.floor(st.dev / 256) & 0xfff;
  const minor = (st.dev & 0xff) | (Math.floor(st.dev / 4096) & 0xfff00);
  for (const line of locks.split('\n')) {
    const f = line.trim().split(/\s+/);
    const id = f.find((x) => /^[0-9a-f]+:[0-9a-f]+:[0-9]+$/.test(x));
    if (!id) continue;
    const [ma, mi, ino] = id.split(':');
    if (parseInt(ma, 16) === major && parseInt(mi, 16) === minor && Number(ino) === st.ino) return Number(f[4]) || -1;
  }
  return undefined;
}

/** What a start created on disk, removed again when the start fails so that it leaves nothing behind. */
class Created {
  private readonly paths: string[] = [];
  /** Creates `dir` and the missing directories above it, remembering the topmost one made. */
  mkdir(dir: string): void {
    let top = resolve(dir);
    if (existsSync(top)) return;
    while (!existsSync(dirname(top))) top = dirname(top);
    mkdirSync(dir, { recursive: true });
    this.paths.push(top);
  }
  add(paths: string[]): void {
    this.paths.push(...paths);
  }
  undo(): void {
    for (const p of this.paths.reverse()) rmSync(p, { recursive: true, force: true });
  }
}

/**
 * Opens (or creates) the log in opts.dataDir and serves it. Everything that can be checked is checked and the
 * port is bound before anything is created on disk; a start that fails removes what it created, so it leaves
 * the data directory and key files as they were (contract section 3). Rejects with a LogServerError (LogStateError or ConfigError) naming why.
 */
export async function startLogServer(opts: LogServerOptions): Promise<LogServer> {
  const logger = opts.logger ?? silentLogger;
  const { host, port } = parseListen(opts.listen ?? '127.0.0.1:0');
  const keyFile = opts.keyFile ?? join(opts.dataDir, 'log.key');
  const dbDir = join(opts.dataDir, 'db');

  // the key: an existing one is read; a new one stays in memory until everything else has worked
  const keyExists = existsSync(keyFile);
  let newKey: ReturnType<typeof generateLogKey> | undefined;
  let key: LogKey;
  if (keyExists) {
    let text: string;
    try {
      text = readFileSync(keyFile, 'utf8');
    } catch (e) {
      throw new LogStateError('key-read', `cannot read log key ${keyFile}: ${errorMessage(e)}`, { cause: e });
    }
    key = parseLogKey(text, keyFile, opts.origin);
  } else {
    newKey = generateLogKey(opts.origin);
    key = parseLogKey(newKey.privateKey, keyFile, opts.origin);
  }

  const pgUrl = opts.store;
  const hasLog = pgUrl ? (await PgStore.inspect(pgUrl)).hasLog : existsSync(join(dbDir, 'CURRENT'));
  const where = pgUrl ? 'store' : 'data directory';
  if (!hasLog && keyExists && !opts.create) {
    throw new LogStateError(
      'no-log',
      `the ${where} ${pgUrl ? '' : opts.dataDir + ' '}holds no log, but the key ${keyFile} already exists: serving that key on a new ${where} would publish a second history under the same key (is the ${pgUrl ? '--store URL' : '--data path'} mistyped?). To start a new log for this key, pass --create`,
    );
  }
  if (hasLog && !keyExists) {
    throw new LogStateError(
      'key-missing',
      `the ${where} ${pgUrl ? '' : opts.dataDir + ' '}holds a log, but its key ${keyFile} does not exist; pass the log's key with --key`,
    );
  }
  if (hasLog && !pgUrl) {
    const holder = lockHolder(join(dbDir, 'LOCK'));
    if (holder !== undefined)
      throw new LogStateError(
        'locked',
        `the log database in ${dbDir} is in use by another process${holder > 0 ? ` (pid ${holder})` : ''}`,
      );
  }
  if (opts.policyFile !== undefined) await loadWitnessPolicy(opts.policyFile, key.origin, key.vkey);
  if (!isLoopback(host) && !(opts.submitTokens && opts.submitTokens.length > 0)) {
    logger.warn(
      'the write API is open: the log listens beyond loopback without submit tokens, so anyone who reaches it can append entries; pass --submit-tokens',
      { listen: `${host}:${port}` },
    );
  }

  // the port next: a port in use must fail before anything exists on disk; until the log is open it answers 503
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'cache-control': 'no-store' });
    res.end('{"error":"the log is starting"}');
  };
  // slow and silent clients: headers within 10 s, the whole request within 60 s, no 20 s without a byte
  // either way, checked every second (node's default is every 30 s)
  const server: Server = createServer(
    { connectionsCheckingInterval: 1000, headersTimeout: 10_000, requestTimeout: 60_000 },
    (req, res) => handler(req, res),
  );
  server.keepAliveTimeout = 65_000;
  server.setTimeout(20_000);
  // a request too slow or one node cannot parse gets a JSON error like every other (node's own has no body)
  server.on('clientError', answerClientError);
  // metrics exist only once the store is open; connections refused before then are not counted
  let onConnectionClosed: (reason: 'dropped' | 'silent') => void = () => {};
  capConnections(server, opts.maxConnections ?? defaultMaxConnections(), (reason) => onConnectionClosed(reason));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    throw new ConfigError('listen', `cannot listen on ${host}:${port}: ${errorMessage(e)}`, { cause: e });
  }

  const created = new Created();
  let store: LogStorage;
  try {
    const cache = { logger, tileCacheTiles: opts.tileCacheTiles, upperCacheTiles: opts.upperCacheTiles };
    if (pgUrl) {
      if (newKey) {
        created.mkdir(dirname(keyFile));
        created.add(writeLogKey(keyFile, newKey));
      }
      // the frontend's own state (the witnessed checkpoint it serves at once after a restart) lives in DIR
      if (opts.policyFile !== undefined) created.mkdir(opts.dataDir);
      store = await PgStore.open(pgUrl, key, cache);
    } else {
      created.mkdir(opts.dataDir);
      if (newKey) created.add(writeLogKey(keyFile, newKey));
      if (!existsSync(dbDir)) created.add([dbDir]);
      store = await LogStore.open(dbDir, key, cache);
    }
  } catch (e) {
    server.close();
    created.undo();
    if (e instanceof LogServerError) throw e;
    throw new LogStateError('data-dir', `cannot create the log in ${opts.dataDir}: ${errorMessage(e)}`, { cause: e });
  }
  const fail = async (e: unknown): Promise<never> => {
    server.close();
    await store.close();
    created.undo();
    throw e;
  };

  let witnessing: Witnessing | undefined;
  let closing = false;
  let sequencer!: Sequencer;
  const bodies = new BodyBudget(opts.bodyBudgetBytes);
  const metrics = createMetrics(
    () => sequencer.depth,
    () => store.size,
    () => bodies.used,
  );
  onConnectionClosed = (reason) => metrics.connectionsClosed.inc({ reason });
  sequencer = new Sequencer(store, {
    maxQueuedEntries: opts.maxQueuedEntries,
    maxBatchEntries: opts.maxBatchEntries,
    onCommit: (c) => {
      metrics.entries.inc(c.added);
      metrics.duplicates.inc(c.entries - c.added);
      metrics.batchEntries.observe(c.entries);
      metrics.commitSeconds.observe(c.seconds);
      if (witnessing && c.added > 0) witnessing.onCheckpoint(c.tree.checkpoint, BigInt(c.tree.size));
    },
  });

  try {
    if (opts.policyFile !== undefined) {
      witnessing = await createWitnessing({
        policyFile: opts.policyFile,
        dataDir: opts.dataDir,
        origin: key.origin,
        vkey: key.vkey,
        logger,
        latest: () => ({ size: BigInt(store.tree.size), root: store.tree.root, checkpoint: store.tree.checkpoint }),
        consistencyProof: (a, b) => {
          if (a > b || b > BigInt(store.size))
            throw new HttpError(400, `no consistency proof from ${a} to ${b} in a tree of ${store.size}`);
          return store.consistencyProof(Number(a), Number(b));
        },
        refresh: store instanceof PgStore ? () => store.refresh() : undefined,
      });
    }
  } catch (e) {
    await fail(e);
  }

  const tokenHashes =
    opts.submitTokens && opts.submitTokens.length > 0
      ? opts.submitTokens.map((t) => sha256(Buffer.from(t, 'utf8')))
      : undefined;
  const canon = new CanonPool(opts.canonWorkers ?? 1);
  const ctx: ApiContext = {
    store,
    canon,
    bodies,
    sequencer,
    metrics,
    logger,
    tokenHashes,
    checkpoint: () => (witnessing ? witnessing.checkpoint() : store.tree.checkpoint),
    healthy: () => {
      if (store.failed) return { ok: false, reason: `storage failure: ${store.failed.message}` };
      if (closing) return { ok: false, reason: 'shutting down' };
      return { ok: true };
    },
  };
  const api = logApiRoutes(ctx);
  const ops = opsApp(ctx);
  handler = (req, res) => {
    if (!api(req, res)) ops(req, res);
  };
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  logger.info('log serving', { url, origin: key.origin, vkey: key.vkey, tree_size: store.size });

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      closing = true;
      logger.info('log shutting down', { tree_size: store.size, queued: sequencer.depth });
      const stopped = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      await sequencer.drain();
      // answers to drained submissions are being written; give them a moment, then cut what is left
      const timer = setTimeout(() => server.closeAllConnections(), 2000);
      const idle = setInterval(() => server.closeIdleConnections(), 50);
      await stopped;
      clearTimeout(timer);
      clearInterval(idle);
      await witnessing?.close();
      await canon.close();
      await store.close();
      logger.info('log stopped', { tree_size: store.size });
    })();
    return closed;
  };
  return { url, vkey: key.vkey, origin: key.origin, close };
}
