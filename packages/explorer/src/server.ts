/**
 * `trailmark explorer`: the indexer and the HTTP server of contract section 8 (search API, exports, stats,
 * streams, and the page). The explorer is not trusted: every answer carries the leaf indices and entries so
 * the page and `trailmark search` check them against the log itself.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { errorMessage, vkeyOf, type NoteVerifier, type Policy } from '@trailmark/tlog';
import { LogReader } from '@trailmark/client';
import { splitHostPort } from '@trailmark/node';
import {
  FilterError,
  MAX_LIMIT,
  encodeCursor,
  parseCursor,
  parseFilters,
  parseLimit,
  type Filters,
} from '@trailmark/client';
import { BUCKET_MS, IndexStore, type Bucket, type StoredEvent } from './store.js';
import { Indexer } from './indexer.js';
import { csvHeader, csvRow, eventJson, ocsfEvent } from '@trailmark/client';
import { streamView } from './streams.js';

/** Configuration of an explorer daemon: the log it follows, its keys, data directory and listen address. */
export interface ExplorerOptions {
  /** The log's base URL (the page fetches checkpoints and tiles from it directly). */
  log: string;
  logKey: NoteVerifier;
  policy?: Policy;
  /** The policy file's text, handed to the page (which checks the quorum with it). */
  policyText?: string;
  dataDir: string;
  /** HOST:PORT. Default 127.0.0.1:8070. */
  listen?: string;
  /** Poll interval for new checkpoints. Default 1 s. */
  intervalMs?: number;
  alert?: (line: string) => void;
  /** Notices (such as an index of an older format being rebuilt). Default: stderr. */
  notice?: (line: string) => void;
}

/** A started explorer: its URL, indexer and store, and close() to stop serving and indexing. */
export interface RunningExplorer {
  url: string;
  indexer: Indexer;
  store: IndexStore;
  close(): Promise<void>;
}

/** Where the page's bundle is (built by `npm ci` / the package's build into dist/page); from src/ or dist/ alike. */
const PAGE_DIR = fileURLToPath(new URL('../dist/page/', import.meta.url));
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

// the page talks to the log (another origin) and to this server only; entries are rendered as text
const CSP =
  "default-src 'self'; connect-src *; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'";

/** Starts the indexer and the server. Rejects when the data directory or the address cannot be used. */
export async function startExplorer(opts: ExplorerOptions): Promise<RunningExplorer> {
  const hp = splitHostPort(opts.listen ?? '127.0.0.1:8070');
  if (!hp) throw new Error(`--listen ${JSON.stringify(opts.listen)} is not HOST:PORT`);
  const listen = { host: hp.host ?? '127.0.0.1', port: hp.port };
  const reader = new LogReader(opts.log);
  const store = new IndexStore(opts.dataDir, opts.notice);
  const indexer = new Indexer({
    reader,
    logKey: opts.logKey,
    store,
    intervalMs: opts.intervalMs ?? 1000,
    ...(opts.policy ? { policy: opts.policy } : {}),
    ...(opts.alert ? { alert: opts.alert } : {}),
  });
  const api = new ExplorerApi(store, indexer, {
    log: reader.url,
    vkey: vkeyOf(opts.logKey),
    policy: opts.policyText ?? null,
  });
  const server = http.createServer((req, res) => {
    api.handle(req, res).catch((e) => {
      if (!res.headersSent) sendJson(res, 500, { error: errorMessage(e) });
      else res.destroy();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
  } catch (e) {
    store.close();
    throw e;
  }
  server.keepAliveTimeout = 5000;
  indexer.start();
  const a = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    indexer,
    store,
    close() {
      closed ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await indexer.stop();
        reader.close();
        store.close();
      })();
      return closed;
    },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Writes `s`, waiting for the socket to drain; false once the client has gone. */
async function write(res: ServerResponse, s: string): Promise<boolean> {
  if (res.destroyed) return false;
  if (!res.write(s)) {
    await new Promise<void>((r) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        r();
      };
      res.once('drain', done);
      res.once('close', done);
    });
  }
  return !res.destroyed;
}

