/**
 * The search filters of contract section 8, parsed from a query string, and the cursor that pages through
 * them. A cursor names the last leaf index shown: results are newest first, so the next page is everything
 * below it, and a log that grows meanwhile never shifts a page (cursors, not offsets).
 */

import { ExplorerError } from './errors.js';

/** A malformed search filter, page size or cursor: the caller's mistake, answered with HTTP 400. */
export class FilterError extends ExplorerError {
  constructor(message: string) {
    super('filter', message);
  }
}

/** The parsed search filters of contract section 8; an absent field matches everything. */
export interface Filters {
  actor?: string;
  target?: string;
  method?: string;
  /** A path prefix, matched on whole segments. */
  path?: string;
  protocol?: string;
  decision?: 'allowed' | 'denied';
  status?: string;
  fromMs?: number;
  toMs?: number;
  requestId?: string;
  stream?: string;
  /** Words in the path, query or statement. */
  q?: string;
}

/** Largest page size (`limit`) a search accepts. */
export const MAX_LIMIT = 1000;
/** Page size of a search that gives no `limit`. */
export const DEFAULT_LIMIT = 100;

export { FILTER_PARAMS } from './params.js';

function time(name: string, v: string): number {
  // RFC 3339: a date and time with an offset or Z
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/.test(v)) {
    throw new FilterError(`${name} must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got ${JSON.stringify(v)}`);
  }
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new FilterError(`${name}: not a valid time: ${JSON.stringify(v)}`);
  return t;
}

/** The filters in `q`. Throws FilterError naming a malformed one. Empty values are no filter. */
export function parseFilters(q: URLSearchParams): Filters {
  const f: Filters = {};
  const get = (k: string) => {
    const v = q.get(k);
    return v === null || v === '' ? undefined : v;
  };
  const set = <K extends keyof Filters>(k: K, v: Filters[K] | undefined) => {
    if (v !== undefined) f[k] = v;
  };
  set('actor', get('actor'));
  set('target', get('target'));
  set('method', get('method'));
  set('protocol', get('protocol'));
  set('status', get('status'));
  set('requestId', get('request_id'));
  set('stream', get('stream'));
  const path = get('path');
  if (path !== undefined) {
    if (!path.startsWith('/')) throw new FilterError(`path must start with "/", got ${JSON.stringify(path)}`);
    f.path = path;
  }
  const d = get('decision');
  if (d !== undefined) {
    if (d !== 'allowed' && d !== 'denied')
      throw new FilterError(`decision must be "allowed" or "denied", got ${JSON.stringify(d)}`);
    f.decision = d;
  }
  const from = get('from');
  if (from !== undefined) f.fromMs = time('from', from);
  const to = get('to');
  if (to !== undefined) f.toMs = time('to', to);
  const words = get('q');
  if (words !== undefined && words.trim() !== '') f.q = words;
  return f;
}

/** The page size in `q` (default 100, at most 1,000). Throws FilterError when malformed. */
export function parseLimit(q: URLSearchParams): number {
  const v = q.get('limit');
  if (v === null || v === '') return DEFAULT_LIMIT;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_LIMIT)
    throw new FilterError(`limit must be 1..${MAX_LIMIT}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** An opaque cursor for "results below leaf index `before`". */
export function encodeCursor(before: number): string {
  return Buffer.from(`b:${before}`).toString('base64url');
}

/** The leaf index a cursor pages below; null without a cursor. Throws FilterError when malformed. */
export function parseCursor(q: URLSearchParams): number | null {
  const c = q.get('cursor');
  if (c === null || c === '') return null;
  const m = /^b:(\d{1,16})$/.exec(Buffer.from(c, 'base64url').toString('utf8'));
  if (!m || !Number.isSafeInteger(Number(m[1])))
    throw new FilterError('cursor is malformed (use the "next" value of a previous answer)');
  return Number(m[1]);
}

/** The filters back as query-string pairs (the CLI sends them; the page reads the same names). */
export function filtersToParams(f: Filters): URLSearchParams {
  const p = new URLSearchParams();
  const add = (k: string, v: string | number | undefined) => {
    if (v !== undefined) p.set(k, String(v));
  };
  add('actor', f.actor);
  add('target', f.target);
  add('method', f.method);
  add('path', f.path);
  add('protocol', f.protocol);
  add('decision', f.decision);
  add('status', f.status);
  add('from', f.fromMs !== undefined ? new Date(f.fromMs).toISOString() : undefined);
  add('to', f.toMs !== undefined ? new Date(f.toMs).toISOString() : undefined);
  add('request_id', f.requestId);
  add('stream', f.stream);
  add('q', f.q);
  return p;
}
