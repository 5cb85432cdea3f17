/**
 * RFC 8785 JSON Canonicalization Scheme (JCS) via the `canonicalize` package, encoded as UTF-8.
 * Inputs are checked first to be plain JSON data, since the package otherwise drops or stringifies
 * undefined, functions, symbols and class instances silently.
 */
import canonicalize from 'canonicalize';
import { utf8 } from './encoding.js';
import { TlogError } from './errors.js';

/** JSON errors: code 'json'. */
export class JsonError extends TlogError {}

const MAX_DEPTH = 256;

function check(v: unknown, path: string, depth: number, seen: Set<object>): void {
  if (depth > MAX_DEPTH) throw new JsonError('json', `${path}: nested deeper than ${MAX_DEPTH}`);
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new JsonError('json', `${path}: ${v} is not a JSON number`);
    return;
  }
  if (v === undefined) throw new JsonError('json', `${path}: undefined is not JSON`);
  if (typeof v !== 'object') throw new JsonError('json', `${path}: a ${typeof v} is not JSON`);
  if (seen.has(v)) throw new JsonError('json', `${path}: circular reference`);
  seen.add(v);
  if (Array.isArray(v)) {
    v.forEach((x, i) => check(x, `${path}[${i}]`, depth + 1, seen));
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new JsonError('json', `${path}: ${proto?.constructor?.name ?? 'object'} instance is not plain JSON data`);
    }
    for (const [k, x] of Object.entries(v)) check(x, `${path}.${k}`, depth + 1, seen);
  }
  seen.delete(v);
}

/**
 * The RFC 8785 canonical form of a JSON object, as a string. Throws JsonError for anything but a plain JSON
 * object (arrays and scalars too, unless `allowNonObject`), undefined, functions, non-finite numbers, bigint,
 * class instances, cycles and lone surrogates.
 */
export function canonicalJsonString(value: unknown, opts: { allowNonObject?: boolean } = {}): string {
  if (!opts.allowNonObject && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : value === undefined ? 'undefined' : `a ${typeof value}`;
    throw new JsonError('json', `expected a JSON object, got ${kind}`);
  }
  check(value, '$', 0, new Set());
  let s: string | undefined;
  try {
    s = canonicalize(value);
  } catch (e) {
    throw new JsonError('json', `cannot canonicalize: ${(e as Error).message}`);
  }
  if (s === undefined) throw new JsonError('json', 'value has no JSON form');
  return s;
}

/** The RFC 8785 canonical UTF-8 bytes of a JSON object (see canonicalJsonString). */
export function canonicalJson(value: unknown, opts: { allowNonObject?: boolean } = {}): Uint8Array {
  return utf8(canonicalJsonString(value, opts));
}

/** Parses JSON text and returns the canonical bytes of the object it holds. */
export function canonicalizeJsonText(text: string, opts: { allowNonObject?: boolean } = {}): Uint8Array {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new JsonError('json', `invalid JSON: ${(e as Error).message}`);
  }
  return canonicalJson(v, opts);
}
