/**
 * The monitor: follows logs, checks every checkpoint it hears of (from the log, from peers, from witness
 * requests) against its own verified view, and turns irreconcilable pairs into portable evidence.
 *
 * What a checkpoint means is decided by decideView (view.ts, pure); this class fetches the proofs it asks
 * for, keeps the view, and raises alerts. Config checks live in config.ts, metrics in metrics.ts, alerts and
 * the webhook in alerts.ts, gossip in gossip.ts, the stream check in streamwatch.ts, the rounds in schedule.ts.
 */
import {
  errorMessage,
  b64decode,
  b64encode,
  openCheckpoint,
  parseNote,
  type Checkpoint,
  type Hash,
  type NoteVerifier,
} from '@trailmark/tlog';
import { createLogger, type Logger } from '@trailmark/node';
import { Registry } from 'prom-client';
import { Alerts } from './alerts.js';
import { checkedPeers, followedLogs, type Followed, type MonitorOptions } from './config.js';
import { MonitorError } from './errors.js';
import { ClientError, idOfEvidence, verifyEvidence, type Evidence } from '@trailmark/client';
import { KeyedLock } from '@trailmark/node';
import { pullPeer, pushPeer, type GossipPayload } from './gossip.js';
import { monitorMetrics, type MonitorMetrics } from './metrics.js';
import type { Labelled, OnceResult, Outcome } from './outcome.js';
import { ChangeReport, startRounds, type Rounds } from './schedule.js';
import { StreamWatch, type MonitoredStream } from './streamwatch.js';
import { decideView, type NoteSeen, type ViewDecision, type ViewInput } from './view.js';

export type { FollowedLogOptions, MonitorOptions } from './config.js';
export type { OnceResult, Outcome, OutcomeStatus } from './outcome.js';
export type { MonitoredStream } from './streamwatch.js';

const MAX_PENDING = 64;
const MAX_KNOWN = 4096;

function originOf(note: string): string {
  return parseNote(note).text.split('\n')[0];
}

/** "size root" of a checkpoint that verifies under the log's key (the key of Monitor.known), else undefined. */
function knownKey(f: Followed, note: string): string | undefined {
  try {
    const cp = openCheckpoint(note, f.verifier).checkpoint;
    return `${cp.size} ${b64encode(cp.root)}`;
  } catch {
    return undefined;
  }
}

function now(): string {
  return new Date().toISOString();
}

/** Follows logs and checks every checkpoint it hears of; see the module comment. Precondition: an open store. */
export class Monitor {
  readonly registry: Registry;
  private readonly logs: Map<string, Followed>;
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
  private readonly pending = new Map<string, Map<string, NoteSeen>>();
  private rounds: Rounds | undefined;
  /** Aborts requests in flight on stop(): a hanging log or peer must not hold up shutdown. */
  private readonly closing = new AbortController();
  private readonly limits: { timeoutMs?: number; signal: AbortSignal };
  private readonly m: MonitorMetrics;
  private readonly alerts: Alerts;
  private readonly streamWatch: StreamWatch;
  private readonly changes: ChangeReport;

  constructor(private readonly opts: MonitorOptions) {
    this.limits = { timeoutMs: opts.timeoutMs, signal: this.closing.signal };
    this.logs = followedLogs(opts, this.limits);
    this.peers = checkedPeers(opts);
    this.log = opts.logger ?? createLogger(process.stderr, { component: 'monitor' });
    this.registry = opts.registry ?? new Registry();
    this.m = monitorMetrics(this.registry, () => this.pendingCount());
    this.alerts = new Alerts(this.log, this.m.alerts, opts.alertWebhook);
    this.streamWatch = new StreamWatch(
      opts.store,
      this.lock,
      this.alerts,
      this.m.errors,
      opts.streamStallMs ?? 180_000,
    );
    this.changes = new ChangeReport(this.log);
  }

  /** Trusted log keys by origin (what the witness accepts). */
  logKeys(): Map<string, NoteVerifier> {
    return new Map([...this.logs].map(([o, f]) => [o, f.verifier]));
  }

