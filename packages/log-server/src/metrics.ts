/** Prometheus metrics of one log server (its own registry, so several servers can share a process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The log server's Prometheus metrics. */
export interface LogMetrics {
  registry: Registry;
  entries: Counter;
  duplicates: Counter;
  batchEntries: Histogram;
  commitSeconds: Histogram;
  submitToSigned: Histogram;
  rejected: Counter<'reason'>;
  requests: Counter<'route' | 'status'>;
  /** Connections refused at the cap ('dropped') or closed to make room ('silent'). */
  connectionsClosed: Counter<'reason'>;
}

/** Creates the metrics; `queueDepth` and `treeSize` are read at scrape time. */
export function createMetrics(
  queueDepth: () => number,
  treeSize: () => number,
  bodyBytes: () => number = () => 0,
): LogMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'trailmark_log_' });
  const opts = { registers: [registry] };
  new Gauge({
    name: 'trailmark_log_queue_depth',
    help: 'Entries accepted and waiting for a commit',
    ...opts,
    collect() {
      this.set(queueDepth());
    },
  });
  new Gauge({
    name: 'trailmark_log_tree_size',
    help: 'Size of the latest signed tree',
    ...opts,
    collect() {
      this.set(treeSize());
    },
  });
  new Gauge({
    name: 'trailmark_log_request_body_bytes',
    help: 'Request-body memory held by requests in flight (counted twice each body: raw and packed)',
    ...opts,
    collect() {
      this.set(bodyBytes());
    },
  });
  return {
    registry,
    entries: new Counter({ name: 'trailmark_log_entries_total', help: 'New entries appended to the log', ...opts }),
    duplicates: new Counter({
      name: 'trailmark_log_duplicate_entries_total',
      help: 'Submitted entries already in the log (answered with their original index)',
      ...opts,
    }),
    batchEntries: new Histogram({
      name: 'trailmark_log_commit_batch_entries',
      help: 'Entries per group commit',
      buckets: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
      ...opts,
    }),
    commitSeconds: new Histogram({
      name: 'trailmark_log_commit_duration_seconds',
      help: 'Group commit latency: dedup, tree, signing and the fsynced batch',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      ...opts,
    }),
    submitToSigned: new Histogram({
      name: 'trailmark_log_submit_to_signed_seconds',
      help: 'From a submission being accepted to its entries being durable under a signed checkpoint',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      ...opts,
    }),
    rejected: new Counter({
      name: 'trailmark_log_rejected_total',
      help: 'Submissions refused, by reason',
      labelNames: ['reason'],
      ...opts,
    }),
    requests: new Counter({
      name: 'trailmark_log_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'],
      ...opts,
    }),
    connectionsClosed: new Counter({
      name: 'trailmark_log_connections_closed_total',
      help: 'Connections refused at the connection cap (dropped) or closed to make room (silent)',
      labelNames: ['reason'],
      ...opts,
    }),
  };
}
