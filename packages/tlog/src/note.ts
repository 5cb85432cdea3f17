/**
 * C2SP signed-note v1.0.0: a text ending in newline, a blank line, then one or more signature lines
 * `— <key name> base64(key id (4 bytes BE) || signature)`.
 */
import { b64decode, b64encode, concatBytes, fromUtf8, utf8 } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';
import { isValidKeyName, keyIdBytes, keyIdHex, type NoteSigner, type NoteVerifier } from './keys.js';

/**
 * Note errors. Codes: 'malformed-note' (syntax or character rules), 'note-too-large', 'too-many-signatures',
 * 'bad-signature' (a known key's signature does not verify), 'no-verified-signature' (no known key signed it),
 * 'sign' (signing input invalid).
 */
export class NoteError extends TlogError {}

/** Verifiers must accept at least 16 signatures; we accept up to 100. */
export const MAX_NOTE_SIGNATURES = 100;
/** Upper bound on a whole note's size in UTF-8 bytes (post-quantum signatures are up to ~5 kB each). */
export const MAX_NOTE_SIZE = 1 << 20;

const SIG_PREFIX = '\u2014 '; // em dash, space

/** One parsed signature line of a note ("— <name> <base64(keyid || signature)>"). */
export interface NoteSignature {
  /** Key name. */
  name: string;
  /** uint32 key id (first 4 bytes of the decoded signature, big-endian). */
  keyId: number;
  /** The signature bytes after the 4-byte key id. */
  signature: Uint8Array;
  /** The whole signature line, without its trailing newline. */
  line: string;
}

/** A parsed signed note: its text and its signature lines, none verified yet. */
export interface Note {
  /** The note text, including its final newline, without the separating blank line. */
  text: string;
  signatures: NoteSignature[];
}

const FORBIDDEN_CHARS =
  // eslint-disable-next-line no-control-regex -- control characters are what a note may not hold
  /[\u0000-\u0009\u000b-\u001f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function malformed(msg: string, cause?: unknown): NoteError {
  return new NoteError('malformed-note', `malformed note: ${msg}`, { cause });
}

function toText(note: string | Uint8Array): string {
  if (note instanceof Uint8Array) {
    if (note.length > MAX_NOTE_SIZE) throw new NoteError('note-too-large', `note larger than ${MAX_NOTE_SIZE} bytes`);
    try {
      return fromUtf8(note, 'note');
    } catch {
      throw malformed('not valid UTF-8');
    }
  }
  if (typeof note !== 'string') throw malformed('not a string');
  // a JS string of n code units is at most 3n UTF-8 bytes
  if (note.length * 3 > MAX_NOTE_SIZE && utf8(note).length > MAX_NOTE_SIZE) {
    throw new NoteError('note-too-large', `note larger than ${MAX_NOTE_SIZE} bytes`);
  }
  return note;
}

function checkChars(s: string, what: string): void {
  const m = FORBIDDEN_CHARS.exec(s);
  if (m) {
    const c = m[0].charCodeAt(0);
    throw malformed(
      c >= 0xd800
        ? `${what} is not valid UTF-8 (lone surrogate)`
        : `${what} contains control character 0x${c.toString(16).padStart(2, '0')}`,
    );
  }
}

/**
 * Parses one signature line (`— name base64`, without newline). Throws NoteError('malformed-note').
 */
export function parseSignatureLine(line: string): NoteSignature {
  if (!line.startsWith(SIG_PREFIX))
    throw malformed(`signature line does not start with "— ": ${JSON.stringify(line.slice(0, 40))}`);
  const rest = line.slice(SIG_PREFIX.length);
  const sp = rest.indexOf(' ');
  if (sp < 0) throw malformed('signature line has no space between key name and signature');
  const name = rest.slice(0, sp);
  const b64 = rest.slice(sp + 1);
  if (!isValidKeyName(name)) throw malformed(`invalid key name ${JSON.stringify(name)} in signature line`);
  let raw: Uint8Array;
  try {
    raw = b64decode(b64, 'signature');
  } catch (e) {
    throw malformed(`signature of ${name}: ${errorMessage(e)}`, e);
  }
  if (raw.length < 5) throw malformed(`signature of ${name} is too short (${raw.length} bytes)`);
  const keyId = ((raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]) >>> 0;
  return { name, keyId, signature: raw.slice(4), line };
}

/** Formats a signature line (without trailing newline). */
export function formatSignatureLine(name: string, keyId: number, signature: Uint8Array): string {
  if (!isValidKeyName(name)) throw new NoteError('sign', `invalid key name ${JSON.stringify(name)}`);
  return `${SIG_PREFIX}${name} ${b64encode(concatBytes(keyIdBytes(keyId), signature))}`;
}

/**
 * Parses a signed note (string or UTF-8 bytes) without verifying anything. Enforces: valid UTF-8, no control
 * characters but newline, text ending in newline, blank line before the signatures (the last blank line of
 * the note), at least one and at most MAX_NOTE_SIGNATURES well-formed signature lines each ending in newline.
 */
export function parseNote(note: string | Uint8Array): Note {
  const s = toText(note);
  checkChars(s, 'note');
  const split = s.lastIndexOf('\n\n');
  if (split < 0) throw malformed('no blank line between text and signatures');
  const text = s.slice(0, split + 1);
  const sigBlock = s.slice(split + 2);
  if (sigBlock.length === 0) throw malformed('no signature lines');
  if (!sigBlock.endsWith('\n')) throw malformed('signature block does not end in newline');
  const lines = sigBlock.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw new NoteError(
      'too-many-signatures',
      `note has ${lines.length} signatures; at most ${MAX_NOTE_SIGNATURES} are accepted`,
    );
  }
  return { text, signatures: lines.map(parseSignatureLine) };
}

