/** The monitor's Prometheus metrics. */
import { Counter, Gauge, type Registry } from 'prom-client';

/** The monitor's Prometheus counters and gauges. */
export interface MonitorMetrics {
  verified: Counter;
  treeSize: Gauge;
  lastVerified: Gauge;
  alerts: Counter;
  evidence: Counter;
  errors: Counter;
  gossip: Counter;
}

/** Registers the monitor's metrics in `registry`; `pendingCount` is read at each scrape. */
export function monitorMetrics(registry: Registry, pendingCount: () => number): MonitorMetrics {
  const registers = [registry];
  new Gauge({
    name: 'trailmark_monitor_pending_checkpoints',
    help: 'Checkpoints heard of that are larger than the log has shown (not checked yet)',
    registers,
    collect() {
      this.set(pendingCount());
    },
  });
  return {
    verified: new Counter({
      name: 'trailmark_monitor_checkpoints_verified_total',
      help: 'Checkpoints verified consistent with the view',
      labelNames: ['origin'],
      registers,
    }),
    treeSize: new Gauge({
      name: 'trailmark_monitor_tree_size',
      help: 'Tree size of the verified view',
      labelNames: ['origin'],
      registers,
    }),
    lastVerified: new Gauge({
      name: 'trailmark_monitor_last_verified_timestamp_seconds',
      help: 'When the view last advanced or was confirmed',
      labelNames: ['origin'],
      registers,
    }),
    alerts: new Counter({
      name: 'trailmark_monitor_alerts_total',
      help: 'Alerts about a log (split view, bad signature, rollback, bad proof)',
      labelNames: ['origin', 'kind'],
      registers,
    }),
    evidence: new Counter({
      name: 'trailmark_monitor_evidence_total',
      help: 'New pieces of split-view evidence recorded',
      labelNames: ['origin'],
      registers,
    }),
    errors: new Counter({
      name: 'trailmark_monitor_errors_total',
      help: 'Checks that could not be made (network, peer)',
      labelNames: ['what'],
      registers,
    }),
    gossip: new Counter({
      name: 'trailmark_monitor_gossip_checkpoints_total',
      help: 'Checkpoints heard from peers, by outcome',
      labelNames: ['status'],
      registers,
    }),
  };
}
