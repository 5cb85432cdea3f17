/**
 * One HTTP client for every Trailmark component that talks to a log, a witness or a peer: node:http(s) with a
 * keep-alive agent (for our small JSON and tile answers it measured level with undici's Pool and 2 to 3 times
 * fetch()'s rate, and it needs no dependency), a cap on the answer's bytes (a hostile server cannot make us
 * buffer without bound), a per-attempt timeout, an AbortSignal, and one retry policy. Every failure is one
 * TransportError whose `code` says what went wrong.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';

/** What went wrong with an exchange. Only 'timeout', 'network' and some 'http-status' are worth retrying. */
export type TransportErrorCode =
  'bad-url' | 'timeout' | 'aborted' | 'network' | 'http-status' | 'too-large' | 'bad-json';

/** A failed HTTP exchange: `status` when the server answered, `cause` the underlying error (socket, parser). */
export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
    /** The URL asked for. */
    readonly url: string,
    readonly extra: {
      status?: number;
      cause?: unknown;
      /** The server's Retry-After, in ms from when the answer came. */
      retryAfterMs?: number;
      /** The body of an 'http-status' answer (within the byte cap). */
      body?: Buffer;
    } = {},
  ) {
    super(message, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'TransportError';
  }

  /** The HTTP status, when the server answered. */
  get status(): number | undefined {
    return this.extra.status;
  }
}

/** HTTP statuses retried by default: rate limited, and the server errors a restart or a proxy in front produces. */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

/** When and how often a request is tried again. */
export interface RetryPolicy {
  /** Attempts, the first included (>= 1). */
  attempts: number;
  /** Backoff: attempt n waits a uniformly random time in [0, min(maxMs, baseMs * 2^n)) ("full jitter"). */
  baseMs: number;
  maxMs: number;
  /** A server's Retry-After is honoured up to this long. */
  maxRetryAfterMs: number;
  /** Give up once this many ms have passed since the first attempt, waits included (no deadline when absent). */
  deadlineMs?: number;
  /** Statuses worth another attempt. */
  statuses: ReadonlySet<number>;
}

/** Six attempts, 100 ms doubling to 5 s, Retry-After honoured up to 10 s, the statuses of RETRY_STATUSES. */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 6,
  baseMs: 100,
  maxMs: 5_000,
  maxRetryAfterMs: 10_000,
  statuses: RETRY_STATUSES,
};

/** Parses Retry-After (delta seconds or an HTTP-date) into ms from `now`; undefined when absent or malformed. */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/**
 * The wait before attempt `attempt + 1` (0-based `attempt` just failed): full jitter, or the server's Retry-After
 * when longer (capped by maxRetryAfterMs). Precondition: attempt >= 0.
 */
export function backoffMs(policy: RetryPolicy, attempt: number, retryAfter?: number, random = Math.random): number {
  const jitter = random() * Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
  return Math.max(jitter, Math.min(retryAfter ?? 0, policy.maxRetryAfterMs));
}

/** Whether an error is worth another attempt under `policy`: timeouts, network errors, the policy's statuses. */
export function isRetryable(e: unknown, policy: RetryPolicy): boolean {
  if (!(e instanceof TransportError)) return false;
  if (e.code === 'timeout' || e.code === 'network') return true;
  return e.code === 'http-status' && e.status !== undefined && policy.statuses.has(e.status);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs `attempt(n, msLeft)` until it succeeds, fails with an error `isRetryable` refuses, the attempts are spent,
 * the deadline would pass during the next wait, or `signal` aborts; then rethrows the last error. `onRetry` is
 * called before each wait. Precondition: policy.attempts >= 1.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (n: number, msLeft: number) => Promise<T>,
  opts: { signal?: AbortSignal; onRetry?: (e: unknown, n: number, waitMs: number) => void } = {},
): Promise<T> {
  const deadline = policy.deadlineMs !== undefined ? Date.now() + policy.deadlineMs : Infinity;
  const attempts = Math.max(1, policy.attempts);
  for (let n = 0; ; n++) {
    try {
      return await attempt(n, deadline - Date.now());
    } catch (e) {
      if (n + 1 >= attempts || !isRetryable(e, policy) || opts.signal?.aborted) throw e;
      const wait = backoffMs(policy, n, e instanceof TransportError ? e.extra.retryAfterMs : undefined);
      if (Date.now() + wait >= deadline) throw e;
      opts.onRetry?.(e, n, wait);
      await sleep(wait, opts.signal);
      if (opts.signal?.aborted) throw e;
    }
  }
}

