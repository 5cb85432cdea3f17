/**
 * Streams (contract section 4, completeness): every event a proxy writes into its spool carries
 * `stream: {id, seq, prev}`, with `seq` counting 0, 1, 2, … and `prev` the leaf hash of the event before.
 * Both are given to an event only as it is written to the spool (EventStream is the spool's sealer), so an
 * event that never becomes durable (a full disk, backpressure, a crash) never takes a number: a hole in a
 * stream always means a lost event, never a refused one. Event 0 is `start` with the stream key's vkey;
 * `heartbeat` (on a timer) and `end` (clean shutdown) are signed over tlog's streamSignatureMessage.
 *
 * One stream per spool. It goes on across crashes (the last record on disk says where it stood); a clean
 * `end`, a spool that is new (or lost) and a salvaged one start a new stream. A request event whose response
 * event was never written (the proxy died in between) gets one at the next start, `outcome.aborted: true`.
 */
import { hash, randomUUID } from 'node:crypto';
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  errorMessage,
  ACCESS_SCHEMA,
  b64encode,
  canonicalJson,
  canonicalJsonString,
  generateKey,
  parsePrivateKey,
  streamSignatureMessage,
  vkeyOf,
  type NoteSigner,
  type StreamPosition,
  errorCode,
} from '@trailmark/tlog';
import { ConfigError, SpoolError } from './errors.js';
import { nodeHasher, writeFileDurably } from '@trailmark/node';
import {
  MAX_RECORD_BYTES,
  promised,
  type AppendCallback,
  type RecordSealer,
  type Spool,
  type SpoolPosition,
} from './spool.js';
import { readSalvageNote } from './spool-repair.js';
import { readSentStatuses, SentStatuses } from './sent.js';

/** SHA-256(0x00 || bytes): the leaf hash the log computes for an entry (RFC 6962). */
export function leafHash(bytes: Uint8Array): Buffer {
  const h = nodeHasher.leaf(bytes);
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength);
}

/** The stream key: its signer and vkey. */
export interface StreamKey {
  signer: NoteSigner;
  vkey: string;
}

/**
 * Reads the stream key (a signed-note private key file, as `trailmark keygen` writes) or, when `create` and the
 * file does not exist, generates one named `name` and writes it (mode 0600) and its vkey (FILE.pub).
 * Throws ConfigError when the file cannot be read or is not an Ed25519 note key.
 */
export async function loadStreamKey(
  path: string,
  opts: { create: boolean; name: string },
): Promise<StreamKey & { created: boolean }> {
  let text: string;
  let created = false;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) {
      throw new ConfigError('stream-key', `cannot read stream key ${path}: ${errorCode(e) ?? errorMessage(e)}`);
    }
    const k = generateKey(opts.name);
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFileDurably(path, k.privateKey + '\n', { mode: 0o600, exclusive: true });
      await writeFileDurably(path + '.pub', k.vkey + '\n', { mode: 0o644 });
    } catch (err) {
      throw new ConfigError('stream-key', `cannot create stream key ${path}: ${errorMessage(err)}`, { cause: err });
    }
    text = k.privateKey;
    created = true;
  }
  let signer: NoteSigner;
  try {
    signer = parsePrivateKey(text.trim());
  } catch (e) {
    throw new ConfigError('stream-key', `stream key ${path} is not a signed-note private key: ${errorMessage(e)}`, {
      cause: e,
    });
  }
  if (signer.type !== 0x01)
    throw new ConfigError(
      'stream-key',
      `stream key ${path} must be an Ed25519 note key (type 0x01), not type 0x${signer.type.toString(16).padStart(2, '0')}`,
    );
  return { signer, vkey: vkeyOf(signer), created };
}

/** A key name from a proxy name: what a key name may not hold (spaces, '+') becomes '-'. */
export function streamKeyName(proxy: string): string {
  return `trailmark-stream/${proxy.replace(/[^A-Za-z0-9._/-]/g, '-') || 'proxy'}`;
}

