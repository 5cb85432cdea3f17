/**
 * The stream check of the followed logs: reads the entries of each verified view (through tiles verified
 * against it), feeds them to the log's stream checker, saves its state, and alerts on each hole, duplicate,
 * broken link or bad signature, and on each stream silent for longer than the stall threshold.
 */
import { errorMessage, StreamChecker, type StreamFinding, type StreamReport } from '@trailmark/tlog';
import type { Counter } from 'prom-client';
import type { Alerts } from './alerts.js';
import type { Followed } from './config.js';
import type { KeyedLock } from '@trailmark/node';
import type { Outcome } from './outcome.js';
import type { MonitorStore } from './store.js';
import { checkStreamEntries, verifiedLogFromNote } from '@trailmark/client';

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

/** Follows the streams of the logs; see the module comment. */
export class StreamWatch {
  /** Each log's stream checker and how far it has read (loaded from the store on first use). */
  private readonly checkers = new Map<string, { checker: StreamChecker; position: bigint }>();
  /** origin + stream id of streams currently alerted as stalled. */
  private readonly stalledNow = new Set<string>();

  constructor(
    private readonly store: MonitorStore,
    private readonly lock: KeyedLock,
    private readonly alerts: Alerts,
    private readonly errors: Counter,
    /** A stream silent for longer than this (ms) is stalled. */
    private readonly stallMs: number,
  ) {}

  /** The stream checker of a log, loaded from the store once. */
  private async checkerOf(f: Followed): Promise<{ checker: StreamChecker; position: bigint }> {
    let c = this.checkers.get(f.origin);
    if (!c) {
      const saved = await this.store.streams(f.origin);
      c = { checker: new StreamChecker(saved?.state), position: BigInt(saved?.position ?? '0') };
      this.checkers.set(f.origin, c);
    }
    return c;
  }

  /** One round of the check of `f`'s streams (see the module comment); one outcome per finding. */
  async follow(f: Followed): Promise<Outcome[]> {
    return this.lock.run(`streams\n${f.origin}`, async () => {
      const view = await this.store.view(f.origin);
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
          this.errors.inc({ what: 'streams' });
          return [
            {
              status: 'error',
              message: `could not read entries ${c.position}..${to} for the stream check: ${errorMessage(e)}`,
            },
          ];
        }
        c.position = to;
        await this.store.putStreams(f.origin, { position: to.toString(), state: c.checker.state() });
        for (const fd of findings) {
          const msg = `stream ${fd.stream} (proxy ${fd.proxy ?? 'unknown'}): ${fd.detail}`;
          this.streamAlert(f.origin, `stream-${fd.kind}`, msg, fd.stream, fd);
          out.push({ status: 'misbehaviour', message: msg });
        }
      }
      const threshold = this.stallMs;
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
    this.alerts.alert(origin, kind, message, stream);
    this.alerts.notify({
      alert: kind,
      origin,
      stream: f.stream,
      proxy: f.proxy,
      seqs: f.seqs,
      ...(f.leaf_index ? { leaf_index: f.leaf_index } : {}),
      detail: f.detail,
      at: new Date().toISOString(),
    });
  }

  /** Every stream of the given logs, with whether it has gone silent. */
  async streams(logs: Iterable<Followed>): Promise<MonitoredStream[]> {
    const now = Date.now();
    const threshold = this.stallMs;
    const out: MonitoredStream[] = [];
    for (const f of logs) {
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
}