/** Settings of a transport; each can be overridden per request. */
export interface TransportOptions {
  /** Per-attempt timeout: connecting, sending and reading the whole answer (default 10 s). */
  timeoutMs?: number;
  /** Largest answer body read (default 16 MiB); a longer one fails as 'too-large'. */
  maxBytes?: number;
  /** Connections kept open to the server (default 64). */
  maxSockets?: number;
  /** Headers sent with every request (a per-request header of the same name wins). */
  headers?: Record<string, string>;
  /** The retry policy of `request` (default DEFAULT_RETRY). */
  retry?: Partial<RetryPolicy>;
}

/** One request: everything but the path is optional. */
export interface RequestOptions {
  method?: string;
  body?: string | Uint8Array;
  headers?: Record<string, string>;
  timeoutMs?: number;
  maxBytes?: number;
  /** Aborts the request, and any wait between attempts ('aborted'). */
  signal?: AbortSignal;
  /** Overrides parts of the transport's retry policy for this request. */
  retry?: Partial<RetryPolicy>;
}

/** A complete answer. */
export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Error answers (non-2xx) are read only this far: enough for a {"error": ...} message. */
const MAX_ERROR_BODY = 64 << 10;

/** Largest answer read by default. */
export const MAX_ANSWER_BYTES = 16 << 20;

/** Counters of a transport's traffic. */
export interface TransportStats {
  requests: number;
  retries: number;
  bytes: number;
}

/**
 * A keep-alive HTTP client of one server (`baseUrl`, which may carry a path prefix and user:password).
 * Paths given to its methods are appended to the base; they start with '/'.
 */
export class HttpTransport {
  /** The base URL, without a trailing slash. */
  readonly url: string;
  readonly stats: TransportStats = { requests: 0, retries: 0, bytes: 0 };
  readonly policy: RetryPolicy;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;
  /** Request options shared by every request (parsed once: per-request URL parsing showed in profiles). */
  private readonly base: http.RequestOptions;
  private readonly basePath: string;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;

