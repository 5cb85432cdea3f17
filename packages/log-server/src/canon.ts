/**
 * Turning a submitted JSON array into leaves: RFC 8785 canonical bytes and SHA-256 of each. An entry already in
 * canonical form, as the proxies send theirs, is checked on its raw bytes and taken as it stands (canonscan.ts,
 * a few µs); any other is parsed and canonicalized (about 10 µs more). Large add-entries bodies are prepared in
 * a worker thread, leaving the main thread to sequence; small ones are prepared inline, where a round trip to
 * the worker would cost more than it saves.
 */
import { errorMessage, canonicalJsonString, TlogError } from '@trailmark/tlog';
import { isUtf8 } from 'node:buffer';
import { sha256, sha256Into } from '@trailmark/node';
import { isCanonicalObject, splitCanonicalArray } from './canonscan.js';
import { scanContainer, skipWs, WS, type ScanLimits } from './jsonscan.js';

/** Largest entry the log accepts, in canonical JSON bytes (a tlog-tiles bundle entry has a 16-bit length). */
export const MAX_ENTRY_BYTES = 65_535;
/** Most entries in one add-entries request. */
export const MAX_BATCH_ENTRIES = 10_000;

/** A client mistake found while preparing leaves: the HTTP status and the message. */
export interface PrepError {
  status: number;
  message: string;
}

/** Leaves packed in two buffers: `data` holds 0x00 || entry for each, `offsets[i]` where entry i's 0x00 is. */
export interface PackedLeaves {
  data: Uint8Array;
  offsets: Uint32Array;
  hashes: Uint8Array;
}

function kindOf(v: unknown): string {
  return v === null
    ? 'null'
    : Array.isArray(v)
      ? 'an array'
      : typeof v === 'object'
        ? 'a JSON object'
        : `a ${typeof v}`;
}

/** Canonical text of one entry. Throws PrepError (as a plain object) for a non-object or one too large. */
export function canonicalEntry(value: unknown, what: string): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw { status: 400, message: `${what} must be a JSON object, got ${kindOf(value)}` };
  let text: string;
  try {
    text = canonicalJsonString(value);
  } catch (e) {
    throw { status: 400, message: `${what}: ${e instanceof TlogError ? e.message : 'cannot canonicalize'}` };
  }
  return text;
}

/** Canonical text of one entry and its UTF-8 length, refusing one over 65,535 bytes (413). Throws PrepError. */
export function canonicalEntrySized(value: unknown, what: string): { text: string; len: number } {
  const text = canonicalEntry(value, what);
  const len = Buffer.byteLength(text, 'utf8');
  if (len > MAX_ENTRY_BYTES) throw tooLargeEntry(what, len);
  return { text, len };
}

function tooLargeEntry(what: string, len: number): PrepError {
  return { status: 413, message: `${what} is ${len} bytes in canonical form; at most ${MAX_ENTRY_BYTES} are accepted` };
}

/** An add-entries body (and a Kubernetes EventList) may be at most this large, raw and in canonical form. */
export const MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024;
/**
 * An add-entry body may be at most this large: its canonical form is at most 65,535 bytes, and whitespace and
 * escapes (`\u0041` for `A`) rarely make the raw text more than a few times that.
 */
export const MAX_ENTRY_BODY_BYTES = 1024 * 1024;
/**
 * A body this small is parsed whole without a scan: it holds at most one value per two bytes, so parsing it
 * costs at most a few MB of heap however it is made (V8's JSON.parse does not recurse, so depth is harmless).
 */
const UNSCANNED_BODY_BYTES = 64 * 1024;
/** Nested containers an entry may have (tlog's canonicalization refuses deeper ones). */
const ENTRY_DEPTH = 256;
const TOKENS_WHY = `(its canonical form would exceed ${MAX_ENTRY_BYTES} bytes)`;

const entryLimits = (what: string): ScanLimits => ({
  maxDepth: ENTRY_DEPTH,
  maxTokens: MAX_ENTRY_BYTES,
  maxParts: Infinity,
  what,
  tokensWhy: TOKENS_WHY,
});
/** Limits for an array of entries: each element is scanned as an entry. */
const listLimits = (what: string): ScanLimits => ({
  maxDepth: ENTRY_DEPTH + 1,
  maxTokens: MAX_ENTRY_BYTES,
  maxParts: MAX_BATCH_ENTRIES,
  what,
  tokensWhy: TOKENS_WHY,
});

