/**
 * A client for the log's write API that accepts nothing on trust: every receipt is verified against the log's
 * vkey before it counts as an acknowledgement.
 *
 * - add-entry: the answer carries a tlog-proof; its checkpoint must be signed by the log key and its
 *   inclusion proof must lead from SHA-256(0x00 || our bytes) to the checkpoint's root.
 * - add-entries: the answer carries one signed checkpoint and (leaf_index, leaf_hash) per entry. We check the
 *   signature, that each leaf_hash is the hash of the bytes we sent, and then that all of them are in the signed
 *   tree at their indexes: the root is recomputed from our leaf hashes plus the log's tiles for the rest of the
 *   tree (a handful of tiles per batch, ~2 hashes per entry) and must equal the signed root, so the tiles need no
 *   trust of their own. If the tiles cannot be fetched, the client falls back to GET /v1/get-proof-by-index
 *   per entry, each proof verified against the signed root.
 *
 * Checkpoint signatures are checked with node:crypto's Ed25519 (no event-loop stall), and a small cache remembers
 * note texts whose signature already verified; the inclusion check is still done for every entry.
 */
import {
  bodySummary,
  HttpTransport,
  nativeVerifier,
  nodeHasher,
  RETRY_STATUSES,
  sha256Into,
  TransportError,
} from '@trailmark/node';
import {
  b64decode,
  bytesEqual,
  errorMessage,
  hexEncode,
  openCheckpoint,
  parseTlogProof,
  parseVkey,
  tilePath,
  TileMissingError,
  TlogError,
  TreeView,
  verifyInclusion,
  type Checkpoint,
  type Hash,
  type NoteVerifier,
  type TileRef,
} from '@trailmark/tlog';
import { ClientError, LogRejectedError, LogUnavailableError, ReceiptError } from './errors.js';

/** How a LogWriter reaches and authenticates a log. */
export interface LogWriterOptions {
  /** Base URL of the log, e.g. http://127.0.0.1:8080 */
  url: string;
  /** The log's vkey (text) or a parsed verifier. */
  vkey: string | NoteVerifier;
  /** Bearer token for a log that requires one on its write API. */
  token?: string;
  /** Timeout of one HTTP attempt (default 10 s). */
  timeoutMs?: number;
  /** Attempts per call, first included (default 6). */
  attempts?: number;
  /** Backoff: base and cap of the exponential delay, full jitter (defaults 100 ms and 5 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** Per-call overrides of a LogWriter's retry policy. */
export interface CallOptions {
  /** Overrides the attempts of the client for this call. */
  attempts?: number;
  /** Gives up (LogUnavailableError) once this many ms have passed, retries included. */
  deadlineMs?: number;
}

/** A verified acknowledgement: the entry is at leafIndex in the tree of treeSize signed by `checkpoint`. */
export interface Receipt {
  leafIndex: bigint;
  leafHash: Uint8Array;
  treeSize: bigint;
  /** The signed checkpoint note the inclusion was verified against. */
  checkpoint: string;
  /** The tlog-proof text (add-entry only). */
  proof?: string;
}

/** Counters of a LogWriter, for metrics and diagnostics. */
export interface LogWriterStats {
  requests: number;
  retries: number;
  /** Answers that did not verify (bad signature, wrong hash, failed inclusion, malformed receipt). */
  receiptFailures: number;
  /** Calls that ended in an error (unavailable, rejected or bad receipt). */
  failures: number;
  lastError: string | null;
}

/**
 * The verifier with its Ed25519 check done by node:crypto (no event-loop stall); kept under its old name for
 * callers. Precondition: a verifier from parseVkey.
 */
export const nativeEd25519Verifier = nativeVerifier;

/** Statuses retried: the shared set, plus 408 and 425, which a log's front end may answer to a write. */
const RETRYABLE: ReadonlySet<number> = new Set([408, 425, ...RETRY_STATUSES]);

/** Largest answer read from the log: a hostile log cannot exhaust the proxy's memory (10,000 receipts fit). */
export const MAX_LOG_ANSWER = 16 << 20;

function bigintField(obj: Record<string, unknown>, name: string): bigint {
  const v = obj[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ReceiptError(
      'malformed-receipt',
      `receipt field ${name} must be a non-negative integer, got ${JSON.stringify(v)}`,
    );
  }
  return BigInt(v);
}

function stringField(obj: Record<string, unknown>, name: string): string {
  const v = obj[name];
  if (typeof v !== 'string')
    throw new ReceiptError('malformed-receipt', `receipt field ${name} must be a string, got ${typeof v}`);
  return v;
}

function hashField(obj: Record<string, unknown>, name: string): Uint8Array {
  let h: Uint8Array;
  try {
    h = b64decode(stringField(obj, name), name);
  } catch (e) {
    throw new ReceiptError('malformed-receipt', `receipt field ${name}: ${errorMessage(e)}`, { cause: e });
  }
  if (h.length !== 32)
    throw new ReceiptError('malformed-receipt', `receipt field ${name} is ${h.length} bytes, want 32`);
  return h;
}

/**
 * A client of a log's write API that retries transient failures and verifies every receipt (log signature, leaf hash,
 * inclusion) before returning it.
 */
export class LogWriter {
  readonly url: string;
  readonly verifier: NoteVerifier;
  /** Counters; `requests` and `retries` are the transport's. */
  readonly stats: LogWriterStats;
  private readonly token?: string;
  private readonly http: HttpTransport;
  /** Note texts whose log signature verified, newest last. */
  private readonly verified = new Map<string, Checkpoint>();

