/**
 * What an operator does with a spool that open() refused as damaged: checkSpool() reports, without changing
 * anything, which records are valid and which bytes are not; salvageSpool() keeps every valid undelivered
 * record (in order, in a fresh segment) and drops the damaged bytes, leaving salvage.json so that the next
 * writer starts a new stream and records the loss in it: the old stream stays visibly unfinished (a hole
 * where the damaged records were, and no end).
 */
import { readFile, readdir, unlink } from 'node:fs/promises';
import { fsyncDirSync as fsyncDir, writeFileDurably } from '@trailmark/node';
import { join } from 'node:path';
import { SpoolError } from './errors.js';
import {
  encodeRecord,
  readAck,
  scanSegment,
  segName,
  SEGMENT_RE,
  SpoolLock,
  writeAck,
  type SpoolPosition,
} from './spool.js';
import { errorMessage } from '@trailmark/tlog';

/** What checkSpool found in one segment file. */
export interface SegmentReport {
  segment: string;
  /** Valid records in the segment (delivered ones included). */
  records: number;
  /** Valid records not yet delivered. */
  undelivered: number;
  /** Damaged byte runs followed by valid records. */
  damaged: { offset: number; bytes: number }[];
  /** Bytes of a torn (or damaged) tail with no valid record after them. */
  tailBytes: number;
}

/**
 * What checkSpool found in a spool directory: its ack cursor, each segment's report and whether open() would accept it.
 */
export interface SpoolReport {
  dir: string;
  ack: SpoolPosition | null;
  segments: SegmentReport[];
  /** Whether open() would accept the spool without salvage: no damage (a torn tail of the last segment is normal). */
  ok: boolean;
}

/** Reads the spool in `dir` and reports what is valid and what is damaged. Precondition: none (read only). */
export async function checkSpool(dir: string): Promise<SpoolReport> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
  } catch (e) {
    throw new SpoolError('io', `cannot read spool directory ${dir}: ${errorMessage(e)}`, { cause: e });
  }
  const ack = (await readAck(dir))?.pos ?? null;
  const segments: SegmentReport[] = [];
  let ok = true;
  for (let i = 0; i < names.length; i++) {
    const n = Number(SEGMENT_RE.exec(names[i])![1]);
    const scan = scanSegment(await readFile(join(dir, names[i])));
    const from = !ack || n > ack.segment ? 0 : n === ack.segment ? ack.offset : Infinity;
    segments.push({
      segment: names[i],
      records: scan.records.length,
      undelivered: scan.records.filter((r) => r.offset >= from).length,
      damaged: scan.damaged,
      tailBytes: scan.tailBytes,
    });
    if (scan.damaged.length > 0 || (scan.tailBytes > 0 && i < names.length - 1)) ok = false;
  }
  return { dir, ack, segments, ok };
}

/** What salvageSpool() did. */
export interface SalvageReport extends SpoolReport {
  /** Undelivered valid records kept. */
  kept: number;
  /** Damaged bytes dropped, where. */
  skipped: { segment: string; offset: number; bytes: number }[];
  /** The segment now holding the kept records (null when nothing needed salvage). */
  into: string | null;
}

/** The contents of salvage.json, read by the next stream writer. */
export interface SalvageNote {
  time: string;
  kept: number;
  skipped: { segment: string; offset: number; bytes: number }[];
}

/**
 * Rewrites a damaged spool so that it opens again: every valid undelivered record is copied, in order, into a
 * new segment, the damaged bytes are dropped, and salvage.json records what was skipped. A clean spool is left
 * as it is. Precondition: no process uses the spool (else SpoolError 'locked').
 * Crash safety: the new segment is complete and durable before the ack moves to it; until then the old
 * segments are the spool, and running salvage again gives the same result.
 */
export async function salvageSpool(dir: string): Promise<SalvageReport> {
  const lock = SpoolLock.take(dir);
  try {
    const report = await checkSpool(dir);
    const skipped = report.segments.flatMap((s, i) => [
      ...s.damaged.map((d) => ({ segment: s.segment, offset: d.offset, bytes: d.bytes })),
      ...(s.tailBytes > 0 && i < report.segments.length - 1
        ? [{ segment: s.segment, offset: -1, bytes: s.tailBytes }]
        : []),
    ]);
    if (report.ok) return { ...report, kept: 0, skipped: [], into: null };
    const ack = report.ack;
    const bufs: Buffer[] = [];
    let last: Buffer | null = null;
    for (const s of report.segments) {
      const n = Number(SEGMENT_RE.exec(s.segment)![1]);
      const scan = scanSegment(await readFile(join(dir, s.segment)));
      // the tail offset is only known from the scan
      for (const k of skipped) if (k.segment === s.segment && k.offset === -1) k.offset = scan.end;
      const from = !ack || n > ack.segment ? 0 : n === ack.segment ? ack.offset : Infinity;
      for (const r of scan.records) {
        if (r.offset >= from) bufs.push(encodeRecord(r.data, r.time));
        last = r.data;
      }
    }
    const lastSeg = Number(SEGMENT_RE.exec(report.segments[report.segments.length - 1].segment)![1]);
    const into = segName(lastSeg + 1);
    const note: SalvageNote = { time: new Date().toISOString(), kept: bufs.length, skipped };
    await writeFileDurably(join(dir, 'salvage.json'), JSON.stringify(note) + '\n');
    await writeFileDurably(join(dir, into), Buffer.concat(bufs));
    // from here on the new segment is the spool; the old ones are delivered or dropped
    await writeAck(dir, { segment: lastSeg + 1, offset: 0 }, last);
    for (const s of report.segments) await unlink(join(dir, s.segment)).catch(() => {});
    fsyncDir(dir);
    return { ...report, kept: bufs.length, skipped, into };
  } finally {
    lock.release();
  }
}

/** Reads salvage.json, or null when there is none. @internal */
export async function readSalvageNote(dir: string): Promise<SalvageNote | null> {
  try {
    return JSON.parse(await readFile(join(dir, 'salvage.json'), 'utf8')) as SalvageNote;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SpoolError('corrupt', `spool ${dir}: salvage.json is unreadable: ${errorMessage(e)}`, { cause: e });
  }
}
