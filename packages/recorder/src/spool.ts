/**
 * A durable local spool: fsynced append-only segment files plus an acknowledgement cursor.
 *
 * Segments are preallocated with zeros ahead of the writes, so a write does not grow the file: an O_DSYNC write
 * then flushes only its data blocks, not the file size through the filesystem journal (on ext4 that cuts the
 * slowest appends from several ms to about one). The unwritten part of a segment reads as a zero length.
 *
 * Layout of DIR:
 *   <20-digit n>.seg   segments, appended in order; a record is
 *                      u32 BE payload length | u32 BE CRC-32 of (time || payload) | f64 BE append time (ms) | payload
 *   ack                "<segment> <offset>\n" then the base64 of the last delivered record: everything before this
 *                      position was delivered (written atomically: temporary file, fsync, rename, fsync of the
 *                      directory); the record lets a writer continue a hash chain once every segment is gone
 *   lock               held with an open-file-description lock (fcntl F_OFD_SETLK) by the process using the
 *                      spool; the kernel drops it when that process dies, whatever its PID or namespace. The
 *                      file holds the holder's PID, for people only.
 *   salvage.json       left by salvageSpool(): what was skipped, until the next writer has recorded it
 *
 * append() resolves only after its record is on disk: segments are opened O_DSYNC, so each write returns once its
 * data is durable (one trip to the thread pool instead of a write and then an fdatasync). Concurrent appends
 * share one write (group commit), so the cost of durability is paid once per flush, not once per event.
 * A crash can leave at most a torn tail on the last segment (records that were never acknowledged to a
 * caller): open() cuts it off. A damaged record followed by valid ones is not a torn tail but damage to
 * acknowledged records: open() refuses the spool (SpoolError 'corrupt' naming segment and offset), and
 * checkSpool()/salvageSpool() (spool-repair.ts) let an operator see and ship what is still valid. A crash between a delivery and its ack() means those records are read and
 * delivered again, which the log's leaf dedup makes harmless because the bytes are identical.
 */
import { closeSync, constants, openSync, ftruncateSync, writeSync, readFileSync } from 'node:fs';
import { fsyncDirSync as fsyncDir, fsyncDir as syncDir, writeFileDurably } from '@trailmark/node';
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { tryLock, unlock } from 'fs-native-extensions';
import { SpoolError } from './errors.js';
import { errorMessage } from '@trailmark/tlog';

/** @internal record header size */
export const HEADER = 16;
const PREALLOC_CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(4 * 1024 * 1024);
// O_DSYNC: a write returns only once its data (and the metadata needed to read it back) is on stable storage
const NEW_SEGMENT = constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC;
const OPEN_SEGMENT = constants.O_RDWR | constants.O_DSYNC;
/** The log stores entries of at most 65,535 canonical bytes; a spool record never needs more. */
export const MAX_RECORD_BYTES = 0xffff;
/** @internal */
export const SEGMENT_RE = /^(\d{20})\.seg$/;

/** A place in the spool: segment number and byte offset within it. */
export interface SpoolPosition {
  segment: number;
  offset: number;
}

/** One record read back from the spool. */
export interface SpoolRecord {
  /** The bytes given to append() (or made by the sealer). */
  data: Buffer;
  /** When the record was appended (ms since the epoch). */
  time: number;
}

/** A run of undelivered records read from the ack cursor; pass it back to ack() once delivered. */
export interface SpoolBatch {
  records: SpoolRecord[];
  start: SpoolPosition;
  end: SpoolPosition;
}

/**
 * Turns appended items into record bytes at the moment they are written, in write order: what a record says
 * about its place (a sequence number, the hash of the one before) is then only ever given to a record that
 * becomes durable. seal() is called for each item of a group; commit() once the group is durable, rollback()
 * when its write failed (the state goes back to the last commit). seal() must not change state when it throws.
 */
export interface RecordSealer<T> {
  seal(item: T, segment: number): Uint8Array;
  commit(): void;
  rollback(): void;
}

/** Where a spool lives and how its segments grow. */
export interface SpoolOptions {
  dir: string;
  /** Start a new segment once the current one is at least this large (default 64 MiB). */
  segmentBytes?: number;
  /** Zeros written ahead of the data at a time (default 1 MiB; capped at segmentBytes). */
  preallocBytes?: number;
}

