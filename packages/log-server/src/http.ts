/**
 * The HTTP API (contract section 3). The contract's endpoints, reads and writes, are answered by a small
 * dispatcher on node:http ahead of express: measured on this machine, express's router alone caps a trivial
 * POST handler at about a third of bare node:http and its JSON body parser at about an eighth, below the
 * targets for add-entry and proofs. /healthz, /metrics and every other path (404/405 with JSON errors) go
 * through express 5.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errorMessage, formatTlogProof, MAX_U64, parseTilePath } from '@trailmark/tlog';
import { HttpError, UnavailableError } from './errors.js';
import type { Logger } from './logger.js';
import type { LogMetrics } from './metrics.js';
import type { Sequencer } from './sequencer.js';
import { lingerIfBodyUnread, sha256 } from '@trailmark/node';
import {
  canonicalEntrySized,
  MAX_BATCH_BODY_BYTES,
  MAX_ENTRY_BODY_BYTES,
  leafOf,
  prepareEntry,
  type BodyKind,
} from './canon.js';
import type { BodyBudget } from './limits.js';
import { asHttp, type CanonPool } from './canon-pool.js';
import type { Leaf, LogStorage, SignedTree } from './log-storage.js';
import { InclusionBodies, inclusionBody } from './proofbody.js';

/** The largest add-entries (and k8s-audit) body. */
export const MAX_BODY_BYTES = MAX_BATCH_BODY_BYTES;
/** get-entries answers at most this many entries (RFC 6962 lets the server return fewer). */
export const MAX_GET_ENTRIES = 1000;

const IMMUTABLE = 'public, max-age=31536000, immutable';
const MUTABLE = 'no-cache';

/** What the HTTP API serves from: store, sequencer, metrics, logger, write tokens, body preparation and limits. */
export interface ApiContext {
  store: LogStorage;
  sequencer: Sequencer;
  metrics: LogMetrics;
  logger: Logger;
  /** SHA-256 of each accepted submit token; undefined = writes are open. */
  tokenHashes?: Buffer[];
  /** Prepares add-entries bodies (in a worker thread when large). */
  canon: CanonPool;
  /** Request-body memory of all requests together. */
  bodies: BodyBudget;
  /** The checkpoint /checkpoint serves (the witnessed one when a policy is set); undefined = none yet. */
  checkpoint(): string | undefined;
  healthy(): { ok: boolean; reason?: string };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** sendJson of a body already serialized. */
function sendJsonText(res: ServerResponse, status: number, data: string, headers: Record<string, string>): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
    'cache-control': MUTABLE,
    ...headers,
  });
  res.end(data);
}

/** Read answers may be read by any web page: the log is public, and pages verify it themselves. */
const ACAO = 'access-control-allow-origin';
const CORS = { [ACAO]: '*' };

/** A 200 JSON read answer whose body is already serialized; the header list avoids per-request object handling. */
function sendRaw(res: ServerResponse, data: string): void {
  res.writeHead(200, [
    'content-type',
    'application/json',
    'content-length',
    String(Buffer.byteLength(data)),
    'cache-control',
    MUTABLE,
    ACAO,
    '*',
  ]);
  res.end(data);
}

