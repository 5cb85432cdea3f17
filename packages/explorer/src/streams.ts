/**
 * `GET /api/streams`'s view of a stream. The checking itself (holes, duplicate seqs, broken prev links,
 * heartbeat/end signatures by the start event's stream key, ended, open requests) is tlog's StreamChecker,
 * the one the audit and the monitor use; this only maps its report to the API's field names.
 */
import type { StreamReport } from '@trailmark/tlog';

/** A stream as `GET /api/streams` lists it: the audit's field names (contract section 6), and more. */
export interface StreamView {
  id: string;
  proxy: string | null;
  first_seq: number;
  last_seq: number;
  events: number;
  holes: [number, number][];
  duplicates: number[];
  /** Seqs with a broken prev link or a bad heartbeat/end signature (the latter also in bad_signatures). */
  broken: number[];
  /** Seqs of heartbeat or end events the stream key does not vouch for. */
  bad_signatures: number[];
  ended: boolean;
  /** The `time` of the last validly signed heartbeat. */
  last_heartbeat: string | null;
  /** The stream key's vkey, from the start event. */
  stream_key: string | null;
  /** No hole, duplicate, broken link or bad signature so far. */
  complete: boolean;
  /** The checker's verdict in words (`complete`, `running (no end yet)`, or what is wrong). */
  status: string;
}

/** Maps a StreamChecker report to the API's view. */
export function streamView(r: StreamReport): StreamView {
  return {
    id: r.id,
    proxy: r.proxy,
    first_seq: r.first_seq,
    last_seq: r.last_seq,
    events: r.events,
    holes: r.holes,
    duplicates: r.duplicates,
    broken: [...new Set([...r.broken, ...r.bad_signatures])].sort((a, b) => a - b),
    bad_signatures: r.bad_signatures,
    ended: r.ended,
    last_heartbeat: r.last_heartbeat?.time ?? null,
    stream_key: r.stream_key,
    complete: !r.failed,
    status: r.status,
  };
}