/** The body as a Buffer (no copy) after checking it is non-empty UTF-8; `start` skips a byte order mark. */
function utf8Body(body: Uint8Array): { b: Buffer; start: number } {
  if (body.length === 0) throw { status: 400, message: 'empty body: expected JSON' };
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!isUtf8(b)) throw { status: 400, message: 'the body is not valid UTF-8' };
  return { b, start: b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0 };
}

/** JSON.parse of b[s, e). Precondition: b is valid UTF-8. Throws PrepError 400 naming `what` when malformed. */
function parsePart(b: Buffer, s: number, e: number, what?: string): unknown {
  try {
    return JSON.parse(b.toString('utf8', s, e));
  } catch (err) {
    throw { status: 400, message: `malformed JSON${what ? ` in ${what}` : ''}: ${errorMessage(err)}` };
  }
}

/**
 * Parses an add-entry body: UTF-8 JSON whose nesting and number of containers and commas are checked on the
 * raw bytes first. Precondition: none; throws PrepError for every client mistake (413 for an entry that
 * cannot fit in 65,535 canonical bytes).
 */
export function parseEntryBody(body: Uint8Array): unknown {
  const { b, start } = utf8Body(body);
  if (b.length > UNSCANNED_BODY_BYTES) scanContainer(b, start, b.length, entryLimits('the entry'), false);
  return parsePart(b, start, b.length);
}

/**
 * An add-entry body as a leaf: its bytes as they stand when they are already the canonical form (see
 * canonscan.ts), else parsed (parseEntryBody) and canonicalized. Precondition: none; throws PrepError for every
 * client mistake, naming the entry `the entry`.
 */
export function prepareEntry(body: Uint8Array): { data: Uint8Array; hash: Uint8Array } {
  const { b, start } = utf8Body(body);
  const s = skipWs(b, start, b.length);
  let e = b.length;
  while (e > s && WS[b[e - 1]] === 1) e--;
  if (isCanonicalObject(b, s, e)) {
    if (e - s > MAX_ENTRY_BYTES) throw tooLargeEntry('the entry', e - s);
    return leafOf((out, o) => b.copy(out, o, s, e), e - s);
  }
  const c = canonicalEntrySized(parseEntryBody(body), 'the entry');
  return leafOf((out, o) => out.write(c.text, o, 'utf8'), c.len);
}

/** A leaf of `len` bytes that `fill` writes at offset o of a buffer holding 0x00 || data, hashed without a copy. */
export function leafOf(fill: (out: Buffer, o: number) => void, len: number): { data: Uint8Array; hash: Uint8Array } {
  const out = Buffer.allocUnsafe(len + 1);
  out[0] = 0;
  fill(out, 1);
  return { data: out.subarray(1), hash: sha256(out) };
}

/**
 * Parses an add-entries body (UTF-8 JSON array of 1..10,000 objects) into packed leaves, one element at a
 * time. Precondition: none; throws PrepError for every client mistake.
 */
export function prepareBatch(body: Uint8Array): PackedLeaves {
  const { b, start } = utf8Body(body);
  // every body is split on its raw bytes, however small: an element already in canonical form is then taken as
  // it stands (canonscan.ts) without being parsed at all. The common body, all canonical, is split and checked
  // in one pass; any other is split by the scan that bounds what parsing it may cost, then checked element by
  // element.
  const canonical = splitCanonicalArray(b, start, b.length, MAX_BATCH_ENTRIES);
  if (canonical) return packParts(b, canonical, 'entries', true);
  if (b.length <= UNSCANNED_BODY_BYTES) {
    // small enough to parse whole at once (see UNSCANNED_BODY_BYTES), which is cheaper than part by part
    const value = parsePart(b, start, b.length);
    if (!Array.isArray(value))
      throw { status: 400, message: `the body must be a JSON array of entry objects, got ${kindOf(value)}` };
    if (value.length === 0) throw { status: 400, message: 'the array of entries is empty' };
    return packValues(value, 'entries');
  }
  const list = scanContainer(b, start, b.length, listLimits('entries'), true);
  if (list === undefined)
    throw {
      status: 400,
      message: `the body must be a JSON array of entry objects, got ${kindOf(parsePart(b, start, b.length))}`,
    };
  if (list.open !== 0x5b)
    throw { status: 400, message: 'the body must be a JSON array of entry objects, got a JSON object' };
  if (list.bounds.length === 0) throw { status: 400, message: 'the array of entries is empty' };
  return packParts(b, list.bounds, 'entries');
}

