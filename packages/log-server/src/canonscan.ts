/**
 * A check on raw bytes that a JSON object is already in RFC 8785 canonical form, so the log can take a
 * submitted entry's bytes as its leaf data without parsing and re-serializing it. The proxies and most clients
 * send canonical JSON, and parse + canonicalize was most of the log's CPU per ingested event.
 *
 * The check answers true only when the bytes are exactly what `canonicalJsonString(JSON.parse(text))` would
 * produce: valid JSON, no whitespace outside strings, object members strictly sorted by UTF-16 code units (so
 * no repeated names), every string escaped as JSON.stringify escapes it, every number as Number::toString
 * writes it, and nesting within canonicalization's limit. Anything else answers false and the caller takes the
 * full path, which canonicalizes what it can and names every mistake; the fast path never has to explain.
 * Precondition everywhere: the bytes are valid UTF-8 (the request body was checked whole), which also rules out
 * lone surrogates.
 */

import { skipWs } from './jsonscan.js';

/** Containers nested deeper than this are refused by canonicalization (tlog's MAX_DEPTH): not canonical. */
const MAX_DEPTH = 256;

/** Bytes that can appear in a JSON number token. */
const NUMBER_BYTE = new Uint8Array(256);
for (const c of '-+.0123456789eE') NUMBER_BYTE[c.charCodeAt(0)] = 1;

/** Short escapes JSON.stringify writes: \" \\ \b \f \n \r \t. */
const SHORT_ESCAPE = new Uint8Array(256);
for (const c of '"\\bfnrt') SHORT_ESCAPE[c.charCodeAt(0)] = 1;

/** Control characters JSON.stringify writes as \u00xx (those without a short escape). */
const U_ESCAPED = new Uint8Array(32).fill(1);
for (const c of [0x08, 0x09, 0x0a, 0x0c, 0x0d]) U_ESCAPED[c] = 0;

/** Lowercase hex digit values, -1 for anything else (JSON.stringify writes \u001f, never \u001F). */
const HEX = new Int8Array(256).fill(-1);
for (let d = 0; d < 16; d++) HEX['0123456789abcdef'.charCodeAt(d)] = d;

/** Set by scanString: whether the string just scanned had only printable ASCII and no escape. */
let plain = true;

/** Index after the canonical string opening at b[i] (a quote), or -1. */
function scanString(b: Uint8Array, i: number, end: number): number {
  let p = true;
  i++;
  while (i < end) {
    const c = b[i++];
    if (c === 0x22) {
      plain = p;
      return i;
    }
    if (c < 0x20) return -1;
    if (c === 0x5c) {
      p = false;
      if (i >= end) return -1;
      const d = b[i++];
      if (SHORT_ESCAPE[d] === 1) continue;
      // \u00xx, lowercase, only for a control character that has no short escape
      if (d !== 0x75 || i + 4 > end || b[i] !== 0x30 || b[i + 1] !== 0x30) return -1;
      const hi = b[i + 2];
      const lo = HEX[b[i + 3]];
      if ((hi !== 0x30 && hi !== 0x31) || lo < 0 || U_ESCAPED[(hi - 0x30) * 16 + lo] !== 1) return -1;
      i += 4;
    } else if (c >= 0x80) p = false;
  }
  return -1;
}

/** The JS string a canonical JSON string token b[s, e) stands for. */
function decodeString(b: Uint8Array, s: number, e: number): string {
  return JSON.parse(Buffer.from(b.buffer, b.byteOffset + s, e - s).toString('utf8')) as string;
}

/**
 * Whether member name b[as, ae) sorts strictly before b[bs, be) (both string tokens with their quotes) by UTF-16
 * code units, as RFC 8785 section 3.2.3 orders them. Plain ASCII names compare byte by byte; others are decoded.
 */
function keyBefore(b: Uint8Array, as: number, ae: number, aPlain: boolean, bs: number, be: number, bPlain: boolean) {
  if (!aPlain || !bPlain) return decodeString(b, as, ae) < decodeString(b, bs, be);
  // the names between their quotes; a plain name is ASCII, where bytes are UTF-16 code units
  const la = ae - as - 2;
  const lb = be - bs - 2;
  const n = la < lb ? la : lb;
  for (let k = 1; k <= n; k++) {
    const x = b[as + k];
    const y = b[bs + k];
    if (x !== y) return x < y;
  }
  return la < lb;
}

