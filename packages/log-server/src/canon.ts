/**
 * Turning a submitted JSON array into leaves (parse, RFC 8785 canonicalization, SHA-256) costs about 10 µs
 * an entry: most of the log's CPU at high ingest rates. Large add-entries bodies are therefore prepared in a
 * worker thread, leaving the main thread to sequence; small ones are prepared inline, where a round trip to
 * the worker would cost more than it saves.
 */
import { canonicalJsonString, TlogError } from '@trailmark/tlog';
import { sha256 } from './sha.js';

export const MAX_ENTRY_BYTES = 65_535;
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

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'a JSON object' : `a ${typeof v}`;
}

/** Canonical text of one entry. Throws PrepError (as a plain object) for a non-object or one too large. */
export function canonicalEntry(value: unknown, what: string): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw { status: 400, message: `${what} must be a JSON object, got ${kindOf(value)}` };
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
  if (len > MAX_ENTRY_BYTES) throw { status: 413, message: `${what} is ${len} bytes in canonical form; at most ${MAX_ENTRY_BYTES} are accepted` };
  return { text, len };
}

/** Parses a request body as UTF-8 JSON. Precondition: none; throws PrepError (400) for every client mistake. */
export function parseJsonBody(body: Uint8Array): unknown {
  if (body.length === 0) throw { status: 400, message: 'empty body: expected JSON' };
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch {
    throw { status: 400, message: 'the body is not valid UTF-8' };
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw { status: 400, message: `malformed JSON: ${(e as Error).message}` };
  }
}

/**
 * Parses an add-entries body (UTF-8 JSON array of 1..10,000 objects) into packed leaves.
 * Precondition: none; throws PrepError for every client mistake.
 */
export function prepareBatch(body: Uint8Array): PackedLeaves {
  const value = parseJsonBody(body);
  if (!Array.isArray(value)) throw { status: 400, message: `the body must be a JSON array of entry objects, got ${kindOf(value)}` };
  if (value.length === 0) throw { status: 400, message: 'the array of entries is empty' };
  if (value.length > MAX_BATCH_ENTRIES) throw { status: 413, message: `${value.length} entries in one request; at most ${MAX_BATCH_ENTRIES} are accepted` };
  const texts = new Array<string>(value.length);
  const lens = new Uint32Array(value.length);
  let total = 0;
  for (let i = 0; i < value.length; i++) {
    const { text, len } = canonicalEntrySized(value[i], `entries[${i}]`);
    texts[i] = text;
    lens[i] = len;
    total += len + 1;
  }
  const data = Buffer.allocUnsafeSlow(total);
  const offsets = new Uint32Array(value.length + 1);
  const hashes = Buffer.allocUnsafeSlow(value.length * 32);
  let o = 0;
  for (let i = 0; i < texts.length; i++) {
    offsets[i] = o;
    data[o] = 0;
    data.write(texts[i], o + 1, 'utf8');
    sha256(data.subarray(o, o + 1 + lens[i])).copy(hashes, i * 32);
    o += 1 + lens[i];
  }
  offsets[texts.length] = o;
  return { data, offsets, hashes };
}
