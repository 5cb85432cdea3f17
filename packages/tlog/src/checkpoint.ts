/**
 * C2SP tlog-checkpoint v1.0.0: a signed note whose text is
 *   <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n ...]
 */
import { b64decode, b64encode } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';
import {
  cosignatureTimestamp,
  KEY_TYPE_COSIGNATURE,
  KEY_TYPE_ED25519,
  type NoteSigner,
  type NoteVerifier,
} from './keys.js';
import { checkSignatures, parseNote, signNote, type Note } from './note.js';
import { evaluateQuorum, policyHasLog, type Policy } from './policy.js';
import { MAX_U64 } from './u64.js';

/**
 * Checkpoint errors. Codes: 'malformed-checkpoint', 'origin-mismatch' (origin is not the log key's name),
 * 'bad-signature' (the log key's signature does not verify), 'no-log-signature' (the log key did not sign),
 * 'bad-cosignature' (a known witness's cosignature does not verify), 'quorum' (policy quorum not met),
 * 'log-not-in-policy', 'sign'.
 */
export class CheckpointError extends TlogError {}

/** A parsed checkpoint body (C2SP tlog-checkpoint): origin line, tree size, root hash and extension lines. */
export interface Checkpoint {
  origin: string;
  size: bigint;
  /** 32-byte RFC 6962 root hash. */
  root: Uint8Array;
  /** Extension lines (without newline), usually none. */
  extensions: string[];
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f]/;

function bad(msg: string, cause?: unknown): CheckpointError {
  return new CheckpointError('malformed-checkpoint', `malformed checkpoint: ${msg}`, { cause });
}

/** Formats a checkpoint body (the note text). Throws CheckpointError('malformed-checkpoint') on bad fields. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (typeof cp.origin !== 'string' || cp.origin.length === 0 || CONTROL.test(cp.origin))
    throw bad('origin must be a non-empty line');
  if (typeof cp.size !== 'bigint' || cp.size < 0n || cp.size > MAX_U64)
    throw bad(`tree size must be a uint64 bigint, got ${String(cp.size)}`);
  if (!(cp.root instanceof Uint8Array) || cp.root.length !== 32) throw bad('root hash must be 32 bytes');
  const ext = cp.extensions ?? [];
  for (const e of ext) {
    if (typeof e !== 'string' || e.length === 0 || CONTROL.test(e))
      throw bad('extension lines must be non-empty single lines');
  }
  return [cp.origin, cp.size.toString(), b64encode(cp.root), ...ext].join('\n') + '\n';
}

/**
 * Parses a checkpoint body strictly: at least three non-empty newline-terminated lines, a non-empty origin,
 * a decimal uint64 size without leading zeros, a 32-byte standard base64 root, non-empty extension lines.
 */
export function parseCheckpoint(body: string): Checkpoint {
  if (typeof body !== 'string') throw bad('not a string');
  if (!body.endsWith('\n')) throw bad('text does not end in newline');
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) throw bad(`want at least 3 lines, got ${lines.length}`);
  for (const l of lines) {
    if (l.length === 0) throw bad('empty line');
    if (CONTROL.test(l)) throw bad('control character');
  }
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!DECIMAL.test(sizeText))
    throw bad(`tree size ${JSON.stringify(sizeText.slice(0, 30))} is not a decimal without leading zeros`);
  const size = BigInt(sizeText);
  if (size > MAX_U64) throw bad(`tree size ${sizeText} exceeds 2^64-1`);
  let root: Uint8Array;
  try {
    root = b64decode(rootText, 'root hash');
  } catch (e) {
    throw bad(errorMessage(e), e);
  }
  if (root.length !== 32) throw bad(`root hash is ${root.length} bytes, want 32`);
  return { origin, size, root, extensions };
}

/** Signs a checkpoint with the log key, whose name must equal the origin. Returns the note text. */
export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  if (signer.name !== cp.origin) {
    throw new CheckpointError(
      'origin-mismatch',
      `checkpoint origin ${JSON.stringify(cp.origin)} is not the log key's name ${JSON.stringify(signer.name)}`,
      { expected: signer.name, found: cp.origin },
    );
  }
  if (signer.type !== KEY_TYPE_ED25519)
    throw new CheckpointError('sign', 'checkpoints are signed with a type 0x01 (Ed25519) log key');
  return signNote(formatCheckpoint(cp), signer);
}

