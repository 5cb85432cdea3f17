/**
 * What indexing an entry needs before any database work: its text, its searchable fields, its full-text words
 * and what the stream checker reads. Pure per entry, so while catching up it runs on the reader thread (the one
 * that fetches and verifies the bundles), beside the index's writes on the main thread, and the two cores share
 * the work. This module is loaded by that thread by URL (see PREPARE_MODULE): it imports nothing that starts
 * anything.
 */
import { normalize, type IndexedFields } from './normalize.js';

/** The members of an access event the stream checker reads (tlog StreamChecker.add), nothing else. */
export interface StreamMembers {
  stream: unknown;
  stage: unknown;
  proxy: unknown;
  time: unknown;
  request_id: unknown;
  stream_key: unknown;
  signature: unknown;
}

/** One entry ready to be written: its text, fields, full-text words (path tokens included), stream view. */
export interface PreparedEntry {
  text: string;
  f: IndexedFields;
  /** The full-text document: the fields' words and a token per path prefix (see pathToken). */
  words: string;
  /** Present when the entry is an object with a `stream` member. */
  stream: StreamMembers | null;
}

/**
 * The full-text token standing for a path prefix: U+E000 (private use: a token character to FTS5's
 * tokenizer, never part of a word ftsQuery takes from a user) and a 64-bit hash of the prefix. A collision
 * costs only speed: the exact prefix test runs on every row the token finds.
 */
export function pathToken(prefix: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ prefix.length;
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 13;
  }
  return '\uE000' + (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

/** Path prefixes whose token was computed recently (paths share their prefixes: /api, /api/v1, ...). */
const prefixTokens = new Map<string, string>();
const MAX_PREFIX_TOKENS = 65_536;

/** pathToken, remembered for the prefixes seen recently. */
function cachedPathToken(prefix: string): string {
  let t = prefixTokens.get(prefix);
  if (t === undefined) {
    t = pathToken(prefix);
    if (prefixTokens.size >= MAX_PREFIX_TOKENS) prefixTokens.clear();
    prefixTokens.set(prefix, t);
  }
  return t;
}

/**
 * The tokens of every prefix of `path` that a path filter can name: each prefix ending before a "/" (whole
 * segments) and the path itself (without trailing "/"s, as filters are).
 */
function pathTokens(path: string): string {
  let out = '';
  for (let k = 1; k < path.length; k++) {
    if (path.charCodeAt(k) === 47 && path.charCodeAt(k - 1) !== 47) out += ' ' + cachedPathToken(path.slice(0, k));
  }
  // the whole path is a prefix only of itself (most often unique): hashed, not remembered
  if (path.length > 0 && path.charCodeAt(path.length - 1) !== 47) out += ' ' + pathToken(path);
  return out;
}

const utf8 = new TextDecoder();

/** One entry's PreparedEntry. Precondition: none (bytes that are not JSON are indexed by position only). */
export function prepareEntry(data: Uint8Array): PreparedEntry {
  const text = utf8.decode(data);
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* a log entry that is not JSON: indexed by leaf index only */
  }
  const f = normalize(parsed);
  const words = f.path ? f.words + pathTokens(f.path) : f.words;
  let stream: StreamMembers | null = null;
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
    const e = parsed as Record<string, unknown>;
    if (e.stream !== undefined) {
      stream = {
        stream: e.stream,
        stage: e.stage,
        proxy: e.proxy,
        time: e.time,
        request_id: e.request_id,
        stream_key: e.stream_key,
        signature: e.signature,
      };
    }
  }
  return { text, f, words, stream };
}

/**
 * The PreparedEntry of each entry of a bundle, in columns: what the reader thread posts to the index's thread.
 * Structured clone writes every property name of every object it copies, so a bundle of objects cost as much
 * to copy as to prepare (measured); flat arrays of values do not.
 */
export interface PreparedBundle {
  texts: string[];
  words: string[];
  /** STRS per entry: request id, actor, target, method, path, protocol, status, stream id. */
  strs: (string | null)[];
  /** NUMS per entry: kind, time (ms), decision; NaN for none. */
  nums: Float64Array;
  /** STREAM per entry: the StreamMembers in declaration order; the first is undefined without a stream. */
  streams: unknown[];
}

const STRS = 8;
const NUMS = 3;
const STREAM = 7;

const orNaN = (v: number | null) => (v === null ? NaN : v);
const orNull = (v: number) => (Number.isNaN(v) ? null : v);

/** The PreparedBundle of a bundle's entries (the reader thread's hook: see verifiedBundlesOffThread). Precondition: none. */
export function prepareBundle(entries: Uint8Array[]): PreparedBundle {
  const n = entries.length;
  // arrays filled by push stay packed: structured clone copies a holey array (new Array(n)) key by key
  const b: PreparedBundle = { texts: [], words: [], strs: [], nums: new Float64Array(n * NUMS), streams: [] };
  for (let i = 0; i < n; i++) {
    const p = prepareEntry(entries[i]);
    const f = p.f;
    b.texts.push(p.text);
    b.words.push(p.words);
    b.strs.push(f.requestId, f.actor, f.target, f.method, f.path, f.protocol, f.status, f.streamId);
    let o = i * NUMS;
    b.nums[o++] = f.kind;
    b.nums[o++] = orNaN(f.timeMs);
    b.nums[o] = orNaN(f.decision);
    const s = p.stream;
    if (s !== null) b.streams.push(s.stream, s.stage, s.proxy, s.time, s.request_id, s.stream_key, s.signature);
    else b.streams.push(undefined, undefined, undefined, undefined, undefined, undefined, undefined);
  }
  return b;
}

/**
 * Entry `i` of a PreparedBundle, as prepareEntry made it (but for the fields the index does not keep: stage,
 * proxy, the checked stream position and its seq). Precondition: i < the bundle's number of entries.
 */
export function preparedEntry(b: PreparedBundle, i: number): PreparedEntry {
  let o = i * STRS;
  const s = b.strs;
  const m = i * NUMS;
  const f: IndexedFields = {
    kind: b.nums[m],
    stage: null,
    requestId: s[o++],
    timeMs: orNull(b.nums[m + 1]),
    actor: s[o++],
    target: s[o++],
    method: s[o++],
    path: s[o++],
    protocol: s[o++],
    decision: orNull(b.nums[m + 2]),
    status: s[o++],
    streamId: s[o],
    streamSeq: null,
    proxy: null,
    words: b.words[i],
    stream: null,
  };
  o = i * STREAM;
  const v = b.streams;
  const stream: StreamMembers | null =
    v[o] === undefined
      ? null
      : {
          stream: v[o],
          stage: v[o + 1],
          proxy: v[o + 2],
          time: v[o + 3],
          request_id: v[o + 4],
          stream_key: v[o + 5],
          signature: v[o + 6],
        };
  return { text: b.texts[i], f, words: b.words[i], stream };
}
