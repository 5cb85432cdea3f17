/**
 * The access proxy (contract section 5): a streaming reverse proxy to one upstream that records a request
 * event before forwarding and a response event after, for every request, denied ones included.
 *
 * Bodies are never buffered: request and response stream through with backpressure (reading pauses while a write
 * waits to drain), to and from a keep-alive agent. Hop-by-hop headers (RFC 9110 7.6.1, plus any named in
 * Connection) are dropped both ways; the client's Authorization (its credential for the proxy) is not passed
 * upstream.
 */
import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { Counter } from 'prom-client';
import { ConfigError } from './errors.js';
import { countRequestBytes, outcomeOf, responseEvent } from '@trailmark/recorder';
import { decide, type GateOptions } from './gate.js';
import { REQUEST_ID_HEADER } from './middleware.js';
import { answerClientError, lingerIfBodyUnread } from '@trailmark/node';
import {
  checkRecorder,
  openTrail,
  parseListen,
  sendJson,
  serveTrail,
  type RecorderOptions,
  type RunningRecorder,
} from './serving.js';

/** Configuration of the reverse proxy: the recorder's options plus the upstream and listen address. */
export interface ProxyOptions extends RecorderOptions {
  /** Upstream URL (http or https): its origin, plus an optional path prefix for every forwarded path. */
  upstream: string;
  /** HOST:PORT (default 127.0.0.1:8081; port 0 picks one). */
  listen?: string;
  /** Check at start that the upstream accepts TCP connections (default true). */
  checkUpstream?: boolean;
  /** Idle timeout towards the upstream (default 60 s): then 504, or the response is cut. */
  upstreamTimeoutMs?: number;
}

/** A started reverse proxy (the recorder's running handle). */
export type RunningProxy = RunningRecorder;

const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

const HOP_SET = new Set(HOP_BY_HOP);
/** The requests metric's outcome label of each refusal. */
const DENY_OUTCOME = { 400: 'bad_request', 401: 'unauthenticated', 403: 'forbidden' } as const;
/** The client's credential for the proxy stays here; Host is set to the upstream's. */
const NOT_FORWARDED = new Set(['authorization', 'host']);

/** Copies headers without the hop-by-hop ones (and those named in Connection, and `extra`). */
function stripHopByHop(headers: IncomingHttpHeaders, extra?: ReadonlySet<string>): OutgoingHttpHeaders {
  const conn = headers.connection;
  const named = conn ? new Set(conn.split(',').map((t) => t.trim().toLowerCase())) : null;
  const out: OutgoingHttpHeaders = {};
  for (const k in headers) {
    if (HOP_SET.has(k) || extra?.has(k) || named?.has(k)) continue;
    const v = headers[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function checkUpstream(url: URL, timeoutMs = 3000): Promise<void> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const fail = (why: string) => {
      sock.destroy();
      reject(new ConfigError('upstream', `upstream ${url.origin} is unreachable: ${why}`));
    };
    sock.setTimeout(timeoutMs, () => fail(`no connection within ${timeoutMs} ms`));
    sock.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    sock.once('connect', () => {
      sock.end();
      resolve();
    });
  });
}

/**
 * Validates the configuration (fail fast: tokens, rules, vkey, upstream reachable, log key matches the log
 * when the log answers), opens the spool, and starts the proxy and its admin server.
 * Precondition: opts as documented; throws ConfigError/KeyError/SpoolError with a clear message.
 */
