/**
 * The monitor's HTTP to logs, peers and webhooks, on @trailmark/node's one transport: one keep-alive pool per
 * origin, a deadline, a signal, a cap on the answer's size. Failures are TransportError.
 */
import { bodySummary, HttpTransport, MAX_ANSWER_BYTES, TransportError } from '@trailmark/node';

export { bodySummary };

/** Deadline of one request (default 10 s), a signal that aborts it early (shutdown), a cap on the answer's size. */
export interface RequestLimits {
  timeoutMs?: number;
  signal?: AbortSignal;
  maxBytes?: number;
}

/** Largest answer read from a log or peer (default): a peer cannot make the monitor buffer without bound. */
export const MAX_RESPONSE_BYTES = MAX_ANSWER_BYTES;

/** A plain HTTP answer: status, Content-Type and body text. */
export interface HttpResponse {
  status: number;
  contentType: string;
  text: string;
}

/** Joins a base URL (with or without trailing slash) and an absolute path. Precondition: path starts with '/'. */
export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/** One transport per origin: the monitor talks to a handful of logs and peers, again and again. */
const transports = new Map<string, HttpTransport>();

/**
 * One HTTP exchange with a deadline, no retry (the monitor's own schedule retries). Precondition: url is an
 * absolute http(s) URL. Network failures, timeouts and oversized answers throw TransportError; any status is
 * returned (callers decide what is acceptable).
 */
export async function httpRequest(
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } & RequestLimits = {},
): Promise<HttpResponse> {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new TransportError('bad-url', `not a URL: ${JSON.stringify(url)}`, url, { cause: e });
  }
  let t = transports.get(u.origin);
  if (!t) {
    t = new HttpTransport(u.origin);
    transports.set(u.origin, t);
  }
  const res = await t.exchange(u.pathname + u.search, {
    method: init.method ?? 'GET',
    ...(init.body !== undefined ? { body: init.body } : {}),
    ...(init.headers ? { headers: init.headers } : {}),
    timeoutMs: init.timeoutMs ?? 10_000,
    maxBytes: init.maxBytes ?? MAX_RESPONSE_BYTES,
    ...(init.signal ? { signal: init.signal } : {}),
  });
  return { status: res.status, contentType: res.headers['content-type'] ?? '', text: res.body.toString('utf8') };
}

/** GET that must answer 200; returns the body. Precondition: url is absolute. */
export async function getOk(url: string, limits: RequestLimits = {}): Promise<string> {
  const r = await httpRequest(url, limits);
  if (r.status !== 200) {
    const t = bodySummary(r.text);
    throw new TransportError('http-status', `GET ${url}: status ${r.status}${t ? `: ${t}` : ''}`, url, {
      status: r.status,
    });
  }
  return r.text;
}

/** GET a JSON document (status 200). Precondition: url is absolute. */
export async function getJson(url: string, limits: RequestLimits = {}): Promise<unknown> {
  const text = await getOk(url, limits);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TransportError('bad-json', `GET ${url}: answer is not JSON`, url, { status: 200, cause: e });
  }
}
