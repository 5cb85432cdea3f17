/**
 * Express (or plain node:http) middleware: an application records its own access events with the same
 * guarantees as the proxy. The request event is durable (spool) or acknowledged (strict) before the handler
 * runs; if it cannot be, the request is answered 503 and never reaches the handler.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Identity, Rules, TokenStore } from './auth.js';
import { countRequestBytes, outcomeOf, responseEvent } from '@trailmark/recorder';
import { decide, DEFAULT_REDACT_QUERY } from './gate.js';
import type { AccessTrail } from '@trailmark/recorder';
import { lingerIfBodyUnread } from '@trailmark/node';

/**
 * Configuration of accessTrailMiddleware: the trail it records into, the target and how callers are identified and
 * authorized.
 */
export interface AccessMiddlewareOptions {
  trail: AccessTrail;
  /** action.target: this service's origin URL, e.g. https://billing.internal */
  target: string;
  /** The event's `proxy` field (default: "app"). */
  name?: string;
  /** Bearer tokens (401 without a valid one), or your own `identify` (null → 401). Neither: anonymous. */
  tokens?: TokenStore;
  identify?: (req: IncomingMessage) => Identity | null;
  rules?: Rules;
  redactQuery?: string[];
  redactHeaders?: string[];
  /** Called when an event could not be recorded after the response (disk failure). */
  onError?: (e: Error) => void;
}

/** Response header carrying the request_id of the request's access event, so a caller can find it in the log. */
export const REQUEST_ID_HEADER = 'Trailmark-Request-Id';

type Next = (err?: unknown) => void;

/** Builds the middleware. Precondition: the trail is open for as long as the app serves requests. */
export function accessTrailMiddleware(
  opts: AccessMiddlewareOptions,
): (req: IncomingMessage, res: ServerResponse, next: Next) => void {
  const gateOpts = {
    ...(opts.tokens ? { tokens: opts.tokens } : {}),
    ...(opts.identify ? { identify: opts.identify } : {}),
    ...(opts.rules ? { rules: opts.rules } : {}),
    target: opts.target,
    proxy: opts.name ?? 'app',
    redactQuery: new Set([...DEFAULT_REDACT_QUERY, ...(opts.redactQuery ?? [])].map((n) => n.toLowerCase())),
    redactHeaders: new Set((opts.redactHeaders ?? []).map((n) => n.toLowerCase())),
  };
  const onError = opts.onError ?? ((e: Error) => process.stderr.write(`trailmark: ${e.message}\n`));
  return (req, res, next) => {
    const started = performance.now();
    const requestId = randomUUID();
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const requestBytes = countRequestBytes(req);
    const g = decide(req, requestId, gateOpts);
    let bytes = 0;
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
    const count = (chunk: unknown, enc?: unknown) => {
      if (typeof chunk === 'string')
        bytes += Buffer.byteLength(chunk, typeof enc === 'string' ? (enc as BufferEncoding) : 'utf8');
      else if (chunk instanceof Uint8Array) bytes += chunk.length;
    };
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      count(chunk, rest[0]);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== 'function') count(chunk, rest[0]);
      return end(chunk, ...rest);
    }) as typeof res.end;
    res.once('close', () => {
      const ev = responseEvent({
        requestId,
        proxy: gateOpts.proxy,
        outcome: outcomeOf(res.headersSent ? res.statusCode : 499, bytes, requestBytes(), started),
      });
      opts.trail.after(ev).catch(onError);
    });
    const record = g.deny ? opts.trail.after(g.event) : opts.trail.before(g.event);
    record.then(
      () => {
        if (g.deny) {
          lingerIfBodyUnread(res);
          res.statusCode = g.deny;
          res.setHeader('content-type', 'application/json');
          if (g.deny === 401) res.setHeader('www-authenticate', 'Bearer');
          res.end(JSON.stringify({ error: g.event.decision.reason, request_id: requestId }));
          return;
        }
        next();
      },
      (e: Error) => {
        onError(e);
        lingerIfBodyUnread(res);
        res.statusCode = 503;
        res.setHeader('content-type', 'application/json');
        res.setHeader('retry-after', '1');
        res.end(JSON.stringify({ error: 'access event could not be recorded', request_id: requestId }));
      },
    );
  };
}
