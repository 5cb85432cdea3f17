import { TlogError } from './errors.js';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** Standard base64 with padding (RFC 4648 section 4). */
export function b64encode(data: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < data.length; i += 3) {
    const n = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  const rest = data.length - i;
  if (rest === 1) {
    const n = data[i] << 16;
    out += B64[n >> 18] + B64[(n >> 12) & 63] + '==';
  } else if (rest === 2) {
    const n = (data[i] << 16) | (data[i + 1] << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + '=';
  }
  return out;
}

/**
 * Strict standard base64 with padding: rejects other alphabets, missing padding, whitespace and
 * non-canonical trailing bits, so one byte string has exactly one accepted encoding.
 */
export function b64decode(s: string, what = 'base64'): Uint8Array {
  if (typeof s !== 'string' || s.length % 4 !== 0) throw new TlogError('base64', `${what}: not padded standard base64`);
  let pad = 0;
  if (s.endsWith('==')) pad = 2;
  else if (s.endsWith('=')) pad = 1;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = s.charCodeAt(i + j);
      let v: number;
      if (c === 61 /* = */ && i + 4 === s.length && j >= 4 - pad) v = 0;
      else v = c < 128 ? B64_INDEX[c] : -1;
      if (v < 0) throw new TlogError('base64', `${what}: invalid base64 character at ${i + j}`);
      n = (n << 6) | v;
    }
    if (i + 4 === s.length && pad > 0) {
      if ((pad === 2 && (n & 0xffff) !== 0) || (pad === 1 && (n & 0xff) !== 0)) {
        throw new TlogError('base64', `${what}: non-canonical base64 padding bits`);
      }
      out[o++] = n >> 16;
      if (pad === 1) out[o++] = (n >> 8) & 0xff;
    } else {
      out[o++] = n >> 16;
      out[o++] = (n >> 8) & 0xff;
      out[o++] = n & 0xff;
    }
  }
  return out;
}

/** Lower-case hex encoding of `data`. */
export function hexEncode(data: Uint8Array): string {
  let s = '';
  for (const b of data) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * Decodes a hex string (either case). Precondition: none; throws TlogError('hex') naming `what` when `s` is not an
 * even-length hex string.
 */
export function hexDecode(s: string, what = 'hex'): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new TlogError('hex', `${what}: not an even-length hex string`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 encoding of `s` (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decodes UTF-8, throwing on invalid sequences rather than substituting U+FFFD. */
export function fromUtf8(data: Uint8Array, what = 'text'): string {
  try {
    return strictDecoder.decode(data);
  } catch {
    throw new TlogError('utf8', `${what}: invalid UTF-8`);
  }
}

/** Concatenates byte arrays into one new array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Byte equality (not constant time: everything compared here is public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