/** Formats a note from its text and signatures (the inverse of parseNote). */
export function formatNote(note: Note): string {
  return note.text + '\n' + note.signatures.map((s) => s.line + '\n').join('');
}

function checkNoteText(text: string): void {
  if (typeof text !== 'string') throw new NoteError('sign', 'note text must be a string');
  if (!text.endsWith('\n')) throw new NoteError('sign', 'note text must end in a newline');
  try {
    checkChars(text, 'note text');
  } catch (e) {
    throw new NoteError('sign', errorMessage(e), { cause: e });
  }
}

/** Signs a note text with one or more signers; returns the signed note text. */
export function signNote(text: string, signers: NoteSigner | readonly NoteSigner[]): string {
  checkNoteText(text);
  const list = Array.isArray(signers) ? (signers as readonly NoteSigner[]) : [signers as NoteSigner];
  if (list.length === 0) throw new NoteError('sign', 'at least one signer is required');
  const msg = utf8(text);
  const lines = list.map((sg) => formatSignatureLine(sg.name, sg.keyId, sg.sign(msg)) + '\n');
  const out = text + '\n' + lines.join('');
  if (out.length * 3 > MAX_NOTE_SIZE && utf8(out).length > MAX_NOTE_SIZE) {
    throw new NoteError('note-too-large', `signed note larger than ${MAX_NOTE_SIZE} bytes`);
  }
  return out;
}

/**
 * Appends signature lines (e.g. witness cosignatures, or a tlog-witness response body) to a signed note.
 * `lines` is a string of newline-terminated lines or an array of lines (with or without newline).
 * Exact duplicates of lines already present are skipped; with `replace`, a line replaces existing lines of
 * the same key (name and key id), e.g. a fresher cosignature.
 */