  /** Precondition: `baseUrl` is an http(s) URL; throws TransportError('bad-url') otherwise. */
  constructor(baseUrl: string, opts: TransportOptions = {}) {
    let u: URL;
    try {
      u = new URL(baseUrl);
    } catch (e) {
      throw new TransportError('bad-url', `not a URL: ${JSON.stringify(baseUrl)}`, baseUrl, { cause: e });
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new TransportError('bad-url', `URL must be http or https: ${baseUrl}`, baseUrl);
    this.url = u.href.replace(/\/+$/, '');
    this.policy = { ...DEFAULT_RETRY, ...opts.retry };
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxBytes = opts.maxBytes ?? MAX_ANSWER_BYTES;
    this.mod = u.protocol === 'https:' ? https : http;
    this.agent = new this.mod.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 64 });
    this.base = {
      protocol: u.protocol,
      hostname: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port || undefined,
      agent: this.agent,
      ...(u.username ? { auth: `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` } : {}),
    };
    this.defaultHeaders = opts.headers ?? {};
    this.basePath = u.pathname.replace(/\/+$/, '');
  }

  private readonly defaultHeaders: Record<string, string>;

  /**
   * One attempt: resolves with any complete answer, whatever its status. Rejects with TransportError 'timeout',
   * 'aborted', 'network' or 'too-large'. Precondition: path starts with '/'.
   */
  exchange(path: string, opts: RequestOptions = {}): Promise<HttpAnswer> {
    const url = this.url + path;
    const method = opts.method ?? 'GET';
    const what = `${method} ${url}`;
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const max = opts.maxBytes ?? this.maxBytes;
    const body = typeof opts.body === 'string' ? Buffer.from(opts.body) : opts.body;
    const headers = { ...this.defaultHeaders, ...opts.headers };
    if (body) headers['content-length'] = String(body.length);
    this.stats.requests++;
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new TransportError('aborted', `${what}: aborted`, url));
      let settled = false;
      const settle = (e: TransportError | undefined, answer?: HttpAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (e) {
          req.destroy();
          reject(e);
        } else resolve(answer!);
      };
      const network = (e: NodeJS.ErrnoException) =>
        settle(
          new TransportError('network', `${what}: ${e.code ? `${e.code} (${e.message})` : e.message}`, url, {
            cause: e,
          }),
        );
      const tooLarge = (status: number | undefined, why: string) =>
        settle(new TransportError('too-large', `${what}: ${why}`, url, { status }));
      const req = this.mod.request({ ...this.base, method, path: this.basePath + path, headers }, (res) => {
        res.on('error', network);
        const status = res.statusCode ?? 0;
        // an error answer is read only as far as its message, and never fails for its size: a 404 page larger
        // than a tile must still say 404
        const ok = status >= 200 && status < 300;
        const limit = ok ? max : Math.min(max, MAX_ERROR_BODY);
        const declared = Number(res.headers['content-length']);
        if (ok && declared > max)
          return tooLarge(status, `answer larger than ${max} bytes (declared ${declared}, exceeds ${max})`);
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          const room = limit - n;
          n += c.length;
          if (n <= limit) chunks.push(c);
          else if (ok) tooLarge(status, `answer larger than ${max} bytes (more than ${max} bytes received)`);
          else if (room > 0) chunks.push(c.subarray(0, room));
        });
        res.on('end', () => {
          this.stats.bytes += n;
          settle(undefined, { status, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      const onAbort = () =>
        settle(new TransportError('aborted', `${what}: aborted`, url, { cause: opts.signal?.reason }));
      // one deadline for the whole exchange, not an idle timeout: a server trickling bytes cannot hold us
      const timer = setTimeout(
        () => settle(new TransportError('timeout', `${what}: timed out after ${timeoutMs} ms`, url)),
        timeoutMs,
      );
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', network);
      req.end(body);
    });
  }

  /**
   * A request under the retry policy: resolves with a 2xx answer; any other status ends as TransportError
   * 'http-status' (with the answer's body and Retry-After), after retries where the policy retries it.
   * Precondition: path starts with '/'.
   */
  request(path: string, opts: RequestOptions = {}): Promise<HttpAnswer> {
    const policy = opts.retry ? { ...this.policy, ...opts.retry } : this.policy;
    return withRetries(
      policy,
      async (_n, left) => {
        const timeoutMs = Math.max(1, Math.min(opts.timeoutMs ?? this.timeoutMs, left));
        const res = await this.exchange(path, { ...opts, timeoutMs });
        if (res.status >= 200 && res.status < 300) return res;
        const summary = bodySummary(res.body.toString('utf8'));
        throw new TransportError(
          'http-status',
          `${opts.method ?? 'GET'} ${this.url + path}: HTTP ${res.status}${summary ? `: ${summary}` : ''}`,
          this.url + path,
          {
            status: res.status,
            body: res.body,
            retryAfterMs: retryAfterMs(headerValue(res.headers['retry-after'])),
          },
        );
      },
      { signal: opts.signal, onRetry: () => this.stats.retries++ },
    );
  }

  /** `request`, then the body parsed as JSON ('bad-json' when it is not). Precondition: path starts with '/'. */
  async json(path: string, opts: RequestOptions = {}): Promise<unknown> {
    const res = await this.request(path, opts);
    try {
      return JSON.parse(res.body.toString('utf8'));
    } catch (e) {
      throw new TransportError(
        'bad-json',
        `${opts.method ?? 'GET'} ${this.url + path}: answer is not JSON`,
        this.url + path,
        { status: res.status, cause: e },
      );
    }
  }

  /** Closes the kept-alive connections; requests in flight fail. */
  close(): void {
    this.agent.destroy();
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
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
 * the first line of the text. Empty for an empty body. Precondition: none.
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