export async function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  let upstream: URL;
  try {
    upstream = new URL(opts.upstream);
  } catch {
    throw new ConfigError('upstream', `--upstream ${JSON.stringify(opts.upstream)} is not a URL`);
  }
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:')
    throw new ConfigError('upstream', `--upstream must be an http or https URL, got ${upstream.protocol}`);
  if (upstream.search || upstream.hash || upstream.username || upstream.password) {
    throw new ConfigError('upstream', '--upstream must not carry a query, a fragment or credentials');
  }
  // a path in --upstream is a prefix put before every forwarded path (events show the client's path)
  const basePath = upstream.pathname.replace(/\/+$/, '');
  const r = checkRecorder(opts, 'proxy');
  const { mode, warn } = r;
  const listenAddr = parseListen(opts.listen ?? '127.0.0.1:8081');
  const adminAddr = opts.adminListen ? parseListen(opts.adminListen, '--admin-listen') : null;
  if (opts.checkUpstream !== false) await checkUpstream(upstream);
  const { trail, registry } = await openTrail(r, opts);
  const requests = new Counter({
    name: 'trailmark_proxy_requests_total',
    help: 'Requests handled by the proxy, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });

  // the common outcome's child, bound once (a labelled inc hashes its labels on every call)
  const forwarded = requests.labels({ outcome: 'forwarded' });
  const gate: GateOptions = { ...r.gate, target: upstream.origin };
  const isHttps = upstream.protocol === 'https:';
  const agent = isHttps
    ? new https.Agent({ keepAlive: true, maxSockets: 512, scheduling: 'lifo' })
    : new http.Agent({ keepAlive: true, maxSockets: 512, scheduling: 'lifo' });
  const upstreamPort = upstream.port || (isHttps ? '443' : '80');
  const upstreamHost = upstream.hostname.replace(/^\[|\]$/g, '');
  const upstreamTimeout = opts.upstreamTimeoutMs ?? 60_000;
  const afterError = (e: Error) => warn(`could not spool a response event: ${e.message}`);

  /** Reads and drops a request body nobody will forward, counting its bytes. */
  const drain = (req: IncomingMessage, count: (n: number) => void) => {
    req.on('data', (c: Buffer) => count(c.length));
    req.resume();
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const requestId = randomUUID();
    // body bytes counted as they are read (forwarded or drained): every chunk, already buffered or not, passes
    // through a data listener once
    let requestBytes = 0;
    const countIn = (n: number) => (requestBytes += n);
    let bytes = 0;
    let upReq: http.ClientRequest | null = null;
    // one close listener: the response event, and an upstream exchange the client walked away from is cut
    res.once('close', () => {
      if (upReq && !res.writableFinished) upReq.destroy();
      const ev = responseEvent({
        requestId,
        proxy: gate.proxy,
        outcome: outcomeOf(res.headersSent ? res.statusCode : 499, bytes, requestBytes, started),
      });
      trail.after(ev).catch(afterError);
    });
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const g = decide(req, requestId, gate);
    if (g.deny) {
      requests.inc({ outcome: DENY_OUTCOME[g.deny] });
      // drain and drop the body of a denied request; it goes nowhere
      drain(req, countIn);
      trail.after(g.event).then(
        () => {
          bytes = sendJson(
            res,
            g.deny,
            { error: g.event.decision.reason, request_id: requestId },
            g.deny === 401 ? { 'www-authenticate': 'Bearer' } : {},
          );
        },
        (e: Error) => {
          warn(`could not spool a request event: ${e.message}`);
          bytes = sendJson(
            res,
            503,
            { error: 'access event could not be recorded', request_id: requestId },
            { 'retry-after': '1' },
          );
        },
      );
      return;
    }
    trail.before(g.event).then(
      () => {
        // the client left while we were recording
        if (res.destroyed) return;
        // asterisk-form stays itself (under a base path it asks about that path)
        upReq = forward(
          req,
          res,
          g.forwardPath === '*' ? basePath || '*' : basePath + g.forwardPath,
          requestId,
          countIn,
          (n) => (bytes += n),
        );
      },
      (e: Error) => {
        requests.inc({ outcome: 'log_unavailable' });
        if (mode !== 'strict') warn(`could not spool a request event: ${e.message}`);
        drain(req, countIn);
        bytes = sendJson(
          res,
          503,
          {
            error: mode === 'strict' ? 'the log is unavailable' : 'access event could not be recorded',
            request_id: requestId,
          },
          { 'retry-after': '1' },
        );
      },
    );
  };

  /** Sends the request upstream and its answer back, both streamed with backpressure; returns the exchange. */
  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    requestId: string,
    countIn: (n: number) => void,
    countOut: (n: number) => void,
  ): http.ClientRequest => {
    const headers = stripHopByHop(req.headers, NOT_FORWARDED);
    headers.host = upstream.host;
    const xff = req.headers['x-forwarded-for'];
    const ip = req.socket.remoteAddress ?? '';
    headers['x-forwarded-for'] = xff ? `${xff}, ${ip}` : ip;
    if (req.headers.host) headers['x-forwarded-host'] = req.headers.host;
    headers['x-forwarded-proto'] = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    headers[REQUEST_ID_HEADER.toLowerCase()] = requestId;
    const upReq = (isHttps ? https : http).request({
      protocol: upstream.protocol,
      hostname: upstreamHost,
      port: upstreamPort,
      method: req.method,
      path,
      headers,
      agent,
    });
    upReq.setTimeout(upstreamTimeout, () => upReq.destroy(new Error(`upstream idle for ${upstreamTimeout} ms`)));
    upReq.on('response', (upRes) => {
      forwarded.inc();
      const out = stripHopByHop(upRes.headers);
      out[REQUEST_ID_HEADER.toLowerCase()] = requestId;
      if (lingerIfBodyUnread(res)) {
        // the upstream answered before the whole body (a refusal): the answer closes without resetting the
        // client, and the rest goes nowhere; the upstream connection, left mid-body, is not reused
        res.once('finish', () => {
          req.removeAllListeners('data');
          req.resume();
          upReq.destroy();
        });
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
      // the answer may stream for long: if the proxy dies before its end, the aborted response event says this
      trail.noteSent(requestId, res.statusCode);
      upRes.on('data', (c: Buffer) => {
        countOut(c.length);
        if (!res.write(c)) {
          upRes.pause();
          res.once('drain', () => upRes.resume());
        }
      });
      upRes.on('end', () => {
        // an answer cut short upstream is cut short here too (no clean end the client would trust)
        if (upRes.complete) res.end();
        else res.destroy();
      });
      upRes.on('error', () => res.destroy());
      upRes.on('aborted', () => res.destroy());
    });
    upReq.on('error', (e: NodeJS.ErrnoException) => {
      // an upstream that closed after its whole answer (refusing the rest of the body) cut nothing short
      if (res.writableEnded) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (res.destroyed) return;
      requests.inc({ outcome: 'upstream_error' });
      const timeout = /idle/.test(e.message);
      countOut(
        sendJson(res, timeout ? 504 : 502, {
          error: `upstream ${timeout ? 'timed out' : 'failed'}: ${e.code ?? e.message}`,
          request_id: requestId,
        }),
      );
    });
    if (req.complete && req.readableLength === 0) {
      // no body (or it is all read already and empty): nothing to stream
      upReq.end();
      req.resume();
      return upReq;
    }
    req.on('data', (c: Buffer) => {
      countIn(c.length);
      if (!upReq.write(c)) {
        req.pause();
        upReq.once('drain', () => req.resume());
      }
    });
    req.on('end', () => upReq.end());
    req.on('aborted', () => upReq.destroy());
    return upReq;
  };

  const server = http.createServer({ keepAliveTimeout: 65_000 }, handle);
  // protocol upgrades (WebSocket) and CONNECT tunnels are not proxied; they are still recorded, like every request
  const refuseRaw = (what: string) => (req: IncomingMessage, socket: import('node:stream').Duplex) => {
    const started = performance.now();
    const requestId = randomUUID();
    const requestBytes = countRequestBytes(req);
    const g = decide(req, requestId, gate);
    const event = g.deny ? g.event : { ...g.event, decision: { allowed: false, reason: `${what} not supported` } };
    const status = g.deny || 501;
    requests.inc({ outcome: g.deny ? DENY_OUTCOME[g.deny] : 'upgrade_refused' });
    const answer = () => {
      const body = JSON.stringify({ error: event.decision.reason, request_id: requestId });
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${REQUEST_ID_HEADER}: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
      );
      trail
        .after(
          responseEvent({
            requestId,
            proxy: gate.proxy,
            outcome: outcomeOf(status, Buffer.byteLength(body), requestBytes(), started),
          }),
        )
        .catch(afterError);
    };
    socket.on('error', () => socket.destroy());
    trail.after(event).then(answer, (e: Error) => {
      warn(`could not spool a request event: ${e.message}`);
      socket.destroy();
    });
  };
  server.on('upgrade', refuseRaw('protocol upgrades are'));
  server.on('connect', refuseRaw('CONNECT is'));
  server.on('clientError', answerClientError);
  return serveTrail(server, listenAddr, adminAddr, trail, registry, () => agent.destroy());
}