/** What openCheckpoint checks beyond the log's own signature. */
export interface OpenCheckpointOptions {
  /** Witness (type 0x04) keys: their cosignatures are verified and returned; a bad one fails the checkpoint. */
  witnesses?: readonly NoteVerifier[];
  /**
   * A tlog-policy: its witnesses are added to `witnesses`, its quorum must be met, and when it lists logs the
   * log key must be one of them.
   */
  policy?: Policy;
}

/** A witness cosignature that verified against one of the given witness keys. */
export interface VerifiedCosignature {
  verifier: NoteVerifier;
  /** POSIX seconds from the cosignature. */
  timestamp: bigint;
  /** The witness's name in the policy, when a policy was given and lists this key. */
  witness?: string;
}

/** The result of openCheckpoint: the parsed body, the note it came from and the cosignatures that verified. */
export interface OpenedCheckpoint {
  checkpoint: Checkpoint;
  /** The parsed note (text and every signature line). */
  note: Note;
  /** Verified cosignatures from the given witnesses/policy (one per witness key). */
  cosignatures: VerifiedCosignature[];
}

/**
 * Verifies a checkpoint note signed by `logVerifier` and parses its body. The origin must equal the log key's
 * name; a signature line by the log key must verify (and none may fail). Other signatures are ignored unless
 * they belong to the given witnesses, which must then verify. With a policy, its quorum must be met.
 */
export function openCheckpoint(
  noteText: string | Uint8Array,
  logVerifier: NoteVerifier,
  opts: OpenCheckpointOptions = {},
): OpenedCheckpoint {
  const note = parseNote(noteText);
  const log = checkSignatures(note, logVerifier);
  if (log.failed.length > 0)
    throw new CheckpointError('bad-signature', `checkpoint signature by log key ${logVerifier.name} does not verify`);
  if (log.verified.length === 0)
    throw new CheckpointError('no-log-signature', `checkpoint is not signed by log key ${logVerifier.name}`);
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== logVerifier.name) {
    throw new CheckpointError(
      'origin-mismatch',
      `checkpoint origin ${JSON.stringify(checkpoint.origin)} is not the log key's name ${JSON.stringify(logVerifier.name)}`,
      { expected: logVerifier.name, found: checkpoint.origin },
    );
  }
  const policy = opts.policy;
  if (policy && !policyHasLog(policy, logVerifier)) {
    throw new CheckpointError('log-not-in-policy', `log key ${logVerifier.name} is not one of the policy's logs`);
  }
  const witnessNames = new Map<NoteVerifier, string>();
  const witnesses: NoteVerifier[] = [...(opts.witnesses ?? [])];
  if (policy) {
    for (const w of policy.witnesses.values()) {
      witnesses.push(w.verifier);
      witnessNames.set(w.verifier, w.name);
    }
  }
  const cosignatures: VerifiedCosignature[] = [];
  if (witnesses.length > 0) {
    const check = checkSignatures(
      note,
      witnesses.filter((w) => !(w.name === logVerifier.name && w.keyId === logVerifier.keyId)),
    );
    if (check.failed.length > 0) {
      const f = check.failed[0];
      throw new CheckpointError(
        'bad-cosignature',
        `cosignature by witness ${witnessNames.get(f.verifier) ?? f.verifier.name} does not verify`,
      );
    }
    for (const v of check.verified) {
      const sig = check.verifiedSignatures.find((s) => s.name === v.name && s.keyId === v.keyId)!;
      const timestamp = v.type === KEY_TYPE_COSIGNATURE ? cosignatureTimestamp(sig.signature) : 0n;
      cosignatures.push({ verifier: v, timestamp, ...(witnessNames.has(v) ? { witness: witnessNames.get(v) } : {}) });
    }
  }
  if (policy) {
    const cosignedBy = new Set(cosignatures.filter((c) => c.witness !== undefined).map((c) => c.witness!));
    if (!evaluateQuorum(policy, cosignedBy)) {
      throw new CheckpointError(
        'quorum',
        `witness quorum ${policy.quorum} not met (cosigned by ${cosignedBy.size ? [...cosignedBy].join(', ') : 'no policy witness'})`,
      );
    }
  }
  return { checkpoint, note, cosignatures };
}
