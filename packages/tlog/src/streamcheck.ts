// Completeness of proxy streams (contract sections 4 and 6): fed the log's events in log order, the checker
// tracks each stream's sequence and finds what a dropped, injected or forged event leaves behind: a hole in
// the seqs, two events with one seq, a `prev` that is not the leaf hash of the event before, a heartbeat or
// end whose signature the stream key (from the stream's start event) does not vouch for. It also tracks
// liveness (the last start, heartbeat or end) and request events still waiting for their response.
// Pure and incremental: its whole state is plain JSON, so an audit or a monitor can save it and resume.
import { b64decode, b64encode } from './encoding.js';
import { KEY_TYPE_ED25519, parseVkey, type NoteVerifier } from './keys.js';
import { checkStreamPosition, streamSignatureMessage, type StreamPosition } from './stream.js';
import { toU64, type U64Like } from './u64.js';

/** Most seqs kept in each problem list, and most open requests tracked per stream: state stays bounded. */
export const STREAM_LIST_LIMIT = 1000;
/**
 * Most open requests (awaiting their response) tracked per stream; past it further requests are only counted in
 * open_requests_untracked.
 */
export const STREAM_OPEN_REQUEST_LIMIT = 10_000;

/** One stream's state, as saved and as reported (contract section 6's audit fields and more). */
export interface StreamRecord {
  id: string;
  /** The `proxy` field of its first event seen. */
  proxy: string | null;
  /** The stream key's vkey from its start event (seq 0). */
  stream_key: string | null;
  first_seq: number;
  last_seq: number;
  events: number;
  /** Missing seqs, as inclusive ranges in ascending order. */
  holes: [number, number][];
  /** Seqs seen more than once with different events. */
  duplicates: number[];
  /** Seqs whose `prev` is not the leaf hash of the stream's event seq - 1. */
  broken: number[];
  /** Seqs of heartbeat or end events whose signature the stream key does not vouch for. */
  bad_signatures: number[];
  /** Signed events that could not be checked because the start event (and its key) never arrived. */
  unverified_signatures: number;
  /** The last event is a validly signed `end`. */
  ended: boolean;
  last_heartbeat: { seq: number; time: string | null; leaf_index: string } | null;
  /** Milliseconds since the epoch of the last start, heartbeat or end (its `time`, at most when it was checked). */
  alive_at: number | null;
  /** request_id of request events without a response event yet (at most STREAM_OPEN_REQUEST_LIMIT). */
  open_requests: string[];
  /** Open requests not tracked because the limit was reached. */
  open_requests_untracked: number;
  /** Base64 leaf hashes of the events at last_seq (more than one only after a duplicate). */
  tail: string[];
}

/** The checker's saved state. */
export interface StreamCheckerState {
  version: 1;
  streams: StreamRecord[];
  /** Leaf indices of access events whose `stream` member is malformed (at most STREAM_LIST_LIMIT). */
  malformed: string[];
}

/** The kinds of stream problem the checker reports. */
export type StreamFindingKind = 'hole' | 'duplicate' | 'broken' | 'bad-signature';

/** Something wrong found while adding one event. */
export interface StreamFinding {
  kind: StreamFindingKind;
  stream: string;
  proxy: string | null;
  /** The seqs concerned (a hole's first and last missing seq; otherwise the one seq). */
  seqs: [number, number];
  leaf_index: string;
  detail: string;
}

/** A stream's report: its record without the internal tail, and a one-word verdict. */
export interface StreamReport extends Omit<StreamRecord, 'tail'> {
  /** Evidence of a dropped, injected or forged event (holes, duplicates, broken links, bad signatures). */
  failed: boolean;
  /** `complete`, `running` (no end yet), or what is wrong. */
  status: string;
}

/** "5" or "5-7". */
function range(a: number, b: number): string {
  return a === b ? `${a}` : `${a}-${b}`;
}

