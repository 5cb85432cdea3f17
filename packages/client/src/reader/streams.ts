/**
 * Stream completeness over a verified log: every entry, read through tiles verified against the signed
 * checkpoint, goes to tlog's StreamChecker in log order. Used by `trailmark audit` (state in the audit state
 * file) and by the monitor (state in its store).
 */
import { readFile } from 'node:fs/promises';
import { fromUtf8, StreamChecker, type StreamCheckerState, type StreamFinding } from '@trailmark/tlog';
import { AuditStateError } from './audit.js';
import { verifiedEntries } from './entries.js';
import { nodeHasher, type VerifiedLog } from './verified.js';

/**
 * Feeds entries [from, to) of `log` to `checker` in order; returns what was found wrong. Entries that are not
 * JSON are skipped (they carry no stream). `now` (ms) bounds the liveness an event's own time can claim.
 * Precondition: the checker has seen exactly the entries before `from`; from <= to <= the log's size.
 * Throws TlogError when an entry does not verify, LogReadError when the log cannot be read.
 */
export async function checkStreamEntries(
  log: VerifiedLog,
  from: bigint,
  to: bigint,
  checker: StreamChecker,
  now = Date.now(),
): Promise<StreamFinding[]> {
  const findings: StreamFinding[] = [];
  for await (const e of verifiedEntries(log, from, to)) {
    let ev: unknown;
    try {
      ev = JSON.parse(fromUtf8(e.data, 'entry'));
    } catch {
      continue;
    }
    findings.push(...checker.add(e.index, nodeHasher.leaf(e.data), ev, now));
  }
  return findings;
}

/**
 * The stream state saved in an audit state file (its `streams` member); undefined when the file does not exist
 * or predates stream checking (the next audit then checks streams from leaf 0). Throws AuditStateError when the
 * member is there but unusable.
 */
export async function readAuditStreams(file: string): Promise<StreamCheckerState | undefined> {
  let doc: { streams?: unknown };
  try {
    doc = JSON.parse(await readFile(file, 'utf8')) as { streams?: unknown };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // readAuditState reports an unreadable or malformed file first
    return undefined;
  }
  if (doc?.streams === undefined) return undefined;
  const s = doc.streams as StreamCheckerState;
  if (s?.version !== 1 || !Array.isArray(s.streams))
    throw new AuditStateError(`state file ${file}: "streams" is not a version 1 stream state`);
  return s;
}