function sendError(res: ServerResponse, e: unknown, logger: Logger): number {
  if (res.headersSent) {
    res.destroy();
    return 500;
  }
  // an answer before the whole body (413, 503, 401) closes without resetting a client that is still sending
  lingerIfBodyUnread(res);
  if (e instanceof HttpError) {
    // messages quote client input (a JSON path, a value): keep them readable
    const error = e.message.length > 400 ? e.message.slice(0, 400) + '…' : e.message;
    sendJson(res, e.status, { error }, { 'cache-control': 'no-store', ...e.headers });
    return e.status;
  }
  logger.error('internal error', { error: e, stack: e instanceof Error ? e.stack : undefined });
  sendJson(res, 500, { error: 'internal error' }, { 'cache-control': 'no-store' });
  return 500;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
/** `leaf_index=N&tree_size=M` in either order, numbers below 10^15 (exact doubles); anything else takes URLSearchParams. */
const PROOF_QUERY = /^(leaf_index|tree_size)=(0|[1-9][0-9]{0,14})&(leaf_index|tree_size)=(0|[1-9][0-9]{0,14})$/;

/** A required uint64 query parameter, as a checked number. Throws HttpError 400 / 404 (beyond `limit`). */
function u64Param(params: URLSearchParams, name: string): bigint {
  const all = params.getAll(name);
  if (all.length === 0) throw new HttpError(400, `missing query parameter ${name}`);
  if (all.length > 1) throw new HttpError(400, `query parameter ${name} given ${all.length} times`);
  const v = all[0];
  if (!DECIMAL.test(v))
    throw new HttpError(400, `${name} must be a non-negative decimal integer, got ${JSON.stringify(v.slice(0, 40))}`);
  const b = BigInt(v);
  if (b > MAX_U64) throw new HttpError(400, `${name} ${v} exceeds 2^64-1`);
  return b;
}

function treeSizeParam(params: URLSearchParams, name: string, size: number): number {
  const s = u64Param(params, name);
  if (s > BigInt(size)) throw new HttpError(404, `${name} ${s} is beyond the log's current size ${size}`);
  return Number(s);
}

function indexParam(params: URLSearchParams, name: string, treeSize: number): number {
  const i = u64Param(params, name);
  if (i >= BigInt(treeSize)) throw new HttpError(404, `${name} ${i} is not in the tree of size ${treeSize}`);
  return Number(i);
}

function b64(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('base64');
}

/**
 * The add-entries answer, {"tree_size","checkpoint","entries":[{"leaf_index","leaf_hash"}, ...]}, written out
 * directly: JSON.stringify of an object per entry cost more than checking the entry. Every value is a number,
 * a base64 string or (checkpoint) quoted by JSON.stringify, so the text is what JSON.stringify would give.
 */
function entriesAnswer(tree: SignedTree, indices: readonly number[], leaves: readonly Leaf[]): string {
  const parts = new Array<string>(leaves.length);
  for (let i = 0; i < leaves.length; i++)
    parts[i] = `{"leaf_index":${indices[i]},"leaf_hash":"${b64(leaves[i].hash)}"}`;
  return `{"tree_size":${tree.size},"checkpoint":${JSON.stringify(tree.checkpoint)},"entries":[${parts.join(',')}]}`;
}

function strictB64Hash(s: string | null, name: string): Buffer {
  if (s === null) throw new HttpError(400, `missing query parameter ${name}`);
  if (!/^[A-Za-z0-9+/]{43}=$/.test(s))
    throw new HttpError(400, `${name} must be a 32-byte hash in standard padded base64`);
  const b = Buffer.from(s, 'base64');
  if (b.length !== 32 || b.toString('base64') !== s)
    throw new HttpError(400, `${name} must be a 32-byte hash in canonical base64`);
  return b;
}

/**
 * get-proof-by-index's [leaf_index, tree_size]. The plain two-parameter form is read with one regex; anything
 * else (and anything out of range) goes through URLSearchParams and its checks. Throws HttpError 400 / 404.
 */
function proofQuery(q: string, durable: number): [number, number] {
  const m = PROOF_QUERY.exec(q);
  if (m !== null && m[1] !== m[3]) {
    const swap = m[1] === 'tree_size';
    const size = Number(m[swap ? 2 : 4]);
    const idx = Number(m[swap ? 4 : 2]);
    if (size <= durable && idx < size) return [idx, size];
  }
  const p = new URLSearchParams(q);
  const size = treeSizeParam(p, 'tree_size', durable);
  return [indexParam(p, 'leaf_index', size), size];
}

/** Counts a request; the labelled children are cached, since labelling costs more than the increment. */
function requestCounter(metrics: LogMetrics): (route: string, status: number) => void {
  const children = new Map<string, { inc(): void }>();
  return (route, status) => {
    const key = `${status} ${route}`;
    let c = children.get(key);
    if (!c) children.set(key, (c = metrics.requests.labels({ route, status: String(status) })));
    c.inc();
  };
}

/** `query`: the text after '?' ('' when none). */
type ReadHandler = (query: string, res: ServerResponse) => Promise<void> | void;
type WriteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * Reads a request body of at most `limit` bytes, holding room for it in the body budget until the answer
 * is sent. Rejects with HttpError 413 as soon as the limit is passed, with UnavailableError 503 when the
 * budget has no room (in both cases the rest is drained without being kept, so the client still reads the
 * answer), 400 when the client aborts.
 */
function readBody(req: IncomingMessage, res: ServerResponse, limit: number, budget: BodyBudget): Promise<Buffer> {
  const room = budget.reserve();
  res.once('close', () => room.release());
  return new Promise((resolve, reject) => {
    const tooLarge = () => new HttpError(413, `the body exceeds ${limit} bytes`);
    const busy = () =>
      new UnavailableError('the log holds too many request bodies at the moment; retry later', 1, 'overload');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit || !room.grow(declared)) {
      req.resume();
      reject(declared > limit ? tooLarge() : busy());
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      n += c.length;
      if (n > limit || !room.grow(n)) {
        over = true;
        chunks.length = 0;
        reject(n > limit ? tooLarge() : busy());
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, n));
    });
    const aborted = () => reject(new HttpError(400, 'the request body was not received completely'));
    req.on('error', aborted);
    req.on('close', () => {
      if (!req.complete) aborted();
    });
  });
}