  /** Precondition: opts.url is an http(s) URL and opts.vkey a valid vkey (else ProxyError 'config'/KeyError). */
  constructor(opts: LogWriterOptions) {
    try {
      this.http = new HttpTransport(opts.url, {
        timeoutMs: opts.timeoutMs ?? 10_000,
        maxBytes: MAX_LOG_ANSWER,
        retry: {
          attempts: Math.max(1, opts.attempts ?? 6),
          baseMs: opts.backoffBaseMs ?? 100,
          maxMs: opts.backoffMaxMs ?? 5_000,
          maxRetryAfterMs: 2 * (opts.backoffMaxMs ?? 5_000),
          statuses: RETRYABLE,
        },
      });
    } catch (e) {
      throw new ClientError(
        'config',
        /http or https/.test(errorMessage(e))
          ? `log URL ${opts.url} must be http or https`
          : `log URL ${JSON.stringify(opts.url)} is not a URL`,
      );
    }
    this.url = this.http.url;
    this.verifier = nativeVerifier(typeof opts.vkey === 'string' ? parseVkey(opts.vkey.trim()) : opts.vkey);
    this.token = opts.token;
    const t = this.http.stats;
    const own = { receiptFailures: 0, failures: 0, lastError: null };
    this.stats = Object.defineProperties(own, {
      requests: { get: () => t.requests, enumerable: true },
      retries: { get: () => t.retries, enumerable: true },
    }) as LogWriterStats;
  }

  /** Closes idle keep-alive connections to the log. */
  close(): void {
    this.http.close();
  }

  /** The log's origin (its key's name). */
  get origin(): string {
    return this.verifier.name;
  }

  /**
   * Submits one entry (its canonical JSON bytes) and returns the verified receipt.
   * Precondition: `entry` is the RFC 8785 form of a JSON object (the log would store different bytes otherwise,
   * and the receipt would then fail as 'leaf-hash').
   */
  async addEntry(entry: Uint8Array, opts: CallOptions = {}): Promise<Receipt> {
    return this.counted(async () => {
      const body = await this.post('/v1/add-entry', entry, opts);
      return this.checkReceipt(() => this.verifyAddEntry(entry, body));
    });
  }

  /**
   * Submits entries (canonical JSON bytes each) in one call; returns their verified receipts in order.
   * Precondition: 1..10,000 entries, each RFC 8785 canonical JSON object bytes.
   */
  async addEntries(entries: readonly Uint8Array[], opts: CallOptions = {}): Promise<Receipt[]> {
    if (entries.length === 0) return [];
    return this.counted(async () => {
      const parts: Buffer[] = [Buffer.from('[')];
      entries.forEach((e, i) => {
        if (i > 0) parts.push(Buffer.from(','));
        parts.push(Buffer.from(e.buffer, e.byteOffset, e.byteLength));
      });
      parts.push(Buffer.from(']'));
      const body = await this.post('/v1/add-entries', Buffer.concat(parts), opts);
      return this.checkReceipt(() => this.verifyAddEntries(entries, body));
    });
  }

