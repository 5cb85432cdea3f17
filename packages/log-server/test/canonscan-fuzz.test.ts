/**
 * Differential fuzzing of the raw-bytes canonical check (canonscan.ts) and of prepareBatch against the reference
 * path: JSON.parse, then tlog's canonicalJsonString, with the log's limits. A false accept (bytes the check takes
 * as canonical that are not exactly the reference's output, or that the reference refuses) would put a leaf in
 * the log that the log's own rules would not have made; a false reject only costs speed.
 *
 * Inputs come from a seeded PRNG, so every run sees the same cases: canonical texts of random values, and texts
 * made from them by one or more mutations (key order, repeated keys, whitespace, escape forms, number forms,
 * nesting around the depth limit, top-level non-objects, lone surrogates, byte edits including invalid UTF-8).
 */
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { canonicalJsonString } from '@trailmark/tlog';
import { isCanonicalObject } from '../src/canonscan.js';
import {
  prepareBatch,
  prepareAuditEvents,
  MAX_ENTRY_BYTES,
  MAX_BATCH_ENTRIES,
  MAX_BATCH_BODY_BYTES,
} from '../src/canon.js';

/** mulberry32: a small seeded PRNG, uniform on [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// random values

const SPECIAL_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.1,
  0.5,
  1e21,
  1e20,
  123e18,
  1e-6,
  1e-7,
  1.5e-7,
  5e-324,
  -5e-324,
  2 ** 53,
  2 ** 53 - 1,
  2 ** 53 + 2,
  -(2 ** 53),
  1.7976931348623157e308,
  2.2250738585072014e-308,
  123456789012345,
  1234567890123456,
  999999999999999,
  1000000000000000,
  100,
  1e15,
  1e16,
  4.35,
  0.000001,
  333333333.3333333,
  1e300,
  9.999999999999999e22,
];

function randomNumber(g: Gen): number {
  switch (g.int(6)) {
    case 0:
      return g.pick(SPECIAL_NUMBERS);
    case 1:
      return g.int(1000) - 500;
    case 2:
      return (g.chance(0.5) ? -1 : 1) * Math.floor(g.rnd() * 10 ** g.int(18));
    case 3: {
      // any finite double, from random bits
      const dv = new DataView(new ArrayBuffer(8));
      for (;;) {
        dv.setUint32(0, g.int(2 ** 32));
        dv.setUint32(4, g.int(2 ** 32));
        const x = dv.getFloat64(0);
        if (Number.isFinite(x)) return x;
      }
    }
    case 4:
      return (g.rnd() - 0.5) * 10 ** (g.int(60) - 30);
    default:
      return Number((g.rnd() * 1000).toFixed(g.int(4)));
  }
}

/** Code units of many kinds: ASCII, the characters JSON escapes, non-ASCII BMP, astral pairs, rarely a lone surrogate. */
function randomString(g: Gen, maxLen: number, loneSurrogates: boolean): string {
  const n = g.int(maxLen + 1);
  let s = '';
  for (let k = 0; k < n; k++) {
    switch (g.int(12)) {
      case 0:
      case 1:
      case 2:
        s += String.fromCharCode(0x61 + g.int(26));
        break;
      case 3:
        s += String.fromCharCode(0x20 + g.int(95));
        break;
      case 4:
        s += String.fromCharCode(g.int(0x20));
        break;
      case 5:
        s += g.pick(['"', '\\', '/', '\x7f', '\b', '\t', '\n', '\f', '\r', '\x0b', '\x00', '\x1f']);
        break;
      case 6:
        s += String.fromCharCode(0x80 + g.int(0x780)); // 2-byte UTF-8
        break;
      case 7:
        s += g.pick(['é', 'ü', '中', '\u2028', '\u2029', '\ufeff', '\uffff', '\ufffd', '\ue000', '\u0800', '\ud7ff']);
        break;
      case 8:
        s += String.fromCharCode(0x800 + g.int(0xd000)); // 3-byte UTF-8, below the surrogates
        break;
      case 9: {
        const cp = 0x10000 + g.int(0x100000); // astral: a surrogate pair
        s += String.fromCodePoint(cp);
        break;
      }
      case 10:
        s += g.pick(['😀', '\u{10ffff}', '\u{10000}', '𝄞']);
        break;
      default:
        if (loneSurrogates && g.chance(0.2)) s += String.fromCharCode(0xd800 + g.int(0x800));
        else s += String.fromCharCode(0x30 + g.int(10));
    }
  }
  return s;
}

