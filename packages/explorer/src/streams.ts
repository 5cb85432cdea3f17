/**
 * Stream completeness (contract section 4), checked incrementally as entries are indexed: holes, two events
 * with one seq, a `prev` that is not the leaf hash of the stream's previous event, and a heartbeat or end
 * whose signature does not verify with the stream key of the stream's start event.
 */
import { b64decode, parseVkey, streamSignatureMessage, type NoteVerifier } from '@trailmark/tlog';

/** A stream's state, in the audit's field names (contract section 6). */
export interface StreamState {
  id: string;
  proxy: string | null;
  first_seq: number;
  last_seq: number;
  events: number;
  holes: [number, number][];
  duplicates: number[];
  broken: number[];
  ended: boolean;
  last_heartbeat: string | null;
  /** The stream key's vkey, from the start event. */
  stream_key: string | null;
  /** Base64 leaf hash of the event at last_seq (what the next event's prev must be). */
  last_hash: string | null;
}

export interface StreamEvent {
  id: string;
  seq: number;
  prev: string | null;
  leafHash: string;
  stage: string | null;
  proxy: string | null;
  time: string | null;
  streamKey: string | null;
  signature: string | null;
}

/** Each problem list keeps at most this many items (a log broken at every event must not grow the state without bound). */
export const MAX_LISTED = 1000;

function note<T>(list: T[], item: T): void {
  if (list.length < MAX_LISTED) list.push(item);
}

/** Whether the stream is complete so far: no hole, duplicate or broken link. */
export function streamOk(s: StreamState): boolean {
  return s.holes.length === 0 && s.duplicates.length === 0 && s.broken.length === 0;
}

export class StreamTracker {
  private readonly states = new Map<string, StreamState>();
  private readonly verifiers = new Map<string, NoteVerifier | null>();
  /** Streams changed since the last takeDirty(). */
  private dirty = new Set<string>();

  constructor(initial: Iterable<StreamState>) {
    for (const s of initial) this.states.set(s.id, s);
  }

  all(): StreamState[] {
    return [...this.states.values()];
  }

  /** The states changed since the last call (to persist with the batch that changed them). */
  takeDirty(): StreamState[] {
    const out = [...this.dirty].map((id) => this.states.get(id)!);
    this.dirty = new Set();
    return out;
  }

  /** Drops unpersisted changes by reloading `persisted` (after a batch failed to commit). */
  reset(persisted: Iterable<StreamState>): void {
    this.states.clear();
    this.verifiers.clear();
    this.dirty.clear();
    for (const s of persisted) this.states.set(s.id, s);
  }

  add(e: StreamEvent): void {
    let s = this.states.get(e.id);
    if (!s) {
      s = {
        id: e.id, proxy: e.proxy, first_seq: e.seq, last_seq: -1, events: 0, holes: [], duplicates: [], broken: [], ended: false,
        last_heartbeat: null, stream_key: null, last_hash: null,
      };
      if (e.seq > 0) note(s.holes, [0, e.seq - 1]);
      this.states.set(e.id, s);
    }
    this.dirty.add(e.id);
    s.events++;
    if (s.last_seq >= 0 && e.seq <= s.last_seq) {
      note(s.duplicates, e.seq);
      return;
    }
    if (s.last_seq >= 0 && e.seq > s.last_seq + 1) note(s.holes, [s.last_seq + 1, e.seq - 1]);
    else if (s.last_seq >= 0 && e.prev !== s.last_hash) note(s.broken, e.seq);
    s.last_seq = e.seq;
    s.last_hash = e.leafHash;
    if (e.proxy && !s.proxy) s.proxy = e.proxy;
    if (e.stage === 'start' && e.streamKey) s.stream_key = e.streamKey;
    if (e.stage === 'heartbeat' || e.stage === 'end') {
      if (!this.signatureOk(s, e)) note(s.broken, e.seq);
      else if (e.stage === 'end') s.ended = true;
      else s.last_heartbeat = e.time;
    }
  }

  private signatureOk(s: StreamState, e: StreamEvent): boolean {
    if (!s.stream_key || !e.signature) return false;
    let v = this.verifiers.get(s.id);
    if (v === undefined) {
      try {
        v = parseVkey(s.stream_key);
      } catch {
        v = null;
      }
      this.verifiers.set(s.id, v);
    }
    if (!v) return false;
    try {
      return v.verify(streamSignatureMessage({ id: e.id, seq: e.seq, prev: e.prev }), b64decode(e.signature, 'signature'));
    } catch {
      return false;
    }
  }
}
