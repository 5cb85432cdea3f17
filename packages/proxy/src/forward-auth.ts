/**
 * forward-auth (contract section 5): the proxy's authentication, rules, events, spool and strict mode behind a
 * gateway that keeps its own data path (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`,
 * Envoy `ext_authz` over HTTP). Each request it receives is a subrequest naming the client's original request;
 * the answer is 2xx once the request event is durable (spool) or acknowledged (strict), 401/403 when refused
 * (logged), 503 when it cannot be recorded. It never sees the upstream's answer, so it writes request events only.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { Counter } from 'prom-client';
import { ConfigError } from './errors.js';
import { decide, type GateOptions, type OriginalTarget } from './gate.js';
import { answerClientError } from '@trailmark/node';
import { REQUEST_ID_HEADER } from './middleware.js';
import {
  checkRecorder,
  openTrail,
  parseListen,
  sendJson,
  serveTrail,
  type RecorderOptions,
  type RunningRecorder,
} from './serving.js';

/** Configuration of the forward-auth daemon: the recorder's options plus the fallback target and listen address. */
export interface ForwardAuthOptions extends RecorderOptions {
  /** action.target when the gateway sends no X-Forwarded-Proto/X-Forwarded-Host (an origin URL). */
  target?: string;
  /** HOST:PORT (default 127.0.0.1:8082; port 0 picks one). */
  listen?: string;
}

/** A started forward-auth daemon (the recorder's running handle). */
export type RunningForwardAuth = RunningRecorder;

/** The answer header naming the authenticated identity, for the gateway to pass upstream. */
export const ACTOR_HEADER = 'Trailmark-Actor';

/** The original request a gateway's subrequest names. */
export interface OriginalRequest extends OriginalTarget {
  /** `<proto>://<host>` from X-Forwarded-Proto/-Host, or null when the gateway did not send both. */
  target: string | null;
}

const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Reads the original request from the subrequest's headers: nginx's X-Original-Method/-URI, else Traefik's and
 * Caddy's X-Forwarded-Method/-Uri, else the subrequest's own method and target (Envoy's ext_authz sends the
 * original method and path). The client's address is the last X-Forwarded-For entry, the one the gateway next
 * to us appended (earlier entries come from the client and prove nothing), else the peer's address.
 * Precondition: none.
 */
export function originalRequest(req: IncomingMessage): OriginalRequest {
  const method = header(req, 'x-original-method') ?? header(req, 'x-forwarded-method') ?? req.method ?? 'GET';
  const url = header(req, 'x-original-uri') ?? header(req, 'x-forwarded-uri') ?? req.url ?? '/';
  const xff = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(xff) ? xff.join(',') : (xff ?? ''))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const ip = hops.length > 0 ? hops[hops.length - 1] : (req.socket?.remoteAddress ?? null);
  const proto = header(req, 'x-forwarded-proto')?.split(',')[0].trim().toLowerCase();
  const host = header(req, 'x-forwarded-host')?.split(',')[0].trim();
  const target =
    (proto === 'http' || proto === 'https') && host && HOST_RE.test(host) ? `${proto}://${host.toLowerCase()}` : null;
  return { method: method.toUpperCase(), url, ip, target };
}

/** Header-safe text (visible ASCII and spaces), else null: an identity that cannot travel in a header is left out. */
function headerSafe(s: string): string | null {
  return /^[\x20-\x7e]{1,1024}$/.test(s) ? s : null;
}

/**
 * Checks the configuration (tokens, rules, log key, target), opens the spool and starts answering subrequests.
 * Precondition: opts as documented; throws ConfigError/SpoolError with a clear message.
 */
export async function startForwardAuth(opts: ForwardAuthOptions): Promise<RunningForwardAuth> {
  let defaultTarget = '';
  if (opts.target !== undefined) {
    let t: URL;
    try {
      t = new URL(opts.target);
    } catch {
      throw new ConfigError('target', `--target ${JSON.stringify(opts.target)} is not a URL`);
    }
    if (t.protocol !== 'http:' && t.protocol !== 'https:')
      throw new ConfigError('target', `--target must be an http or https URL, got ${t.protocol}`);
    defaultTarget = t.origin;
  }
  const r = checkRecorder(opts, 'forward-auth');
  const listenAddr = parseListen(opts.listen ?? '127.0.0.1:8082');
  const adminAddr = opts.adminListen ? parseListen(opts.adminListen, '--admin-listen') : null;
  const { trail, registry } = await openTrail(r, opts, false);
  const requests = new Counter({
    name: 'trailmark_forward_auth_requests_total',
    help: 'Subrequests answered by forward-auth, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  // the common outcome's child, bound once (a labelled inc hashes its labels on every call)
  const allowed = requests.labels({ outcome: 'allowed' });
  const gates = new Map<string, GateOptions>();
  const gateFor = (target: string): GateOptions => {
    let g = gates.get(target);
    if (!g) {
      g = { ...r.gate, target };
      // targets come from the gateway's headers: keep the cache bounded whatever it sends
      if (gates.size < 1024) gates.set(target, g);
    }
    return g;
  };
  const unavailable = (res: ServerResponse, requestId: string, why: string) => {
    requests.inc({ outcome: 'log_unavailable' });
    sendJson(res, 503, { error: why, request_id: requestId }, { 'retry-after': '1' });
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    // a subrequest carries no body worth keeping (nginx sends none); drain whatever comes
    req.resume();
    const requestId = randomUUID();
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const o = originalRequest(req);
    const g = decide(req, requestId, gateFor(o.target ?? defaultTarget), o);
    if (g.deny) {
      // a refusal is 401 or 403 to a gateway (contract section 5): nginx's auth_request passes those on and takes
      // anything else for an error, so an ambiguous path (400 from the proxy) is 403 here
      const status = g.deny === 401 ? 401 : 403;
      trail.after(g.event).then(
        () => {
          requests.inc({ outcome: status === 401 ? 'unauthenticated' : 'forbidden' });
          sendJson(
            res,
            status,
            { error: g.event.decision.reason, request_id: requestId },
            status === 401 ? { 'www-authenticate': 'Bearer' } : {},
          );
        },
        (e: Error) => {
          r.warn(`could not spool a request event: ${e.message}`);
          unavailable(res, requestId, 'access event could not be recorded');
        },
      );
      return;
    }
    trail.before(g.event).then(
      () => {
        allowed.inc();
        const actor = g.identity ? headerSafe(g.identity.id) : null;
        res.writeHead(200, { 'content-length': 0, ...(actor !== null ? { [ACTOR_HEADER]: actor } : {}) });
        res.end();
      },
      (e: Error) => {
        if (r.mode !== 'strict') r.warn(`could not spool a request event: ${e.message}`);
        unavailable(
          res,
          requestId,
          r.mode === 'strict' ? 'the log is unavailable' : 'access event could not be recorded',
        );
      },
    );
  };

  const server = http.createServer({ keepAliveTimeout: 65_000 }, handle);
  server.on('clientError', answerClientError);
  return serveTrail(server, listenAddr, adminAddr, trail, registry);
}