/** Keys drawn from a small pool (so siblings share prefixes and collide) or random. */
const KEY_POOL = [
  '',
  'a',
  'b',
  'A',
  'aa',
  'ab',
  'a ',
  'a!',
  'a\x7f',
  '_',
  '10',
  '9',
  '1',
  '__proto__',
  'constructor',
  'é',
  'e\u0301',
  '\ue000',
  '\uffff',
  '😀',
  '\ud83d',
  '\ude00',
  '"',
  '\\',
  '/',
  '\n',
  '\x1f',
  ' ',
  'kind',
  'apiVersion',
];

function randomKey(g: Gen, lone: boolean): string {
  if (g.chance(0.5)) {
    const k = g.pick(KEY_POOL);
    // the lone surrogates in the pool only when asked for
    if (!lone && !k.isWellFormed()) return 'z';
    return k;
  }
  return randomString(g, 6, lone);
}

type J = null | boolean | number | string | J[] | { [k: string]: J };

function randomValue(g: Gen, depth: number, lone: boolean): J {
  const r = g.int(depth > 4 ? 6 : 10);
  switch (r) {
    case 0:
      return null;
    case 1:
      return g.chance(0.5);
    case 2:
    case 3:
      return randomNumber(g);
    case 4:
    case 5:
      return randomString(g, 12, lone);
    case 6:
    case 7: {
      const a: J[] = [];
      const n = g.int(5);
      for (let k = 0; k < n; k++) a.push(randomValue(g, depth + 1, lone));
      return a;
    }
    default:
      return randomObject(g, depth + 1, lone);
  }
}