  /** Fetches /checkpoint and verifies it against the log key. Throws LogUnavailableError or ReceiptError. */
  async checkpoint(opts: CallOptions = {}): Promise<{ note: string; checkpoint: Checkpoint }> {
    return this.counted(async () => {
      const res = await this.request('GET', '/checkpoint', undefined, opts);
      const note = new TextDecoder().decode(res.body);
      const checkpoint = this.checkReceipt(() => this.openCached(note));
      return { note, checkpoint };
    });
  }

  /**
   * Whether the log's write API accepts this client's token, asked without writing anything: an empty batch,
   * which a log refuses as malformed (400) only once the token passed. 'refused' carries the log's answer
   * (401/403); 'unreachable' that nothing conclusive came back. Precondition: none.
   */
  async checkWriteAccess(
    opts: CallOptions = { attempts: 1, deadlineMs: 3000 },
  ): Promise<{ access: 'ok' | 'refused' | 'unreachable'; detail: string }> {
    try {
      await this.request('POST', '/v1/add-entries', new TextEncoder().encode('[]'), opts);
      return { access: 'ok', detail: 'accepted' };
    } catch (e) {
      if (e instanceof LogRejectedError) {
        return e.status === 401 || e.status === 403
          ? { access: 'refused', detail: e.message }
          : { access: 'ok', detail: e.message };
      }
      return { access: 'unreachable', detail: errorMessage(e) };
    }
  }

