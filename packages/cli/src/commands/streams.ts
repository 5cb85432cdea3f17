/**
 * The stream part of `trailmark audit` (contract section 6): every proxy stream checked for holes, duplicate
 * seqs, broken prev links and bad heartbeat/end signatures; one line a stream; exit 1 naming the stream and
 * the seqs when any is found. Kept apart from audit.ts, which only calls in here.
 */
import { StreamChecker, type NoteVerifier, type StreamCheckerState, type StreamReport } from '@trailmark/tlog';
import { checkStreamEntries, verifiedLogFromNote, type AuditReport, type LogReader } from '@trailmark/client';
import type { Output } from '../program.js';
import { EXIT_FAILED, EXIT_OK } from '../exit.js';
import { mapped } from './checkpoint.js';

/**
 * The outcome of a stream audit: per-stream reports, leaf indices of access events with a malformed stream member, and
 * the checker state to save for the next audit.
 */
export interface StreamAudit {
  streams: StreamReport[];
  malformed: string[];
  state: StreamCheckerState;
}

/**
 * Checks the streams in the audited tree: from where `previous` (the saved stream state, for the tree the
 * last audit covered) left off, else from leaf 0. Precondition: `report` is the audit that just passed.
 */
export async function auditStreams(
  reader: LogReader,
  logKey: NoteVerifier,
  report: AuditReport,
  previous: StreamCheckerState | undefined,
): Promise<StreamAudit> {
  return mapped(async () => {
    const log = verifiedLogFromNote(reader, report.checkpoint, logKey);
    const checker = new StreamChecker(previous);
    await checkStreamEntries(log, previous ? report.fromSize : 0n, report.treeSize, checker);
    return { streams: checker.streams(), malformed: checker.malformedEvents(), state: checker.state() };
  });
}

/** "2026-…Z (seq 41)" or "none". */
function heartbeat(s: StreamReport): string {
  return s.last_heartbeat ? `${s.last_heartbeat.time ?? 'no time'} (seq ${s.last_heartbeat.seq})` : 'none';
}

/**
 * Prints one line a stream, and on stderr what is wrong; returns the exit status (1 when any stream holds a
 * hole, a duplicate, a broken link or a bad signature).
 */
export function reportStreams(out: Output, a: StreamAudit): number {
  for (const s of a.streams) {
    out.info(
      `stream ${s.id} (proxy ${s.proxy ?? 'unknown'}): seq ${s.first_seq}..${s.last_seq}, ${s.events} events, last heartbeat ${heartbeat(s)}: ${s.status}`,
    );
  }
  if (a.malformed.length)
    out.info(
      `${a.malformed.length} access event(s) with a malformed stream member (leaf ${a.malformed.slice(0, 10).join(', ')}${a.malformed.length > 10 ? ', …' : ''})`,
    );
  const bad = a.streams.filter((s) => s.failed);
  if (bad.length === 0) return EXIT_OK;
  if (!out.json) {
    process.stderr.write(
      `trailmark: stream check failed: ${bad.map((s) => `stream ${s.id} (proxy ${s.proxy ?? 'unknown'}): ${s.status}`).join('; ')}\n`,
    );
  }
  return EXIT_FAILED;
}

/** The `streams` member of `audit --json` (contract section 6, with the extra fields the checker keeps). */
export function streamsJson(a: StreamAudit): Record<string, unknown> {
  return {
    streams: a.streams.map((s) => ({
      id: s.id,
      proxy: s.proxy,
      first_seq: s.first_seq,
      last_seq: s.last_seq,
      events: s.events,
      holes: s.holes,
      duplicates: s.duplicates,
      broken: s.broken,
      bad_signatures: s.bad_signatures,
      ended: s.ended,
      last_heartbeat: s.last_heartbeat,
      open_requests: s.open_requests,
      status: s.status,
    })),
    ...(a.malformed.length ? { malformed_stream_events: a.malformed } : {}),
  };
}
