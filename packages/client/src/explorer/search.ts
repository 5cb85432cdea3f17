/**
 * A search on an explorer whose every result is checked against the log itself before it is handed out:
 * the explorer is not trusted. Each event's entry is canonicalized (RFC 8785) and hashed here, and that
 * leaf hash must be the one a tile verified against the log's signed checkpoint holds at the event's
 * leaf index (the same check an inclusion proof makes). The joined response is checked the same way.
 */
import {
  b64encode,
  errorMessage,
  bytesEqual,
  canonicalJson,
  type ErrorDetails,
  type NoteVerifier,
  type Policy,
} from '@trailmark/tlog';
import { HttpTransport, TransportError } from '@trailmark/node';
import { ExplorerError } from './errors.js';
import { LogReader, fetchVerifiedCheckpoint, nodeHasher, type VerifiedLog } from '../reader/index.js';
import { MAX_LIMIT, filtersToParams, type Filters } from './filters.js';
import type { StoredEvent } from './formats.js';

/** The explorer's answer did not match the log: a result that is not the log's entry at its index. */
export class ExplorerMismatchError extends ExplorerError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('explorer-mismatch', message, details);
  }
}

/** The explorer could not be asked (network, HTTP error, not an explorer): never evidence. */
export class ExplorerReadError extends ExplorerError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('explorer-read', message, details);
  }
}

/** Where a VerifiedSearch asks, what it asks and the keys it checks the answers with. */
export interface VerifiedSearchOptions {
  explorer: string;
  logKey: NoteVerifier;
  policy?: Policy;
  filters: Filters;
  /** The log's URL; default: the one the explorer names (safe: checkpoints are verified with logKey). */
  log?: string;
  /** Stop after this many results (default: every match). */
  max?: number;
}

interface ApiEvent {
  leaf_index: number;
  leaf_hash: string;
  entry: unknown;
  response: { leaf_index: number; leaf_hash: string; entry: unknown } | null;
}

/** GET a JSON document from the explorer: one attempt, a 30 s deadline, the transport's cap on the answer. */
async function getJson(http: HttpTransport, path: string): Promise<unknown> {
  try {
    return await http.json(path);
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const why =
      e.code === 'bad-json' ? `GET ${http.url}${path}: the answer is not JSON (is this an explorer?)` : e.message;
    throw new ExplorerReadError(why, { cause: e });
  }
}

/**
 * An explorer search whose every result is checked for inclusion in a checkpoint verified with the log key, so a lying
 * explorer is caught rather than believed.
 */
export class VerifiedSearch {
  /** The checkpoint every result was checked against. */
  log: VerifiedLog | null = null;
  private readonly base: string;

  constructor(private readonly opts: VerifiedSearchOptions) {
    this.base = opts.explorer.replace(/\/+$/, '');
  }

  /** Every match, newest first, each checked against the log. Throws ExplorerMismatchError on the first that is not. */
  async *results(): AsyncGenerator<StoredEvent> {
    let http: HttpTransport;
    try {
      http = new HttpTransport(this.base, { timeoutMs: 30_000, retry: { attempts: 1 } });
    } catch (e) {
      throw new ExplorerReadError(errorMessage(e), { cause: e });
    }
    const info = (await getJson(http, '/api/info').catch((e) => (http.close(), Promise.reject(e)))) as {
      log?: unknown;
    };
    const logUrl = this.opts.log ?? (typeof info.log === 'string' ? info.log : undefined);
    if (!logUrl) {
      http.close();
      throw new ExplorerReadError(`${this.base}/api/info names no log URL; give the log's URL`);
    }
    const reader = new LogReader(logUrl);
    try {
      const params = filtersToParams(this.opts.filters);
      params.set('limit', String(Math.min(MAX_LIMIT, this.opts.max ?? MAX_LIMIT)));
      let n = 0;
      for (;;) {
        const page = (await getJson(http, `/api/events?${params}`)) as {
          tree_size?: unknown;
          events?: unknown;
          next?: unknown;
        };
        if (!Array.isArray(page.events))
          throw new ExplorerReadError(`${this.base}/api/events: no events array (is this an explorer?)`);
        for (const ev of page.events as ApiEvent[]) {
          yield await this.check(reader, ev);
          if (this.opts.max !== undefined && ++n >= this.opts.max) return;
        }
        if (typeof page.next !== 'string') return;
        params.set('cursor', page.next);
      }
    } finally {
      reader.close();
      http.close();
    }
  }

  /** The verified checkpoint covering `index`, fetched again when the explorer is ahead of the one in hand. */
  private async logFor(reader: LogReader, index: number): Promise<VerifiedLog> {
    if (!this.log || BigInt(index) >= this.log.checkpoint.size) {
      this.log = await fetchVerifiedCheckpoint(reader, this.opts.logKey, {
        hasher: nodeHasher,
        ...(this.opts.policy ? { policy: this.opts.policy } : {}),
      });
    }
    return this.log;
  }

  private async checkOne(
    reader: LogReader,
    what: string,
    index: unknown,
    entry: unknown,
  ): Promise<{ index: number; hash: Uint8Array; text: string }> {
    if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) {
      throw new ExplorerMismatchError(`${what}: leaf_index ${JSON.stringify(index)} is not a leaf index`);
    }
    let bytes: Uint8Array;
    try {
      bytes = canonicalJson(entry);
    } catch (e) {
      throw new ExplorerMismatchError(
        `${what} at leaf index ${index}: the entry is not a loggable JSON object (${errorMessage(e)})`,
        { cause: e },
      );
    }
    const hash = nodeHasher.leaf(bytes);
    const log = await this.logFor(reader, index);
    if (BigInt(index) >= log.checkpoint.size) {
      throw new ExplorerMismatchError(
        `${what}: leaf index ${index} is not below the log's checkpoint size ${log.checkpoint.size}`,
      );
    }
    const logged = await log.tiles.leafHash(BigInt(index));
    if (!bytesEqual(logged, hash)) {
      throw new ExplorerMismatchError(
        `${what} at leaf index ${index} is not what the log holds there: the entry hashes to ${b64encode(hash)}, the log's verified tile holds ${b64encode(logged)}`,
        { expected: b64encode(logged), found: b64encode(hash) },
      );
    }
    return { index, hash, text: Buffer.from(bytes).toString('utf8') };
  }

  private async check(reader: LogReader, ev: ApiEvent): Promise<StoredEvent> {
    const main = await this.checkOne(reader, 'event', ev.leaf_index, ev.entry);
    let response: StoredEvent['response'] = null;
    if (ev.response !== null && ev.response !== undefined) {
      const r = await this.checkOne(
        reader,
        `response of event ${main.index}`,
        ev.response.leaf_index,
        ev.response.entry,
      );
      response = { leaf_index: r.index, leaf_hash: r.hash, entry: r.text };
    }
    return { leaf_index: main.index, leaf_hash: main.hash, entry: main.text, response };
  }
}