function randomObject(g: Gen, depth: number, lone: boolean): { [k: string]: J } {
  const o: { [k: string]: J } = {};
  const n = g.int(6);
  for (let k = 0; k < n; k++) {
    const key = randomKey(g, lone);
    const x = randomValue(g, depth, lone);
    // a plain own data property even for "__proto__", as JSON.parse makes it
    if (key === '__proto__')
      Object.defineProperty(o, key, { value: x, enumerable: true, writable: true, configurable: true });
    else o[key] = x;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// serializing with mutations

type Mutation = 'ws' | 'order' | 'dup' | 'escape' | 'number' | 'exotic-ws';

/** Each mutation class the serializer can apply, and how often it did (for the coverage checks). */
const applied: Record<Mutation | 'bytes' | 'nesting' | 'toplevel' | 'lone', number> = {
  ws: 0,
  order: 0,
  dup: 0,
  escape: 0,
  number: 0,
  'exotic-ws': 0,
  bytes: 0,
  nesting: 0,
  toplevel: 0,
  lone: 0,
};

const hex4 = (c: number) => c.toString(16).padStart(4, '0');

/** A JSON string token for `s`, each code unit written canonically or (with probability p) another way. */
function emitString(g: Gen, s: string, p: number): string {
  if (p === 0 || !g.chance(p * 4)) return JSON.stringify(s);
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const canon = JSON.stringify(s[k]).slice(1, -1);
    if (!g.chance(0.3)) {
      out += canon;
      continue;
    }
    applied.escape++;
    switch (g.int(7)) {
      case 0:
        out += '\\u' + hex4(c); // lowercase \u escape of any unit (é, A, a surrogate half...)
        break;
      case 1:
        out += '\\u' + hex4(c).toUpperCase();
        break;
      case 2:
        out += c === 0x2f ? '\\/' : c < 0x20 ? s[k] : canon; // \/, or a raw control character (invalid JSON)
        break;
      case 3: {
        const short: Record<number, string> = {
          8: '\\u0008',
          9: '\\u0009',
          10: '\\u000a',
          12: '\\u000c',
          13: '\\u000d',
        };
        out += short[c] ?? '\\u' + hex4(c);
        break;
      }
      case 4:
        out += g.pick(['\\/', '\\u002f', '\\a', '\\x41', '\\u00', '\\U0041', '\\u007f', '\\u001F', '\\', '\\u0000']);
        break;
      case 5:
        out += c === 0x22 ? '\\u0022' : c === 0x5c ? '\\u005c' : canon;
        break;
      default:
        out += canon;
    }
  }
  return out + '"';
}

/** Another text for the number x: most are valid JSON for the same value but not its canonical form. */
function emitNumber(g: Gen, x: number, p: number): string {
  const canon = JSON.stringify(x);
  if (p === 0 || !g.chance(p * 4)) return canon;
  applied.number++;
  const alts = [
    x.toExponential(),
    x.toExponential().replace('e+', 'e'),
    x.toExponential().toUpperCase(),
    x.toPrecision(17),
    x.toPrecision(21),
    Math.abs(x) < 1e21 ? x.toFixed(g.int(5)) : canon,
    canon + '.0',
    canon.includes('.') ? canon + '0' : canon + '.',
    canon.replace('e', 'E'),
    canon.replace('e+', 'e'),
    canon.replace(/^(-?)/, '$10'),
    canon.replace(/^-?/, '+'),
    '-' + canon,
    canon + 'e0',
    canon + 'e+0',
    canon + 'e-0',
    canon.replace(/^(-?)0\./, '$1.'),
    Object.is(x, 0) ? '-0' : canon,
    g.pick([
      '-0',
      '-0.0',
      '0.0',
      '00',
      '1e400',
      '-1e400',
      '1e-400',
      '1E21',
      '1e21',
      '1e+21',
      '1e+021',
      '100000000000000000000',
      '1000000000000000000000',
      '9007199254740993',
      '12345678901234567',
      '0.1e1',
      '1.',
      '.5',
      '-',
      '--1',
      '0x10',
      'NaN',
      'Infinity',
      '1_000',
      '0e0',
      '5e-324',
      '4.9e-324',
      '2e-324',
      '1e-7',
      '0.0000001',
      '1234567890123456',
      '123456789012345',
      '1234567890123456789012',
    ]),
  ];
  return g.pick(alts);
}

const WS_CHARS = [' ', '\t', '\n', '\r', '  ', '\r\n'];
const EXOTIC_WS = ['\f', '\v', '\u00a0', '\ufeff', '\u2028', '\u3000', '\x00'];

function ws(g: Gen, p: number): string {
  if (p === 0 || !g.chance(p)) return '';
  if (g.chance(0.15)) {
    applied['exotic-ws']++;
    return g.pick(EXOTIC_WS);
  }
  applied.ws++;
  return g.pick(WS_CHARS);
}

/** Sorted by UTF-16 code units, as canonicalization sorts. */
const sortedKeys = (o: object) => Object.keys(o).sort();

/** Text for v, canonical when p = 0; with p > 0 each construct is written another way with about that chance. */
function emit(g: Gen, v: J, p: number): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return emitNumber(g, v, p);
  if (typeof v === 'string') return emitString(g, v, p);
  if (Array.isArray(v)) {
    return '[' + ws(g, p) + v.map((x) => emit(g, x, p) + ws(g, p)).join(',' + ws(g, p)) + ']';
  }
  const keys = sortedKeys(v);
  if (p > 0 && keys.length >= 2 && g.chance(p * 3)) {
    applied.order++;
    const k = g.int(keys.length - 1);
    [keys[k], keys[k + 1]] = [keys[k + 1], keys[k]];
  }
  const members = keys.map((k) => [k, v[k]] as [string, J]);
  if (p > 0 && members.length >= 1 && g.chance(p * 3)) {
    // the same name twice, side by side (sorted but not strictly) or elsewhere
    applied.dup++;
    const k = g.int(members.length);
    const twin: [string, J] = [members[k][0], g.chance(0.5) ? members[k][1] : randomValue(g, 5, false)];
    members.splice(g.chance(0.7) ? k + 1 : g.int(members.length + 1), 0, twin);
  }
  return (
    '{' +
    ws(g, p) +
    members
      .map(([k, x]) => emitString(g, k, p) + ws(g, p) + ':' + ws(g, p) + emit(g, x, p) + ws(g, p))
      .join(',' + ws(g, p)) +
    '}'
  );
}

/** Bytes that matter to the scanner, to write over, insert or delete. */
const INTERESTING = Buffer.from('{}[],:"\\0123456789-+.eE \t\n\r\f\vtrunfalsx/u');
const HIGH = [
  0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc3, 0xa9, 0xed, 0xa0, 0xef, 0xbb, 0xbf, 0xf0, 0xf4, 0xf5, 0xff,
];