/**
 * Packs each part b[bounds[2i], bounds[2i+1]) as one entry into one off-heap buffer of exactly their size, at
 * most 16 MiB of canonical entries (413 beyond). A part already in canonical form is copied as it stands; any
 * other is parsed and canonicalized, only one such part's objects alive at a time. Precondition: bounds are
 * the parts of a JSON container found by scanContainer, or (`allCanonical`) by splitCanonicalArray.
 *
 * Canonical texts of the other parts are kept until all sizes are known and then copied once: a buffer sized
 * from the raw body and grown as needed (the first form of this function) cost the log server 50-60 MB more
 * peak RSS at 1M entries (bench-server, same run: 288-300 MB against 229-230 MB), because every leaf keeps its
 * batch's buffer alive.
 */
function packParts(b: Buffer, bounds: readonly number[], what: string, allCanonical = false): PackedLeaves {
  const n = bounds.length / 2;
  const max = MAX_BATCH_BODY_BYTES + n;
  // where each entry's bytes are in the body, or -1 when its canonical text is in `texts`
  const from = new Int32Array(n);
  const lens = new Uint32Array(n);
  let texts: (string | undefined)[] | undefined;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const s = skipWs(b, bounds[2 * i], bounds[2 * i + 1]);
    let e = bounds[2 * i + 1];
    while (e > s && WS[b[e - 1]] === 1) e--;
    let len: number;
    if (allCanonical || isCanonicalObject(b, s, e)) {
      len = e - s;
      if (len > MAX_ENTRY_BYTES) throw tooLargeEntry(`${what}[${i}]`, len);
      from[i] = s;
    } else {
      // the full path, which also names the mistake when there is one
      const c = canonicalNamed((name) => parsePart(b, s, e, name?.()), what, i);
      (texts ??= new Array<string | undefined>(n))[i] = c.text;
      len = c.len;
      from[i] = -1;
    }
    lens[i] = len;
    total += len + 1;
    if (total > max) throw tooLargeBatch(what);
  }
  return packed(b, from, lens, texts, total);
}

/** packParts for entries already parsed (a small body, parsed whole): each canonicalized. Precondition: n >= 1. */
function packValues(values: readonly unknown[], what: string): PackedLeaves {
  const n = values.length;
  if (n > MAX_BATCH_ENTRIES)
    throw { status: 413, message: `${n} ${what} in one request; at most ${MAX_BATCH_ENTRIES} are accepted` };
  const max = MAX_BATCH_BODY_BYTES + n;
  const lens = new Uint32Array(n);
  const texts = new Array<string>(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const c = canonicalNamed(() => values[i], what, i);
    texts[i] = c.text;
    lens[i] = c.len;
    total += c.len + 1;
    if (total > max) throw tooLargeBatch(what);
  }
  return packed(undefined, new Int32Array(n).fill(-1), lens, texts, total);
}

/**
 * canonicalEntrySized of entry `i` of a batch, named `what[i]` in any error: the name is only made when there is
 * one, by doing the entry again (a string per entry cost more than a canonical entry's check). Throws PrepError.
 */
function canonicalNamed(
  value: (name?: () => string) => unknown,
  what: string,
  i: number,
): { text: string; len: number } {
  try {
    return canonicalEntrySized(value(), 'entry');
  } catch {
    const name = `${what}[${i}]`;
    return canonicalEntrySized(
      value(() => name),
      name,
    );
  }
}

function tooLargeBatch(what: string): PrepError {
  return { status: 413, message: `the ${what} are more than ${MAX_BATCH_BODY_BYTES} bytes in canonical form` };
}

