/**
 * The monitor: follows logs, checks every checkpoint it hears of (from the log, from peers, from witness
 * requests) against its own verified view, and turns irreconcilable pairs into portable evidence.
 *
 * The view of a log only ever advances from checkpoints served by that log and proven consistent with the
 * previous view. Any other checkpoint is checked against the view with a proof the log serves for its own
 * (larger) tree, so a failing check binds the log's tree and is evidence anyone can verify.
 */
import {
  b64decode,
  b64encode,
  bytesEqual,
  emptyRoot,
  KEY_TYPE_ED25519,
  openCheckpoint,
  parseNote,
  parseVkey,
  verifyConsistency,
  StreamChecker,
  type Checkpoint,
  type StreamFinding,
  type StreamReport,
  type Hash,
  type NoteVerifier,
} from '@trailmark/tlog';
import { createLogger, type Logger } from '@trailmark/node';
import { Counter, Gauge, Registry } from 'prom-client';
import { MonitorError } from './errors.js';
import {
  idOfEvidence,
  inconsistentEvidence,
  isPow2,
  prefixRootFromConsistency,
  prefixRootFromInclusion,
  proofBindsPrefix,
  sameSizeEvidence,
  verifyEvidence,
  type Evidence,
  type Sighting,
  ClientError,
  LogProofClient,
  LogReader,
  checkStreamEntries,
  getJson,
  httpRequest,
  isNotEvidence,
  joinUrl,
  verifiedLogFromNote,
} from '@trailmark/client';
import { KeyedLock, rememberingVerifier } from '@trailmark/node';
import type { MonitorStore, ViewRecord } from './store.js';

export interface FollowedLogOptions {
  /** Base URL of the log (its /checkpoint and /v1/ API). */
  url: string;
  /** The log's vkey text, or a parsed verifier (type 0x01; its name is the origin). */
  vkey: string | NoteVerifier;
}

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

/** Most entries read for the stream check in one round (progress is saved between rounds). */
const STREAM_ENTRIES_PER_ROUND = 65_536n;

/** A stream as GET /v1/streams lists it: its report, its log, and whether it has gone silent. */
export interface MonitoredStream extends StreamReport {
  origin: string;
  /** No heartbeat and no end for longer than the stall threshold. */
  stalled: boolean;
  /** Seconds since its last start, heartbeat or end (null when it never had one). */
  silent_seconds: number | null;
}

/** What happened to one checkpoint. `misbehaviour` means the log (not a peer) was caught. */
export type OutcomeStatus =
  'ok' | 'advanced' | 'pending' | 'ignored' | 'rejected' | 'misbehaviour' | 'error' | 'warning';
export interface Outcome {
  status: OutcomeStatus;
  message: string;
  /** Id of the evidence recorded, if any. */
  evidence?: string;
}

export interface OnceResult {
  /** 0 all consistent, 1 misbehaviour found, 2 could not check (contract section 7). */
  code: 0 | 1 | 2;
  outcomes: { what: string; outcome: Outcome }[];
  evidence: Evidence[];
}

interface Followed {
  origin: string;
  verifier: NoteVerifier;
  url: string;
  client: LogProofClient;
  /** Tiles and entries, for the stream check. */
  reader: LogReader;
}

interface Seen {
  note: string;
  cp: Checkpoint;
  seen: Sighting;
}

const MAX_PENDING = 64;
const MAX_KNOWN = 4096;

function originOf(note: string): string {
  return parseNote(note).text.split('\n')[0];
}

/** Follows logs and checks every checkpoint it hears of; see the module comment. Precondition: an open store. */
export class Monitor {
  readonly registry: Registry;
  private readonly logs = new Map<string, Followed>();
  private readonly lock = new KeyedLock();
  private readonly peers: string[];
  private readonly log: Logger;
  /** The monitor's logger (for the HTTP face's errors). */
  get logger(): Logger {
    return this.log;
  }
  /** Checkpoints (origin -> "size root") already proven consistent with the view. */
  private readonly known = new Map<string, Set<string>>();
  /** Foreign checkpoints larger than the log has shown us yet, rechecked after each poll. */
  private readonly pending = new Map<string, Map<string, { note: string; seen: Sighting }>>();
  private timer: NodeJS.Timeout | undefined;
  private tick: Promise<void> | undefined;
  private stopped = true;
  private readonly deliveries = new Set<Promise<void>>();
  private readonly lastAlert = new Map<string, string>();
  private readonly failing = new Map<string, string>();
  /** Each log's stream checker and how far it has read (loaded from the store on first use). */
  private readonly checkers = new Map<string, { checker: StreamChecker; position: bigint }>();
  /** origin + stream id of streams currently alerted as stalled. */
  private readonly stalledNow = new Set<string>();
  /** Aborts requests in flight on stop(): a hanging log or peer must not hold up shutdown. */
  private readonly closing = new AbortController();
  private readonly limits: { timeoutMs?: number; signal: AbortSignal };
  private readonly m: {
    verified: Counter;
    treeSize: Gauge;
    lastVerified: Gauge;
    alerts: Counter;
    evidence: Counter;
    errors: Counter;
    gossip: Counter;
  };

