/**
 * C2SP tlog-cosignature v1.0.1, Ed25519 (key type 0x04). A cosignature is a note signature line on a checkpoint
 * whose signature is timestamp (u64 BE, POSIX seconds) || Ed25519 signature over
 *   "cosignature/v1\n" || "time <timestamp>\n" || checkpoint body
 */
import { utf8 } from './encoding.js';
import { TlogError } from './errors.js';
import { parseCheckpoint } from './checkpoint.js';
import {
  COSIGNATURE_SIZE,
  cosignatureTimestamp,
  KEY_TYPE_COSIGNATURE,
  MAX_COSIGNATURE_TIMESTAMP,
  keyIdHex,
  type CosignatureSigner,
  type NoteSigner,
  type NoteVerifier,
} from './keys.js';
import { formatSignatureLine, parseSignatureLine, type NoteSignature } from './note.js';

/**
 * Cosignature errors. Codes: 'cosign' (bad input to signing), 'key-mismatch' (line is from another key),
 * 'bad-cosignature' (does not verify), 'future' (timestamp later than allowed).
 */
export class CosignatureError extends TlogError {}

/**
 * Cosigns a checkpoint body (the note text, not the signed note) at `timestampSeconds`.
 * Returns the signature line, without trailing newline (append '\n' for a tlog-witness response).
 */
export function cosignCheckpoint(body: string, signer: NoteSigner, timestampSeconds: bigint | number): string {
  if (signer.type !== KEY_TYPE_COSIGNATURE || typeof (signer as CosignatureSigner).signAt !== 'function') {
    throw new CosignatureError('cosign', `key ${signer.name} is not a type 0x04 cosignature key`);
  }
  parseCheckpoint(body); // only checkpoints are cosigned
  const ts = typeof timestampSeconds === 'number' ? BigInt(timestampSeconds) : timestampSeconds;
  if (ts < 0n || ts > MAX_COSIGNATURE_TIMESTAMP) throw new CosignatureError('cosign', `timestamp out of range: ${ts}`);
  const sig = (signer as CosignatureSigner).signAt(utf8(body), ts);
  return formatSignatureLine(signer.name, signer.keyId, sig);
}

/**
 * Verifies a cosignature on a checkpoint body and returns its timestamp (POSIX seconds).
 * `sig` is a signature line (with or without newline), a parsed NoteSignature, or the raw signature bytes
 * after the key id (72 bytes). Throws CosignatureError on any failure.
 */
export function verifyCosignature(
  body: string,
  sig: string | NoteSignature | Uint8Array,
  verifier: NoteVerifier,
  opts: { notAfter?: bigint } = {},
): bigint {
  if (verifier.type !== KEY_TYPE_COSIGNATURE)
    throw new CosignatureError('key-mismatch', `key ${verifier.name} is not a type 0x04 cosignature key`);
  let raw: Uint8Array;
  if (sig instanceof Uint8Array) raw = sig;
  else {
    const parsed = typeof sig === 'string' ? parseSignatureLine(sig.endsWith('\n') ? sig.slice(0, -1) : sig) : sig;
    if (parsed.name !== verifier.name || parsed.keyId !== verifier.keyId) {
      throw new CosignatureError(
        'key-mismatch',
        `cosignature is by ${parsed.name}+${keyIdHex(parsed.keyId)}, not by ${verifier.name}`,
      );
    }
    raw = parsed.signature;
  }
  if (raw.length !== COSIGNATURE_SIZE)
    throw new CosignatureError('bad-cosignature', `cosignature must be ${COSIGNATURE_SIZE} bytes, got ${raw.length}`);
  const ts = cosignatureTimestamp(raw);
  if (!verifier.verify(utf8(body), raw))
    throw new CosignatureError('bad-cosignature', `cosignature by ${verifier.name} does not verify`);
  if (opts.notAfter !== undefined && ts > opts.notAfter) {
    throw new CosignatureError(
      'future',
      `cosignature by ${verifier.name} has timestamp ${ts} later than ${opts.notAfter}`,
    );
  }
  return ts;
}