/**
 * The packed leaves of entries of `lens[i]` canonical bytes each, `total` with their 0x00 prefixes: entry i is
 * b[from[i], from[i] + lens[i]) when from[i] >= 0, else texts[i]. Each leaf is hashed in place.
 */
function packed(
  b: Buffer | undefined,
  from: Int32Array,
  lens: Uint32Array,
  texts: readonly (string | undefined)[] | undefined,
  total: number,
): PackedLeaves {
  const n = lens.length;
  const data = Buffer.allocUnsafeSlow(total);
  const offsets = new Uint32Array(n + 1);
  const hashes = Buffer.allocUnsafeSlow(n * 32);
  let o = 0;
  for (let i = 0; i < n; i++) {
    offsets[i] = o;
    data[o] = 0;
    if (from[i] >= 0) b!.copy(data, o + 1, from[i], from[i] + lens[i]);
    else data.write(texts![i]!, o + 1, 'utf8');
    sha256Into(data.subarray(o, o + 1 + lens[i]), hashes, i * 32);
    o += 1 + lens[i];
  }
  offsets[n] = o;
  return { data, offsets, hashes };
}

/**
 * Parses a Kubernetes audit webhook body (an audit.k8s.io/v1 EventList) into packed leaves, one per event of
 * `items`, in order. Precondition: none; throws PrepError for every client mistake.
 */
export function prepareAuditEvents(body: Uint8Array): PackedLeaves {
  const { b, start } = utf8Body(body);
  const what = 'the body must be an audit.k8s.io/v1 EventList object';
  // the object's own members are few; `items` is bounded element by element below
  const top = scanContainer(
    b,
    start,
    b.length,
    { maxDepth: ENTRY_DEPTH + 2, maxTokens: Infinity, maxParts: 64, what: 'EventList members', tokensWhy: '' },
    true,
  );
  if (top === undefined || top.open !== 0x7b) throw { status: 400, message: what };
  const members = new Map<string, unknown>();
  let items: [number, number] | undefined;
  for (let m = 0; m < top.bounds.length; m += 2) {
    const end = top.bounds[m + 1];
    const k = skipWs(b, top.bounds[m], end);
    let q = k + 1;
    if (b[k] === 0x22) {
      while (q < end && b[q] !== 0x22) q += b[q] === 0x5c ? 2 : 1;
    }
    const colon = skipWs(b, q + 1, end);
    if (b[k] !== 0x22 || q >= end || b[colon] !== 0x3a)
      throw { status: 400, message: 'malformed JSON: an EventList member is not "name": value' };
    const key = parsePart(b, k, q + 1) as string;
    // JSON.parse keeps the last of repeated names: so does this
    if (key === 'items') items = [colon + 1, end];
    else {
      scanContainer(b, colon + 1, end, entryLimits(`EventList ${JSON.stringify(key.slice(0, 40))}`), false);
      members.set(key, parsePart(b, colon + 1, end, key));
    }
  }
  const kind = members.get('kind');
  const apiVersion = members.get('apiVersion');
  if (kind !== 'EventList' || apiVersion !== 'audit.k8s.io/v1') {
    throw {
      status: 400,
      message: `${what}, got kind ${JSON.stringify(kind) ?? 'missing'} and apiVersion ${JSON.stringify(apiVersion) ?? 'missing'}`,
    };
  }
  if (items === undefined) throw { status: 400, message: 'the EventList has no items' };
  const list = scanContainer(b, items[0], items[1], listLimits('items'), true);
  if (list === undefined) {
    // Go encodes an empty list as null
    if (parsePart(b, items[0], items[1], 'items') === null) return packParts(b, [], 'items');
    throw { status: 400, message: 'the EventList items must be an array of events' };
  }
  if (list.open !== 0x5b) throw { status: 400, message: 'the EventList items must be an array of events' };
  return packParts(b, list.bounds, 'items');
}

/** The bodies that carry many entries, and how each is prepared (the worker is told which by name). */
export const preparers = { batch: prepareBatch, k8s: prepareAuditEvents } as const;
/** The request body shapes the log prepares: an add-entries batch or a Kubernetes audit EventList. */
export type BodyKind = keyof typeof preparers;
