/** The monitor's options, checked once at construction: what to follow, where to gossip, where to alert. */
import { KEY_TYPE_ED25519, parseVkey, type NoteVerifier } from '@trailmark/tlog';
import type { Logger } from '@trailmark/node';
import type { Registry } from 'prom-client';
import { MonitorError } from './errors.js';
import { LogProofClient, LogReader, rememberingVerifier, type RequestLimits } from '@trailmark/client';
import type { MonitorStore } from './store.js';

/** One log the monitor follows: its URL and its key. */
export interface FollowedLogOptions {
  /** Base URL of the log (its /checkpoint and /v1/ API). */
  url: string;
  /** The log's vkey text, or a parsed verifier (type 0x01; its name is the origin). */
  vkey: string | NoteVerifier;
}

/** Configuration of a Monitor: logs, store, peers, alerting and loop periods. */
export interface MonitorOptions {
  logs: FollowedLogOptions[];
  store: MonitorStore;
  /** Base URLs of peer monitors to pull from and push to. */
  peers?: string[];
  /** URL that receives each new piece of evidence as a JSON POST. */
  alertWebhook?: string;
  /** Log polling period (default 2000 ms). */
  pollIntervalMs?: number;
  /** Gossip period (default 2000 ms). */
  gossipIntervalMs?: number;
  /** Per-request deadline (default 10000 ms). */
  timeoutMs?: number;
  /** Where logs go (default: JSON lines on stderr, text on a terminal). Alerts are errors whose message starts with "ALERT". */
  logger?: Logger;
  /** Prometheus registry for the metrics (default a new one). */
  registry?: Registry;
  /** Follow the proxy streams in each log (default true): read every entry and check completeness. */
  followStreams?: boolean;
  /** A stream with neither heartbeat nor end for longer than this is an alert (default 180000 ms, 3 minutes). */
  streamStallMs?: number;
}

/** A log the monitor follows. */
export interface Followed {
  origin: string;
  verifier: NoteVerifier;
  url: string;
  client: LogProofClient;
  /** Tiles and entries, for the stream check. */
  reader: LogReader;
}

/** Parses an http(s) URL from the configuration. Throws MonitorError('config') naming `what` otherwise. */
export function configUrl(what: string, u: string): URL {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new MonitorError('config', `${what} URL ${JSON.stringify(u)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new MonitorError('config', `${what} URL ${u} must be http(s)`);
  return url;
}

/**
 * The logs to follow, by origin, each with its remembering verifier and HTTP clients. Throws
 * MonitorError('config') for no logs, a key that is not Ed25519, a bad URL, or two logs with one origin.
 */
export function followedLogs(opts: MonitorOptions, limits: RequestLimits): Map<string, Followed> {
  if (opts.logs.length === 0) throw new MonitorError('config', 'a monitor needs at least one log to follow');
  const logs = new Map<string, Followed>();
  for (const l of opts.logs) {
    const verifier = rememberingVerifier(typeof l.vkey === 'string' ? parseVkey(l.vkey) : l.vkey);
    if (verifier.type !== KEY_TYPE_ED25519)
      throw new MonitorError('config', `log key ${verifier.name} must be a type 0x01 (Ed25519) key`);
    configUrl('log', l.url);
    if (logs.has(verifier.name)) throw new MonitorError('config', `two logs with origin ${verifier.name}`);
    const reader = new LogReader(l.url, {
      timeoutMs: opts.timeoutMs ?? 10_000,
      retries: 1,
      headers: { 'user-agent': 'trailmark-monitor' },
    });
    logs.set(verifier.name, {
      origin: verifier.name,
      verifier,
      url: l.url,
      client: new LogProofClient(l.url, limits),
      reader,
    });
  }
  return logs;
}

/** The peers (deduplicated), after checking their URLs and the alert webhook's. Throws MonitorError('config'). */
export function checkedPeers(opts: MonitorOptions): string[] {
  const peers = [...new Set(opts.peers ?? [])];
  for (const p of peers) configUrl('peer', p);
  if (opts.alertWebhook) configUrl('alert webhook', opts.alertWebhook);
  return peers;
}