/** An event before it is sealed: stage and its own fields; schema, id, time, proxy and stream are filled in. */
export type UnsealedEvent = { stage: string } & Record<string, unknown>;

/**
 * An event its writer already put in RFC 8785 form, all but the stream position the sealer gives it: `head` is
 * the canonical members whose names sort before "stream" (comma-separated, no braces), `tail` those after it.
 * Sealing it is then a concatenation instead of a walk of the whole event, which is most of the per-event cost
 * of a busy proxy. The writer answers for the form: it must be exactly what canonicalJson gives for the same
 * event (the pg-proxy's tests hold it to that), with schema, id, time and proxy among the members.
 */
export class EncodedEvent {
  constructor(
    readonly stage: string,
    /** The event's request_id (a request or response event), for the stream's open-request tracking. */
    readonly request_id: string | undefined,
    readonly head: string,
    readonly tail: string,
  ) {
    // the stream signs these, over fields it fills in itself
    if (stage === 'heartbeat' || stage === 'end') throw new Error(`a ${stage} event cannot come pre-encoded`);
  }

  /** The canonical bytes with `stream` (already canonical JSON) as the stream member, or without one. */
  bytes(stream?: string): Buffer {
    return this.leafInput(stream).subarray(1);
  }

  /** 0x00 then bytes(stream): the input of the event's leaf hash (RFC 6962), in one allocation. */
  leafInput(stream?: string): Buffer {
    const mid = stream === undefined ? '' : ',"stream":' + stream;
    const text = '{' + this.head + mid + (this.tail ? ',' + this.tail : '') + '}';
    const buf = Buffer.allocUnsafe(1 + Buffer.byteLength(text, 'utf8'));
    buf[0] = 0;
    buf.write(text, 1, 'utf8');
    return buf;
  }
}

/** The stream key and settings of an EventStream. */
export interface EventStreamOptions {
  key: StreamKey;
  /** The events' `proxy` field for the events the stream writes itself (and those that lack one). */
  proxy: string;
  /** Milliseconds between heartbeats (default 30 s; at least one a minute is required). 0: none. */
  heartbeatMs?: number;
  /**
   * Whether request events are answered by response events (HTTP proxy, middleware, pg-proxy), so that a
   * request left without one by a crash gets an aborted one at the next start (default true). Forward-auth,
   * which never sees responses, sets false.
   */
  trackResponses?: boolean;
  /** Called when a heartbeat cannot be written. */
  onError?: (e: Error) => void;
}

type Change = { add: string; segment: number } | { del: string };

/**
 * A proxy's event stream (contract section 4): numbers and chains each event as the spool writes it, signs heartbeats
 * and end events, and answers requests a crash left without a response.
 */