  /** Starts polling logs and gossiping. Precondition: not started. */
  start(): void {
    const gossipMs = this.opts.gossipIntervalMs ?? 2000;
    const period = Math.min(this.opts.pollIntervalMs ?? 2000, gossipMs);
    let lastGossip = 0;
    let first = true;
    this.rounds = startRounds(
      async () => {
        if (first) {
          first = false;
          await this.loadMetrics();
        }
        this.changes.report(await this.pollAll());
        if (this.opts.followStreams !== false) this.changes.report(await this.followAllStreams());
        if (this.peers.length && Date.now() - lastGossip >= gossipMs) {
          lastGossip = Date.now();
          this.changes.report(await this.gossipAll());
        }
      },
      period,
      this.log,
    );
  }

  /** Stops the loops and waits for in-flight work and webhook deliveries. */
  async stop(): Promise<void> {
    this.alerts.stopRetrying();
    const rounds = this.rounds?.stop();
    this.closing.abort();
    // a hanging entry read must not hold up shutdown either
    for (const f of this.logs.values()) f.reader.close();
    await rounds;
    await this.alerts.settled();
  }

  private async loadMetrics(): Promise<void> {
    for (const [origin, v] of await this.opts.store.views())
      if (this.logs.has(origin)) this.m.treeSize.set({ origin }, Number(v.size));
  }

  /** Polls every followed log once. */
  async pollAll(): Promise<Labelled[]> {
    return Promise.all(
      [...this.logs.values()].map(async (f) => ({ what: `log ${f.url}`, outcome: await this.pollLog(f.origin) })),
    );
  }