function pushCapped<T>(list: T[], v: T): void {
  if (list.length < STREAM_LIST_LIMIT) list.push(v);
}

/** The parts of an access event the checker reads; anything else about the event is ignored. */
interface EventView {
  stage?: unknown;
  proxy?: unknown;
  time?: unknown;
  request_id?: unknown;
  stream_key?: unknown;
  signature?: unknown;
}

/** Verdict and what is wrong with a stream, in words (for the audit's one line a stream). */
export function streamStatus(r: StreamRecord): { failed: boolean; status: string } {
  const wrong: string[] = [];
  if (r.holes.length) wrong.push(`missing seq ${r.holes.map(([a, b]) => range(a, b)).join(', ')}`);
  if (r.duplicates.length) wrong.push(`two events with seq ${r.duplicates.join(', ')}`);
  if (r.broken.length) wrong.push(`prev does not match at seq ${r.broken.join(', ')}`);
  if (r.bad_signatures.length) wrong.push(`bad signature at seq ${r.bad_signatures.join(', ')}`);
  const failed = wrong.length > 0;
  if (r.unverified_signatures)
    wrong.push(`${r.unverified_signatures} signature(s) unverifiable without the start event`);
  if (!r.ended) wrong.push('no end yet');
  const open = r.open_requests.length + r.open_requests_untracked;
  if (open) wrong.push(`${open} request(s) without a response`);
  if (!failed && r.ended && open === 0 && !r.unverified_signatures) return { failed, status: 'complete' };
  if (!failed && wrong.length === 1 && !r.ended) return { failed, status: 'running (no end yet)' };
  return { failed, status: wrong.join('; ') };
}

/**
 * The incremental stream checker. Feed it every entry of a log in log order with add(); read streams(),
 * findings as they happen (add's result), and state() to save and resume (new StreamChecker(state)).
 */
export class StreamChecker {
  private readonly byId = new Map<string, StreamRecord>();
  private readonly open = new Map<string, Set<string>>();
  /** request_id -> stream id, for responses (a restarted proxy may answer in another stream). */
  private readonly openIndex = new Map<string, string>();
  private readonly keys = new Map<string, NoteVerifier | null>();
  private readonly malformed: string[];

  constructor(state?: StreamCheckerState) {
    if (state !== undefined && (state?.version !== 1 || !Array.isArray(state.streams))) {
      throw new TypeError('stream state is not a version 1 stream checker state');
    }
    for (const r of state?.streams ?? []) {
      const rec: StreamRecord = {
        ...r,
        holes: r.holes.map(([a, b]) => [a, b]),
        duplicates: [...r.duplicates],
        broken: [...r.broken],
        bad_signatures: [...r.bad_signatures],
        tail: [...r.tail],
        open_requests: [],
      };
      this.byId.set(r.id, rec);
      const set = new Set(r.open_requests);
      this.open.set(r.id, set);
      for (const q of set) this.openIndex.set(q, r.id);
    }
    this.malformed = [...(state?.malformed ?? [])];
  }

