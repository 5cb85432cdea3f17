/** Alerts: one log line and one counter per distinct alert, and a JSON POST of each to the webhook. */
import { errorMessage } from '@trailmark/tlog';
import type { Logger } from '@trailmark/node';
import type { Counter } from 'prom-client';
import { httpRequest } from '@trailmark/client';

/** Raises alerts; see the module comment. */
export class Alerts {
  private readonly last = new Map<string, string>();
  private readonly deliveries = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly log: Logger,
    private readonly counter: Counter,
    private readonly webhook: string | undefined,
  ) {}

  /** Logs and counts an alert, once per distinct message: a log stuck in a bad state must not flood the log. */
  alert(origin: string, kind: string, message: string, subject = ''): void {
    const key = `${origin}\n${kind}\n${subject}`;
    if (this.last.get(key) === message) return;
    this.last.set(key, message);
    this.counter.inc({ origin, kind });
    this.log.error(`ALERT ${kind} ${origin}: ${message}`, { alert: kind, origin });
  }

  /** POSTs an alert (split-view evidence, or a stream alert) to the webhook, with a few retries. */
  notify(ev: object): void {
    const url = this.webhook;
    if (!url) return;
    const body = JSON.stringify(ev);
    const p = (async () => {
      for (let attempt = 1; attempt <= 3 && !(this.stopped && attempt > 1); attempt++) {
        try {
          const r = await httpRequest(url, {
            method: 'POST',
            body,
            headers: { 'content-type': 'application/json' },
            timeoutMs: 5000,
          });
          if (r.status >= 200 && r.status < 300) return;
          this.log.warn(`alert webhook ${url} answered ${r.status}`, { webhook: url });
        } catch (e) {
          this.log.warn(`alert webhook ${url}: ${errorMessage(e)}`, { webhook: url });
        }
        await new Promise((res) => setTimeout(res, 500 * attempt));
      }
    })();
    this.deliveries.add(p);
    void p.finally(() => this.deliveries.delete(p));
  }

  /** Failed deliveries are not retried from now on (shutting down). */
  stopRetrying(): void {
    this.stopped = true;
  }

  /** Waits for the deliveries in flight. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.deliveries]);
  }
}
