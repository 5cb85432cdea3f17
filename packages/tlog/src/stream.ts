// Streams (completeness): every event a proxy writes carries `stream: {id, seq, prev}`; `start`,
// `heartbeat` and `end` events are signed by the stream key over the message below, so a signature
// vouches for every event before it (through the `prev` chain of leaf hashes).
import { TlogError } from './errors.js';
import { utf8 } from './encoding.js';

/** Schema of every access event (`"schema"` member). */
export const ACCESS_SCHEMA = 'trailmark.access/v1';

/** The signed-message context string of stream signatures. */
export const STREAM_SIGNATURE_CONTEXT = 'trailmark.stream/v1';

/** The stages that carry a stream signature. */
export const SIGNED_STREAM_STAGES = ['heartbeat', 'end'] as const;

/** A stream position as an event carries it. */
export interface StreamPosition {
  /** Unique to this stream. */
  id: string;
  /** 0, 1, 2, … without holes. */
  seq: number;
  /** Base64 leaf hash of the same stream's event `seq - 1`; null for seq 0. */
  prev: string | null;
}

/** A stream field was malformed. */
export class StreamError extends TlogError {}

/**
 * The bytes a stream key signs for a heartbeat or end event at `pos`:
 * UTF-8 of `trailmark.stream/v1\n<id>\n<seq>\n<prev>\n` (`prev` as in the event, or `null`).
 * Precondition: `pos` passed {@link checkStreamPosition}.
 */
export function streamSignatureMessage(pos: StreamPosition): Uint8Array {
  return utf8(`${STREAM_SIGNATURE_CONTEXT}\n${pos.id}\n${pos.seq}\n${pos.prev === null ? 'null' : pos.prev}\n`);
}

const B64_HASH = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Checks that `v` is a well-formed stream position (id a non-empty string without newlines, seq a
 * non-negative safe integer, prev null exactly when seq is 0, else a base64 SHA-256 hash) and returns it.
 */
export function checkStreamPosition(v: unknown): StreamPosition {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new StreamError('stream-malformed', 'stream is not an object');
  const { id, seq, prev } = v as Record<string, unknown>;
  if (typeof id !== 'string' || id.length === 0 || id.includes('\n')) {
    throw new StreamError('stream-malformed', 'stream.id must be a non-empty string without newlines');
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new StreamError('stream-malformed', `stream.seq must be a non-negative integer, got ${JSON.stringify(seq)}`);
  }
  if (seq === 0 ? prev !== null : typeof prev !== 'string' || !B64_HASH.test(prev)) {
    throw new StreamError(
      'stream-malformed',
      seq === 0 ? 'stream.prev must be null at seq 0' : 'stream.prev must be a base64 SHA-256 leaf hash',
    );
  }
  return { id, seq, prev: prev as string | null };
}