  /** Pulls from and pushes to every peer once. */
  async gossipAll(): Promise<Labelled[]> {
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
      return { status: 'error', message: `could not fetch the checkpoint: ${errorMessage(e)}` };
    }
    let out: Outcome;
    try {
      out = await this.lock.run(origin, () => this.fromLog(f, { note, seen: { from: f.url, at: now() } }));
    } catch (e) {
      if (!(e instanceof MonitorError || e instanceof ClientError)) throw e;
      this.m.errors.inc({ what: 'view' });
      return { status: 'error', message: e.message };
    }
    if (out.status === 'advanced') await this.recheckPending(f);
    return out;
  }

  /**
   * Runs decideView for `got` against the stored view, fetching the proofs it asks for. A proof that cannot
   * be fetched ends it with an outcome; any other answer is returned with the view it was decided against.
   */
  private async decide(f: Followed, got: NoteSeen, from: ViewInput['from']): Promise<ViewDecision | Outcome> {
    const rec = await this.opts.store.view(f.origin);
    const view = rec ? { note: rec.note, seen: rec.seen } : undefined;
    const input: ViewInput = { verifier: f.verifier, view, got, from, proofSource: f.url };
    for (;;) {
      const d = decideView(input);
      if (d.kind === 'need-consistency') {
        let proof: Hash[];
        try {
          proof = await f.client.consistency(d.first, d.second);
        } catch (e) {
          if (!d.rollback) return this.proofError(d.first, d.second, e);
          const msg = `log ${f.url} went back from size ${d.second} to ${d.first} and could not prove consistency: ${errorMessage(e)}`;
          this.alerts.alert(f.origin, 'rollback', msg);
          return { status: 'misbehaviour', message: msg };
        }
        input.consistency = proof;
      } else if (d.kind === 'need-inclusion') {
        try {
          input.inclusion = await f.client.proofByIndex(d.index, d.size);
        } catch (e) {
          this.m.errors.inc({ what: 'log' });
          return {
            status: 'error',
            message: `checkpoints ${d.first} and ${d.size} do not verify as consistent, and the inclusion proof needed to prove it failed: ${errorMessage(e)}`,
          };
        }
      } else return d;
    }
  }

  /** Acts on what the log itself served: the view advances, or the log is caught. Precondition: origin's lock held. */
  private async fromLog(f: Followed, got: NoteSeen): Promise<Outcome> {
    const d = await this.decide(f, got, 'log');
    if ('status' in d) return d;
    switch (d.kind) {
      case 'unsigned': {
        if (d.mistake) {
          // an HTML page, another log, a wrong key: nothing was checked, and nobody should be paged for a typo
          this.m.errors.inc({ what: 'log' });
          return {
            status: 'error',
            message: `${f.url} does not serve a checkpoint signed by ${f.origin}'s key (is it the log's base URL, and the right --log-key?): ${d.error.message}`,
          };
        }
        const msg = `log ${f.url} served a checkpoint that does not verify: ${d.error.message}`;
        this.alerts.alert(f.origin, 'bad-signature', msg);
        return { status: 'misbehaviour', message: msg };
      }
      case 'first':
        await this.advance(f, got, d.cp);
        return { status: 'advanced', message: `first checkpoint of ${f.origin} at size ${d.cp.size}` };
      case 'equal':
        this.m.lastVerified.set({ origin: f.origin }, Date.now() / 1000);
        return { status: 'ok', message: `${f.origin} unchanged at size ${d.cp.size}` };
      case 'advance':
        await this.advance(f, got, d.cp);
        return { status: 'advanced', message: `${f.origin} advanced ${d.from} -> ${d.cp.size}` };
      case 'rollback': {
        // consistent or not, it is showing an older tree than it showed before
        const msg = `log ${f.url} went back from size ${d.from} to ${d.to} (consistent, but a rollback)`;
        this.alerts.alert(f.origin, 'rollback', msg);
        return { status: 'misbehaviour', message: msg };
      }
      default:
        return this.misbehaviour(f, d);
    }
  }

  /** The outcome of a split or a bad proof (whoever brought the checkpoint). */
  private async misbehaviour(f: Followed, d: ViewDecision): Promise<Outcome> {
    if (d.kind === 'split') return this.evidence(d.evidence);
    if (d.kind === 'bad-proof') {
      const msg = `log ${f.url} served a consistency proof ${d.first} -> ${d.second} that does not verify against its own checkpoint of size ${d.second}`;
      this.alerts.alert(f.origin, 'bad-proof', msg);
      return { status: 'misbehaviour', message: msg };
    }
    throw new Error(`unexpected view decision ${d.kind}`);
  }

  private proofError(from: bigint, to: bigint, e: unknown): Outcome {
    this.m.errors.inc({ what: 'log' });
    return { status: 'error', message: `could not fetch consistency proof ${from} -> ${to}: ${errorMessage(e)}` };
  }

  private async advance(f: Followed, s: NoteSeen, cp: Checkpoint): Promise<void> {
    await this.opts.store.putView(f.origin, {
      note: s.note,
      size: cp.size.toString(),
      root: b64encode(cp.root),
      seen: s.seen,
    });
    this.known.delete(f.origin);
    this.m.verified.inc({ origin: f.origin });
    this.m.treeSize.set({ origin: f.origin }, Number(cp.size));
    this.m.lastVerified.set({ origin: f.origin }, Date.now() / 1000);
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
      this.alerts.alert(ev.origin, 'split-view', `${ev.kind}${note}: ${ev.detail}; evidence ${id} ${where}`);
      this.alerts.notify(ev);
    }
    return { status: 'misbehaviour', message: `split view of ${ev.origin} (${ev.kind}): ${ev.detail}`, evidence: id };
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
      return this.counted({ status: 'rejected', message: `not a signed note: ${errorMessage(e)}` });
    }
    const f = this.logs.get(origin);
    if (!f) return this.counted({ status: 'ignored', message: `not following ${JSON.stringify(origin)}` });
    const got: NoteSeen = { note, seen: { from, at: now() } };
    let out: Outcome | Checkpoint;
    try {
      out = await this.lock.run(origin, () => this.compareForeign(f, got));
      if (!('status' in out)) {
        // larger than our view: see whether the log has caught up
        await this.pollLog(origin);
        out = await this.lock.run(origin, () => this.compareForeign(f, got));
      }
    } catch (e) {
      if (!(e instanceof MonitorError || e instanceof ClientError)) throw e;
      return this.counted({ status: 'error', message: e.message });
    }
    if (!('status' in out)) {
      const cp = out;
      const pend = this.pending.get(origin) ?? new Map<string, NoteSeen>();
      this.pending.set(origin, pend);
      const key = `${cp.size} ${b64encode(cp.root)}`;
      if (!pend.has(key)) {
        if (pend.size >= MAX_PENDING) pend.delete(pend.keys().next().value!);
        pend.set(key, got);
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

  /** Compares a foreign checkpoint with the view; its checkpoint when it is larger than the view. */
  private async compareForeign(f: Followed, got: NoteSeen): Promise<Outcome | Checkpoint> {
    const known = this.known.get(f.origin) ?? new Set<string>();
    this.known.set(f.origin, known);
    // checked before (the set is emptied whenever the view advances): no proof to fetch again
    const key = knownKey(f, got.note);
    if (key && known.has(key)) return { status: 'ok', message: `size ${key.split(' ')[0]} already checked` };
    const d = await this.decide(f, got, 'foreign');
    if ('status' in d) return d;
    switch (d.kind) {
      case 'unsigned':
        // anyone can send junk: a bad signature from a peer says nothing about the log
        return { status: 'rejected', message: `checkpoint from ${got.seen.from} does not verify: ${d.error.message}` };
      case 'larger':
        return d.cp;
      case 'equal':
      case 'consistent': {
        if (known.size >= MAX_KNOWN) known.clear();
        known.add(`${d.cp.size} ${b64encode(d.cp.root)}`);
        const size = d.kind === 'equal' ? d.cp.size : d.view;
        return {
          status: 'ok',
          message: `size ${d.cp.size} from ${got.seen.from} is consistent with the view (size ${size})`,
        };
      }
      default:
        return this.misbehaviour(f, d);
    }
  }

  private async recheckPending(f: Followed): Promise<void> {
    const pend = this.pending.get(f.origin);
    if (!pend || pend.size === 0) return;
    for (const [key, p] of [...pend]) {
      const out = await this.lock.run(f.origin, () => this.compareForeign(f, p));
      if ('status' in out && out.status !== 'error') pend.delete(key);
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
      return { status: 'rejected', message: `evidence from ${from} does not verify: ${errorMessage(e)}` };
    }
    return this.evidence(ev, ` (reported by ${from})`);
  }

  /** Pulls a peer's checkpoints and evidence and checks each. Precondition: none. */
  async pullPeer(peer: string): Promise<Outcome[]> {
    return pullPeer(peer, this, this.limits, this.m.errors);
  }

  private async gossipPayload(): Promise<GossipPayload> {
    return { checkpoints: await this.latestCheckpoints(), evidence: await this.allEvidence() };
  }

  /**
   * Pushes our latest checkpoints (and any evidence) to a peer's POST /v1/gossip; `payload` when the caller
   * already read them for several peers. Precondition: none.
   */
  async pushPeer(peer: string, payload?: GossipPayload): Promise<Outcome> {
    return pushPeer(peer, payload ?? (await this.gossipPayload()), this.limits, this.m.errors);
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
  async followAllStreams(): Promise<Labelled[]> {
    const out = await Promise.all(
      [...this.logs.values()].map(async (f) =>
        (await this.followStreams(f)).map((o) => ({ what: `streams of ${f.url}`, outcome: o })),
      ),
    );
    return out.flat();
  }

  /**
   * Reads the entries of the verified view not yet checked (through tiles verified against it), feeds them to
   * the log's stream checker, saves its state, and alerts on each hole, duplicate, broken link or bad
   * signature, and on each stream silent for longer than the stall threshold (once per silence).
   */
  async followStreams(f: Followed): Promise<Outcome[]> {
    return this.streamWatch.follow(f);
  }

  /** Every stream of every followed log (GET /v1/streams), with whether it has gone silent. */
  async streams(): Promise<MonitoredStream[]> {
    return this.streamWatch.streams(this.logs.values());
  }

  /** The stored view of a followed log: size and root. */
  async view(origin: string): Promise<{ size: bigint; root: Uint8Array; note: string } | undefined> {
    const v = await this.opts.store.view(origin);
    return v ? { size: BigInt(v.size), root: b64decode(v.root), note: v.note } : undefined;
  }
}
