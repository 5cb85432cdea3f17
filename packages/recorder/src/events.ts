/**
 * Access events, contract section 4 (`trailmark.access/v1`): one event per stage, linked by request_id.
 * Events are plain JSON objects; the log stores their RFC 8785 canonical bytes, and those exact bytes are what
 * the spool keeps, so a resend after a crash is byte-identical and the log's dedup makes it a no-op.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ACCESS_SCHEMA, canonicalJson, type StreamPosition } from '@trailmark/tlog';

export { ACCESS_SCHEMA };
/** What replaces a redacted value. */
export const REDACTED = 'REDACTED';

/** Who made a request: identity and roles from the token, client address and User-Agent. */
export interface Actor {
  /** The identity from the token, or null when no valid token was presented. */
  id: string | null;
  roles: string[];
  ip: string | null;
  user_agent: string | null;
}

/** What was asked: method, target origin, path and redacted query. */
export interface Action {
  /** Contract section 4: "http" here; the PostgreSQL proxy's events say "postgres". */
  protocol: 'http';
  method: string;
  /** The upstream service's origin URL. */
  target: string;
  path: string;
  /** The query string without '?', with redacted parameter values replaced; "" when there is none. */
  query: string;
}

/** Whether the request was let through, and why. */
export interface Decision {
  allowed: boolean;
  reason: string;
}

/** The access event recorded before a request is forwarded (stage `request`). */
export interface RequestEvent {
  schema: typeof ACCESS_SCHEMA;
  stage: 'request';
  id: string;
  request_id: string;
  time: string;
  proxy: string;
  actor: Actor;
  action: Action;
  decision: Decision;
  /** Given by the stream as the event is spooled (stream.ts). */
  stream?: StreamPosition;
}

/** How a request ended: status, byte counts and duration, or aborted after a crash. */
export interface Outcome {
  /** The status sent; null only in an aborted outcome whose status is unknown. */
  status: number | null;
  /** Response body bytes sent. */
  bytes: number;
  /** Request body bytes received from the client. */
  request_bytes: number;
  duration_ms: number;
  /** Present (true) only when the proxy crashed before it could record the outcome (written at its restart). */
  aborted?: true;
}

/** The access event recorded once a request's response is finished (stage `response`), linked by request_id. */
export interface ResponseEvent {
  schema: typeof ACCESS_SCHEMA;
  stage: 'response';
  id: string;
  request_id: string;
  time: string;
  proxy: string;
  outcome: Outcome;
  stream?: StreamPosition;
}

/** Either stage of an access event. */
export type AccessEvent = RequestEvent | ResponseEvent;

/**
 * A fresh unique id (UUID v4): unique ids keep distinct events from ever collapsing under the log's dedup.
 * Precondition: none.
 */
export function newId(): string {
  return randomUUID();
}

/** RFC 3339 UTC time with milliseconds, e.g. 2026-11-26T14:12:07.123Z. Precondition: a valid date. */
export function rfc3339ms(d?: Date): string {
  if (d) return d.toISOString();
  // events made in one millisecond (a busy proxy makes several) share the formatted time
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  return lastIso;
}
let lastMs = NaN;
let lastIso = '';

/** Builds a request-stage event. Precondition: fields already redacted. */
export function requestEvent(p: {
  requestId: string;
  proxy: string;
  actor: Actor;
  action: Action;
  decision: Decision;
  time?: Date;
}): RequestEvent {
  return {
    schema: ACCESS_SCHEMA,
    stage: 'request',
    id: newId(),
    request_id: p.requestId,
    time: rfc3339ms(p.time),
    proxy: p.proxy,
    actor: p.actor,
    action: p.action,
    decision: p.decision,
  };
}

/**
 * A response's outcome: `status` (499 when the client went away first), response and request body bytes,
 * milliseconds since `started` (performance.now()).
 */
export function outcomeOf(status: number, bytes: number, requestBytes: number, started: number): Outcome {
  return {
    status,
    bytes,
    request_bytes: requestBytes,
    duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
  };
}

/**
 * Counts a request's body bytes as they arrive from the client, whoever reads them and whenever (the count
 * sits where the HTTP parser hands chunks to the stream, so it neither starts the flow nor misses a pipe).
 * Precondition: called before the body is consumed.
 */
