/**
 * The body of a C2SP tlog-witness v1.0.0 `add-checkpoint` request: "old <N>\n", up to 63 base64 hash lines
 * (the consistency proof from N to the checkpoint's size), an empty line, then the checkpoint note. One
 * formatter for the log that sends it and one parser for the witness that receives it.
 */
import { errorMessage } from './errors.js';
import { b64decode, b64encode } from './encoding.js';
import type { Hash } from './hash.js';

/** At most 63 proof lines (tlog-witness). */
export const MAX_PROOF_LINES = 63;

/** A parsed add-checkpoint request. */
export interface AddCheckpointRequest {
  oldSize: bigint;
  proof: Hash[];
  note: string;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** Writes an add-checkpoint body. Precondition: oldSize >= 0, at most MAX_PROOF_LINES 32-byte hashes. */
export function formatAddCheckpoint(req: { oldSize: bigint; proof: readonly Hash[]; note: string }): string {
  return `old ${req.oldSize}\n` + req.proof.map((h) => b64encode(h) + '\n').join('') + '\n' + req.note;
}

/**
 * Parses an add-checkpoint body: "old <N>\n", up to 63 base64 hash lines, an empty line, the checkpoint note.
 * Precondition: none; returns a string saying what is malformed instead of throwing.
 */
export function parseAddCheckpoint(body: string): AddCheckpointRequest | string {
  const nl = body.indexOf('\n');
  if (nl < 0) return 'body has no old size line';
  const first = body.slice(0, nl);
  if (!first.startsWith('old ')) return 'first line must be "old <size>"';
  const sizeText = first.slice(4);
  if (!DECIMAL.test(sizeText) || sizeText.length > 20)
    return `old size ${JSON.stringify(sizeText.slice(0, 30))} is not a decimal without leading zeros`;
  const oldSize = BigInt(sizeText);
  if (oldSize >= 1n << 64n) return 'old size exceeds 2^64-1';
  const proof: Hash[] = [];
  let pos = nl + 1;
  for (;;) {
    const e = body.indexOf('\n', pos);
    if (e < 0) return 'missing empty line before the checkpoint';
    const line = body.slice(pos, e);
    pos = e + 1;
    if (line === '') break;
    if (proof.length === MAX_PROOF_LINES) return `more than ${MAX_PROOF_LINES} consistency proof lines`;
    let h: Uint8Array;
    try {
      h = b64decode(line, `proof line ${proof.length + 1}`);
    } catch (err) {
      return errorMessage(err);
    }
    if (h.length !== 32) return `proof line ${proof.length + 1} is ${h.length} bytes, want 32`;
    proof.push(h);
  }
  return { oldSize, proof, note: body.slice(pos) };
}
