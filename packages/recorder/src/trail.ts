/**
 * AccessTrail: where access events go, with the guarantees of the chosen mode. Every event goes through the
 * spool's stream (stream.ts), which numbers and chains it as it becomes durable, and reaches the log in that
 * order through the shipper.
 *
 * - spool: `before()` resolves once the event is durable in the local spool; the shipper delivers it later.
 * - strict: `before()` resolves once the log acknowledged the event (and every one before it in the stream)
 *   with a verified receipt; if that does not happen in time, `before()` throws and the caller must not serve
 *   the request (the event stays in the spool and reaches the log when it comes back).
 * `after()` (response events, denials) always goes through the spool: the answer has been sent by then.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Registry, Counter, Gauge } from 'prom-client';
import { ProxyError } from './errors.js';
import { eventBytes, type AccessEvent } from './events.js';
import { LogWriter, type LogWriterOptions } from '@trailmark/client';
import { Shipper, type ShipperOptions } from './shipper.js';
import { Spool } from './spool.js';
import {
  EncodedEvent,
  EventStream,
  loadStreamKey,
  streamKeyName,
  type StreamKey,
  type UnsealedEvent,
} from './stream.js';

/**
 * `spool`: a request goes ahead once its event is durable in the spool; `strict`: only once the log acknowledged it
 * with a verified receipt.
 */
export type TrailMode = 'spool' | 'strict';

/** Configuration of an AccessTrail: spool, log, mode, shipping and metrics. */
export interface AccessTrailOptions {
  /** Spool directory. */
  spoolDir: string;
  log: LogWriterOptions | LogWriter;
  mode?: TrailMode;
  /** Strict mode: how long to wait for the log's receipt before answering 503 (default 5 s). */
  strictDeadlineMs?: number;
  shipper?: Omit<ShipperOptions, 'spool' | 'client'>;
  /** Registry for the trail's metrics (a fresh one by default). */
  registry?: Registry;
  /** The events' `proxy` field for the stream's own events (default: the host name). */
  proxy?: string;
  /** The stream key: a key file, or a loaded key (default: DIR/stream.key in the spool, created when absent). */
  streamKey?: string | StreamKey;
  /** Milliseconds between heartbeats (default 30 s). */
  heartbeatMs?: number;
  /** See EventStreamOptions.trackResponses (default true). */
  trackResponses?: boolean;
  /**
   * false: events go to the spool without stream fields, as before streams existed. Only for measuring what
   * streams cost (scripts/bench-proxy.ts); such events do not meet contract section 4.
   */
  streams?: boolean;
  /** Called with errors nobody awaits (a heartbeat that could not be written). */
  onError?: (e: Error) => void;
}

/**
 * Strict mode could not get the log's verified receipt for an event in time (code 'log-unavailable'): the request is
 * answered 503.
 */
export class StrictModeError extends ProxyError {}

/**
 * The recording side of a proxy or application: an event stream written to a durable spool and shipped to the log, with
 * strict mode waiting for the log's receipt.
 */
export class AccessTrail {
  readonly registry: Registry;
  private readonly strictFailures: Counter;
  private readonly strictAcks: Counter;
  /** Strict mode: until when the log counts as down (ms since the epoch). */
  private logDownUntil = 0;