export function addSignatures(
  noteText: string,
  lines: string | readonly string[],
  opts: { replace?: boolean } = {},
): string {
  const note = parseNote(noteText);
  let list: string[];
  if (typeof lines === 'string') {
    if (lines.length > 0 && !lines.endsWith('\n')) throw malformed('signature lines must end in newline');
    list = lines.length === 0 ? [] : lines.slice(0, -1).split('\n');
  } else {
    list = lines.map((l) => (l.endsWith('\n') ? l.slice(0, -1) : l));
  }
  for (const l of list) {
    checkChars(l, 'signature line');
    if (l.includes('\n')) throw malformed('signature line contains a newline');
    const sig = parseSignatureLine(l);
    if (note.signatures.some((x) => x.line === sig.line)) continue;
    if (opts.replace) {
      note.signatures = note.signatures.filter((x) => !(x.name === sig.name && x.keyId === sig.keyId));
    }
    note.signatures.push(sig);
  }
  if (note.signatures.length > MAX_NOTE_SIGNATURES) {
    throw new NoteError(
      'too-many-signatures',
      `note would have ${note.signatures.length} signatures; at most ${MAX_NOTE_SIGNATURES}`,
    );
  }
  return formatNote(note);
}

/** How each signature of a note fared against a set of verifiers. */
export interface SignatureCheck {
  /** Known keys whose signature verified (one entry per key, in note order). */
  verified: NoteVerifier[];
  /** Every signature line that verified, in note order. */
  verifiedSignatures: NoteSignature[];
  /** Signatures from known keys that did not verify. */
  failed: { signature: NoteSignature; verifier: NoteVerifier }[];
  /** Signatures from keys not in the verifier set (ignored). */
  unknown: NoteSignature[];
}

function verifierIndex(verifiers: readonly NoteVerifier[]): Map<string, NoteVerifier[]> {
  const m = new Map<string, NoteVerifier[]>();
  for (const v of verifiers) {
    const k = `${v.name}\n${v.keyId >>> 0}`;
    const l = m.get(k);
    if (l) l.push(v);
    else m.set(k, [v]);
  }
  return m;
}

/**
 * Checks every signature of a parsed note against a set of verifiers, without throwing on failures.
 * A signature is from a known key when both its key name and key id match a verifier.
 */
export function checkSignatures(note: Note, verifiers: NoteVerifier | readonly NoteVerifier[]): SignatureCheck {
  const list = Array.isArray(verifiers) ? (verifiers as readonly NoteVerifier[]) : [verifiers as NoteVerifier];
  const idx = verifierIndex(list);
  const msg = utf8(note.text);
  const out: SignatureCheck = { verified: [], verifiedSignatures: [], failed: [], unknown: [] };
  for (const sig of note.signatures) {
    const candidates = idx.get(`${sig.name}\n${sig.keyId}`);
    if (!candidates) {
      out.unknown.push(sig);
      continue;
    }
    const ok = candidates.find((v) => v.verify(msg, sig.signature));
    if (ok) {
      out.verifiedSignatures.push(sig);
      if (!out.verified.includes(ok)) out.verified.push(ok);
    } else {
      out.failed.push({ signature: sig, verifier: candidates[0] });
    }
  }
  return out;
}

/** A note whose signatures were checked by verifyNote, with what verified. */
export interface VerifiedNote extends SignatureCheck {
  text: string;
  /** All signatures of the note, in order. */
  signatures: NoteSignature[];
}

/**
 * Parses and verifies a signed note. Signatures from unknown keys are ignored; a known key's signature
 * that fails to verify rejects the whole note (NoteError 'bad-signature'); at least one known key must
 * have signed it (NoteError 'no-verified-signature').
 */
export function verifyNote(
  noteText: string | Uint8Array,
  verifiers: NoteVerifier | readonly NoteVerifier[],
): VerifiedNote {
  const note = parseNote(noteText);
  const check = checkSignatures(note, verifiers);
  if (check.failed.length > 0) {
    const f = check.failed[0];
    throw new NoteError(
      'bad-signature',
      `invalid signature by known key ${f.signature.name}+${keyIdHex(f.signature.keyId)}`,
    );
  }
  if (check.verified.length === 0) {
    const known = (Array.isArray(verifiers) ? verifiers : [verifiers]).map((v: NoteVerifier) => v.name).join(', ');
    throw new NoteError('no-verified-signature', `note has no signature by a known key (${known || 'no keys given'})`);
  }
  return { text: note.text, signatures: note.signatures, ...check };
}
