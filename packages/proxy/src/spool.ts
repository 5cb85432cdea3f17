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
 *   ack                "<segment> <offset>\n": everything before this position was delivered (written atomically:
 *                      temporary file, fsync, rename, fsync of the directory)
 *   lock               pid of the process using the spool
 *
 * append() resolves only after its record is on disk: segments are opened O_DSYNC, so each write returns once its
 * data is durable (one trip to the thread pool instead of a write and then an fdatasync). Concurrent appends
 * share one write (group commit), so the cost of durability is paid once per flush, not once per event.
 * A crash can leave at most a torn tail on the last segment (records that were never acknowledged to a
 * caller): open() cuts it off. A crash between a delivery and its ack() means those records are read and
 * delivered again, which the log's leaf dedup makes harmless because the bytes are identical.
 */
import { closeSync, constants, openSync, fsyncSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { SpoolError } from './errors.js';

const HEADER = 16;
const PREALLOC_CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(4 * 1024 * 1024);
// O_DSYNC: a write returns only once its data (and the metadata needed to read it back) is on stable storage
const NEW_SEGMENT = constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC;
const OPEN_SEGMENT = constants.O_RDWR | constants.O_DSYNC;
/** The log stores entries of at most 65,535 canonical bytes; a spool record never needs more. */
export const MAX_RECORD_BYTES = 0xffff;
const SEGMENT_RE = /^(\d{20})\.seg$/;

export interface SpoolPosition {
  segment: number;
  offset: number;
}

export interface SpoolRecord {
  /** The bytes given to append(). */
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

export interface SpoolOptions {
  dir: string;
  /** Start a new segment once the current one is at least this large (default 64 MiB). */
  segmentBytes?: number;
  /** Zeros written ahead of the data at a time (default 1 MiB; capped at segmentBytes). */
  preallocBytes?: number;
}

interface Pending {
  buf: Buffer;
  time: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

function segName(n: number): string {
  return String(n).padStart(20, '0') + '.seg';
}

function encodeRecord(data: Uint8Array, time: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + data.length);
  buf.writeUInt32BE(data.length, 0);
  buf.writeDoubleBE(time, 8);
  buf.set(data, HEADER);
  buf.writeUInt32BE(crc32(buf.subarray(8)), 4);
  return buf;
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
    records.push({ time: buf.readDoubleBE(pos + 8), data: Buffer.from(buf.subarray(pos + HEADER, pos + HEADER + len)) });
    pos += HEADER + len;
  }
  return { records, used: pos, damaged: false };
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
   * counts what is undelivered. Precondition: no other live process uses the directory (else SpoolError 'locked').
   */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const dir = opts.dir;
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      throw new SpoolError('io', `cannot create spool directory ${dir}: ${(e as Error).message}`);
    }
    await takeLock(dir);
    try {
      return await Spool.load(dir, opts);
    } catch (e) {
      await unlink(join(dir, 'lock')).catch(() => {});
      throw e;
    }
  }

  private static async load(dir: string, opts: SpoolOptions): Promise<Spool> {
    const names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    const segs = names.map((n) => Number(SEGMENT_RE.exec(n)![1]));
    let ack: SpoolPosition | null = null;
    try {
      const text = await readFile(join(dir, 'ack'), 'utf8');
      const m = /^(\d+) (\d+)\n$/.exec(text);
      if (!m) throw new SpoolError('corrupt', `spool ack file ${join(dir, 'ack')} is malformed: ${JSON.stringify(text.slice(0, 60))}`);
      ack = { segment: Number(m[1]), offset: Number(m[2]) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    // segments wholly before the ack cursor were delivered; a crash may have left them behind
    for (const s of segs.filter((s) => ack && s < ack.segment)) await unlink(join(dir, segName(s)));
    const live = segs.filter((s) => !ack || s >= ack.segment);
    let truncated = 0;
    const spool = new Spool(dir, opts, 0);
    let depth = 0;
    let headTime: number | null = null;
    for (let i = 0; i < live.length; i++) {
      const s = live[i];
      const path = join(dir, segName(s));
      const data = await readFile(path);
      const start = ack && ack.segment === s ? ack.offset : 0;
      if (start > data.length) throw new SpoolError('corrupt', `spool ack offset ${start} is past the end of ${path} (${data.length} bytes)`);
      // validate the delivered part too, so the cursor is known to sit on a record boundary
      const { records, used, damaged } = parseRecords(data);
      let boundary = 0;
      let counted = 0;
      let onBoundary = start === 0;
      for (const r of records) {
        if (boundary >= start) {
          counted++;
          if (headTime === null) headTime = r.time;
        }
        boundary += HEADER + r.data.length;
        if (boundary === start) onBoundary = true;
      }
      if (!onBoundary) throw new SpoolError('corrupt', `spool ack offset ${start} is not a record boundary in ${path}`);
      depth += counted;
      const tailIsZero = isZero(data.subarray(used));
      if (!tailIsZero) {
        const last = i === live.length - 1;
        if (!last) {
          throw new SpoolError('corrupt', `spool segment ${path} is damaged at byte ${used} (${damaged ? 'bad record' : 'incomplete record'}) and is not the last segment`);
        }
        // torn tail: never acknowledged to a caller, since append() resolves only after the fsync of whole records
        if (start > used) throw new SpoolError('corrupt', `spool ack offset ${start} lies in the damaged tail of ${path}`);
        const fh = await open(path, 'r+');
        try {
          await fh.truncate(used);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        truncated = data.length - used;
      }
      spool.sizes.set(s, used);
      spool.allocated = tailIsZero ? data.length : used;
    }
    (spool as { truncatedBytes: number }).truncatedBytes = truncated;
    spool._depth = depth;
    spool.headTime = headTime;
    if (live.length === 0) {
      // a fresh segment after the acked one, so a stale ack offset can never point into it
      const first = ack ? ack.segment + 1 : 1;
      spool.sizes.set(first, 0);
      spool.allocated = 0;
      spool.writeSeg = first;
      spool.fh = await open(join(dir, segName(first)), NEW_SEGMENT);
      fsyncDir(dir);
    } else {
      spool.writeSeg = live[live.length - 1];
      spool.fh = await open(join(dir, segName(spool.writeSeg)), OPEN_SEGMENT);
    }
    spool.ackPos = ack && live.length > 0 && ack.segment === live[0] ? ack : { segment: live[0] ?? spool.writeSeg, offset: 0 };
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

  /** Calls fn after each flush that made new records durable (the shipper wakes up on it). Precondition: none. */
  onAppend(fn: () => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /**
   * Appends one record; resolves once it is fsynced. Precondition: 0 < data.length <= MAX_RECORD_BYTES
   * (else SpoolError 'too-large') and the spool is open.
   */
  append(data: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new SpoolError('closed', 'spool is closed'));
    if (data.length === 0 || data.length > MAX_RECORD_BYTES) {
      return Promise.reject(new SpoolError('too-large', `spool record must be 1..${MAX_RECORD_BYTES} bytes, got ${data.length}`));
    }
    const time = Date.now();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ buf: encodeRecord(data, time), time, resolve, reject });
      if (!this.flushing) {
        // start on the next turn of the event loop, so every append made in this one (all the requests read
        // from sockets in one poll) joins the same write and fsync
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const group = this.pending;
        this.pending = [];
        try {
          await this.writeGroup(group);
          for (const p of group) p.resolve();
        } catch (e) {
          const err = e instanceof SpoolError ? e : new SpoolError('io', `spool write failed: ${(e as Error).message}`);
          for (const p of group) p.reject(err);
          continue;
        }
        for (const l of this.listeners) l();
      }
    } finally {
      this.flushing = false;
    }
  }

  private async writeGroup(group: Pending[]): Promise<void> {
    let size = this.sizes.get(this.writeSeg)!;
    if (size >= this.segmentBytes) {
      await this.roll();
      size = 0;
    }
    const buf = group.length === 1 ? group[0].buf : Buffer.concat(group.map((p) => p.buf));
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
    if (this.allocated - (size + buf.length) < this.preallocChunk / 2 && !this.extending) void this.extend(0).catch(() => {});
    if (this._depth === 0) this.headTime = group[0].time;
    this._depth += group.length;
  }

  private async roll(): Promise<void> {
    const next = this.writeSeg + 1;
    const fh = await open(join(this.dir, segName(next)), NEW_SEGMENT);
    fsyncDir(this.dir);
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
      const buf = Buffer.allocUnsafe(want);
      // a handle of its own (the writer closes its handle when it rolls), kept while reading the same segment
      const fh = await this.readHandle(pos.segment);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos.offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const parsed = parseRecords(buf.subarray(0, got), maxRecords - records.length);
      if (parsed.damaged || parsed.used === 0) {
        throw new SpoolError('corrupt', `spool segment ${segName(pos.segment)} is damaged at byte ${pos.offset + parsed.used}`);
      }
      for (const r of parsed.records) {
        records.push(r);
        bytes += r.data.length;
      }
      pos = { segment: pos.segment, offset: pos.offset + parsed.used };
    }
    return { records, start, end: pos };
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
    const fh = await this.readHandle(pos.segment);
    const b = Buffer.alloc(HEADER);
    await fh.read(b, 0, HEADER, pos.offset);
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
   * Marks a batch delivered: persists the cursor at batch.end, then removes segments wholly delivered.
   * Precondition: batch came from read() and starts at the current ack cursor (else SpoolError 'ack-order').
   */
  async ack(batch: SpoolBatch): Promise<void> {
    if (this.closed) throw new SpoolError('closed', 'spool is closed');
    if (batch.start.segment !== this.ackPos.segment || batch.start.offset !== this.ackPos.offset) {
      throw new SpoolError('ack-order', `ack of a batch starting at ${batch.start.segment}:${batch.start.offset}, but the cursor is at ${this.ackPos.segment}:${this.ackPos.offset}`);
    }
    if (batch.records.length === 0) return;
    const tmp = join(this.dir, 'ack.tmp');
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(`${batch.end.segment} ${batch.end.offset}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, 'ack'));
    fsyncDir(this.dir);
    const old = this.ackPos.segment;
    this.ackPos = { ...batch.end };
    this._depth -= batch.records.length;
    for (let s = old; s < batch.end.segment; s++) {
      this.sizes.delete(s);
      if (this.reader?.segment === s) {
        await this.reader.fh.close();
        this.reader = null;
      }
      await unlink(join(this.dir, segName(s))).catch(() => {});
    }
    this.headTime = this._depth > 0 ? await this.firstTime() : null;
  }

  /** Waits for pending appends, then closes files and releases the lock. Precondition: none (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.pending.length > 0) await new Promise((r) => setTimeout(r, 2));
    this.closed = true;
    await this.extending?.catch(() => {});
    await this.fh?.close();
    this.fh = null;
    await this.reader?.fh.close();
    this.reader = null;
    await unlink(join(this.dir, 'lock')).catch(() => {});
  }
}

async function takeLock(dir: string): Promise<void> {
  const path = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new SpoolError('io', `cannot lock spool ${dir}: ${(e as Error).message}`);
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
      throw new SpoolError('locked', `spool ${dir} is in use by process ${pid}`);
    }
    if (pid === process.pid) throw new SpoolError('locked', `spool ${dir} is already open in this process`);
    // a stale lock left by a process that died (SIGKILL, power loss)
    await unlink(path).catch(() => {});
  }
  throw new SpoolError('locked', `cannot take the lock of spool ${dir}`);
}
