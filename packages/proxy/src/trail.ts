/**
 * AccessTrail: where access events go, with the guarantees of the chosen mode.
 *
 * - spool: `before()` resolves once the event is fsynced in the local spool; the shipper delivers it later.
 * - strict: `before()` resolves once the log acknowledged the event with a verified receipt; if that fails the
 *   event is still spooled (so it reaches the log when it comes back) and `before()` throws, and the caller
 *   must not serve the request.
 * `after()` (response events, denials) always goes through the spool: the answer has been sent by then.
 */
import { Registry, Counter, Gauge } from 'prom-client';
import { LogUnavailableError, ProxyError } from './errors.js';
import { eventBytes, type AccessEvent } from './events.js';
import { LogClient, type LogClientOptions, type Receipt } from './logclient.js';
import { Shipper, type ShipperOptions } from './shipper.js';
import { Spool } from './spool.js';

export type TrailMode = 'spool' | 'strict';

export interface AccessTrailOptions {
  /** Spool directory. */
  spoolDir: string;
  log: LogClientOptions | LogClient;
  mode?: TrailMode;
  /** Strict mode: how long to wait for the log's receipt before answering 503 (default 5 s). */
  strictDeadlineMs?: number;
  shipper?: Omit<ShipperOptions, 'spool' | 'client'>;
  /** Registry for the trail's metrics (a fresh one by default). */
  registry?: Registry;
}

export class StrictModeError extends ProxyError {}

export class AccessTrail {
  readonly registry: Registry;
  private readonly strictFailures: Counter;
  private readonly strictAcks: Counter;
  /** Strict mode: until when the log counts as down (ms since the epoch). */
  private logDownUntil = 0;

  private constructor(
    readonly spool: Spool,
    readonly client: LogClient,
    readonly shipper: Shipper,
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
    fromTally('trailmark_spool_delivered_total', 'Events delivered to the log with a verified receipt and removed from the spool', () => sh.stats.delivered);
    fromTally('trailmark_spool_failed_deliveries_total', 'Batch deliveries that failed (log unavailable, refused, or receipt not verified); retried', () => sh.stats.failedBatches);
    fromTally('trailmark_log_receipt_failures_total', 'Log answers whose receipt did not verify against the log key', () => cl.stats.receiptFailures);
    this.strictAcks = new Counter({ name: 'trailmark_strict_acks_total', help: 'Request events acknowledged by the log before forwarding (strict mode)', registers: [registry] });
    this.strictFailures = new Counter({ name: 'trailmark_strict_failures_total', help: 'Requests refused because the log did not acknowledge in time (strict mode)', registers: [registry] });
  }

  /** Opens the spool and starts the shipper. Precondition: the spool dir is not in use by another process. */
  static async open(opts: AccessTrailOptions): Promise<AccessTrail> {
    const client = opts.log instanceof LogClient ? opts.log : new LogClient(opts.log);
    const spool = await Spool.open({ dir: opts.spoolDir });
    const shipper = new Shipper({ ...opts.shipper, spool, client });
    const trail = new AccessTrail(spool, client, shipper, opts.mode ?? 'spool', opts.strictDeadlineMs ?? 5000, opts.registry ?? new Registry());
    shipper.start();
    return trail;
  }

  /** Durably records an event in the spool (shipped later). Precondition: a JSON-only event. */
  async after(event: AccessEvent): Promise<void> {
    await this.spool.append(eventBytes(event));
  }

  /**
   * Records an event that must be safe before the request proceeds: spooled (spool mode) or acknowledged
   * by the log (strict mode). Returns the receipt in strict mode. Throws StrictModeError (strict, log not
   * acknowledging; the event is then spooled) or SpoolError (disk).
   */
  async before(event: AccessEvent): Promise<Receipt | null> {
    const bytes = eventBytes(event);
    if (this.mode === 'spool') {
      await this.spool.append(bytes);
      return null;
    }
    // after a failure, one quick attempt per request until the log answers again: clients get their 503 at
    // once instead of each waiting out the retries
    const degraded = Date.now() < this.logDownUntil;
    try {
      const r = await this.client.addEntry(bytes, degraded ? { attempts: 1, deadlineMs: Math.min(1000, this.strictDeadlineMs) } : { deadlineMs: this.strictDeadlineMs });
      this.logDownUntil = 0;
      this.strictAcks.inc();
      return r;
    } catch (e) {
      if (e instanceof LogUnavailableError) this.logDownUntil = Date.now() + 2000;
      this.strictFailures.inc();
      // the log may or may not have it: the same bytes in the spool make the outcome exactly once either way
      await this.spool.append(bytes);
      throw new StrictModeError('log-unavailable', `the log did not acknowledge the request event: ${(e as Error).message}`);
    }
  }

  /** Stops the shipper, closes the spool and the log client's connections. Precondition: none (call once). */
  async close(): Promise<void> {
    await this.shipper.stop();
    await this.spool.close();
    this.client.close();
  }
}