/** Called once an append is durable (error null, its position) or failed. */
export type AppendCallback = (error: Error | null, pos: SpoolPosition | null) => void;

interface Pending {
  item: Uint8Array | { sealed: unknown };
  time: number;
  done: AppendCallback;
}

/** @internal */
export function segName(n: number): string {
  return String(n).padStart(20, '0') + '.seg';
}

/** @internal */
export function encodeRecord(data: Uint8Array, time: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + data.length);
  buf.writeUInt32BE(data.length, 0);
  buf.writeDoubleBE(time, 8);
  buf.set(data, HEADER);
  buf.writeUInt32BE(crc32(buf.subarray(8)), 4);
  return buf;
}

/** Length of the whole valid record at pos, or 0 when there is none (incomplete, zero length, bad CRC). */
function validRecordAt(buf: Buffer, pos: number): number {
  if (buf.length - pos < HEADER) return 0;
  const len = buf.readUInt32BE(pos);
  if (len === 0 || len > MAX_RECORD_BYTES || buf.length - pos < HEADER + len) return 0;
  return crc32(buf.subarray(pos + 8, pos + HEADER + len)) === buf.readUInt32BE(pos + 4) ? HEADER + len : 0;
}

/**
 * Parses whole records in buf; stops at the first incomplete one or at a zero length (the preallocated, still
 * unwritten part of a segment: empty records are never appended), flags the first damaged one.
 */
function parseRecords(buf: Buffer, maxRecords = Infinity): { records: SpoolRecord[]; used: number; damaged: boolean } {
  const records: SpoolRecord[] = [];
  let pos = 0;
  while (records.length < maxRecords && buf.length - pos >= HEADER) {
    const len = buf.readUInt32BE(pos);
    if (len === 0) break;
    if (len > MAX_RECORD_BYTES) return { records, used: pos, damaged: true };
    if (buf.length - pos < HEADER + len) break;
    const crc = buf.readUInt32BE(pos + 4);
    if (crc32(buf.subarray(pos + 8, pos + HEADER + len)) !== crc) return { records, used: pos, damaged: true };
    // a view, not a copy: the read buffer is the batch's alone and lives as long as its records
    records.push({ time: buf.readDoubleBE(pos + 8), data: buf.subarray(pos + HEADER, pos + HEADER + len) });
    pos += HEADER + len;
  }
  return { records, used: pos, damaged: false };
}

/** A segment read whole: its valid records (with offsets), damaged runs that valid records follow, and the tail. */
export interface SegmentScan {
  records: (SpoolRecord & { offset: number })[];
  /** Byte runs that are not valid records, each followed by a valid record: damage, never a torn write. */
  damaged: { offset: number; bytes: number }[];
  /** End of the last valid record (or of the data, where nothing but zeros follows). */
  end: number;
  /** Non-zero bytes after `end` with no valid record after them: a torn tail (or damage to the last records). */
  tailBytes: number;
}

/**
 * Scans a segment, resynchronizing after damage: at a place that is not a valid record, the next offset where
 * a whole record with a matching CRC-32 starts is where the valid data goes on (a false match needs a length
 * in range and 32 matching CRC bits).
 * @internal
 */
export function scanSegment(buf: Buffer): SegmentScan {
  const out: SegmentScan = { records: [], damaged: [], end: 0, tailBytes: 0 };
  let pos = 0;
  while (pos < buf.length) {
    const n = validRecordAt(buf, pos);
    if (n > 0) {
      out.records.push({
        offset: pos,
        time: buf.readDoubleBE(pos + 8),
        data: Buffer.from(buf.subarray(pos + HEADER, pos + n)),
      });
      pos += n;
      out.end = pos;
      continue;
    }
    let next = -1;
    for (let q = pos + 1; q + HEADER <= buf.length; q++) {
      if (validRecordAt(buf, q) > 0) {
        next = q;
        break;
      }
    }
    if (next < 0) {
      if (!isZero(buf.subarray(pos))) out.tailBytes = buf.length - pos;
      break;
    }
    out.damaged.push({ offset: pos, bytes: next - pos });
    pos = next;
  }
  return out;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The ack file: the cursor and the last delivered record (absent in spools written before it was kept). @internal */
export async function readAck(dir: string): Promise<{ pos: SpoolPosition; last: Buffer | null } | null> {
  const path = join(dir, 'ack');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SpoolError('io', `cannot read ${path}: ${errorMessage(e)}`, { cause: e });
  }
  const m = /^(\d+) (\d+)\n(?:([A-Za-z0-9+/]+={0,2})\n)?$/.exec(text);
  if (!m) throw new SpoolError('corrupt', `spool ack file ${path} is malformed: ${JSON.stringify(text.slice(0, 60))}`);
  return { pos: { segment: Number(m[1]), offset: Number(m[2]) }, last: m[3] ? Buffer.from(m[3], 'base64') : null };
}

