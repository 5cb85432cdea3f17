/**
 * RFC 8785 JSON Canonicalization Scheme (JCS), encoded as UTF-8.
 *
 * Written here rather than taken from the `canonicalize` package: leaf canonicalization is the largest
 * per-entry cost of the log's ingest, and the package needed a separate validation walk (it silently drops
 * or stringifies undefined, functions, symbols and class instances). This is one walk that validates and
 * serializes. RFC 8785's number form is ECMAScript's Number::toString and its string escaping is
 * JSON.stringify's, so both come from JSON.stringify; keys sort by UTF-16 code units, which is what
 * Array.prototype.sort does for strings. The tests hold it to the `canonicalize` package on random JSON.
 */
import { utf8 } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';

/** JSON errors: code 'json'. */
export class JsonError extends TlogError {}

const MAX_DEPTH = 256;

/** A failure deep in the walk; the path is filled in while unwinding, so success builds no path strings. */
class WalkError {
  readonly path: string[] = [];
  constructor(readonly reason: string) {}
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const wellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (s) => !LONE_SURROGATE.test(s);

/** Printable ASCII without '"' or '\\': the string is its own JSON form between quotes. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function quote(s: string): string {
  if (PLAIN.test(s)) return '"' + s + '"';
  if (!wellFormed(s)) throw new WalkError('a lone surrogate is not valid Unicode text (RFC 8785 rejects it)');
  return JSON.stringify(s);
}

function serialize(v: unknown, depth: number, open: object[]): string {
  switch (typeof v) {
    case 'string':
      return quote(v);
    case 'number':
      if (!Number.isFinite(v)) throw new WalkError(`${v} is not a JSON number`);
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      throw new WalkError('undefined is not JSON');
    case 'object':
      break;
    default:
      throw new WalkError(`a ${typeof v} is not JSON`);
  }
  if (v === null) return 'null';
  if (depth >= MAX_DEPTH) throw new WalkError(`nested deeper than ${MAX_DEPTH}`);
  if (open.includes(v)) throw new WalkError('circular reference');
  open.push(v);
  let out: string;
  if (Array.isArray(v)) {
    const parts = new Array<string>(v.length);
    for (let i = 0; i < v.length; i++) {
      try {
        parts[i] = serialize(v[i], depth + 1, open);
      } catch (e) {
        if (e instanceof WalkError) e.path.unshift(`[${i}]`);
        throw e;
      }
    }
    out = '[' + parts.join(',') + ']';
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new WalkError(`${proto?.constructor?.name ?? 'object'} instance is not plain JSON data`);
    }
    const keys = Object.keys(v).sort();
    const parts = new Array<string>(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      try {
        parts[i] = quote(k) + ':' + serialize((v as Record<string, unknown>)[k], depth + 1, open);
      } catch (e) {
        if (e instanceof WalkError) e.path.unshift(`.${k}`);
        throw e;
      }
    }
    out = '{' + parts.join(',') + '}';
  }
  open.pop();
  return out;
}

/**
 * The RFC 8785 canonical form of a JSON object, as a string. Throws JsonError naming the path for anything but a
 * plain JSON object (arrays and scalars too, unless `allowNonObject`), undefined, functions, non-finite
 * numbers, bigint, class instances, cycles and lone surrogates.
 */
export function canonicalJsonString(value: unknown, opts: { allowNonObject?: boolean } = {}): string {
  if (!opts.allowNonObject && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    const kind =
      value === null
        ? 'null'
        : Array.isArray(value)
          ? 'an array'
          : value === undefined
            ? 'undefined'
            : `a ${typeof value}`;
    throw new JsonError('json', `expected a JSON object, got ${kind}`);
  }
  try {
    return serialize(value, 0, []);
  } catch (e) {
    if (e instanceof WalkError) throw new JsonError('json', `$${e.path.join('')}: ${e.reason}`);
    throw e;
  }
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
    throw new JsonError('json', `invalid JSON: ${errorMessage(e)}`, { cause: e });
  }
  return canonicalJson(v, opts);
}