  private async counted<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      this.stats.failures++;
      this.stats.lastError = errorMessage(e);
      throw e;
    }
  }

  private checkReceipt<T>(fn: () => T): T;
  private checkReceipt<T>(fn: () => Promise<T>): Promise<T>;
  private checkReceipt<T>(fn: () => T | Promise<T>): T | Promise<T> {
    const wrap = (e: unknown): never => {
      if (e instanceof LogUnavailableError || e instanceof LogRejectedError) throw e;
      this.stats.receiptFailures++;
      if (e instanceof ReceiptError) throw e;
      throw new ReceiptError(
        e instanceof TlogError ? e.code : 'bad-receipt',
        `log receipt does not verify: ${errorMessage(e)}`,
        {
          cause: e,
        },
      );
    };
    try {
      const r = fn();
      return r instanceof Promise ? r.catch(wrap) : r;
    } catch (e) {
      return wrap(e);
    }
  }

  private openCached(note: string): Checkpoint {
    const hit = this.verified.get(note);
    if (hit) return hit;
    const cp = openCheckpoint(note, this.verifier).checkpoint;
    this.verified.set(note, cp);
    if (this.verified.size > 64) this.verified.delete(this.verified.keys().next().value!);
    return cp;
  }

  private verifyAddEntry(entry: Uint8Array, body: unknown): Receipt {
    if (typeof body !== 'object' || body === null)
      throw new ReceiptError('malformed-receipt', 'add-entry answer is not a JSON object');
    const o = body as Record<string, unknown>;
    const leafIndex = bigintField(o, 'leaf_index');
    const treeSize = bigintField(o, 'tree_size');
    const leafHash = hashField(o, 'leaf_hash');
    const proofText = stringField(o, 'proof');
    const mine = nodeHasher.leaf(entry);
    if (!bytesEqual(mine, leafHash))
      throw new ReceiptError('leaf-hash', 'receipt leaf_hash is not the hash of the entry sent');
    const p = parseTlogProof(proofText);
    const cp = this.openCached(p.checkpoint);
    if (p.index !== leafIndex)
      throw new ReceiptError('leaf-index', `receipt leaf_index ${leafIndex} but its proof is for index ${p.index}`);
    if (cp.size !== treeSize)
      throw new ReceiptError('tree-size', `receipt tree_size ${treeSize} but its checkpoint has size ${cp.size}`);
    if (leafIndex >= treeSize)
      throw new ReceiptError('leaf-index', `leaf_index ${leafIndex} is not below tree_size ${treeSize}`);
    verifyInclusion(leafIndex, treeSize, mine, p.proof, cp.root, nodeHasher);
    return { leafIndex, leafHash: mine, treeSize, checkpoint: p.checkpoint, proof: proofText };
  }

  private async verifyAddEntries(entries: readonly Uint8Array[], body: unknown): Promise<Receipt[]> {
    if (typeof body !== 'object' || body === null)
      throw new ReceiptError('malformed-receipt', 'add-entries answer is not a JSON object');
    const o = body as Record<string, unknown>;
    const treeSize = bigintField(o, 'tree_size');
    const note = stringField(o, 'checkpoint');
    const list = o.entries;
    if (!Array.isArray(list) || list.length !== entries.length) {
      throw new ReceiptError(
        'malformed-receipt',
        `add-entries answered ${Array.isArray(list) ? list.length : 'no'} entries for ${entries.length} sent`,
      );
    }
    const cp = this.openCached(note);
    if (cp.size !== treeSize)
      throw new ReceiptError('tree-size', `receipt tree_size ${treeSize} but its checkpoint has size ${cp.size}`);
    const ours = Buffer.allocUnsafe(32 * entries.length);
    const hashing = new LeafHashing(entries);
    const receipts: Receipt[] = new Array<Receipt>(list.length);
    for (let i = 0; i < list.length; i++) {
      // a large batch is checked a slice at a time: the caller's event loop (a proxy's sessions) never waits
      // for a whole batch, which took tens of milliseconds at 4,000 entries
      if (i % RECEIPT_SLICE === 0) {
        if (i > 0) await nextTurn();
        hashing.into(ours, i, Math.min(list.length, i + RECEIPT_SLICE));
      }
      const e: unknown = list[i];
      if (typeof e !== 'object' || e === null)
        throw new ReceiptError('malformed-receipt', `entry ${i} of the answer is not an object`);
      const leafIndex = bigintField(e as Record<string, unknown>, 'leaf_index');
      const leafHash = ours.subarray(32 * i, 32 * i + 32);
      // the log answers our hash in canonical base64: one string comparison; anything else is decoded strictly
      if ((e as Record<string, unknown>).leaf_hash !== ours.toString('base64', 32 * i, 32 * i + 32)) {
        if (!bytesEqual(leafHash, hashField(e as Record<string, unknown>, 'leaf_hash')))
          throw new ReceiptError('leaf-hash', `receipt entry ${i}: leaf_hash is not the hash of the entry sent`);
      }
      if (leafIndex >= treeSize)
        throw new ReceiptError(
          'leaf-index',
          `receipt entry ${i}: leaf_index ${leafIndex} is not below tree_size ${treeSize}`,
        );
      receipts[i] = { leafIndex, leafHash, treeSize, checkpoint: note };
    }
    await this.verifyInclusions(receipts, cp);
    return receipts;
  }

  /**
   * Verifies that every receipt's leaf is in the tree signed by cp, at its index. With tiles, the whole batch is
   * checked at once: the root is recomputed from our own leaf hashes at their indexes plus tile hashes of the
   * subtrees holding none of them; it must equal the signed root (a multi-leaf inclusion proof whose sibling
   * hashes come from the tiles). Without tiles, each entry's proof is fetched and verified.
   */
  private async verifyInclusions(receipts: Receipt[], cp: Checkpoint): Promise<void> {
    const mine = new Map<bigint, Hash>();
    for (const r of receipts) {
      const prev = mine.get(r.leafIndex);
      if (prev && !bytesEqual(prev, r.leafHash))
        throw new ReceiptError('leaf-index', `two different entries were given the same index ${r.leafIndex}`);
      mine.set(r.leafIndex, r.leafHash);
    }
    let root: Hash;
    try {
      const tiles = (ref: TileRef) => this.getBytes('/' + tilePath(ref));
      root = await new TreeView(cp.size, mine, tiles, nodeHasher, nextTurn).root();
    } catch (e) {
      if (e instanceof TlogError && e.code === 'tile') throw new ReceiptError('tile', e.message);
      if (!(e instanceof TileMissingError)) throw e;
      const proofs = await this.proofsByIndex(receipts, cp.size);
      receipts.forEach((r, i) => {
        try {
          verifyInclusion(r.leafIndex, cp.size, r.leafHash, proofs[i], cp.root, nodeHasher);
        } catch (err) {
          throw new ReceiptError(
            'inclusion',
            `entry at index ${r.leafIndex} is not included in the signed checkpoint of size ${cp.size}: ${errorMessage(err)}`,
          );
        }
      });
      return;
    }
    if (!bytesEqual(root, cp.root)) {
      throw new ReceiptError(
        'inclusion',
        `the ${mine.size} entries are not all in the signed tree of size ${cp.size} at the indexes given: the root from our leaves and the log's tiles is ${hexEncode(root)}, the checkpoint says ${hexEncode(cp.root)}`,
      );
    }
  }

  private async proofsByIndex(receipts: Receipt[], size: bigint): Promise<Hash[][]> {
    const out: Hash[][] = new Array(receipts.length);
    let next = 0;
    const worker = async () => {
      while (next < receipts.length) {
        const i = next++;
        const res = await this.request(
          'GET',
          `/v1/get-proof-by-index?leaf_index=${receipts[i].leafIndex}&tree_size=${size}`,
          undefined,
          {},
        );
        const o = parseJson(res.body, 'get-proof-by-index') as Record<string, unknown>;
        const path = o?.audit_path;
        if (!Array.isArray(path))
          throw new ReceiptError('malformed-receipt', 'get-proof-by-index answer has no audit_path');
        out[i] = path.map((h, j) => hashField({ [`audit_path[${j}]`]: h }, `audit_path[${j}]`));
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, receipts.length) }, worker));
    return out;
  }

  /** GET of raw bytes (tiles). Returns null when the log answers 4xx (absent, or tiles not served). */
  async getBytes(path: string): Promise<Uint8Array | null> {
    try {
      return (await this.request('GET', path, undefined, { attempts: 3 })).body;
    } catch (e) {
      if (e instanceof LogRejectedError) return null;
      throw e;
    }
  }

  private async post(path: string, body: Uint8Array, opts: CallOptions): Promise<unknown> {
    const res = await this.request('POST', path, body, opts);
    return parseJson(res.body, path);
  }

  /**
   * One HTTP call with retries: network errors, timeouts, 408/425/429/5xx are retried with exponential
   * backoff and full jitter (honouring Retry-After); other 4xx end it at once as LogRejectedError.
   */
  private async request(
    method: string,
    path: string,
    body: Uint8Array | undefined,
    opts: CallOptions,
  ): Promise<{ status: number; body: Uint8Array }> {
    const headers: Record<string, string> = {};
    if (body) headers['content-type'] = 'application/json';
    if (this.token && method === 'POST') headers.authorization = `Bearer ${this.token}`;
    try {
      return await this.http.request(path, {
        method,
        body,
        headers,
        retry: {
          ...(opts.attempts !== undefined ? { attempts: Math.max(1, opts.attempts) } : {}),
          ...(opts.deadlineMs !== undefined ? { deadlineMs: opts.deadlineMs } : {}),
        },
      });
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      const status = e.status;
      const msg = bodySummary(e.extra.body?.toString('utf8') ?? '');
      if (e.code === 'http-status' && status !== undefined && !RETRYABLE.has(status)) {
        throw new LogRejectedError(
          'rejected',
          `log ${method} ${path} answered ${status}${msg ? `: ${msg}` : ''}`,
          status,
        );
      }
      const why = e.code === 'http-status' ? `log answered ${status}${msg ? `: ${msg}` : ''}` : e.message;
      throw new LogUnavailableError('unavailable', `log ${this.url} unavailable for ${method} ${path}: ${why}`, {
        cause: e,
      });
    }
  }
}

/** Receipts checked per turn of the event loop. */
const RECEIPT_SLICE = 500;
/** Lets the event loop run what waits (sockets, timers) before going on. */
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * The RFC 6962 leaf hashes of a batch's entries: each leaf input (0x00 || entry) is built in one scratch buffer
 * and hashed into place, with no allocation per entry.
 */
class LeafHashing {
  private readonly input: Buffer;

  constructor(private readonly entries: readonly Uint8Array[]) {
    let max = 0;
    for (const e of entries) max = Math.max(max, e.length);
    this.input = Buffer.allocUnsafe(max + 1);
    this.input[0] = 0;
  }

  /** Writes the hashes of entries from..to-1 at 32-byte slots of `out`. Precondition: out has a slot for each. */
  into(out: Buffer, from: number, to: number): void {
    for (let i = from; i < to; i++) {
      const e = this.entries[i];
      this.input.set(e, 1);
      sha256Into(this.input.subarray(0, e.length + 1), out, 32 * i);
    }
  }
}

function parseJson(data: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new ReceiptError('malformed-receipt', `log answer to ${what} is not JSON`);
  }
}