/** A few byte edits: overwrite, insert, delete, duplicate a slice, truncate; some leave invalid UTF-8. */
function mutateBytes(g: Gen, b: Buffer): Buffer {
  applied.bytes++;
  let out = Buffer.from(b);
  const edits = 1 + g.int(3);
  for (let k = 0; k < edits; k++) {
    const at = g.int(out.length + 1);
    const byte = g.chance(0.8) ? INTERESTING[g.int(INTERESTING.length)] : g.pick(HIGH);
    switch (g.int(6)) {
      case 0:
        if (at < out.length) out[at] = byte;
        break;
      case 1:
        out = Buffer.concat([out.subarray(0, at), Buffer.from([byte]), out.subarray(at)]);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
        break;
      case 3: {
        const len = 1 + g.int(8);
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + len), out.subarray(at)]);
        break;
      }
      case 4:
        out = out.subarray(0, Math.max(1, at));
        break;
      default: {
        // a surrogate, encoded (invalid UTF-8) or as an escape (valid JSON, not Unicode text)
        const lone = g.chance(0.5)
          ? Buffer.from([0xed, 0xa0 + g.int(0x20), 0x80 + g.int(0x40)])
          : Buffer.from('\\ud800');
        out = Buffer.concat([out.subarray(0, at), lone, out.subarray(at)]);
      }
    }
  }
  return out;
}

/** Containers nested `depth` deep around a scalar, canonical; the check and canonicalization allow 256. */
function nested(g: Gen, depth: number): string {
  let inner = emit(g, randomValue(g, 9, false), 0);
  for (let d = depth - 1; d >= 0; d--) {
    if (d === 0 || g.chance(0.5)) {
      const k = JSON.stringify(g.pick(['a', 'b', '', 'é']));
      // U+FFFF sorts after every other name here, so each level stays canonical
      inner = g.chance(0.3) ? `{${k}:${inner},"\uffff":1}` : `{${k}:${inner}}`;
    } else inner = g.chance(0.3) ? `[0,${inner}]` : `[${inner}]`;
  }
  return inner;
}

/** One candidate element: mostly canonical objects and mutations of them. */
function candidate(g: Gen): Buffer {
  const r = g.int(20);
  if (r === 0) {
    applied.nesting++;
    return Buffer.from(nested(g, g.pick([1, 2, 100, 254, 255, 256, 257, 258])));
  }
  if (r === 1) {
    // not an object at the top
    applied.toplevel++;
    return Buffer.from(emit(g, randomValue(g, 3, false), g.chance(0.5) ? 0 : 0.1));
  }
  const lone = r === 2;
  const v = randomObject(g, 0, lone);
  if (lone) applied.lone++;
  if (r < 8) return Buffer.from(emit(g, v, 0)); // canonical (or carrying a lone surrogate's \u escape)
  if (r < 16) return Buffer.from(emit(g, v, [0.02, 0.05, 0.15][g.int(3)]));
  return mutateBytes(g, Buffer.from(emit(g, v, g.chance(0.7) ? 0 : 0.05)));
}

// ---------------------------------------------------------------------------------------------------------------
// the reference path

type Ref = { ok: true; text: string } | { ok: false; status: number };

/** What the reference path makes of one element's bytes, taken alone (its size is checked by the caller). */
function refEntry(b: Buffer): Ref {
  if (!isUtf8(b)) return { ok: false, status: 400 };
  let v: unknown;
  try {
    v = JSON.parse(b.toString('utf8'));
  } catch {
    return { ok: false, status: 400 };
  }
  return refValue(v);
}

function refValue(v: unknown): Ref {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, status: 400 };
  try {
    return { ok: true, text: canonicalJsonString(v) };
  } catch {
    return { ok: false, status: 400 };
  }
}

/** What the reference path makes of a whole add-entries body: the canonical texts, or the status refusing it. */
function refBatch(body: Buffer): { ok: true; texts: string[] } | { ok: false; status: number } {
  if (body.length === 0 || !isUtf8(body)) return { ok: false, status: 400 };
  const start = body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8', start));
  } catch {
    return { ok: false, status: 400 };
  }
  if (!Array.isArray(v) || v.length === 0) return { ok: false, status: 400 };
  if (v.length > MAX_BATCH_ENTRIES) return { ok: false, status: 413 };
  const texts: string[] = [];
  let total = 0;
  for (const x of v) {
    const r = refValue(x);
    if (!r.ok) return r;
    if (Buffer.byteLength(r.text) > MAX_ENTRY_BYTES) return { ok: false, status: 413 };
    texts.push(r.text);
    total += Buffer.byteLength(r.text) + 1;
    if (total > MAX_BATCH_BODY_BYTES + v.length) return { ok: false, status: 413 };
  }
  return { ok: true, texts };
}