  /**
   * Adds the entry at `leafIndex` with `leafHash` (bytes or base64) and its parsed JSON `event`. Entries that
   * are not access events with a `stream` member are ignored. `now` (ms) bounds the liveness time an event's
   * own `time` can claim. Precondition: entries come in log order, each once. Returns what it found wrong.
   */
  add(
    leafIndex: U64Like,
    leafHash: Uint8Array | string,
    event: unknown,
    now = Number.MAX_SAFE_INTEGER,
  ): StreamFinding[] {
    if (typeof event !== 'object' || event === null || Array.isArray(event)) return [];
    const raw = (event as { stream?: unknown }).stream;
    if (raw === undefined) return [];
    // the common case (a safe non-negative number) without a bigint round trip: this runs once per entry
    const index =
      typeof leafIndex === 'number' && Number.isSafeInteger(leafIndex) && leafIndex >= 0
        ? String(leafIndex)
        : toU64(leafIndex, 'leaf index').toString();
    let pos: StreamPosition;
    try {
      pos = checkStreamPosition(raw);
    } catch {
      pushCapped(this.malformed, index);
      return [];
    }
    const ev = event as EventView;
    const hash = typeof leafHash === 'string' ? leafHash : b64encode(leafHash);
    const findings: StreamFinding[] = [];
    let r = this.byId.get(pos.id);
    const found = (kind: StreamFindingKind, a: number, b: number, detail: string) =>
      findings.push({ kind, stream: pos.id, proxy: r!.proxy, seqs: [a, b], leaf_index: index, detail });
    if (!r) {
      r = {
        id: pos.id,
        proxy: typeof ev.proxy === 'string' ? ev.proxy : null,
        stream_key: null,
        first_seq: pos.seq,
        last_seq: pos.seq,
        events: 0,
        holes: [],
        duplicates: [],
        broken: [],
        bad_signatures: [],
        unverified_signatures: 0,
        ended: false,
        last_heartbeat: null,
        alive_at: null,
        open_requests: [],
        open_requests_untracked: 0,
        tail: [],
      };
      this.byId.set(pos.id, r);
      this.open.set(pos.id, new Set());
      if (pos.seq > 0) {
        r.holes.push([0, pos.seq - 1]);
        found(
          'hole',
          0,
          pos.seq - 1,
          `stream ${pos.id} starts at seq ${pos.seq}: seq ${range(0, pos.seq - 1)} missing`,
        );
      }
      r.tail = [hash];
    } else if (pos.seq === r.last_seq + 1) {
      // the next event: its prev must be the leaf hash of the one before
      if (!r.tail.includes(pos.prev!)) {
        pushCapped(r.broken, pos.seq);
        found(
          'broken',
          pos.seq,
          pos.seq,
          `seq ${pos.seq}'s prev ${pos.prev} is not the leaf hash of seq ${r.last_seq} (${r.tail.join(' or ')})`,
        );
      }
      r.last_seq = pos.seq;
      r.tail = [hash];
    } else if (pos.seq > r.last_seq + 1) {
      r.holes.push([r.last_seq + 1, pos.seq - 1]);
      found(
        'hole',
        r.last_seq + 1,
        pos.seq - 1,
        `seq ${range(r.last_seq + 1, pos.seq - 1)} missing between seq ${r.last_seq} and seq ${pos.seq}`,
      );
      r.last_seq = pos.seq;
      r.tail = [hash];
    } else {
      const h = r.holes.findIndex(([a, b]) => pos.seq >= a && pos.seq <= b);
      if (h >= 0) {
        // arrived out of order into a hole: no longer missing (its links cannot all be checked)
        const [a, b] = r.holes[h];
        const parts: [number, number][] = [];
        if (a < pos.seq) parts.push([a, pos.seq - 1]);
        if (pos.seq < b) parts.push([pos.seq + 1, b]);
        r.holes.splice(h, 1, ...parts);
        if (pos.seq < r.first_seq) r.first_seq = pos.seq;
      } else {
        // identical leaf data is stored once by the log, so a second event with this seq is a different event
        if (!r.duplicates.includes(pos.seq)) pushCapped(r.duplicates, pos.seq);
        found('duplicate', pos.seq, pos.seq, `a second event with seq ${pos.seq} (leaf ${index})`);
        if (pos.seq === r.last_seq) r.tail.push(hash);
      }
    }
    r.events++;
    if (r.proxy === null && typeof ev.proxy === 'string') r.proxy = ev.proxy;
    this.stage(r, pos, ev, index, now, found);
    return findings;
  }