export function countRequestBytes(req: Readable): () => number {
  let n = req.readableLength;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with .call(this)
  const push = req.push;
  req.push = function (chunk: unknown, encoding?: BufferEncoding) {
    if (chunk) n += typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : (chunk as Uint8Array).length;
    return push.call(this, chunk, encoding);
  };
  return () => n;
}

/** Builds a response-stage event. Precondition: status is an HTTP status (or 499: the client went away first). */
export function responseEvent(p: { requestId: string; proxy: string; outcome: Outcome; time?: Date }): ResponseEvent {
  return {
    schema: ACCESS_SCHEMA,
    stage: 'response',
    id: newId(),
    request_id: p.requestId,
    time: rfc3339ms(p.time),
    proxy: p.proxy,
    outcome: p.outcome,
  };
}

/** The exact bytes the spool keeps and the log hashes. Precondition: a JSON-only event object. */
export function eventBytes(e: AccessEvent | Record<string, unknown>): Uint8Array {
  return canonicalJson(e);
}

/**
 * The spellings under which upstreams read a parameter name: percent-decoded ('+' as space), case-folded,
 * leading spaces dropped (PHP), and cut at the first '[' (PHP, Rails and qs read `name[]`, `name[k]` as
 * `name`), '.' (qs allowDots) or NUL; and PHP's form of each, which turns spaces, dots and '[' into '_'.
 */
function paramSpellings(raw: string): string[] {
  let name = raw;
  try {
    name = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    /* undecodable name: compare it raw */
  }
  name = name.toLowerCase().replace(/^[\s]+/, '');
  const forms = new Set([name, name.split(/[[.\0]/)[0]]);
  for (const f of [...forms]) forms.add(f.replace(/[ .[]/g, '_'));
  return [...forms];
}

/** The names to redact with their PHP forms, as redactQuery() compares them. Precondition: lower-case names. */
function redactionSet(names: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  for (const n of names) {
    out.add(n);
    out.add(n.replace(/[ .[]/g, '_'));
  }
  return out;
}

const setCache = new WeakMap<ReadonlySet<string>, Set<string>>();

/** Redacts `name=value` parts of `text` split on `sep`; the separators are kept byte for byte. */
function redactParts(text: string, sep: RegExp, names: ReadonlySet<string>): string {
  let set = setCache.get(names);
  if (!set) setCache.set(names, (set = redactionSet(names)));
  const all = set;
  return text
    .split(sep)
    .map((part, i) => {
      // split with a capturing group: odd indexes are the separators themselves
      if (i % 2 === 1) return part;
      const eq = part.indexOf('=');
      const rawName = eq < 0 ? part : part.slice(0, eq);
      if (!paramSpellings(rawName).some((n) => all.has(n))) return part;
      return `${rawName}=${REDACTED}`;
    })
    .join('');
}

/**
 * Replaces the values of the named query parameters with REDACTED in every spelling an upstream would read as
 * that parameter (see paramSpellings; '&' and ';' both separate parameters), keeping order, duplicates and
 * everything else byte for byte. Precondition: `query` is the raw query string without '?', names lower-case.
 */
export function redactQuery(query: string, names: ReadonlySet<string>): string {
  if (query === '' || names.size === 0) return query;
  return redactParts(query, /([&;])/, names);
}

/**
 * Redacts the named matrix parameters of a path (`/login;password=S/x`: servlet containers hand them to the
 * application as parameters). Precondition: as redactQuery.
 */
export function redactPathParams(path: string, names: ReadonlySet<string>): string {
  if (!path.includes(';') || names.size === 0) return path;
  return path
    .split('/')
    .map((seg) => {
      const semi = seg.indexOf(';');
      return semi < 0 ? seg : seg.slice(0, semi) + redactParts(seg.slice(semi), /([;])/, names);
    })
    .join('/');
}

/** Caps a client-supplied string so an event always stays far below the log's 65,535-byte entry limit. Precondition: max > 0. */
export function capString(s: string, max = 4096): string {
  if (s.length <= max) return s;
  // never cut a surrogate pair in half: a lone surrogate is not Unicode text, and canonical JSON refuses it
  const last = s.charCodeAt(max - 1);
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max) + '…';
}
