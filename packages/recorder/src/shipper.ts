/**
 * Delivers spooled events to the log in batches. A batch is removed from the spool only after the log's
 * receipt for every event in it verified; anything else (log down, a refusal, a receipt that does not
 * verify) leaves the batch in place and the shipper tries again after a backoff. A crash anywhere in this
 * loop at worst resends a batch the log already has, and the log's dedup answers with the original indexes.
 */
import { LogRejectedError, ReceiptError, type LogWriter } from '@trailmark/client';
import type { Spool } from './spool.js';

/** What a Shipper delivers from and to, and its batching and backoff. */
export interface ShipperOptions {
  spool: Spool;
  client: LogWriter;
  /** Events per add-entries call (default 1,000; the log accepts up to 10,000). */
  batchSize?: number;
  /** Bytes per call, about (default 4 MiB; the log accepts 16 MiB). */
  batchBytes?: number;
  /**
   * After a batch that was not full, wait this long before the next one (default 100 ms), so that under steady
   * traffic the log gets a few large batches a second rather than many small ones (each costs the log a
   * checkpoint and us a signature check).
   */
  lingerMs?: number;
  /** Backoff after a failed delivery: base and cap (defaults 200 ms, 10 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Attempts per add-entries call, retries inside the client included (default: the client's). */
  attempts?: number;
  /** Called with each failure (for logging). */
  onError?: (e: Error) => void;
}

/** Counters of a Shipper, for metrics and the health endpoint. */
export interface ShipperStats {
  /** Events whose verified receipt let them leave the spool. */
  delivered: number;
  /** Delivery attempts (batches) that failed. */
  failedBatches: number;
  /** Failed attempts whose cause was a receipt that did not verify. */
  receiptFailures: number;
  /** Failed attempts the log refused (4xx). */
  rejected: number;
  lastError: string | null;
  lastDeliveryAt: number | null;
}

/**
 * Delivers spooled events to the log in batches and acknowledges them in the spool only once every receipt verified
 * (see the file comment).
 */
export class Shipper {
  readonly stats: ShipperStats = {
    delivered: 0,
    failedBatches: 0,
    receiptFailures: 0,
    rejected: 0,
    lastError: null,
    lastDeliveryAt: null,
  };
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** In the backoff after a failed delivery: new records do not end it (an explicit poke() still does). */
  private backingOff = false;
  private unsubscribe: (() => void) | null = null;
  private readonly spool: Spool;
  private readonly client: LogWriter;
  private readonly batchSize: number;
  private readonly batchBytes: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly lingerMs: number;
  private readonly onError?: (e: Error) => void;
  private readonly attempts?: number;

  /** Precondition: the spool is open; one shipper per spool. */
  constructor(opts: ShipperOptions) {
    this.spool = opts.spool;
    this.client = opts.client;
    this.batchSize = Math.min(10_000, Math.max(1, opts.batchSize ?? 1000));
    this.batchBytes = opts.batchBytes ?? 4 * 1024 * 1024;
    this.lingerMs = opts.lingerMs ?? 100;
    this.retryBaseMs = opts.retryBaseMs ?? 200;
    this.retryMaxMs = opts.retryMaxMs ?? 10_000;
    this.onError = opts.onError;
    this.attempts = opts.attempts;
  }

  /** Starts the delivery loop. Precondition: none (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    // while the log is failing, every flush would otherwise cut the backoff short and the shipper would retry
    // (re-reading a full batch from the spool) as fast as the log client's own retries allow, under load
    this.unsubscribe = this.spool.onAppend(() => {
      if (!this.backingOff) this.poke();
    });
    this.loop = this.run();
  }

  /** Wakes the loop (new records, or end a backoff early). Precondition: none. */
  poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /**
   * Stops the loop: waits up to timeoutMs for the batch in flight. A batch still in flight then is simply not
   * acknowledged (its ack fails on the closed spool), so it is sent again on the next start: dedup makes that safe.
   */
  async stop(timeoutMs = 3000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.poke();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Resolves once the spool is empty (or rejects after timeoutMs). Precondition: the shipper runs. */
  async drained(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.spool.depth > 0) {
      if (Date.now() > end)
        throw new Error(
          `spool still holds ${this.spool.depth} events after ${timeoutMs} ms (last error: ${this.stats.lastError ?? 'none'})`,
        );
      this.poke();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      if (this.spool.depth === 0) {
        await this.sleep(1000);
        continue;
      }
      try {
        const batch = await this.spool.read(this.batchSize, this.batchBytes);
        if (batch.records.length === 0) {
          await this.sleep(1000);
          continue;
        }
        await this.client.addEntries(
          batch.records.map((r) => r.data),
          this.attempts !== undefined ? { attempts: this.attempts } : {},
        );
        await this.spool.ack(batch);
        this.stats.delivered += batch.records.length;
        this.stats.lastDeliveryAt = Date.now();
        // delivery works again: an old error no longer describes the shipper (/healthz shows it)
        this.stats.lastError = null;
        failures = 0;
        if (batch.records.length < this.batchSize && this.lingerMs > 0)
          await new Promise((r) => setTimeout(r, this.lingerMs));
      } catch (e) {
        const err = e as Error;
        this.stats.failedBatches++;
        if (e instanceof ReceiptError) this.stats.receiptFailures++;
        if (e instanceof LogRejectedError) this.stats.rejected++;
        this.stats.lastError = err.message;
        this.onError?.(err);
        failures++;
        const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(failures, 16));
        if (this.running) {
          this.backingOff = true;
          await this.sleep(cap / 2 + (Math.random() * cap) / 2);
          this.backingOff = false;
        }
      }
    }
  }
}