const leafHash = (leaf: Uint8Array) =>
  createHash('sha256')
    .update(Buffer.from([0]))
    .update(leaf)
    .digest();

/** Fails with the message made only now: the checks run hundreds of thousands of times. */
function check(ok: boolean, msg: () => string): void {
  if (!ok) expect.fail(msg());
}

/** prepareBatch(body) must give the reference path's leaves and hashes, or refuse with its status. */
function checkBatch(body: Buffer): boolean {
  const want = refBatch(body);
  let got: ReturnType<typeof prepareBatch>;
  try {
    got = prepareBatch(body);
  } catch (e) {
    const status = (e as { status?: number }).status;
    check(typeof status === 'number', () => `prepareBatch threw ${String((e as Error).stack ?? e)}`);
    check(!want.ok, () => `prepareBatch refused (${status}) what the reference accepts: ${show(body)}`);
    check(
      want.ok || want.status === status,
      () => `status ${status}, the reference's ${JSON.stringify(want)}: ${show(body)}`,
    );
    return false;
  }
  check(want.ok, () => `prepareBatch accepted what the reference refuses (${JSON.stringify(want)}): ${show(body)}`);
  if (!want.ok) return false;
  check(got.offsets.length === want.texts.length + 1, () => `${got.offsets.length - 1} leaves: ${show(body)}`);
  let o = 0;
  want.texts.forEach((t, i) => {
    const leaf = Buffer.from(t, 'utf8');
    const gotLeaf = Buffer.from(got.data.subarray(o + 1, got.offsets[i + 1]));
    check(got.offsets[i] === o && got.data[o] === 0, () => `leaf ${i} offset/prefix: ${show(body)}`);
    check(gotLeaf.equals(leaf), () => `leaf ${i} of ${show(body)}: ${show(gotLeaf)} != ${show(leaf)}`);
    const h = Buffer.from(got.hashes.buffer, got.hashes.byteOffset + 32 * i, 32);
    check(h.equals(leafHash(leaf)), () => `hash ${i} of ${show(body)}`);
    o += 1 + leaf.length;
  });
  check(got.offsets[want.texts.length] === o && got.data.length === o, () => `packed size: ${show(body)}`);
  return true;
}

/** Bytes for a failure message: JSON-escaped where valid UTF-8, else hex; long ones cut. */
function show(b: Uint8Array): string {
  const buf = Buffer.from(b);
  const s = isUtf8(buf) ? JSON.stringify(buf.toString('utf8')) : 'hex:' + buf.toString('hex');
  return s.length > 400 ? s.slice(0, 400) + `... (${buf.length} bytes)` : s;
}

/** The scanner's verdict on b, checked against the reference; true when the scanner accepted. */
function checkEntry(g: Gen, b: Buffer): boolean {
  // precondition of the check: valid UTF-8 (prepareBatch refuses anything else before any scan)
  if (!isUtf8(b)) return false;
  const fast = isCanonicalObject(b, 0, b.length);
  // within a larger buffer, only b[s, e) counts: bytes around it never change the answer
  const pre = Buffer.from(g.pick(['', '[', '{"x":', ' ', '"', '\\']));
  const post = Buffer.from(g.pick(['', ']', '}', ',{}', '0', '"', ' ', 'e5', '.5']));
  const wide = Buffer.concat([pre, b, post]);
  check(isCanonicalObject(wide, pre.length, pre.length + b.length) === fast, () => `in a range: ${show(wide)}`);
  if (fast) {
    const ref = refEntry(b);
    // (the scanner has no size limit of its own: packParts applies 65,535 to what it accepts)
    check(ref.ok, () => `isCanonicalObject accepted ${show(b)}, which the reference refuses`);
    if (ref.ok)
      check(
        ref.text === b.toString('utf8'),
        () => `isCanonicalObject accepted ${show(b)}; reference: ${show(Buffer.from(ref.text))}`,
      );
  }
  return fast;
}