/** Writes the ack file atomically and durably. @internal */
export async function writeAck(dir: string, pos: SpoolPosition, last: Buffer | null): Promise<void> {
  await writeFileDurably(
    join(dir, 'ack'),
    `${pos.segment} ${pos.offset}\n${last ? last.toString('base64') + '\n' : ''}`,
  );
}

/**
 * The spool directory's lock: an exclusive open-file-description lock on DIR/lock. Unlike a PID file it cannot
 * go stale: the kernel releases it when the holder's last descriptor closes (exit, SIGKILL), so a restarted
 * proxy that got the same PID (PID 1 in a container) or whose old PID was reused takes it at once.
 * @internal
 */
export class SpoolLock {
  private constructor(private fd: number | null) {}

  /** Takes the lock or throws SpoolError 'locked' (held by another open spool, here or in another process). */
  static take(dir: string): SpoolLock {
    const path = join(dir, 'lock');
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (e) {
      throw new SpoolError('io', `cannot lock spool ${dir}: ${errorMessage(e)}`, { cause: e });
    }
    let got: boolean;
    try {
      got = tryLock(fd);
    } catch (e) {
      closeSync(fd);
      throw new SpoolError('io', `cannot lock spool ${dir}: ${errorMessage(e)}`, { cause: e });
    }
    if (!got) {
      closeSync(fd);
      const holder = readFileSync(path, 'utf8').trim();
      throw new SpoolError('locked', `spool ${dir} is in use${/^\d+$/.test(holder) ? ` by process ${holder}` : ''}`);
    }
    // the PID is for people looking at the directory; the lock itself is the kernel's
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new SpoolLock(fd);
  }