/** Checks the write API's preconditions that need no body: bearer token, JSON content type, no encoding. */
function checkWrite(req: IncomingMessage, tokenHashes: Buffer[] | undefined): void {
  if (tokenHashes) {
    const h = req.headers.authorization;
    // the scheme is case-insensitive (RFC 9110 section 11.1)
    const m = h ? /^bearer +(\S+)$/i.exec(h) : null;
    const got = m ? sha256(Buffer.from(m[1], 'utf8')) : undefined;
    if (!got || !tokenHashes.some((t) => timingSafeEqual(t, got))) {
      throw new HttpError(
        401,
        m ? 'the bearer token is not accepted' : 'the write API needs Authorization: Bearer <token>',
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
  }
  const type = req.headers['content-type'];
  const m = type ? /^application\/json\s*(?:;\s*charset\s*=\s*"?([^";\s]+)"?\s*)?$/i.exec(type) : null;
  if (!m)
    throw new HttpError(
      415,
      `the body must be application/json, got ${type ? JSON.stringify(type.slice(0, 60)) : 'no content type'}`,
    );
  if (m[1] && m[1].toLowerCase() !== 'utf-8')
    throw new HttpError(415, `the body must be UTF-8 JSON, got charset ${m[1].slice(0, 20)}`);
  const enc = req.headers['content-encoding'];
  if (enc && enc.toLowerCase() !== 'identity')
    throw new HttpError(415, `content encoding ${JSON.stringify(enc.slice(0, 20))} is not supported`);
}

async function readEntry(req: IncomingMessage, res: ServerResponse, budget: BodyBudget): Promise<Leaf> {
  const body = await readBody(req, res, MAX_ENTRY_BODY_BYTES, budget);
  try {
    return prepareEntry(body);
  } catch (e) {
    throw asHttp(e);
  }
}

/** The answer to a CORS preflight for a read endpoint. */
const CORS_PREFLIGHT = {
  ...CORS,
  'access-control-allow-methods': 'GET, HEAD',
  'access-control-max-age': '86400',
  'cache-control': 'public, max-age=86400',
};

/**
 * Builds the dispatcher of the log API on plain node:http, for speed: every read (checkpoint, tiles, proofs)
 * and every write (add-entry, add-entries, k8s-audit). Returns false when the request is not one of its routes.
 */
export function logApiRoutes(ctx: ApiContext): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { store } = ctx;
  const bodies = new InclusionBodies(store);

  const routes: Record<string, ReadHandler> = {
    '/checkpoint': (_q, res) => {
      const cp = ctx.checkpoint();
      if (cp === undefined)
        throw new HttpError(503, 'no checkpoint meets the witness quorum yet', { 'Retry-After': '1' });
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(cp),
        'cache-control': MUTABLE,
        ...CORS,
      });
      res.end(cp);
    },
    '/v1/get-sth': (_q, res) => {
      const t = store.tree;
      sendJson(
        res,
        200,
        {
          tree_size: t.size,
          timestamp: t.timestamp,
          sha256_root_hash: b64(t.root),
          tree_head_signature: b64(t.sthSignature),
          checkpoint: t.checkpoint,
        },
        CORS,
      );
    },
    '/v1/get-sth-consistency': async (q, res) => {
      const p = new URLSearchParams(q);
      const second = treeSizeParam(p, 'second', store.size);
      const first = u64Param(p, 'first');
      if (first > BigInt(second)) throw new HttpError(400, `first ${first} is greater than second ${second}`);
      const proof = await store.consistencyProof(Number(first), second);
      sendJson(res, 200, { consistency: proof.map(b64) }, CORS);
    },
    '/v1/get-proof-by-hash': async (q, res) => {
      const p = new URLSearchParams(q);
      const hash = strictB64Hash(p.get('hash'), 'hash');
      const size = treeSizeParam(p, 'tree_size', store.size);
      const idx = await store.findLeaf(hash);
      if (idx === undefined) throw new HttpError(404, 'no entry with this leaf hash');
      if (idx >= size)
        throw new HttpError(404, `the entry with this leaf hash is at index ${idx}, not in the tree of size ${size}`);
      const proof = await store.inclusionProof(idx, size);
      sendJson(res, 200, { leaf_index: idx, audit_path: proof.map(b64) }, CORS);
    },
    '/v1/get-proof-by-index': (q, res) => {
      // the hottest read: answered in this tick when its tiles are in memory (markedly cheaper than after an await)
      const [idx, size] = proofQuery(q, store.size);
      const body = bodies.sync(idx, size);
      if (body !== undefined) return sendRaw(res, body);
      const proof = store.inclusionProofSync(idx, size);
      const leafHash = store.leafHashSync(idx);
      if (proof && leafHash) return sendRaw(res, inclusionBody(idx, leafHash, proof));
      return (async () =>
        sendRaw(res, inclusionBody(idx, await store.leafHash(idx, size), await store.loadInclusionProof(idx, size))))();
    },
    '/v1/get-entries': async (q, res) => {
      const p = new URLSearchParams(q);
      const size = store.size;
      const start = u64Param(p, 'start');
      const end = u64Param(p, 'end');
      if (start > end) throw new HttpError(400, `start ${start} is greater than end ${end}`);
      if (start >= BigInt(size)) throw new HttpError(404, `start ${start} is beyond the log's current size ${size}`);
      const s = Number(start);
      const e = Math.min(Number(end > BigInt(size) ? BigInt(size) : end) + 1, size, s + MAX_GET_ENTRIES);
      const data = await store.entries(s, e);
      sendJson(res, 200, { entries: data.map((d, i) => ({ leaf_index: s + i, leaf_input: b64(d) })) }, CORS);
    },
    '/v1/get-entry-and-proof': async (q, res) => {
      const p = new URLSearchParams(q);
      const size = treeSizeParam(p, 'tree_size', store.size);
      const idx = indexParam(p, 'leaf_index', size);
      const [entry] = await store.entries(idx, idx + 1);
      const proof = await store.inclusionProof(idx, size);
      sendJson(res, 200, { leaf_input: b64(entry), audit_path: proof.map(b64) }, CORS);
    },
    '/v1/get-tlog-proof': async (q, res) => {
      const p = new URLSearchParams(q);
      const cp = ctx.checkpoint();
      if (cp === undefined)
        throw new HttpError(503, 'no checkpoint meets the witness quorum yet', { 'Retry-After': '1' });
      const size = Number(cp.split('\n', 2)[1]);
      const idx = indexParam(p, 'leaf_index', size);
      const proof = await store.inclusionProof(idx, size);
      const text = formatTlogProof({ index: BigInt(idx), proof, checkpoint: cp });
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        'cache-control': MUTABLE,
        ...CORS,
      });
      res.end(text);
    },
  };

  const tile = async (path: string, res: ServerResponse) => {
    let ref;
    try {
      ref = parseTilePath(path);
    } catch (e) {
      throw new HttpError(400, errorMessage(e));
    }
    if (ref.index > BigInt(Number.MAX_SAFE_INTEGER)) throw new HttpError(404, `tile ${path} is beyond the tree`);
    const index = Number(ref.index);
    const data = ref.entries
      ? await store.bundleData(index, ref.width)
      : await store.tileData(ref.level, index, ref.width);
    if (!data) throw new HttpError(404, `${path.slice(1)} is not in the tree of size ${store.size}`);
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': data.length,
      'cache-control': ref.width === 256 ? IMMUTABLE : MUTABLE,
      ...CORS,
    });
    res.end(data);
  };

  const count = requestCounter(ctx.metrics);
  const observe = (acceptedAt: number) => ctx.metrics.submitToSigned.observe((performance.now() - acceptedAt) / 1000);

  /** add-entries and k8s-audit: many entries in one body, committed together, answered in order. */
  const addMany =
    (kind: BodyKind): WriteHandler =>
    async (req, res) => {
      checkWrite(req, ctx.tokenHashes);
      const leaves = await ctx.canon.prepare(await readBody(req, res, MAX_BATCH_BODY_BYTES, ctx.bodies), kind);
      if (leaves.length === 0) {
        // an empty EventList: nothing to commit, the latest signed tree covers it
        const t = store.tree;
        return sendJson(
          res,
          200,
          { tree_size: t.size, checkpoint: t.checkpoint, entries: [] },
          { 'cache-control': 'no-store' },
        );
      }
      const r = await ctx.sequencer.submit(leaves);
      observe(r.acceptedAt);
      sendJsonText(res, 200, entriesAnswer(r.tree, r.indices, leaves), { 'cache-control': 'no-store' });
    };

  const writes: Record<string, WriteHandler> = {
    '/v1/add-entry': async (req, res) => {
      checkWrite(req, ctx.tokenHashes);
      const leaf = await readEntry(req, res, ctx.bodies);
      const r = await ctx.sequencer.submit([leaf]);
      observe(r.acceptedAt);
      const idx = r.indices[0];
      const proof = await store.inclusionProof(idx, r.tree.size);
      sendJson(
        res,
        200,
        {
          leaf_index: idx,
          leaf_hash: b64(leaf.hash),
          tree_size: r.tree.size,
          timestamp: r.tree.timestamp,
          proof: formatTlogProof({ index: BigInt(idx), proof, checkpoint: r.tree.checkpoint }),
        },
        { 'cache-control': 'no-store' },
      );
    },
    '/v1/add-entries': addMany('batch'),
    '/v1/k8s-audit': addMany('k8s'),
  };
  // RFC 6962 section 4 puts the JSON API under <base>/ct/v1/, where CT clients look; /v1/ is kept
  for (const p of Object.keys(routes)) if (p.startsWith('/v1/')) routes['/ct' + p] = routes[p];

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const write = writes[path];
    if (write !== undefined) {
      if (req.method !== 'POST') {
        const e = new HttpError(405, `${req.method} is not allowed on ${path}; use POST`, { allow: 'POST' });
        count(path, sendError(res, e, ctx.logger));
        return true;
      }
      write(req, res).then(
        () => count(path, 200),
        (e) => {
          if (e instanceof UnavailableError) ctx.metrics.rejected.inc({ reason: e.reason });
          count(path, sendError(res, e, ctx.logger));
        },
      );
      return true;
    }
    const handler = routes[path];
    const isTile = handler === undefined && path.startsWith('/tile/');
    if (handler === undefined && !isTile) return false;
    const route = isTile ? (path.startsWith('/tile/entries/') ? '/tile/entries' : '/tile') : path;
    if (req.method === 'OPTIONS') {
      count(route, 204);
      const asked = req.headers['access-control-request-headers'];
      res.writeHead(
        204,
        asked
          ? { ...CORS_PREFLIGHT, 'access-control-allow-headers': asked.slice(0, 1000), allow: 'GET, HEAD, OPTIONS' }
          : { ...CORS_PREFLIGHT, allow: 'GET, HEAD, OPTIONS' },
      );
      res.end();
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      count(route, 405);
      sendJson(
        res,
        405,
        { error: `${req.method} is not allowed on ${path}; use GET` },
        { allow: 'GET, HEAD, OPTIONS', ...CORS },
      );
      return true;
    }
    const done = () => count(route, 200);
    const fail = (e: unknown) => {
      if (!res.headersSent) res.setHeader(ACAO, '*');
      count(route, sendError(res, e, ctx.logger));
    };
    try {
      const r = isTile ? tile(path, res) : handler(q < 0 ? '' : url.slice(q + 1), res);
      if (r instanceof Promise) r.then(done, fail);
      else done();
    } catch (e) {
      fail(e);
    }
    return true;
  };
}

