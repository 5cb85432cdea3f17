/**
 * A pass over the raw bytes of a JSON body before anything is materialized. JSON.parse of a hostile body
 * (millions of `{}`, deep nesting) builds millions of heap objects at once; this scan counts containers and
 * commas (each costs at least one byte of canonical output, so their count bounds an entry's size) and depth
 * on the bytes, and finds the boundaries of a container's members, so that a batch is parsed one element
 * at a time and its memory is bounded by the largest element rather than the whole body.
 *
 * It does not validate JSON: every part it returns is parsed by JSON.parse afterwards, which does. It only
 * relies on the string rule (quote, then any escaped byte or non-quote, then quote), which holds in valid
 * JSON, so a body that passes the per-part parses has the structure the scan saw.
 */

/** A client mistake: the HTTP status and the message (thrown as a plain object, as in canon.ts). */
export interface ScanError {
  status: number;
  message: string;
}

/** JSON whitespace bytes (1), by byte value. */
export const WS = new Uint8Array(256);
WS[0x20] = WS[0x09] = WS[0x0a] = WS[0x0d] = 1;

/** The first index at or after `i` (below `end`) that is not JSON whitespace. */
export function skipWs(b: Uint8Array, i: number, end: number): number {
  while (i < end && WS[b[i]] === 1) i++;
  return i;
}

/** Bounds scanContainer enforces on a JSON value, and how its messages name it. */
export interface ScanLimits {
  /** Most nested containers, counting the scanned value itself. */
  maxDepth: number;
  /** Most containers and commas, within each part when splitting, else in the whole value. */
  maxTokens: number;
  /** Most parts (members or elements) when splitting. */
  maxParts: number;
  /** Names the value in messages ("the entry", "entries", "items"); `[i]` is appended for a part. */
  what: string;
  /** Names the unit of maxTokens in the 413 message, e.g. "(an entry's canonical form is at most 65,535 bytes)". */
  tokensWhy: string;
}

/** A JSON container found by scanContainer: its opening byte and the byte ranges of its parts. */
export interface Split {
  /** The container's opening byte: 0x5b `[` or 0x7b `{`. */
  open: number;
  /** Byte ranges of its members or elements, untrimmed: [start0, end0, start1, end1, ...]; empty when it has none. */
  bounds: number[];
}

/**
 * Scans the value in b[start, end) (surrounding whitespace allowed). When it is an array or object, returns
 * its opening byte and, with `split`, the ranges of its parts; returns undefined when it is a scalar (which
 * costs nothing to parse beyond its bytes). Throws ScanError: 400 for a structure that cannot be JSON
 * (unbalanced, trailing data) or nesting beyond maxDepth, 413 beyond maxTokens or maxParts.
 */
export function scanContainer(
  b: Uint8Array,
  start: number,
  end: number,
  limits: ScanLimits,
  split: boolean,
): Split | undefined {
  let i = skipWs(b, start, end);
  const open = b[i];
  if (open !== 0x5b && open !== 0x7b) return undefined;
  const { maxDepth, maxTokens, maxParts } = limits;
  const bounds: number[] = [];
  let depth = 1;
  let tokens = split ? 0 : 1;
  let partStart = ++i;
  let closed = -1;
  const partName = () => (split ? `${limits.what}[${bounds.length / 2}]` : limits.what);
  while (i < end) {
    const c = b[i++];
    if (c === 0x22) {
      while (i < end) {
        const d = b[i++];
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth)
        throw { status: 400, message: `${partName()} is nested deeper than ${maxDepth - (split ? 1 : 0)}` };
      if (++tokens > maxTokens) throw tooMany(partName(), limits);
    } else if (c === 0x5d || c === 0x7d) {
      if (--depth === 0) {
        if (c !== open + 2)
          throw {
            status: 400,
            message: `malformed JSON: ${String.fromCharCode(open)} closed by ${String.fromCharCode(c)}`,
          };
        closed = i;
        break;
      }
    } else if (c === 0x2c) {
      if (split && depth === 1) {
        bounds.push(partStart, i - 1);
        partStart = i;
        tokens = 0;
        if (bounds.length / 2 >= maxParts)
          throw { status: 413, message: `more than ${maxParts} ${limits.what} in one request` };
      } else if (++tokens > maxTokens) throw tooMany(partName(), limits);
    }
  }
  if (closed < 0) throw { status: 400, message: 'malformed JSON: unexpected end of the body' };
  if (skipWs(b, closed, end) !== end) throw { status: 400, message: 'malformed JSON: data after the end of the value' };
  if (split) {
    bounds.push(partStart, closed - 1);
    // `[]` and `{ }`: one part of whitespace only means none
    if (bounds.length === 2 && skipWs(b, bounds[0], bounds[1]) === bounds[1]) bounds.length = 0;
  }
  return { open, bounds };
}

function tooMany(name: string, limits: ScanLimits): ScanError {
  return {
    status: 413,
    message: `${name} holds more than ${limits.maxTokens} JSON arrays, objects and commas ${limits.tokensWhy}`,
  };
}