  /** Releases the lock and closes its file; a second call does nothing. */
  release(): void {
    if (this.fd === null) return;
    try {
      unlock(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/**
 * A durable local spool of records with an acknowledgement cursor (see the file comment for layout and guarantees); one
 * open Spool per directory, enforced by a lock.
 */
export class Spool {
  private readonly segmentBytes: number;
  private readonly preallocBytes: number;
  /** Sizes of every segment on disk; the last one is being written. */
  private readonly sizes = new Map<number, number>();
  private writeSeg = 0;
  /** Bytes of the write segment on disk (data plus preallocated zeros). */
  private allocated = 0;
  private extending: Promise<void> | null = null;
  private fh: FileHandle | null = null;
  private reader: { segment: number; fh: FileHandle } | null = null;
  private pending: Pending[] = [];
  private flushing = false;
  private closed = false;
  private ackPos: SpoolPosition = { segment: 0, offset: 0 };
  private _depth = 0;
  private headTime: number | null = null;
  private listeners: (() => void)[] = [];
  private ackWaiters: { pos: SpoolPosition; resolve: (done: boolean) => void }[] = [];
  private sealer: RecordSealer<unknown> | null = null;
  private retainFloor: () => number | null = () => null;
  private _lastRecord: Buffer | null = null;
  private lastAcked: Buffer | null = null;
  private lock: SpoolLock | null = null;
  /** Torn tail bytes cut off at open (a crash during a write). */
  readonly truncatedBytes: number;

  private constructor(
    readonly dir: string,
    opts: SpoolOptions,
    truncated: number,
  ) {
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.preallocBytes = Math.max(4096, opts.preallocBytes ?? PREALLOC_CHUNK);
    this.truncatedBytes = truncated;
  }

  /**
   * Opens (creating if needed) the spool in opts.dir, takes its lock, cuts a torn tail off the last segment and
   * counts what is undelivered. Throws SpoolError 'locked' when another open spool holds the directory, and
   * 'corrupt' (naming segment and offset) when a record other than a torn tail is damaged.
   */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const dir = opts.dir;
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      throw new SpoolError('io', `cannot create spool directory ${dir}: ${errorMessage(e)}`, { cause: e });
    }
    const lock = SpoolLock.take(dir);
    try {
      const spool = await Spool.load(dir, opts);
      spool.lock = lock;
      return spool;
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  private static async load(dir: string, opts: SpoolOptions): Promise<Spool> {
    const names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    const segs = names.map((n) => Number(SEGMENT_RE.exec(n)![1]));
    const ackFile = await readAck(dir);
    const ack = ackFile?.pos ?? null;
    let truncated = 0;
    const spool = new Spool(dir, opts, 0);
    spool.lastAcked = ackFile?.last ?? null;
    spool._lastRecord = spool.lastAcked;
    let depth = 0;
    let headTime: number | null = null;
    // segments before the ack segment were delivered; they stay until ack() finds them below the retain floor
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      const path = join(dir, segName(s));
      const data = await readFile(path);
      const start = !ack || s > ack.segment ? 0 : s === ack.segment ? ack.offset : data.length;
      if (ack && s === ack.segment && start > data.length)
        throw new SpoolError('corrupt', `spool ack offset ${start} is past the end of ${path} (${data.length} bytes)`);
      // validate the delivered part too, so the cursor is known to sit on a record boundary
      const scan = scanSegment(data);
      if (scan.damaged.length > 0) {
        const d = scan.damaged[0];
        throw new SpoolError(
          'corrupt',
          `spool segment ${path} is damaged at byte ${d.offset} (${d.bytes} bytes are not a valid record, and valid records follow): acknowledged events are at stake; see \`trailmark spool check ${dir}\` and \`trailmark spool salvage ${dir}\``,
        );
      }
      let counted = 0;
      let onBoundary = start === 0 || start === data.length;
      for (const r of scan.records) {
        if (r.offset >= start) {
          counted++;
          if (headTime === null) headTime = r.time;
        }
        if (r.offset + HEADER + r.data.length === start) onBoundary = true;
      }
      if (ack && s === ack.segment && !onBoundary)
        throw new SpoolError('corrupt', `spool ack offset ${start} is not a record boundary in ${path}`);
      depth += counted;
      if (scan.records.length > 0) spool._lastRecord = scan.records[scan.records.length - 1].data;
      if (scan.tailBytes > 0) {
        const last = i === segs.length - 1;
        if (!last) {
          throw new SpoolError(
            'corrupt',
            `spool segment ${path} is damaged at byte ${scan.end} (a bad or incomplete record) and is not the last segment; see \`trailmark spool salvage ${dir}\``,
          );
        }
        // torn tail: never acknowledged to a caller, since append() resolves only after the write of whole records
        if (ack && s === ack.segment && start > scan.end)
          throw new SpoolError('corrupt', `spool ack offset ${start} lies in the damaged tail of ${path}`);
        const fh = await open(path, 'r+');
        try {
          await fh.truncate(scan.end);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        truncated = scan.tailBytes;
      }
      spool.sizes.set(s, scan.end);
      spool.allocated = scan.tailBytes > 0 ? scan.end : data.length;
    }
    (spool as { truncatedBytes: number }).truncatedBytes = truncated;
    spool._depth = depth;
    spool.headTime = headTime;
    const live = segs.filter((s) => !ack || s >= ack.segment);
    if (live.length === 0) {
      // a fresh segment after the acked one, so a stale ack offset can never point into it
      const first = Math.max(ack ? ack.segment + 1 : 1, (segs[segs.length - 1] ?? 0) + 1);
      spool.sizes.set(first, 0);
      spool.allocated = 0;
      spool.writeSeg = first;
      spool.fh = await open(join(dir, segName(first)), NEW_SEGMENT);
      fsyncDir(dir);
    } else {
      spool.writeSeg = live[live.length - 1];
      spool.fh = await open(join(dir, segName(spool.writeSeg)), OPEN_SEGMENT);
    }
    spool.ackPos =
      ack && live.length > 0 && ack.segment === live[0] ? ack : { segment: live[0] ?? spool.writeSeg, offset: 0 };
    return spool;
  }

  /** Undelivered records. */
  get depth(): number {
    return this._depth;
  }

  /** Append time (ms) of the oldest undelivered record, or null when everything was delivered. */
  get oldestTime(): number | null {
    return this._depth > 0 ? this.headTime : null;
  }

  /** Where the next read starts. */
  get ackPosition(): SpoolPosition {
    return { ...this.ackPos };
  }

  /** The last record made durable in this spool (delivered or not), or null for a spool that never held one. */
  get lastRecord(): Buffer | null {
    return this._lastRecord;
  }

  /** Segments kept on disk (delivered ones included, while the retain floor holds them). */
  get segments(): number[] {
    return [...this.sizes.keys()].sort((a, b) => a - b);
  }

  /** Calls fn after each flush that made new records durable (the shipper wakes up on it). Precondition: none. */
  onAppend(fn: () => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /** Installs the sealer that appendSealed() items go through. Precondition: no appendSealed() before it. */
  setSealer<T>(sealer: RecordSealer<T>): void {
    this.sealer = sealer;
  }

  /**
   * Delivered segments at or above the segment `floor()` returns are kept (to be read again by records());
   * null keeps none. Precondition: none.
   */
  setRetainFloor(floor: () => number | null): void {
    this.retainFloor = floor;
  }

  /**
   * Appends one record; resolves with the position after it once it is durable. Precondition:
   * 0 < data.length <= MAX_RECORD_BYTES (else SpoolError 'too-large') and the spool is open.
   */
  append(data: Uint8Array): Promise<SpoolPosition> {
    if (data.length === 0 || data.length > MAX_RECORD_BYTES) {
      return Promise.reject(
        new SpoolError('too-large', `spool record must be 1..${MAX_RECORD_BYTES} bytes, got ${data.length}`),
      );
    }
    return promised((done) => this.enqueue(data, done));
  }

  /** Appends an item the sealer turns into bytes when it is written. Precondition: setSealer() was called. */
  appendSealed(item: unknown): Promise<SpoolPosition> {
    return promised((done) => this.appendSealedThen(item, done));
  }

  /**
   * appendSealed() with a callback instead of a promise: what a caller appending many items per turn of the
   * event loop uses to spare a promise and a microtask per item. `done` is called exactly once, never
   * synchronously. Precondition: setSealer() was called.
   */
  appendSealedThen(item: unknown, done: AppendCallback): void {
    if (!this.sealer) {
      const e = new SpoolError('no-sealer', 'appendSealed() needs setSealer() first');
      queueMicrotask(() => done(e, null));
      return;
    }
    this.enqueue({ sealed: item }, done);
  }

  private enqueue(item: Pending['item'], done: AppendCallback): void {
    if (this.closed) {
      const e = new SpoolError('closed', 'spool is closed');
      queueMicrotask(() => done(e, null));
      return;
    }
    this.pending.push({ item, time: Date.now(), done });
    if (!this.flushing) {
      // start on the next turn of the event loop, so every append made in this one (all the requests read
      // from sockets in one poll) joins the same write and fsync
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const group = this.pending;
        this.pending = [];
        let positions: (SpoolPosition | Error)[];
        try {
          positions = await this.writeGroup(group);
          this.sealer?.commit();
        } catch (e) {
          this.sealer?.rollback();
          const err = e instanceof SpoolError ? e : new SpoolError('io', `spool write failed: ${errorMessage(e)}`);
          for (const p of group) settle(p, err, null);
          continue;
        }
        group.forEach((p, i) => {
          const r = positions[i];
          if (r instanceof Error) settle(p, r, null);
          else settle(p, null, r);
        });
        for (const l of this.listeners) l();
      }
    } finally {
      this.flushing = false;
    }
  }

  private async writeGroup(group: Pending[]): Promise<(SpoolPosition | Error)[]> {
    let size = this.sizes.get(this.writeSeg)!;
    if (size >= this.segmentBytes) {
      await this.roll();
      size = 0;
    }
    const bufs: Buffer[] = [];
    const positions: (SpoolPosition | Error)[] = [];
    let end = size;
    let last: Buffer | null = null;
    let firstTime: number | null = null;
    for (const p of group) {
      let data: Uint8Array;
      if (p.item instanceof Uint8Array) data = p.item;
      else {
        try {
          data = this.sealer!.seal(p.item.sealed, this.writeSeg);
        } catch (e) {
          positions.push(e instanceof Error ? e : new Error(String(e)));
          continue;
        }
      }
      const buf = encodeRecord(data, p.time);
      bufs.push(buf);
      end += buf.length;
      positions.push({ segment: this.writeSeg, offset: end });
      last = buf;
      firstTime ??= p.time;
    }
    if (bufs.length === 0) return positions;
    const buf = bufs.length === 1 ? bufs[0] : Buffer.concat(bufs);
    const fh = this.fh!;
    while (this.allocated < size + buf.length) await (this.extending ?? this.extend(size + buf.length));
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, size + done);
        done += bytesWritten;
      }
    } catch (e) {
      // drop whatever part reached the file, so the next group starts on a record boundary
      await fh.truncate(size).catch(() => {});
      this.allocated = size;
      throw e;
    }
    this.sizes.set(this.writeSeg, size + buf.length);
    if (this.allocated - (size + buf.length) < this.preallocChunk / 2 && !this.extending)
      void this.extend(0).catch(() => {});
    if (this._depth === 0) this.headTime = firstTime;
    this._depth += bufs.length;
    this._lastRecord = Buffer.from(last!.subarray(HEADER));
    return positions;
  }

  private async roll(): Promise<void> {
    const next = this.writeSeg + 1;
    const fh = await open(join(this.dir, segName(next)), NEW_SEGMENT);
    await syncDir(this.dir);
    await this.extending?.catch(() => {});
    await this.fh!.close();
    this.fh = fh;
    this.writeSeg = next;
    this.sizes.set(next, 0);
    this.allocated = 0;
  }

  private get preallocChunk(): number {
    return Math.min(this.preallocBytes, this.segmentBytes);
  }

  /** Appends zeros to the write segment (at least up to `need`), durably, beyond any data. One at a time. */
  private extend(need: number): Promise<void> {
    const fh = this.fh!;
    const from = this.allocated;
    const len = Math.max(this.preallocChunk, need - from);
    const zeros = len <= ZEROS.length ? ZEROS.subarray(0, len) : Buffer.alloc(len);
    const p = (async () => {
      try {
        let done = 0;
        while (done < len) done += (await fh.write(zeros, done, len - done, from + done)).bytesWritten;
        // the segment may have rolled meanwhile: only the segment it was started for gains the space
        if (this.fh === fh) this.allocated = Math.max(this.allocated, from + len);
      } finally {
        this.extending = null;
      }
    })();
    this.extending = p;
    return p;
  }

  /**
   * Reads up to maxRecords (and about maxBytes) durable undelivered records from the ack cursor.
   * Precondition: one reader at a time, each batch acked (or dropped) before the next read matters.
   */
  async read(maxRecords = 1000, maxBytes = 4 * 1024 * 1024): Promise<SpoolBatch> {
    if (this.closed) throw new SpoolError('closed', 'spool is closed');
    const start = { ...this.ackPos };
    const records: SpoolRecord[] = [];
    let pos = { ...start };
    let bytes = 0;
    while (records.length < maxRecords && bytes < maxBytes) {
      const end = this.sizes.get(pos.segment);
      if (end === undefined) break;
      if (pos.offset >= end) {
        if (pos.segment === this.writeSeg) break;
        pos = { segment: pos.segment + 1, offset: 0 };
        continue;
      }
      const want = Math.min(end - pos.offset, Math.max(maxBytes - bytes, HEADER + MAX_RECORD_BYTES));
      const buf = await this.readAt(pos, want);
      const parsed = parseRecords(buf, maxRecords - records.length);
      if (parsed.damaged || parsed.used === 0) {
        throw new SpoolError(
          'corrupt',
          `spool segment ${segName(pos.segment)} is damaged at byte ${pos.offset + parsed.used}`,
        );
      }
      for (const r of parsed.records) {
        records.push(r);
        bytes += r.data.length;
      }
      pos = { segment: pos.segment, offset: pos.offset + parsed.used };
    }
    return { records, start, end: pos };
  }

  private async readAt(pos: SpoolPosition, want: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(want);
    // a handle of its own (the writer closes its handle when it rolls), kept while reading the same segment
    const fh = await this.readHandle(pos.segment);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, pos.offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  }

  /**
   * Every durable record still on disk, delivered or not, oldest first, with the segment holding it (what a
   * writer reads at start to find what it left unfinished). Precondition: no appends while it runs.
   */
  async *records(): AsyncGenerator<SpoolRecord & { segment: number }> {
    for (const segment of this.segments) {
      const end = this.sizes.get(segment) ?? 0;
      if (end === 0) continue;
      const parsed = parseRecords(await this.readAt({ segment, offset: 0 }, end));
      for (const r of parsed.records) yield { ...r, segment };
    }
  }

  /** Append time of the record at the ack cursor (read from its header), or null if there is none. */
  private async firstTime(): Promise<number | null> {
    let pos = this.ackPos;
    for (;;) {
      const end = this.sizes.get(pos.segment);
      if (end === undefined) return null;
      if (pos.offset + HEADER <= end) break;
      if (pos.segment === this.writeSeg) return null;
      pos = { segment: pos.segment + 1, offset: 0 };
    }
    const b = await this.readAt(pos, HEADER);
    return b.readDoubleBE(8);
  }

  private async readHandle(segment: number): Promise<FileHandle> {
    if (this.reader && this.reader.segment === segment) return this.reader.fh;
    const fh = await open(join(this.dir, segName(segment)), 'r');
    const old = this.reader;
    this.reader = { segment, fh };
    await old?.fh.close();
    return fh;
  }

  /**
   * Marks a batch delivered: persists the cursor at batch.end, then removes segments wholly delivered (below the
   * retain floor). Precondition: batch came from read() and starts at the current ack cursor (else SpoolError
   * 'ack-order').
   */
  async ack(batch: SpoolBatch): Promise<void> {
    if (this.closed) throw new SpoolError('closed', 'spool is closed');
    if (batch.start.segment !== this.ackPos.segment || batch.start.offset !== this.ackPos.offset) {
      throw new SpoolError(
        'ack-order',
        `ack of a batch starting at ${batch.start.segment}:${batch.start.offset}, but the cursor is at ${this.ackPos.segment}:${this.ackPos.offset}`,
      );
    }
    if (batch.records.length === 0) return;
    const last = batch.records[batch.records.length - 1].data;
    await writeAck(this.dir, batch.end, last);
    this.lastAcked = last;
    this.ackPos = { ...batch.end };
    this._depth -= batch.records.length;
    this.headTime = this._depth > 0 ? await this.firstTime() : null;
    this.ackWaiters = this.ackWaiters.filter((w) => {
      if (!atOrBefore(w.pos, this.ackPos)) return true;
      w.resolve(true);
      return false;
    });
    await this.removeDelivered();
  }

  /** Deletes the delivered segments below the retain floor. Precondition: the spool is open. */
  async removeDelivered(): Promise<void> {
    const floor = this.retainFloor();
    const keepFrom = Math.min(this.ackPos.segment, floor ?? Infinity);
    for (const s of this.segments) {
      if (s >= keepFrom) break;
      this.sizes.delete(s);
      if (this.reader?.segment === s) {
        await this.reader.fh.close();
        this.reader = null;
      }
      await unlink(join(this.dir, segName(s))).catch(() => {});
    }
  }

  /**
   * Resolves true once everything up to `pos` (an append's result) was delivered, false after timeoutMs.
   * Precondition: pos came from this spool.
   */
  delivered(pos: SpoolPosition, timeoutMs: number): Promise<boolean> {
    if (atOrBefore(pos, this.ackPos)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = {
        pos,
        resolve: (done: boolean) => {
          clearTimeout(t);
          resolve(done);
        },
      };
      const t = setTimeout(() => {
        this.ackWaiters = this.ackWaiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
      this.ackWaiters.push(w);
    });
  }

  /** Waits for pending appends, then closes files and releases the lock. Precondition: none (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.pending.length > 0) await new Promise((r) => setTimeout(r, 2));
    this.closed = true;
    for (const w of this.ackWaiters.splice(0)) w.resolve(false);
    await this.extending?.catch(() => {});
    await this.fh?.close();
    this.fh = null;
    await this.reader?.fh.close();
    this.reader = null;
    this.lock?.release();
    this.lock = null;
  }
}

/** An append made through its callback form, as a promise. @internal */
export function promised(start: (done: AppendCallback) => void): Promise<SpoolPosition> {
  return new Promise((resolve, reject) => start((e, pos) => (e ? reject(e) : resolve(pos!))));
}

/** Calls an append's callback; one that throws must not stop the flush loop (its error surfaces on its own). */
function settle(p: Pending, e: Error | null, pos: SpoolPosition | null): void {
  try {
    p.done(e, pos);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

function atOrBefore(a: SpoolPosition, b: SpoolPosition): boolean {
  return a.segment < b.segment || (a.segment === b.segment && a.offset <= b.offset);
}