class ExplorerApi {
  constructor(
    private readonly store: IndexStore,
    private readonly indexer: Indexer,
    private readonly info: { log: string; vkey: string; policy: string | null },
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://explorer');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendJson(res, 405, { error: `method ${req.method} not allowed` });
    try {
      switch (url.pathname) {
        case '/api/events':
          return this.events(url.searchParams, res);
        case '/api/events.ndjson':
          return await this.export(url.searchParams, res, 'application/x-ndjson', null, (e) => eventJson(e) + '\n');
        case '/api/events.csv':
          return await this.export(url.searchParams, res, 'text/csv; charset=utf-8', csvHeader(), csvRow);
        case '/api/events.ocsf.ndjson':
          return await this.export(url.searchParams, res, 'application/x-ndjson', null, (e) => {
            const o = ocsfEvent(e);
            return o ? JSON.stringify(o) + '\n' : '';
          });
        case '/api/stats':
          return this.stats(url.searchParams, res);
        case '/api/streams':
          return sendJson(res, 200, {
            streams: this.store.streams.streams().map(streamView),
            ...(this.store.streams.malformedEvents().length
              ? { malformed_stream_events: this.store.streams.malformedEvents() }
              : {}),
          });
        case '/api/info':
          return sendJson(res, 200, this.infoBody());
        case '/healthz': {
          const st = this.indexer.status;
          return sendJson(res, st.state === 'stopped' ? 503 : 200, { ok: st.state !== 'stopped', ...this.infoBody() });
        }
      }
    } catch (e) {
      if (e instanceof FilterError) return sendJson(res, 400, { error: e.message });
      throw e;
    }
    const page = PAGE_FILES[url.pathname];
    if (!page) return sendJson(res, 404, { error: `no such endpoint: ${url.pathname}` });
    let body: Buffer;
    try {
      body = await readFile(PAGE_DIR + page.file);
    } catch {
      return sendJson(res, 500, {
        error: `the page is not built (${page.file} missing in ${PAGE_DIR}); run npm ci or npm run build -w @trailmark/explorer`,
      });
    }
    res.writeHead(200, {
      'content-type': page.type,
      'content-length': body.length,
      'content-security-policy': CSP,
      'cache-control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private infoBody() {
    const st = this.indexer.status;
    return {
      log: this.info.log,
      key: this.info.vkey,
      policy: this.info.policy,
      tree_size: st.indexed,
      checkpoint_size: st.checkpointSize,
      state: st.state,
      alert: st.alert,
      last_read_error: st.lastReadError,
    };
  }

  private events(q: URLSearchParams, res: ServerResponse): void {
    const f = parseFilters(q);
    const limit = parseLimit(q);
    const before = parseCursor(q);
    // tree_size is read before the search: every event returned is below it
    const treeSize = this.indexer.status.indexed;
    const rows = this.store.search(f, limit, before);
    const next = rows.length === limit ? encodeCursor(rows[rows.length - 1].leaf_index) : null;
    const body = `{"tree_size":${treeSize},"events":[${rows.map(eventJson).join(',')}],"next":${next === null ? 'null' : JSON.stringify(next)}}`;
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(body);
  }

  /** Every match, newest first, in pages (each page one short read of the index), streamed with backpressure. */
  private async export(
    q: URLSearchParams,
    res: ServerResponse,
    type: string,
    header: string | null,
    line: (e: StoredEvent) => string,
  ): Promise<void> {
    const f: Filters = parseFilters(q);
    let before = parseCursor(q);
    res.writeHead(200, {
      'content-type': type,
      'cache-control': 'no-store',
      'x-trailmark-tree-size': String(this.indexer.status.indexed),
    });
    if (header !== null && !(await write(res, header))) return;
    for (;;) {
      const rows = this.store.search(f, MAX_LIMIT, before);
      if (rows.length > 0 && !(await write(res, rows.map(line).join('')))) return;
      if (rows.length < MAX_LIMIT) break;
      before = rows[rows.length - 1].leaf_index;
    }
    res.end();
  }

  private stats(q: URLSearchParams, res: ServerResponse): void {
    const f = parseFilters(q);
    const b = q.get('bucket') ?? 'hour';
    if (!(b in BUCKET_MS)) throw new FilterError(`bucket must be minute, hour or day, got ${JSON.stringify(b)}`);
    sendJson(res, 200, this.store.stats(f, b as Bucket));
  }
}