/** Index after the canonical number at b[i], or -1. */
function scanNumber(b: Uint8Array, i: number, end: number): number {
  let j = i;
  while (j < end && NUMBER_BYTE[b[j]] === 1) j++;
  // the common cases, 0 and an integer of at most 15 digits without a leading zero, are canonical as they stand
  const k = b[i] === 0x2d ? i + 1 : i;
  if (k < j && j - k <= 15 && b[k] >= 0x31 && b[k] <= 0x39) {
    let d = k + 1;
    while (d < j && b[d] >= 0x30 && b[d] <= 0x39) d++;
    if (d === j) return j;
  } else if (j === i + 1 && b[i] === 0x30) return j;
  // anything else is canonical only if Number::toString gives back the same text (which is also valid JSON)
  const t = Buffer.from(b.buffer, b.byteOffset + i, j - i).toString('latin1');
  return String(Number(t)) === t ? j : -1;
}

function scanLiteral(b: Uint8Array, i: number, end: number, word: Uint8Array): number {
  if (i + word.length > end) return -1;
  for (let k = 1; k < word.length; k++) if (b[i + k] !== word[k]) return -1;
  return i + word.length;
}

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

/** Index after the canonical value at b[i], or -1. `depth` counts the containers around it. */
function scanValue(b: Uint8Array, i: number, end: number, depth: number): number {
  if (i >= end) return -1;
  const c = b[i];
  if (c === 0x22) return scanString(b, i, end);
  if (c === 0x7b) return scanObject(b, i, end, depth);
  if (c === 0x5b) return scanArray(b, i, end, depth);
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return scanNumber(b, i, end);
  if (c === 0x74) return scanLiteral(b, i, end, TRUE);
  if (c === 0x66) return scanLiteral(b, i, end, FALSE);
  if (c === 0x6e) return scanLiteral(b, i, end, NULL);
  return -1;
}

function scanObject(b: Uint8Array, i: number, end: number, depth: number): number {
  if (depth >= MAX_DEPTH) return -1;
  i++;
  if (i < end && b[i] === 0x7d) return i + 1;
  let prevStart = -1;
  let prevEnd = -1;
  let prevPlain = true;
  for (;;) {
    if (i >= end || b[i] !== 0x22) return -1;
    const ks = i;
    i = scanString(b, i, end);
    if (i < 0) return -1;
    const kPlain = plain;
    if (prevStart >= 0 && !keyBefore(b, prevStart, prevEnd, prevPlain, ks, i, kPlain)) return -1;
    prevStart = ks;
    prevEnd = i;
    prevPlain = kPlain;
    if (i >= end || b[i] !== 0x3a) return -1;
    i = scanValue(b, i + 1, end, depth + 1);
    if (i < 0 || i >= end) return -1;
    const c = b[i++];
    if (c === 0x7d) return i;
    if (c !== 0x2c) return -1;
  }
}

function scanArray(b: Uint8Array, i: number, end: number, depth: number): number {
  if (depth >= MAX_DEPTH) return -1;
  i++;
  if (i < end && b[i] === 0x5d) return i + 1;
  for (;;) {
    i = scanValue(b, i, end, depth + 1);
    if (i < 0 || i >= end) return -1;
    const c = b[i++];
    if (c === 0x5d) return i;
    if (c !== 0x2c) return -1;
  }
}

/**
 * Whether b[s, e) is exactly the RFC 8785 canonical form of a JSON object (see the file comment).
 * Precondition: b[s, e) is valid UTF-8.
 */
export function isCanonicalObject(b: Uint8Array, s: number, e: number): boolean {
  return s < e && b[s] === 0x7b && scanObject(b, s, e, 0) === e;
}

/**
 * Splits a JSON array of objects that are all in canonical form (whitespace allowed between them): the
 * [start, end) of each, or undefined when the body is anything else (not an array, empty, an element not
 * canonical, more than `maxParts` elements), which the caller then splits and checks the long way. One pass over
 * the bytes, for the common body. Precondition: b[start, end) is valid UTF-8.
 */
export function splitCanonicalArray(b: Uint8Array, start: number, end: number, maxParts: number): number[] | undefined {
  let i = skipWs(b, start, end);
  if (b[i] !== 0x5b) return undefined;
  i = skipWs(b, i + 1, end);
  const bounds: number[] = [];
  for (;;) {
    if (i >= end || b[i] !== 0x7b || bounds.length >= 2 * maxParts) return undefined;
    const e = scanObject(b, i, end, 0);
    if (e < 0) return undefined;
    bounds.push(i, e);
    i = skipWs(b, e, end);
    if (i >= end) return undefined;
    if (b[i] === 0x5d) return skipWs(b, i + 1, end) === end ? bounds : undefined;
    if (b[i] !== 0x2c) return undefined;
    i = skipWs(b, i + 1, end);
  }
}