  private constructor(
    readonly spool: Spool,
    readonly client: LogWriter,
    readonly shipper: Shipper,
    /** The spool's stream (null only with `streams: false`). */
    readonly stream: EventStream | null,
    readonly mode: TrailMode,
    private readonly strictDeadlineMs: number,
    registry: Registry,
  ) {
    this.registry = registry;
    const sp = spool;
    const sh = shipper;
    const cl = client;
    new Gauge({
      name: 'trailmark_spool_depth',
      help: 'Events in the local spool not yet delivered to the log',
      registers: [registry],
      collect() {
        this.set(sp.depth);
      },
    });
    new Gauge({
      name: 'trailmark_spool_oldest_undelivered_age_seconds',
      help: 'Age of the oldest undelivered event in the spool (0 when empty)',
      registers: [registry],
      collect() {
        const t = sp.oldestTime;
        this.set(t === null ? 0 : Math.max(0, (Date.now() - t) / 1000));
      },
    });
    // counters fed from the components' own tallies when scraped (inc by the difference since the last scrape)
    const fromTally = (name: string, help: string, read: () => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const now = read();
          if (now > seen) this.inc(now - seen);
          seen = now;
        },
      });
    };
    fromTally(
      'trailmark_spool_delivered_total',
      'Events delivered to the log with a verified receipt and removed from the spool',
      () => sh.stats.delivered,
    );
    fromTally(
      'trailmark_spool_failed_deliveries_total',
      'Batch deliveries that failed (log unavailable, refused, or receipt not verified); retried',
      () => sh.stats.failedBatches,
    );
    fromTally(
      'trailmark_log_receipt_failures_total',
      'Log answers whose receipt did not verify against the log key',
      () => cl.stats.receiptFailures,
    );
    this.strictAcks = new Counter({
      name: 'trailmark_strict_acks_total',
      help: 'Request events acknowledged by the log before forwarding (strict mode)',
      registers: [registry],
    });
    this.strictFailures = new Counter({
      name: 'trailmark_strict_failures_total',
      help: 'Requests refused because the log did not acknowledge in time (strict mode)',
      registers: [registry],
    });
  }

  /**
   * Opens the spool, takes over its stream (stream.ts) and starts the shipper. Precondition: the spool dir is
   * not in use by another process (else SpoolError 'locked'); throws ConfigError for an unusable stream key.
   */
  static async open(opts: AccessTrailOptions): Promise<AccessTrail> {
    const client = opts.log instanceof LogWriter ? opts.log : new LogWriter(opts.log);
    const mode = opts.mode ?? 'spool';
    const proxy = opts.proxy ?? hostname();
    // read the key before the spool is taken, so a bad key leaves nothing behind
    const key =
      opts.streams === false
        ? null
        : typeof opts.streamKey === 'object'
          ? opts.streamKey
          : await loadStreamKey(opts.streamKey ?? join(opts.spoolDir, 'stream.key'), {
              create: opts.streamKey === undefined,
              name: streamKeyName(proxy),
            });
    const spool = await Spool.open({ dir: opts.spoolDir });
    let stream: EventStream | null = null;
    try {
      if (key)
        stream = await EventStream.open(spool, {
          key,
          proxy,
          ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}),
          ...(opts.trackResponses !== undefined ? { trackResponses: opts.trackResponses } : {}),
          ...(opts.onError ? { onError: opts.onError } : {}),
        });
    } catch (e) {
      await spool.close();
      throw e;
    }
    // strict: a request waits for the shipper, so it neither lingers nor backs off long once the log is back
    const shipperOpts =
      mode === 'strict'
        ? { lingerMs: 0, retryBaseMs: 50, retryMaxMs: 500, attempts: 1, ...opts.shipper }
        : opts.shipper;
    const shipper = new Shipper({ ...shipperOpts, spool, client });
    const trail = new AccessTrail(
      spool,
      client,
      shipper,
      stream,
      mode,
      opts.strictDeadlineMs ?? 5000,
      opts.registry ?? new Registry(),
    );
    shipper.start();
    return trail;
  }

  private write(event: AccessEvent | UnsealedEvent | EncodedEvent) {
    if (this.stream) return this.stream.append(event as UnsealedEvent | EncodedEvent);
    return this.spool.append(event instanceof EncodedEvent ? event.bytes() : eventBytes(event));
  }

  /**
   * after() with a callback instead of a promise, for callers recording many events per turn of the event loop
   * (one fewer promise and microtask each). `done` is called once, never synchronously.
   */
  afterThen(event: AccessEvent | UnsealedEvent | EncodedEvent, done: (error: Error | null) => void): void {
    if (this.stream) this.stream.appendThen(event as UnsealedEvent | EncodedEvent, (e) => done(e));
    else this.write(event).then(() => done(null), done);
  }

  /**
   * Notes the status an answer went out with, for the aborted response event a crash before its own response
   * event would leave (contract section 4). Cheap: one small unsynced write. Precondition: none.
   */
  noteSent(requestId: string, status: number): void {
    this.stream?.noteSent(requestId, status);
  }

  /** Durably records an event in the spool (shipped later). Precondition: a JSON-only event. */
  async after(event: AccessEvent | UnsealedEvent | EncodedEvent): Promise<void> {
    await this.write(event);
  }

  /**
   * Records an event that must be safe before the request proceeds: durable in the spool (spool mode) or
   * acknowledged by the log with a verified receipt (strict mode). Throws StrictModeError (strict, the log did
   * not acknowledge in time; the event stays spooled) or SpoolError (disk).
   */
  async before(event: AccessEvent | UnsealedEvent | EncodedEvent): Promise<void> {
    const pos = await this.write(event);
    if (this.mode === 'spool') return;
    // after a failure, a short wait per request until the log answers again: clients get their 503 at once
    // instead of each waiting out the whole deadline
    const degraded = Date.now() < this.logDownUntil;
    this.shipper.poke();
    if (await this.spool.delivered(pos, degraded ? Math.min(250, this.strictDeadlineMs) : this.strictDeadlineMs)) {
      this.logDownUntil = 0;
      this.strictAcks.inc();
      return;
    }
    this.logDownUntil = Date.now() + 2000;
    this.strictFailures.inc();
    throw new StrictModeError(
      'log-unavailable',
      `the log did not acknowledge the request event in time${this.shipper.stats.lastError ? `: ${this.shipper.stats.lastError}` : ''}`,
    );
  }

  /** Stops the shipper, closes the spool and the log client's connections. Precondition: none (call once). */
  async close(): Promise<void> {
    // a clean shutdown ends the stream (signed); the shipper then gets a moment to deliver the end
    if (this.stream) {
      try {
        await this.stream.end();
        await this.shipper.drained(2000);
      } catch {
        /* the end stays in the spool and is shipped at the next start */
      }
    }
    await this.shipper.stop();
    await this.spool.close();
    this.client.close();
  }
}
