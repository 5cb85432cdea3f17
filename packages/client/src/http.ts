import { RequestError } from './errors.js';
import { errorMessage } from '@trailmark/tlog';

/** Deadline of one request (default 10 s), a signal that aborts it early (shutdown), a cap on the answer's size. */
export interface RequestLimits {
  timeoutMs?: number;
  signal?: AbortSignal;
  maxBytes?: number;
}

/** Largest answer read from a log or peer (default): a peer cannot make the monitor buffer without bound. */
export const MAX_RESPONSE_BYTES = 16 << 20;

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      throw new RequestError('', undefined, `answer larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface HttpResponse {
  status: number;
  contentType: string;
  text: string;
}

/** Joins a base URL (with or without trailing slash) and an absolute path. Precondition: path starts with '/'. */
export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/**
 * One HTTP exchange with a deadline. Precondition: url is absolute. Network failures and timeouts throw
 * RequestError without status; any status is returned (callers decide what is acceptable).
 */
export async function httpRequest(
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } & RequestLimits = {},
): Promise<HttpResponse> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      body: init.body,
      headers: init.headers,
      signal: init.signal
        ? AbortSignal.any([AbortSignal.timeout(init.timeoutMs ?? 10_000), init.signal])
        : AbortSignal.timeout(init.timeoutMs ?? 10_000),
      redirect: 'error',
    });
  } catch (e) {
    const err = e as Error & { cause?: Error };
    const why =
      err.name === 'TimeoutError'
        ? 'timed out'
        : init.signal?.aborted
          ? 'aborted (shutting down)'
          : (err.cause?.message ?? err.message);
    throw new RequestError(url, undefined, `${init.method ?? 'GET'} ${url}: ${why}`);
  }
  let text: string;
  try {
    text = await readCapped(res, init.maxBytes ?? MAX_RESPONSE_BYTES);
  } catch (e) {
    if (e instanceof RequestError)
      throw new RequestError(url, res.status, `${init.method ?? 'GET'} ${url}: ${e.message}`);
    throw new RequestError(
      url,
      undefined,
      `${init.method ?? 'GET'} ${url}: reading the body failed: ${errorMessage(e)}`,
    );
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text };
}

/** GET that must answer 200; returns the body. Precondition: url is absolute. */
export async function getOk(url: string, limits: RequestLimits = {}): Promise<string> {
  const r = await httpRequest(url, limits);
  if (r.status !== 200) throw new RequestError(url, r.status, `GET ${url}: status ${r.status}${errorSuffix(r.text)}`);
  return r.text;
}

/** GET a JSON document (status 200). Precondition: url is absolute. */
export async function getJson(url: string, limits: RequestLimits = {}): Promise<unknown> {
  const text = await getOk(url, limits);
  try {
    return JSON.parse(text);
  } catch {
    throw new RequestError(url, 200, `GET ${url}: answer is not JSON`);
  }
}

function errorSuffix(text: string): string {
  const t = bodySummary(text);
  return t ? `: ${t}` : '';
}

/** Control characters out, one line, at most 200 characters: text from a server goes into our log lines. */
function oneLine(s: string): string {
  return s
    .replace(/[\u0000-\u001f\u007f]+/g, ' ') // eslint-disable-line no-control-regex -- control characters are what goes
    .trim()
    .slice(0, 200);
}

/**
 * A short, printable account of an answer's body for an error message: a JSON body's "error", an HTML page's
 * title (a web server that is not a Trailmark log answers with pages; their markup is never echoed), else
 * the first line of the text. Empty for an empty body.
 */
export function bodySummary(text: string): string {
  const t = text.trim();
  if (!t) return '';
  try {
    const j = JSON.parse(t) as { error?: unknown };
    if (typeof j?.error === 'string') return oneLine(j.error);
  } catch {
    /* not JSON */
  }
  if (t.startsWith('<')) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(t.slice(0, 64 << 10))?.[1];
    return `an HTML page${title && oneLine(title) ? ` (${JSON.stringify(oneLine(title))})` : ''}, not a Trailmark log answer`;
  }
  return oneLine(t.split('\n')[0]);
}