  constructor(private readonly opts: MonitorOptions) {
    if (opts.logs.length === 0) throw new MonitorError('config', 'a monitor needs at least one log to follow');
    this.limits = { timeoutMs: opts.timeoutMs, signal: this.closing.signal };
    for (const l of opts.logs) {
      const verifier = rememberingVerifier(typeof l.vkey === 'string' ? parseVkey(l.vkey) : l.vkey);
      if (verifier.type !== KEY_TYPE_ED25519)
        throw new MonitorError('config', `log key ${verifier.name} must be a type 0x01 (Ed25519) key`);
      let u: URL;
      try {
        u = new URL(l.url);
      } catch {
        throw new MonitorError('config', `log URL ${JSON.stringify(l.url)} is not an absolute URL`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        throw new MonitorError('config', `log URL ${l.url} must be http(s)`);
      if (this.logs.has(verifier.name)) throw new MonitorError('config', `two logs with origin ${verifier.name}`);
      const reader = new LogReader(l.url, {
        timeoutMs: opts.timeoutMs ?? 10_000,
        retries: 1,
        headers: { 'user-agent': 'trailmark-monitor' },
      });
      this.logs.set(verifier.name, {
        origin: verifier.name,
        verifier,
        url: l.url,
        client: new LogProofClient(l.url, this.limits),
        reader,
      });
    }
    this.peers = [...new Set(opts.peers ?? [])];
    for (const [what, u] of [
      ...this.peers.map((p) => ['peer', p]),
      ...(opts.alertWebhook ? [['alert webhook', opts.alertWebhook]] : []),
    ]) {
      let url: URL;
      try {
        url = new URL(u);
      } catch {
        throw new MonitorError('config', `${what} URL ${JSON.stringify(u)} is not an absolute URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new MonitorError('config', `${what} URL ${u} must be http(s)`);
    }
    this.log = opts.logger ?? createLogger(process.stderr, { component: 'monitor' });
    this.registry = opts.registry ?? new Registry();
    const r = [this.registry];
    this.m = {
      verified: new Counter({
        name: 'trailmark_monitor_checkpoints_verified_total',
        help: 'Checkpoints verified consistent with the view',
        labelNames: ['origin'],
        registers: r,
      }),
      treeSize: new Gauge({
        name: 'trailmark_monitor_tree_size',
        help: 'Tree size of the verified view',
        labelNames: ['origin'],
        registers: r,
      }),
      lastVerified: new Gauge({
        name: 'trailmark_monitor_last_verified_timestamp_seconds',
        help: 'When the view last advanced or was confirmed',
        labelNames: ['origin'],
        registers: r,
      }),
      alerts: new Counter({
        name: 'trailmark_monitor_alerts_total',
        help: 'Alerts about a log (split view, bad signature, rollback, bad proof)',
        labelNames: ['origin', 'kind'],
        registers: r,
      }),
      evidence: new Counter({
        name: 'trailmark_monitor_evidence_total',
        help: 'New pieces of split-view evidence recorded',
        labelNames: ['origin'],
        registers: r,
      }),
      errors: new Counter({
        name: 'trailmark_monitor_errors_total',
        help: 'Checks that could not be made (network, peer)',
        labelNames: ['what'],
        registers: r,
      }),
      gossip: new Counter({
        name: 'trailmark_monitor_gossip_checkpoints_total',
        help: 'Checkpoints heard from peers, by outcome',
        labelNames: ['status'],
        registers: r,
      }),
    };
    const pendingCount = () => this.pendingCount();
    new Gauge({
      name: 'trailmark_monitor_pending_checkpoints',
      help: 'Checkpoints heard of that are larger than the log has shown (not checked yet)',
      registers: r,
      collect() {
        this.set(pendingCount());
      },
    });
  }

  /** Trusted log keys by origin (what the witness accepts). */
  logKeys(): Map<string, NoteVerifier> {
    return new Map([...this.logs].map(([o, f]) => [o, f.verifier]));
  }

  /** Starts polling logs and gossiping. Precondition: not started. */
  start(): void {
    this.stopped = false;
    const period = Math.min(this.opts.pollIntervalMs ?? 2000, this.opts.gossipIntervalMs ?? 2000);
    let lastGossip = 0;
    let first = true;
    const run = async () => {
      if (this.stopped) return;
      if (first) {
        first = false;
        await this.loadMetrics();
      }
      this.report(await this.pollAll());
      if (this.opts.followStreams !== false) this.report(await this.followAllStreams());
      if (this.peers.length && Date.now() - lastGossip >= (this.opts.gossipIntervalMs ?? 2000)) {
        lastGossip = Date.now();
        this.report(await this.gossipAll());
      }
    };
    const loop = () => {
      this.tick = run()
        .catch((e) => this.log.error((e as Error).message))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, period);
        });
    };
    loop();
  }

  /** Stops the loops and waits for in-flight work and webhook deliveries. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.closing.abort();
    // a hanging entry read must not hold up shutdown either
    for (const f of this.logs.values()) f.reader.close();
    await this.tick;
    await Promise.allSettled([...this.deliveries]);
  }

  /** Logs what changed: a log or peer that starts or stops failing (once, not every round), and each advance. */
  private report(outcomes: { what: string; outcome: Outcome }[]): void {
    const byWhat = new Map<string, Outcome[]>();
    for (const { what, outcome } of outcomes) byWhat.set(what, [...(byWhat.get(what) ?? []), outcome]);
    for (const [what, list] of byWhat) {
      const bad = list.find((o) => o.status === 'error' || o.status === 'pending');
      const before = this.failing.get(what);
      if (bad && before !== bad.message) {
        this.failing.set(what, bad.message);
        this.log.warn(`${what}: ${bad.message}`, { check: what });
      } else if (!bad && before !== undefined) {
        this.failing.delete(what);
        this.log.info(`${what}: checked again`, { check: what });
      }
      for (const o of list) if (o.status === 'advanced') this.log.info(`${what}: ${o.message}`, { check: what });
    }
  }

  private async loadMetrics(): Promise<void> {
    for (const [origin, v] of await this.opts.store.views())
      if (this.logs.has(origin)) this.m.treeSize.set({ origin }, Number(v.size));
  }

  /** Polls every followed log once. */
  async pollAll(): Promise<{ what: string; outcome: Outcome }[]> {
    return Promise.all(
      [...this.logs.values()].map(async (f) => ({ what: `log ${f.url}`, outcome: await this.pollLog(f.origin) })),
    );
  }

  /** Pulls from and pushes to every peer once. */
  async gossipAll(): Promise<{ what: string; outcome: Outcome }[]> {
    const payload = await this.gossipPayload();
    const out = await Promise.all(
      this.peers.map(async (p) => {
        // push first: the peer checks what we pushed before answering, so the pull that follows sees its verdict
        const push = await this.pushPeer(p, payload);
        const pull = await this.pullPeer(p);
        return [...pull.map((o) => ({ what: `peer ${p}`, outcome: o })), { what: `push to ${p}`, outcome: push }];
      }),
    );
    return out.flat();
  }

  /** Fetches the log's checkpoint and checks it against the view. Precondition: origin is followed. */
  async pollLog(origin: string): Promise<Outcome> {
    const f = this.logs.get(origin);
    if (!f) return { status: 'ignored', message: `not following ${origin}` };
    let note: string;
    try {
      note = await f.client.checkpoint();
    } catch (e) {
      this.m.errors.inc({ what: 'log' });
      return { status: 'error', message: `could not fetch the checkpoint: ${(e as Error).message}` };
    }
    let out: Outcome;
    try {
      out = await this.lock.run(origin, () => this.fromLog(f, note));
    } catch (e) {
      if (!(e instanceof MonitorError || e instanceof ClientError)) throw e;
      this.m.errors.inc({ what: 'view' });
      return { status: 'error', message: e.message };
    }
    if (out.status === 'advanced') await this.recheckPending(f);
    return out;
  }

  /** Logs and counts an alert, once per distinct message: a log stuck in a bad state must not flood the log. */
  private alert(origin: string, kind: string, message: string, subject = ''): void {
    const key = `${origin}\n${kind}\n${subject}`;
    if (this.lastAlert.get(key) === message) return;
    this.lastAlert.set(key, message);
    this.m.alerts.inc({ origin, kind });
    this.log.error(`ALERT ${kind} ${origin}: ${message}`, { alert: kind, origin });
  }

  /** Opens a note with the log's key (its verifier remembers signatures it has checked). */
  private open(f: Followed, note: string): Checkpoint {
    return openCheckpoint(note, f.verifier).checkpoint;
  }

  private now(): string {
    return new Date().toISOString();
  }

  private async fromLog(f: Followed, note: string): Promise<Outcome> {
    let cp: Checkpoint;
    try {
      cp = this.open(f, note);
    } catch (e) {
      if (isNotEvidence(e)) {
        // an HTML page, another log, a wrong key: nothing was checked, and nobody should be paged for a typo
        this.m.errors.inc({ what: 'log' });
        return {
          status: 'error',
          message: `${f.url} does not serve a checkpoint signed by ${f.origin}'s key (is it the log's base URL, and the right --log-key?): ${(e as Error).message}`,
        };
      }
      const msg = `log ${f.url} served a checkpoint that does not verify: ${(e as Error).message}`;
      this.alert(f.origin, 'bad-signature', msg);
      return { status: 'misbehaviour', message: msg };
    }
    const got: Seen = { note, cp, seen: { from: f.url, at: this.now() } };
    const view = await this.opts.store.view(f.origin);
    if (!view) {
      await this.advance(f, got);
      return { status: 'advanced', message: `first checkpoint of ${f.origin} at size ${cp.size}` };
    }
    const v = this.viewSeen(f, view);
    if (cp.size === v.cp.size) {
      if (bytesEqual(cp.root, v.cp.root)) {
        this.m.lastVerified.set({ origin: f.origin }, Date.now() / 1000);
        return { status: 'ok', message: `${f.origin} unchanged at size ${cp.size}` };
      }
      return this.evidence(sameSizeEvidence(f.origin, [v.note, note], [v.seen, got.seen], cp.size));
    }
    if (cp.size > v.cp.size) {
      const bad = await this.checkExtends(f, v, got, (e) => this.proofError(v.cp.size, cp.size, e));
      if (bad) return bad;
      await this.advance(f, got);
      return { status: 'advanced', message: `${f.origin} advanced ${v.cp.size} -> ${cp.size}` };
    }
    // the log went backwards: consistent or not, it is showing an older tree than it showed before
    const bad = await this.checkExtends(f, got, v, (e) => {
      const msg = `log ${f.url} went back from size ${v.cp.size} to ${cp.size} and could not prove consistency: ${e.message}`;
      this.alert(f.origin, 'rollback', msg);
      return { status: 'misbehaviour', message: msg };
    });
    if (bad) return bad;
    const msg = `log ${f.url} went back from size ${v.cp.size} to ${cp.size} (consistent, but a rollback)`;
    this.alert(f.origin, 'rollback', msg);
    return { status: 'misbehaviour', message: msg };
  }

  /**
   * Fetches and checks the log's consistency proof from `small` to `large` (two of its checkpoints): null when
   * `large` extends `small`, split evidence when not, `unfetched(e)` when no proof could be had.
   */
  private async checkExtends(
    f: Followed,
    small: Seen,
    large: Seen,
    unfetched: (e: Error) => Outcome,
  ): Promise<Outcome | null> {
    let proof: Hash[];
    try {
      proof = await f.client.consistency(small.cp.size, large.cp.size);
    } catch (e) {
      return unfetched(e as Error);
    }
    try {
      verifyConsistency(small.cp.size, large.cp.size, proof, small.cp.root, large.cp.root);
    } catch {
      return this.proveSplit(f, small, large, proof);
    }
    return null;
  }

  private proofError(from: bigint, to: bigint, e: Error): Outcome {
    this.m.errors.inc({ what: 'log' });
    return { status: 'error', message: `could not fetch consistency proof ${from} -> ${to}: ${e.message}` };
  }

  private viewSeen(f: Followed, v: ViewRecord): Seen {
    try {
      return { note: v.note, cp: this.open(f, v.note), seen: v.seen };
    } catch (e) {
      // the data dir holds a view this key did not sign: refuse to compare rather than guess
      throw new MonitorError(
        'stored-view',
        `the stored view of ${f.origin} does not verify under the configured log key (was --data used with another key?): ${(e as Error).message}`,
      );
    }
  }

  private async advance(f: Followed, s: Seen): Promise<void> {
    await this.opts.store.putView(f.origin, {
      note: s.note,
      size: s.cp.size.toString(),
      root: b64encode(s.cp.root),
      seen: s.seen,
    });
    this.known.delete(f.origin);
    this.m.verified.inc({ origin: f.origin });
    this.m.treeSize.set({ origin: f.origin }, Number(s.cp.size));
    this.m.lastVerified.set({ origin: f.origin }, Date.now() / 1000);
  }

  /**
   * `small` and `large` failed a consistency check with `proof`, which the log served for its tree `large`.
   * Works out the root that proof gives the first small.size leaves of `large`; if the proof really belongs
   * to `large` and that root differs from small's, the pair is portable evidence.
   */
  private async proveSplit(f: Followed, small: Seen, large: Seen, proof: Hash[]): Promise<Outcome> {
    const m = small.cp.size;
    const n = large.cp.size;
    let first: Hash | undefined;
    if (m === 0n) first = emptyRoot();
    else if (isPow2(m)) {
      try {
        const p = await f.client.proofByIndex(m - 1n, n);
        first = prefixRootFromInclusion(m, p.leafHash, p.path);
      } catch (e) {
        this.m.errors.inc({ what: 'log' });
        return {
          status: 'error',
          message: `checkpoints ${m} and ${n} do not verify as consistent, and the inclusion proof needed to prove it failed: ${(e as Error).message}`,
        };
      }
    } else first = prefixRootFromConsistency(m, n, proof);
    if (first && proofBindsPrefix(m, n, proof, first, large.cp.root) && !bytesEqual(first, small.cp.root)) {
      return this.evidence(
        inconsistentEvidence(f.origin, [small.note, large.note], [small.seen, large.seen], m, n, proof, first, f.url),
      );
    }
    const msg = `log ${f.url} served a consistency proof ${m} -> ${n} that does not verify against its own checkpoint of size ${n}`;
    this.alert(f.origin, 'bad-proof', msg);
    return { status: 'misbehaviour', message: msg };
  }

  /** Records evidence (once), logs the alert and notifies the webhook. Precondition: ev verifies. */
  private async evidence(ev: Evidence, note = ''): Promise<Outcome> {
    const id = idOfEvidence(ev);
    const added = await this.opts.store.addEvidence(id, ev);
    if (added) {
      this.m.evidence.inc({ origin: ev.origin });
      // without --data the store's folder is deleted on close: never point at a file that will not be there
      const where = this.opts.store.temporary
        ? 'not kept on disk (no --data): GET /v1/evidence serves it while this monitor runs'
        : `in ${this.opts.store.evidencePath(id)}`;
      this.alert(ev.origin, 'split-view', `${ev.kind}${note}: ${ev.detail}; evidence ${id} ${where}`);
      this.notify(ev);
    }
    return { status: 'misbehaviour', message: `split view of ${ev.origin} (${ev.kind}): ${ev.detail}`, evidence: id };
  }

  /** POSTs an alert (split-view evidence, or a stream alert) to the webhook, with a few retries. */
  private notify(ev: object): void {
    const url = this.opts.alertWebhook;
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
          this.log.warn(`alert webhook ${url}: ${(e as Error).message}`, { webhook: url });
        }
        await new Promise((res) => setTimeout(res, 500 * attempt));
      }
    })();
    this.deliveries.add(p);
    void p.finally(() => this.deliveries.delete(p));
  }

  /**
   * Checks a checkpoint heard from someone other than the log (a peer, a gossip push, a witness request).
   * Precondition: none; junk is 'rejected', other origins 'ignored'.
   */
  async observe(note: string, from: string): Promise<Outcome> {
    let origin: string;
    try {
      origin = originOf(note);
    } catch (e) {
      return this.counted({ status: 'rejected', message: `not a signed note: ${(e as Error).message}` });
    }
    const f = this.logs.get(origin);
    if (!f) return this.counted({ status: 'ignored', message: `not following ${JSON.stringify(origin)}` });
    let cp: Checkpoint;
    try {
      cp = this.open(f, note);
    } catch (e) {
      // anyone can send junk: a bad signature from a peer says nothing about the log
      return this.counted({
        status: 'rejected',
        message: `checkpoint from ${from} does not verify: ${(e as Error).message}`,
      });
    }
    const got: Seen = { note, cp, seen: { from, at: this.now() } };
    let out: Outcome | undefined;
    try {
      out = await this.lock.run(origin, () => this.compareForeign(f, got));
      if (out === undefined) {
        // larger than our view: see whether the log has caught up
        await this.pollLog(origin);
        out = await this.lock.run(origin, () => this.compareForeign(f, got));
      }
    } catch (e) {
      if (!(e instanceof MonitorError || e instanceof ClientError)) throw e;
      return this.counted({ status: 'error', message: e.message });
    }
    if (out === undefined) {
      const pend = this.pending.get(origin) ?? new Map();
      this.pending.set(origin, pend);
      const key = `${cp.size} ${b64encode(cp.root)}`;
      if (!pend.has(key)) {
        if (pend.size >= MAX_PENDING) pend.delete(pend.keys().next().value!);
        pend.set(key, { note, seen: got.seen });
      }
      out = {
        status: 'pending',
        message: `checkpoint of size ${cp.size} from ${from} is larger than the log has shown (waiting to check it)`,
      };
    }
    return this.counted(out);
  }

  private counted(o: Outcome): Outcome {
    this.m.gossip.inc({ status: o.status });
    return o;
  }

  /** Compares a foreign checkpoint with the view; undefined when it is larger than the view. */
  private async compareForeign(f: Followed, got: Seen): Promise<Outcome | undefined> {
    const view = await this.opts.store.view(f.origin);
    if (!view) return undefined;
    const v = this.viewSeen(f, view);
    const { cp } = got;
    if (cp.size > v.cp.size) return undefined;
    const key = `${cp.size} ${b64encode(cp.root)}`;
    const known = this.known.get(f.origin) ?? new Set<string>();
    this.known.set(f.origin, known);
    if (known.has(key)) return { status: 'ok', message: `size ${cp.size} already checked` };
    if (cp.size === v.cp.size) {
      if (!bytesEqual(cp.root, v.cp.root))
        return this.evidence(sameSizeEvidence(f.origin, [v.note, got.note], [v.seen, got.seen], cp.size));
    } else {
      const bad = await this.checkExtends(f, got, v, (e) => this.proofError(cp.size, v.cp.size, e));
      if (bad) return bad;
    }
    if (known.size >= MAX_KNOWN) known.clear();
    known.add(key);
    return {
      status: 'ok',
      message: `size ${cp.size} from ${got.seen.from} is consistent with the view (size ${v.cp.size})`,
    };
  }

  private async recheckPending(f: Followed): Promise<void> {
    const pend = this.pending.get(f.origin);
    if (!pend || pend.size === 0) return;
    for (const [key, p] of [...pend]) {
      const cp = this.open(f, p.note);
      const out = await this.lock.run(f.origin, () => this.compareForeign(f, { note: p.note, cp, seen: p.seen }));
      if (out !== undefined && out.status !== 'error') pend.delete(key);
    }
  }

  /** Foreign checkpoints still waiting for the log to reach their size. */
  pendingCount(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.size;
    return n;
  }

  /** The latest verified checkpoint note of each followed log (gossip's GET /v1/checkpoints). */
  async latestCheckpoints(): Promise<string[]> {
    const views = await this.opts.store.views();
    return [...this.logs.keys()].flatMap((o) => (views.has(o) ? [views.get(o)!.note] : []));
  }

  /** Stored evidence about the followed logs. */
  async allEvidence(): Promise<Evidence[]> {
    return (await this.opts.store.allEvidence()).filter((e) => this.logs.has(e.origin));
  }

  /** Ids of stored evidence no operator has acknowledged yet (/healthz is unhealthy while there are any). */
  async unacknowledgedEvidence(): Promise<string[]> {
    const ids = (await this.allEvidence()).map(idOfEvidence);
    const acked = await Promise.all(ids.map((id) => this.opts.store.acknowledged(id)));
    return ids.filter((_id, i) => !acked[i]);
  }

  /**
   * Imports evidence reported by someone else after verifying it against the log's key: portable evidence
   * needs no trust in the reporter. Precondition: none.
   */
  async importEvidence(v: unknown, from: string): Promise<Outcome> {
    const origin = (v as { origin?: unknown })?.origin;
    const f = typeof origin === 'string' ? this.logs.get(origin) : undefined;
    if (!f) return { status: 'ignored', message: `evidence about a log not followed` };
    let ev: Evidence;
    try {
      ev = verifyEvidence(v, f.verifier).evidence;
    } catch (e) {
      return { status: 'rejected', message: `evidence from ${from} does not verify: ${(e as Error).message}` };
    }
    return this.evidence(ev, ` (reported by ${from})`);
  }

  /** Pulls a peer's checkpoints and evidence and checks each. Precondition: none. */
  async pullPeer(peer: string): Promise<Outcome[]> {
    let list: unknown;
    try {
      list = await getJson(joinUrl(peer, '/v1/checkpoints'), this.limits);
    } catch (e) {
      this.m.errors.inc({ what: 'peer' });
      return [{ status: 'error', message: `could not pull checkpoints from peer ${peer}: ${(e as Error).message}` }];
    }
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) {
      this.m.errors.inc({ what: 'peer' });
      return [{ status: 'error', message: `peer ${peer}: /v1/checkpoints is not a JSON array of notes` }];
    }
    const out: Outcome[] = [];
    for (const note of list as string[]) out.push(await this.observe(note, peer));
    let evs: unknown;
    try {
      evs = await getJson(joinUrl(peer, '/v1/evidence'), this.limits);
    } catch (e) {
      this.m.errors.inc({ what: 'peer' });
      out.push({ status: 'error', message: `could not pull evidence from peer ${peer}: ${(e as Error).message}` });
      return out;
    }
    if (Array.isArray(evs)) for (const ev of evs) out.push(await this.importEvidence(ev, peer));
    return out;
  }

  private async gossipPayload(): Promise<{ checkpoints: string[]; evidence: Evidence[] }> {
    return { checkpoints: await this.latestCheckpoints(), evidence: await this.allEvidence() };
  }

  /**
   * Pushes our latest checkpoints (and any evidence) to a peer's POST /v1/gossip; `payload` when the caller
   * already read them for several peers. Precondition: none.
   */
  async pushPeer(peer: string, payload?: { checkpoints: string[]; evidence: Evidence[] }): Promise<Outcome> {
    const { checkpoints, evidence } = payload ?? (await this.gossipPayload());
    if (checkpoints.length === 0 && evidence.length === 0) return { status: 'ok', message: 'nothing to push yet' };
    const url = joinUrl(peer, '/v1/gossip');
    try {
      // "evidence" is an optional extension of the contract's body: portable evidence spreads with the gossip
      const r = await httpRequest(url, {
        method: 'POST',
        body: JSON.stringify(evidence.length ? { checkpoints, evidence } : { checkpoints }),
        headers: { 'content-type': 'application/json' },
        ...this.limits,
      });
      if (r.status !== 200) throw new MonitorError('http-status', `POST ${url}: status ${r.status}`);
      return { status: 'ok', message: `pushed ${checkpoints.length} checkpoint(s) to ${peer}` };
    } catch (e) {
      this.m.errors.inc({ what: 'peer' });
      return { status: 'error', message: `could not push to peer ${peer}: ${(e as Error).message}` };
    }
  }

  /**
   * One full check (`trailmark monitor --once`): every log, then every peer (pull and push).
   * Misbehaviour (new or stored evidence, bad signatures, rollbacks) gives 1, anything unchecked 2, else 0.
   */
  async checkOnce(): Promise<OnceResult> {
    const outcomes = [...(await this.pollAll())];
    if (this.opts.followStreams !== false) outcomes.push(...(await this.followAllStreams()));
    outcomes.push(...(await this.gossipAll()));
    const evidence = await this.allEvidence();
    const brokenStreams = (await this.streams()).some((s) => s.failed);
    const bad = outcomes.some((o) => o.outcome.status === 'misbehaviour') || evidence.length > 0 || brokenStreams;
    const unchecked = outcomes.some((o) => o.outcome.status === 'error' || o.outcome.status === 'pending');
    return { code: bad ? 1 : unchecked ? 2 : 0, outcomes, evidence };
  }

  /** Follows the streams of every log once (see followStreams). */
  async followAllStreams(): Promise<{ what: string; outcome: Outcome }[]> {
    const out = await Promise.all(
      [...this.logs.values()].map(async (f) =>
        (await this.followStreams(f)).map((o) => ({ what: `streams of ${f.url}`, outcome: o })),
      ),
    );
    return out.flat();
  }

  /** The stream checker of a log, loaded from the store once. */
  private async checkerOf(f: Followed): Promise<{ checker: StreamChecker; position: bigint }> {
    let c = this.checkers.get(f.origin);
    if (!c) {
      const saved = await this.opts.store.streams(f.origin);
      c = { checker: new StreamChecker(saved?.state), position: BigInt(saved?.position ?? '0') };
      this.checkers.set(f.origin, c);
    }
    return c;
  }

  /**
   * Reads the entries of the verified view not yet checked (through tiles verified against it), feeds them to
   * the log's stream checker, saves its state, and alerts on each hole, duplicate, broken link or bad
   * signature, and on each stream silent for longer than the stall threshold (once per silence).
   */
  async followStreams(f: Followed): Promise<Outcome[]> {
    return this.lock.run(`streams\n${f.origin}`, async () => {
      const view = await this.opts.store.view(f.origin);
      if (!view) return [];
      const c = await this.checkerOf(f);
      const size = BigInt(view.size);
      const out: Outcome[] = [];
      if (size > c.position) {
        const to = size - c.position > STREAM_ENTRIES_PER_ROUND ? c.position + STREAM_ENTRIES_PER_ROUND : size;
        let findings: StreamFinding[];
        try {
          const log = verifiedLogFromNote(f.reader, view.note, f.verifier);
          findings = await checkStreamEntries(log, c.position, to, c.checker);
        } catch (e) {
          // the checker may hold part of the range: start again from what was saved
          this.checkers.delete(f.origin);
          this.m.errors.inc({ what: 'streams' });
          return [
            {
              status: 'error',
              message: `could not read entries ${c.position}..${to} for the stream check: ${(e as Error).message}`,
            },
          ];
        }
        c.position = to;
        await this.opts.store.putStreams(f.origin, { position: to.toString(), state: c.checker.state() });
        for (const fd of findings) {
          const msg = `stream ${fd.stream} (proxy ${fd.proxy ?? 'unknown'}): ${fd.detail}`;
          this.streamAlert(f.origin, `stream-${fd.kind}`, msg, fd.stream, fd);
          out.push({ status: 'misbehaviour', message: msg });
        }
      }
      const threshold = this.opts.streamStallMs ?? 180_000;
      const stalled = new Set<string>();
      for (const s of c.checker.stalled(Date.now(), threshold)) {
        stalled.add(s.id);
        const silent =
          s.alive_at === null ? 'never had a heartbeat' : `silent since ${new Date(s.alive_at).toISOString()}`;
        const msg = `stream ${s.id} (proxy ${s.proxy ?? 'unknown'}) has had neither a heartbeat nor an end for more than ${Math.round(threshold / 1000)} s (${silent}, last seq ${s.last_seq})`;
        out.push({ status: 'warning', message: msg });
        const key = `${f.origin}\n${s.id}`;
        if (!this.stalledNow.has(key)) {
          this.stalledNow.add(key);
          this.streamAlert(f.origin, 'stream-stalled', msg, s.id, {
            stream: s.id,
            proxy: s.proxy,
            seqs: [s.last_seq, s.last_seq],
            detail: msg,
          });
        }
      }
      // a stream that speaks again may stall again later, and is alerted again then
      for (const key of [...this.stalledNow]) {
        const [origin, id] = key.split('\n');
        if (origin === f.origin && !stalled.has(id)) this.stalledNow.delete(key);
      }
      if (out.length === 0)
        out.push({ status: 'ok', message: `streams of ${f.origin} checked to entry ${c.position}` });
      return out;
    });
  }

  /** A stream alert: the same log line and webhook as split views, with what the webhook needs to act. */
  private streamAlert(
    origin: string,
    kind: string,
    message: string,
    stream: string,
    f: { stream: string; proxy: string | null; seqs: [number, number]; detail: string; leaf_index?: string },
  ): void {
    this.alert(origin, kind, message, stream);
    this.notify({
      alert: kind,
      origin,
      stream: f.stream,
      proxy: f.proxy,
      seqs: f.seqs,
      ...(f.leaf_index ? { leaf_index: f.leaf_index } : {}),
      detail: f.detail,
      at: this.now(),
    });
  }

  /** Every stream of every followed log (GET /v1/streams), with whether it has gone silent. */
  async streams(): Promise<MonitoredStream[]> {
    const now = Date.now();
    const threshold = this.opts.streamStallMs ?? 180_000;
    const out: MonitoredStream[] = [];
    for (const f of this.logs.values()) {
      const { checker } = await this.checkerOf(f);
      for (const s of checker.streams()) {
        const silent = s.alive_at === null ? null : Math.max(0, Math.round((now - s.alive_at) / 1000));
        out.push({
          origin: f.origin,
          ...s,
          stalled: !s.ended && (s.alive_at === null || now - s.alive_at > threshold),
          silent_seconds: silent,
        });
      }
    }
    return out;
  }

  /** The stored view of a followed log: size and root. */
  async view(origin: string): Promise<{ size: bigint; root: Uint8Array; note: string } | undefined> {
    const v = await this.opts.store.view(origin);
    return v ? { size: BigInt(v.size), root: b64decode(v.root), note: v.note } : undefined;
  }
}