  private stage(
    r: StreamRecord,
    pos: StreamPosition,
    ev: EventView,
    index: string,
    now: number,
    found: (k: StreamFindingKind, a: number, b: number, d: string) => void,
  ): void {
    const isLast = pos.seq === r.last_seq;
    if (isLast) r.ended = false;
    const time = typeof ev.time === 'string' ? ev.time : null;
    const at = () => {
      const t = time === null ? NaN : Date.parse(time);
      return Math.min(Number.isNaN(t) ? now : t, now);
    };
    switch (ev.stage) {
      case 'start':
        if (pos.seq === 0 && r.stream_key === null && typeof ev.stream_key === 'string') {
          r.stream_key = ev.stream_key;
          r.alive_at = Math.max(r.alive_at ?? 0, at());
        }
        break;
      case 'heartbeat':
      case 'end': {
        const verdict = this.verifySignature(r, pos, ev.signature);
        if (verdict === 'bad') {
          pushCapped(r.bad_signatures, pos.seq);
          found(
            'bad-signature',
            pos.seq,
            pos.seq,
            `the ${ev.stage} at seq ${pos.seq} is not signed by the stream key${r.stream_key ? '' : ' (its start event has no valid stream_key)'}`,
          );
          break;
        }
        if (verdict === 'unverified') r.unverified_signatures++;
        r.alive_at = Math.max(r.alive_at ?? 0, at());
        if (ev.stage === 'heartbeat') r.last_heartbeat = { seq: pos.seq, time, leaf_index: index };
        else if (isLast) r.ended = true;
        break;
      }
      case 'request':
        if (typeof ev.request_id === 'string') {
          const set = this.open.get(r.id)!;
          if (set.size >= STREAM_OPEN_REQUEST_LIMIT) r.open_requests_untracked++;
          else {
            set.add(ev.request_id);
            this.openIndex.set(ev.request_id, r.id);
          }
        }
        break;
      case 'response':
        if (typeof ev.request_id === 'string') {
          const owner = this.openIndex.get(ev.request_id);
          if (owner !== undefined) {
            this.open.get(owner)!.delete(ev.request_id);
            this.openIndex.delete(ev.request_id);
          }
        }
        break;
    }
  }

  private verifySignature(r: StreamRecord, pos: StreamPosition, signature: unknown): 'ok' | 'bad' | 'unverified' {
    if (r.stream_key === null) return r.first_seq === 0 ? 'bad' : 'unverified';
    let key = this.keys.get(r.id);
    if (key === undefined) {
      try {
        key = parseVkey(r.stream_key);
        if (key.type !== KEY_TYPE_ED25519) key = null;
      } catch {
        key = null;
      }
      this.keys.set(r.id, key);
    }
    if (key === null || typeof signature !== 'string') return 'bad';
    let sig: Uint8Array;
    try {
      sig = b64decode(signature, 'signature');
    } catch {
      return 'bad';
    }
    return key.verify(streamSignatureMessage(pos), sig) ? 'ok' : 'bad';
  }

  /** Every stream seen, in order of first appearance, with its verdict. */
  streams(): StreamReport[] {
    return [...this.byId.values()].map((r) => {
      const rec = this.record(r);
      const { tail: _tail, ...rest } = rec;
      void _tail;
      return { ...rest, ...streamStatus(rec) };
    });
  }

  /** Streams not ended whose last sign of life is older than `thresholdMs` before `now` (ms). */
  stalled(now: number, thresholdMs: number): StreamReport[] {
    return this.streams().filter((s) => !s.ended && (s.alive_at === null || now - s.alive_at > thresholdMs));
  }

  /** Access events whose stream member did not parse (leaf indices). */
  malformedEvents(): string[] {
    return [...this.malformed];
  }

  /** The state to save (plain JSON); new StreamChecker(state) resumes from it. */
  state(): StreamCheckerState {
    return { version: 1, streams: [...this.byId.values()].map((r) => this.record(r)), malformed: [...this.malformed] };
  }

  private record(r: StreamRecord): StreamRecord {
    return { ...r, open_requests: [...this.open.get(r.id)!] };
  }
}