export class EventStream implements RecordSealer<UnsealedEvent | EncodedEvent> {
  private seq: number;
  private prev: string | null;
  private tSeq: number;
  private tPrev: string | null;
  /** request_id → segment of its request event, for requests still waiting for their response event. */
  private readonly open = new Map<string, number>();
  private changes: Change[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ended = false;
  /** Where the statuses sent go until their response events are written (null: responses not tracked). */
  private sent: SentStatuses | null = null;
  /** The stream id as canonical JSON. */
  private readonly idJson: string;

  private constructor(
    private readonly spool: Spool,
    readonly id: string,
    next: { seq: number; prev: string | null },
    private readonly opts: EventStreamOptions,
  ) {
    this.seq = this.tSeq = next.seq;
    this.prev = this.tPrev = next.prev;
    this.idJson = canonicalJsonString(id, { allowNonObject: true });
  }

  /** The stream key's vkey (what `start` carries). */
  get vkey(): string {
    return this.opts.key.vkey;
  }

  /** The position the next durable event will take. */
  get next(): { seq: number; prev: string | null } {
    return { seq: this.seq, prev: this.prev };
  }

  /** Requests whose response event has not been written yet. */
  get openRequests(): number {
    return this.open.size;
  }

  /**
   * Takes over the spool: continues its stream, or starts a new one (with `start`, and `salvage` after a
   * salvage), writes aborted responses for requests a crash left without one, and starts the heartbeats.
   * Precondition: the spool was just opened and nothing else appends to it.
   */
  static async open(spool: Spool, opts: EventStreamOptions): Promise<EventStream> {
    const salvage = await readSalvageNote(spool.dir);
    const last = spool.lastRecord ? lastPosition(spool.lastRecord) : null;
    const cont = last !== null && !last.ended && salvage === null;
    const stream = new EventStream(
      spool,
      cont ? last.id : randomUUID(),
      cont ? { seq: last.seq + 1, prev: last.hash } : { seq: 0, prev: null },
      opts,
    );
    const open = new Map<string, number>();
    if (opts.trackResponses !== false) {
      for await (const r of spool.records()) {
        const e = parseEvent(r.data);
        if (!e || typeof e.request_id !== 'string') continue;
        if (e.stage === 'request') open.set(e.request_id, r.segment);
        else if (e.stage === 'response') open.delete(e.request_id);
      }
    }
    spool.setSealer(stream);
    spool.setRetainFloor(() => stream.floor());
    if (!cont) {
      await stream.append({ stage: 'start', stream_key: opts.key.vkey });
      if (salvage) {
        await stream.append({
          stage: 'salvage',
          salvage: {
            previous_stream: last ? { id: last.id, last_seq: last.seq } : null,
            kept: salvage.kept,
            skipped: salvage.skipped,
            salvaged_at: salvage.time,
          },
        });
        await unlink(join(spool.dir, 'salvage.json'));
      }
    }
    // written in this stream, so the requests of a stream that stopped (crash, salvage) still get exactly one,
    // with the status sent when one was (sent.ts)
    const sent = open.size > 0 ? await readSentStatuses(spool.dir) : new Map<string, number>();
    await Promise.all(
      [...open.keys()].map((requestId) =>
        stream.append({
          stage: 'response',
          request_id: requestId,
          outcome: {
            status: sent.get(requestId) ?? null,
            bytes: null,
            request_bytes: null,
            duration_ms: null,
            aborted: true,
          },
        }),
      ),
    );
    if (opts.trackResponses !== false) stream.sent = new SentStatuses(spool.dir);
    await spool.removeDelivered();
    const every = opts.heartbeatMs ?? 30_000;
    if (every > 0) {
      stream.timer = setInterval(() => void stream.heartbeat().catch((e: Error) => opts.onError?.(e)), every);
      stream.timer.unref();
    }
    return stream;
  }

  /** Lowest segment holding a request event still waiting for its response (the spool keeps it). */
  private floor(): number | null {
    let min: number | null = null;
    for (const s of this.open.values()) if (min === null || s < min) min = s;
    return min;
  }

  /**
   * Appends an event; resolves with its spool position once it is durable (and numbered).
   * Precondition: the stream is not ended; the event is JSON-only.
   */
  append(event: UnsealedEvent | EncodedEvent): Promise<SpoolPosition> {
    return promised((done) => this.appendThen(event, done));
  }

  /** append() with a callback (see Spool.appendSealedThen). Precondition: as append(). */
  appendThen(event: UnsealedEvent | EncodedEvent, done: AppendCallback): void {
    if (this.ended) {
      const e = new SpoolError('closed', `stream ${this.id} has ended`);
      queueMicrotask(() => done(e, null));
      return;
    }
    this.spool.appendSealedThen(event, done);
  }

  /**
   * Records that the answer to `requestId` went out with `status`, so that a crash before its response event
   * still leaves the status for the aborted one. Precondition: the request event was written.
   */
  noteSent(requestId: string, status: number): void {
    this.sent?.note(requestId, status);
  }

  /** Writes a signed heartbeat. */
  heartbeat(): Promise<SpoolPosition> {
    return this.append({ stage: 'heartbeat' });
  }

  /** Stops the heartbeats and writes the signed `end`: nothing more can be appended. Precondition: none. */
  async end(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sent?.close();
    if (this.ended) return;
    // refused from now on: an event appended while the end is being written would be sealed after it
    this.ended = true;
    try {
      await this.spool.appendSealed({ stage: 'end' });
    } catch (e) {
      this.ended = false;
      throw e;
    }
  }

  /** Stops the heartbeats without an end (the stream goes on at the next start, as after a crash). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sent?.close();
  }

  /** RecordSealer: numbers, chains (and signs) one event as it is written. */
  seal(item: UnsealedEvent | EncodedEvent, segment: number): Uint8Array {
    const stream: StreamPosition = { id: this.id, seq: this.tSeq, prev: this.tPrev };
    if (item instanceof EncodedEvent) {
      // prev is base64, which needs no escaping: this is the position's canonical form
      const input = item.leafInput(
        `{"id":${this.idJson},"prev":${stream.prev === null ? 'null' : `"${stream.prev}"`},"seq":${stream.seq}}`,
      );
      // the leaf hash straight from its input, as base64 (no copy of the bytes, no Buffer for the digest)
      return this.sealed(input.subarray(1), item.stage, item.request_id, segment, hash('sha256', input, 'base64'));
    }
    // the proxies' events come with their id and time; only the stream's own ones get them here
    const ev: Record<string, unknown> = {
      schema: ACCESS_SCHEMA,
      id: item.id ?? randomUUID(),
      time: item.time ?? new Date().toISOString(),
      proxy: this.opts.proxy,
      ...item,
      stream,
    };
    if (item.stage === 'heartbeat' || item.stage === 'end')
      ev.signature = b64encode(this.opts.key.signer.sign(streamSignatureMessage(stream)));
    return this.sealed(canonicalJson(ev), item.stage, item.request_id, segment);
  }

  /** Takes a sealed event's place in the stream (the state commit() makes current). */
  private sealed(bytes: Uint8Array, stage: string, requestId: unknown, segment: number, leaf?: string): Uint8Array {
    if (bytes.length > MAX_RECORD_BYTES)
      throw new SpoolError(
        'too-large',
        `event of ${bytes.length} bytes is over the log's ${MAX_RECORD_BYTES}-byte entry limit`,
      );
    this.tSeq++;
    this.tPrev = leaf ?? leafHash(bytes).toString('base64');
    if (this.opts.trackResponses !== false && typeof requestId === 'string') {
      if (stage === 'request') this.changes.push({ add: requestId, segment });
      else if (stage === 'response') this.changes.push({ del: requestId });
    }
    return bytes;
  }

  /** RecordSealer: the sealed events were written, so their seqs, chain and open requests become the state. */
  commit(): void {
    this.seq = this.tSeq;
    this.prev = this.tPrev;
    for (const c of this.changes) {
      if ('add' in c) this.open.set(c.add, c.segment);
      else this.open.delete(c.del);
    }
    this.changes = [];
  }

  /** RecordSealer: the sealed events' write failed, so the state goes back to the last commit. */
  rollback(): void {
    this.tSeq = this.seq;
    this.tPrev = this.prev;
    this.changes = [];
  }
}

function parseEvent(data: Buffer): Record<string, unknown> | null {
  try {
    const v = JSON.parse(data.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** Where the stream of a spool's last record stood, or null when that record carries no stream. */
function lastPosition(data: Buffer): { id: string; seq: number; hash: string; ended: boolean } | null {
  const e = parseEvent(data);
  const s = e?.stream as Partial<StreamPosition> | undefined;
  if (!e || !s || typeof s.id !== 'string' || typeof s.seq !== 'number') return null;
  return { id: s.id, seq: s.seq, hash: leafHash(data).toString('base64'), ended: e.stage === 'end' };
}
