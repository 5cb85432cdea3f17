/**
 * LogReader: the read side of a Trailmark (C2SP tlog-tiles) log over HTTP. Everything it returns is
 * untrusted bytes; authenticate them with @trailmark/tlog (openCheckpoint, VerifiedTileReader).
 *
 * Requests go through @trailmark/node's HttpTransport (node:http keep-alive, a cap on every answer, one retry
 * policy: exponential backoff with full jitter on 429, 500, 502, 503, 504, timeouts and network errors,
 * Retry-After honoured), and at most `concurrency` are in flight.
 */
import { HttpTransport, TransportError, retryAfterMs } from '@trailmark/node';
import { MAX_NOTE_SIZE, TILE_WIDTH, tilePath, type TileFetcher, type TileRef } from '@trailmark/tlog';

/** Why a read failed: the log could not be read (never evidence of misbehaviour). The one transport error. */
export const LogReadError = TransportError;
export type LogReadError = TransportError;

export { retryAfterMs };

/** Retry, timeout and concurrency settings of a LogReader. */
export interface LogReaderOptions {
  /** Per-attempt timeout. Default 15 s. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 5. */
  retries?: number;
  /** First backoff step; doubles each retry. Default 200 ms. */
  baseDelayMs?: number;
  /** Largest wait between attempts, Retry-After included. Default 30 s. */
  maxDelayMs?: number;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Extra request headers (for example a User-Agent). */
  headers?: Record<string, string>;
}

/** Counters of a LogReader: requests sent, retries and body bytes read. */
export interface LogReaderStats {
  requests: number;
  retries: number;
  bytes: number;
}

/** An entry bundle holds at most 256 entries of at most 65,535 bytes, each with a 2-byte length. */
const MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xffff);

/**
 * An unauthenticated reader of a log's tiles, entry bundles and checkpoint over HTTP, with retries and a cap on
 * requests in flight.
 */
export class LogReader {
  /** The log's base URL, without a trailing slash. */
  readonly url: string;
  private readonly opts: Required<Omit<LogReaderOptions, 'headers'>> & { headers: Record<string, string> };
  private readonly http: HttpTransport;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  /** Precondition: `url` is an http(s) URL; throws LogReadError (TransportError 'bad-url') otherwise. */
  constructor(url: string, opts: LogReaderOptions = {}) {
    this.opts = {
      timeoutMs: opts.timeoutMs ?? 15_000,
      retries: opts.retries ?? 5,
      baseDelayMs: opts.baseDelayMs ?? 200,
      maxDelayMs: opts.maxDelayMs ?? 30_000,
      concurrency: Math.max(1, opts.concurrency ?? 8),
      headers: { 'user-agent': 'trailmark-reader', ...opts.headers },
    };
    this.http = new HttpTransport(url, {
      timeoutMs: this.opts.timeoutMs,
      maxSockets: this.opts.concurrency,
      headers: this.opts.headers,
      retry: {
        attempts: this.opts.retries + 1,
        baseMs: this.opts.baseDelayMs,
        maxMs: this.opts.maxDelayMs,
        maxRetryAfterMs: this.opts.maxDelayMs,
      },
    });
    this.url = this.http.url;
  }

  /** Requests, retries and bytes read. */
  get stats(): LogReaderStats {
    return this.http.stats;
  }

  /** The options in force (to open another reader on the same log, e.g. in a worker thread). */
  get options(): LogReaderOptions {
    return { ...this.opts, headers: { ...this.opts.headers } };
  }

  /** The latest checkpoint note text, as served (unverified). */
  async checkpoint(): Promise<string> {
    const body = await this.get('checkpoint', MAX_NOTE_SIZE);
    return new TextDecoder().decode(body);
  }

  /**
   * A tile or entry bundle of exactly `ref.width` hashes/entries. A missing partial tile is fetched as the
   * full tile and cut to the width (tlog-tiles lets logs drop partial tiles once full); hash tiles are cut
   * to the width so a full tile serves a partial request. Bundles cannot be cut without parsing: a full
   * bundle for a partial request is cut to its first `width` entries.
   */
  async tile(ref: TileRef): Promise<Uint8Array> {
    const limit = ref.entries ? MAX_BUNDLE_BYTES : TILE_WIDTH * 32;
    try {
      return await this.get(tilePath(ref), limit);
    } catch (e) {
      if (!(e instanceof LogReadError) || e.status !== 404 || ref.width === TILE_WIDTH) throw e;
    }
    const full = await this.get(tilePath({ ...ref, width: TILE_WIDTH }), limit);
    return ref.entries ? cutBundle(full, ref.width) : full.subarray(0, ref.width * 32);
  }

  /** `tile` bound to this reader: the fetcher a VerifiedTileReader takes. */
  readonly fetchTile: TileFetcher = (ref) => this.tile(ref);

  /**
   * GET a JSON document at `path` (relative to the log URL, query included). Throws LogReadError on HTTP
   * errors (with the status) and on bodies that are not JSON.
   */
  async getJson(path: string, maxBytes = 16 << 20): Promise<unknown> {
    return this.limited(() => this.http.json(`/${path.replace(/^\/+/, '')}`, { maxBytes }));
  }

  /** GET `path` with timeout, retries and the concurrency bound; the body, at most maxBytes. */
  async get(path: string, maxBytes: number): Promise<Uint8Array> {
    const res = await this.limited(() => this.http.request(`/${path.replace(/^\/+/, '')}`, { maxBytes }));
    return new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength);
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Closes idle keep-alive connections (the reader stays usable). */
  close(): void {
    this.http.close();
  }

  private acquire(): Promise<void> {
    if (this.active < this.opts.concurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

/** The first `width` entries of an entry bundle (a full bundle served for a partial request). */
function cutBundle(data: Uint8Array, width: number): Uint8Array {
  let o = 0;
  for (let i = 0; i < width && o + 2 <= data.length; i++) o += 2 + ((data[o] << 8) | data[o + 1]);
  return data.subarray(0, Math.min(o, data.length));
}