/** Canonicalizes one submitted JSON value into a leaf; `what` names it in errors. Throws HttpError 400/413. */
export function toLeaf(value: unknown, what: string): Leaf {
  let c: { text: string; len: number };
  try {
    c = canonicalEntrySized(value, what);
  } catch (e) {
    throw asHttp(e);
  }
  return leafOf((out, o) => out.write(c.text, o, 'utf8'), c.len);
}

/** The express app for what is not the log API: health and metrics, JSON 404/405 errors for everything else. */
export function opsApp(ctx: ApiContext): express.Express {
  const app = express();
  const count = requestCounter(ctx.metrics);
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    const h = ctx.healthy();
    res
      .status(h.ok ? 200 : 503)
      .set('cache-control', 'no-store')
      .json({
        status: h.ok ? 'ok' : 'unavailable',
        ...(h.reason ? { reason: h.reason } : {}),
        tree_size: ctx.store.size,
        queue_depth: ctx.sequencer.depth,
      });
  });

  app.get('/metrics', async (_req, res) => {
    res
      .set('content-type', ctx.metrics.registry.contentType)
      .set('cache-control', 'no-store')
      .send(await ctx.metrics.registry.metrics());
  });

  for (const p of ['/healthz', '/metrics']) {
    app.all(p, (req, _res, next) =>
      next(new HttpError(405, `${req.method} is not allowed on ${p}; use GET`, { allow: 'GET, HEAD' })),
    );
  }
  app.use((req, _res, next) => next(new HttpError(404, `no such endpoint: ${req.method} ${req.path}`)));

  // express 5 forwards rejected promises from async handlers here; it has no body parser, so every error is
  // one of ours (404/405) or an internal one
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    count(req.route?.path ?? 'other', sendError(res, err, ctx.logger));
  });

  return app;
}