/** Bodies around elements: JSON whitespace, sometimes a BOM, sometimes other bytes around or between them. */
function body(g: Gen, elements: Buffer[]): Buffer {
  const sep = () => Buffer.from(g.chance(0.8) ? '' : g.pick([' ', '\n', '\t', '\r\n ', '\f', '\u00a0', '\ufeff']));
  const parts: Buffer[] = [];
  if (g.chance(0.05)) parts.push(Buffer.from([0xef, 0xbb, 0xbf]));
  parts.push(sep(), Buffer.from(g.chance(0.98) ? '[' : g.pick(['{', '', '[['])), sep());
  elements.forEach((e, i) => {
    if (i > 0) parts.push(sep(), Buffer.from(g.chance(0.98) ? ',' : g.pick([',,', '', ';'])), sep());
    parts.push(e);
  });
  parts.push(sep(), Buffer.from(g.chance(0.98) ? ']' : g.pick([',]', ']]', '', '],'])), sep());
  return Buffer.concat(parts);
}

describe('canonscan fuzz: the raw-bytes check against parse + canonicalize (seeded)', function () {
  this.timeout(120_000);

  it('never accepts an element that is not exactly its reference canonical form (20,000 elements)', () => {
    const g = new Gen(prng(0x8785));
    let accepted = 0;
    let valid = 0;
    const N = 20_000;
    for (let k = 0; k < N; k++) {
      const b = candidate(g);
      if (checkEntry(g, b)) accepted++;
      if (refEntry(b).ok) valid++;
    }
    // the run is only worth something if it sees plenty of both answers
    expect(accepted, 'accepted').to.be.greaterThan(N / 4);
    expect(N - accepted, 'refused').to.be.greaterThan(N / 4);
    expect(valid - accepted, 'valid JSON objects refused for not being canonical').to.be.greaterThan(N / 20);
    for (const [m, n] of Object.entries(applied)) expect(n, `mutation class ${m} applied`).to.be.greaterThan(50);
  });

  it('prepareBatch gives the reference leaves and hashes, or refuses with its status (5,000 bodies)', () => {
    const g = new Gen(prng(0x5eed));
    let ok = 0;
    const N = 5_000;
    for (let k = 0; k < N; k++) {
      const n = 1 + g.int(6);
      const els: Buffer[] = [];
      // mostly canonical elements, so that many bodies take the one-pass path and the others are near misses
      for (let i = 0; i < n; i++)
        els.push(g.chance(0.7) ? Buffer.from(emit(g, randomObject(g, 0, false), 0)) : candidate(g));
      if (checkBatch(body(g, els))) ok++;
    }
    expect(ok, 'bodies accepted').to.be.greaterThan(N / 4);
    expect(N - ok, 'bodies refused').to.be.greaterThan(N / 10);
  });

  it('bodies over 64 KiB (split by the scan before parsing) give the same leaves or status too', () => {
    const g = new Gen(prng(0xb16));
    for (let k = 0; k < 60; k++) {
      const els: Buffer[] = [];
      let size = 0;
      while (size < 70_000) {
        const e = g.chance(0.1)
          ? Buffer.from(`{"pad":${JSON.stringify(randomString(g, 2000, false))}}`)
          : g.chance(0.8)
            ? Buffer.from(emit(g, randomObject(g, 0, false), 0))
            : candidate(g);
        els.push(e);
        size += e.length + 1;
      }
      checkBatch(body(g, els));
    }
  });

  it('systematic: every escape form of every code unit below U+0100, of surrogates and of a few others', () => {
    const g = new Gen(prng(1));
    const units = [
      ...Array(0x100).keys(),
      0x2028,
      0x2029,
      0xd800,
      0xdbff,
      0xdc00,
      0xdfff,
      0xfeff,
      0xffff,
      0x7ff,
      0x800,
    ];
    const forms = (c: number) => {
      const h = hex4(c);
      const out = ['\\u' + h, '\\u' + h.toUpperCase(), '\\u' + h.slice(0, 3) + h[3].toUpperCase()];
      if (c >= 0x20 && c < 0xd800)
        out.push(String.fromCharCode(c)); // raw (a raw control unit is invalid JSON)
      else if (c < 0x20) out.push(String.fromCharCode(c));
      const short = '"\\/bfnrtu0aUx \''.split('');
      if (c < short.length) out.push('\\' + short[c]);
      return out;
    };
    let accepted = 0;
    for (const c of units) {
      for (const f of forms(c)) {
        for (const t of [`{"a":"${f}"}`, `{"${f}":1}`, `{"a":"x${f}y"}`, `{"${f}":1,"${f}x":2}`, `{"a":1,"${f}":2}`]) {
          const b = Buffer.from(t);
          if (checkEntry(g, b)) accepted++;
        }
      }
    }
    // pairs of a high surrogate escape and a low one, lowercase and uppercase: the escapes are never canonical
    for (const t of ['{"a":"\\ud83d\\ude00"}', '{"a":"\\uD83D\\uDE00"}', '{"\\ud83d\\ude00":1}', '{"a":"\\ud83d"}']) {
      if (checkEntry(g, Buffer.from(t))) accepted++;
    }
    expect(accepted).to.be.greaterThan(100);
  });

  it('systematic: every number text of up to 4 characters over 0 1 5 9 - + . e E, and near the 15-digit shortcut', () => {
    const g = new Gen(prng(2));
    const alphabet = '0159-+.eE'.split('');
    let texts = [''];
    const all: string[] = [];
    for (let len = 1; len <= 4; len++) {
      texts = texts.flatMap((t) => alphabet.map((c) => t + c));
      all.push(...texts);
    }
    for (let d = 13; d <= 18; d++) {
      for (const lead of ['1', '9', '0']) {
        const digits = lead + '0'.repeat(d - 1);
        all.push(digits, '-' + digits, digits.slice(0, -1) + '1', '9'.repeat(d), '-' + '9'.repeat(d));
      }
    }
    all.push(
      '9007199254740992',
      '9007199254740993',
      '-9007199254740993',
      '1e21',
      '1e+21',
      '1e20',
      '100000000000000000000',
    );
    let accepted = 0;
    for (const n of all) {
      for (const t of [`{"a":${n}}`, `{"a":[${n}]}`, `{"a":[${n},1]}`, `{"a":${n},"b":1}`]) {
        if (checkEntry(g, Buffer.from(t))) accepted++;
      }
    }
    expect(accepted).to.be.greaterThan(100);
  });

  it('systematic: every pair of tricky member names in both orders, and JSON whitespace or other bytes at every position', () => {
    const g = new Gen(prng(3));
    const decoded = [
      ...KEY_POOL.filter((k) => k.isWellFormed()),
      'a\u0000',
      '\ud7ff',
      '\uffff\uffff',
      'ab\u00e9',
      'Z',
      '~',
    ];
    let accepted = 0;
    for (const a of decoded) {
      for (const b of decoded) {
        const t = `{${JSON.stringify(a)}:1,${JSON.stringify(b)}:2}`;
        if (checkEntry(g, Buffer.from(t))) accepted++;
        const u = `{"k":{${JSON.stringify(a)}:[],${JSON.stringify(b)}:{}},"l":0}`;
        if (checkEntry(g, Buffer.from(u))) accepted++;
      }
    }
    expect(accepted).to.be.greaterThan(decoded.length);
    const sample = '{"":null,"a":[1,-2.5,"x\\ny",{"b":true,"é":false}],"z":{"":{}}}';
    expect(checkEntry(g, Buffer.from(sample))).to.equal(true);
    for (let at = 0; at <= sample.length; at++) {
      for (const w of [' ', '\t', '\n', '\r', '\f', '\v', '\u00a0', '\ufeff', '\u2028', '\x00', ',', ':', '"', '\\']) {
        checkEntry(g, Buffer.from(sample.slice(0, at) + w + sample.slice(at)));
        checkBatch(Buffer.from('[' + sample.slice(0, at) + w + sample.slice(at) + ']'));
      }
      checkEntry(g, Buffer.from(sample.slice(0, at) + sample.slice(at + 1)));
      checkEntry(g, Buffer.from(sample.slice(0, at)));
    }
  });

  it('k8s audit EventList items: the same leaves as parse + canonicalize, or refused (1,500 bodies)', () => {
    const g = new Gen(prng(0x8a5));
    let ok = 0;
    for (let k = 0; k < 1_500; k++) {
      const els: Buffer[] = [];
      const n = g.int(5);
      for (let i = 0; i < n; i++)
        els.push(g.chance(0.7) ? Buffer.from(emit(g, randomObject(g, 0, false), 0)) : candidate(g));
      const items = els.length === 0 && g.chance(0.5) ? Buffer.from('null') : body(g, els);
      const b = Buffer.concat([
        Buffer.from('{"apiVersion":"audit.k8s.io/v1","items":'),
        items,
        Buffer.from(g.chance(0.5) ? ',"kind":"EventList"}' : ',"kind":"EventList","metadata":{}}'),
      ]);
      // the reference: the whole body parsed, then each item canonicalized as an entry
      let want: string[] | undefined;
      try {
        if (!isUtf8(b)) throw new Error('not UTF-8');
        const v = JSON.parse(b.toString('utf8')) as { items: unknown };
        const list = v.items === null ? [] : (v.items as unknown[]);
        if (!Array.isArray(list)) throw new Error('items');
        want = list.map((x) => {
          const r = refValue(x);
          if (!r.ok || Buffer.byteLength(r.text) > MAX_ENTRY_BYTES) throw new Error('item');
          return r.text;
        });
      } catch {
        want = undefined;
      }
      let got: ReturnType<typeof prepareAuditEvents> | undefined;
      try {
        got = prepareAuditEvents(b);
      } catch (e) {
        check(typeof (e as { status?: number }).status === 'number', () => `threw ${String(e)}`);
      }
      check((got === undefined) === (want === undefined), () => `accepted ${got !== undefined}: ${show(b)}`);
      if (got === undefined || want === undefined) continue;
      ok++;
      check(got.offsets.length === want.length + 1, () => `leaf count: ${show(b)}`);
      want.forEach((t, i) => {
        const leaf = Buffer.from(got.data.subarray(got.offsets[i] + 1, got.offsets[i + 1]));
        check(leaf.equals(Buffer.from(t)), () => `item ${i} of ${show(b)}: ${show(leaf)}`);
        const h = Buffer.from(got.hashes.buffer, got.hashes.byteOffset + 32 * i, 32);
        check(h.equals(leafHash(leaf)), () => `hash ${i} of ${show(b)}`);
      });
    }
    expect(ok).to.be.greaterThan(300);
  });

  it('limits: entry size, nesting and count, at and around each bound', () => {
    const g = new Gen(prng(7));
    const padTo = (n: number, ch: string) => {
      // {"a":"xxx..."} of exactly n canonical bytes, the padding written as `ch` (one canonical code point)
      const unit = Buffer.byteLength(ch);
      const room = n - 8;
      const reps = Math.floor(room / unit);
      return Buffer.from('{"a":"' + ch.repeat(reps) + 'x'.repeat(room - reps * unit) + '"}');
    };
    for (const n of [MAX_ENTRY_BYTES - 1, MAX_ENTRY_BYTES, MAX_ENTRY_BYTES + 1]) {
      for (const ch of ['x', 'é', '中', '😀', '\\n', '\\u001f']) {
        const e = padTo(n, ch);
        checkEntry(g, e);
        checkBatch(body(g, [Buffer.from('{}'), e]));
      }
    }
    // a body over 64 KiB takes another way when an element is not canonical: the same limits hold there
    // (one faulty element per body: with two, that way may name the later one first, as it did before canonscan)
    const pad = '{"pad":"' + 'p'.repeat(40_000) + '"},{"pad":"' + 'q'.repeat(40_000) + '"}';
    for (let d = 250; d <= 260; d++) {
      const e = Buffer.from(nested(g, d));
      // canonical at any depth the reference allows (256 containers, counting the entry itself)
      expect(checkEntry(g, e), `depth ${d}`).to.equal(d <= 256 && refEntry(e).ok);
      for (const t of [`[${e}]`, `[{},${e}]`, `[${pad},${e}]`, `[${e},${pad}]`, `[${e},${pad},{"a":1.0}]`])
        checkBatch(Buffer.from(t));
    }
    for (const n of [MAX_ENTRY_BYTES, MAX_ENTRY_BYTES + 1]) {
      const e = padTo(n, 'é');
      for (const t of [`[${pad},${e}]`, `[${e},${pad}]`, `[{"a":1.0},${pad},${e}]`]) checkBatch(Buffer.from(t));
    }
    for (const n of [MAX_BATCH_ENTRIES - 1, MAX_BATCH_ENTRIES, MAX_BATCH_ENTRIES + 1]) {
      checkBatch(Buffer.from('[' + new Array(n).fill('{"a":1}').join(',') + ']'));
      checkBatch(Buffer.from('[' + new Array(n).fill('{"a":1.0}').join(',') + ']'));
    }
  });
});
