/**
 * The decision for one incoming request, and its request-stage event: who (token → identity), what (method,
 * normalized path, redacted query), and whether the rules allow it.
 */
import type { IncomingMessage } from 'node:http';
import { bearerToken, type Identity, type Rules, type TokenStore } from './auth.js';
import {
  capString,
  REDACTED,
  redactPathParams,
  redactQuery,
  requestEvent,
  type RequestEvent,
} from '@trailmark/recorder';

/** How the gate identifies, authorizes and records a request. */
export interface GateOptions {
  /** Token → identity. Without it (and without `identify`), every request is anonymous and allowed. */
  tokens?: TokenStore;
  /** Custom identification (the middleware's hook); wins over `tokens`. */
  identify?: (req: IncomingMessage) => Identity | null;
  rules?: Rules;
  /** action.target: the protected service's origin URL. */
  target: string;
  /** The event's `proxy` field. */
  proxy: string;
  /** Lower-case query parameter names whose values are redacted. */
  redactQuery: ReadonlySet<string>;
  /** Lower-case header names whose values are redacted wherever a header value is recorded (user_agent). */
  redactHeaders: ReadonlySet<string>;
}

/**
 * The gate's verdict on a request: the request event to record, the deny status, the identity and the path to forward.
 */
export interface GateResult {
  event: RequestEvent;
  /** 0 when allowed, else the status to answer (400: an ambiguous path under rules; 401; 403). */
  deny: 0 | 400 | 401 | 403;
  identity: Identity | null;
  /** Normalized path plus the original query: what is forwarded. */
  forwardPath: string;
}

/** Query parameters that always carry secrets (RFC 6750 bearer tokens in the query). */
export const DEFAULT_REDACT_QUERY = ['access_token'];

/**
 * Splits a request target into a normalized path (dot segments resolved, as the WHATWG URL parser does for
 * %2e too) and its raw query. Precondition: none; an unparsable target gives path "/" and no query.
 */
export function splitTarget(url: string | undefined): { path: string; query: string } {
  // asterisk-form (RFC 9112 3.2.4): OPTIONS about the server as a whole, not about a path
  if (url === '*') return { path: '*', query: '' };
  try {
    // origin-form ("/a/b?q") is appended to a base rather than resolved against it, so "//x/y" stays a path
    // instead of becoming a host; absolute-form ("http://host/a") is parsed as it is
    const target = url ?? '/';
    const u = target.startsWith('/') ? new URL('http://proxy.invalid' + target) : new URL(target);
    return { path: u.pathname, query: u.search.startsWith('?') ? u.search.slice(1) : '' };
  } catch {
    return { path: '/', query: '' };
  }
}

/**
 * Why a normalized path means different things to different upstreams, or null when it does not: matrix
 * parameters (`;`: Tomcat, Jetty and Spring drop them, so `/public/..;/admin` is `/admin` there), percent-encoded
 * dots, slashes, backslashes, semicolons, percent signs or NULs (decoded after the rules looked), and
 * backslashes. Such paths are refused under rules rather than guessed at.
 */
export function ambiguousPath(path: string): string | null {
  if (path.includes(';')) return 'a matrix parameter (;)';
  if (path.includes('\\')) return 'a backslash';
  const m = /%(2e|2f|5c|3b|25|00)/i.exec(path);
  return m
    ? `an encoded ${({ '2e': 'dot', '2f': 'slash', '5c': 'backslash', '3b': 'semicolon', '25': 'percent sign', '00': 'NUL' } as Record<string, string>)[m[1].toLowerCase()]} (${m[0]})`
    : null;
}

/** The request a gateway asked about, when it is not the one carrying the headers (forward-auth). */
export interface OriginalTarget {
  method: string;
  /** Request target (path and query) as the client sent it. */
  url: string;
  /** The client's address. */
  ip: string | null;
}

/**
 * Decides a request (or, with `original`, the gateway's original request whose headers `req` carries) and builds
 * its request event. Precondition: opts.redact* sets hold lower-case names.
 */
export function decide(
  req: IncomingMessage,
  requestId: string,
  opts: GateOptions,
  original?: OriginalTarget,
): GateResult {
  const method = (original?.method ?? req.method ?? 'GET').toUpperCase();
  const url = original ? original.url : req.url;
  // CONNECT names an authority (host:port), not a path
  const { path, query } = method === 'CONNECT' ? { path: url ?? '', query: '' } : splitTarget(url);
  let identity: Identity | null = null;
  let deny: 0 | 400 | 401 | 403 = 0;
  let reason: string;
  if (opts.identify) {
    identity = opts.identify(req);
    if (!identity) {
      deny = 401;
      reason = 'not authenticated';
    } else reason = 'authenticated';
  } else if (opts.tokens) {
    const token = bearerToken(req.headers.authorization);
    if (token === null) {
      deny = 401;
      reason = req.headers.authorization ? 'authorization is not a bearer token' : 'no bearer token';
    } else {
      identity = opts.tokens.lookup(token);
      if (!identity) {
        deny = 401;
        reason = 'unknown bearer token';
      } else reason = 'valid bearer token';
    }
  } else reason = 'no authentication configured';
  const ambiguous =
    deny === 0 && opts.rules
      ? path === '*' && method !== 'OPTIONS'
        ? 'the asterisk-form outside OPTIONS'
        : ambiguousPath(path)
      : null;
  if (ambiguous) {
    deny = 400;
    reason = `ambiguous path: ${ambiguous}; refused before the rules (${identity ? capString(identity.id, 200) : 'anonymous'})`;
  } else if (deny === 0 && opts.rules) {
    const role = opts.rules.allows(identity?.roles ?? [], method, path);
    if (role === null) {
      deny = 403;
      reason = `no rule allows ${method} ${capString(path, 200)} for ${identity ? capString(identity.id, 200) : 'anonymous'} (roles [${(identity?.roles ?? []).join(', ')}])`;
    } else reason = `allowed by role ${role}`;
  }
  const ua = req.headers['user-agent'];
  const event = requestEvent({
    requestId,
    proxy: opts.proxy,
    actor: {
      // contract section 4: the authenticated identity, refused or not; null only when authentication failed
      id: identity ? identity.id : null,
      roles: identity ? identity.roles : [],
      ip: original ? original.ip : (req.socket?.remoteAddress ?? null),
      user_agent: ua === undefined ? null : opts.redactHeaders.has('user-agent') ? REDACTED : capString(ua, 1024),
    },
    action: {
      protocol: 'http',
      method: capString(method, 32),
      target: opts.target,
      path: capString(redactPathParams(path, opts.redactQuery)),
      query: capString(redactQuery(query, opts.redactQuery)),
    },
    decision: { allowed: deny === 0, reason },
  });
  return { event, deny, identity, forwardPath: path === '*' ? '*' : path + (query ? '?' + query : '') };
}
