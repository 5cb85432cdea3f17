/**
 * Signed-note keys (C2SP signed-note v1.0.0, compatible with golang.org/x/mod/sumdb/note):
 *
 *   private key: PRIVATE+KEY+<name>+<hex8 key id>+<base64(type || 32-byte Ed25519 seed)>
 *   vkey:        <name>+<hex8 key id>+<base64(type || 32-byte Ed25519 public key)>
 *   key id:      SHA-256(name || 0x0A || type || public key)[:4], big-endian uint32
 *
 * Type 0x01 signs the note text with Ed25519 (log keys). Type 0x04 is a C2SP tlog-cosignature/v1 witness key:
 * its note "signature" is timestamp(u64 BE) || Ed25519 signature over the cosignature/v1 message built from
 * the note text, so a 0x04 verifier plugs into verifyNote like any other key.
 */
import * as ed from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { b64decode, b64encode, bytesEqual, concatBytes, utf8 } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';

ed.hashes.sha512 = sha512;

/** Note signature type of a log's plain Ed25519 key (C2SP signed-note). */
export const KEY_TYPE_ED25519 = 0x01;
/** Note signature type of a witness's timestamped Ed25519 cosignature (tlog-cosignature/v1). */
export const KEY_TYPE_COSIGNATURE = 0x04;
/** The note signature types this package supports. */
export type KeyType = typeof KEY_TYPE_ED25519 | typeof KEY_TYPE_COSIGNATURE;

const ED25519_KEY_SIZE = 32;
const ED25519_SIG_SIZE = 64;
/** Size of a type 0x04 note signature after the key id: u64 timestamp || 64-byte Ed25519 signature. */
export const COSIGNATURE_SIZE = 8 + ED25519_SIG_SIZE;
/** Timestamps in cosignatures must not exceed 2^63 - 1. */
export const MAX_COSIGNATURE_TIMESTAMP = (1n << 63n) - 1n;

/**
 * Key errors. Codes: 'key-name' (invalid name), 'key-format' (malformed key text), 'key-type' (unsupported
 * signature type), 'key-length' (wrong key size), 'key-id' (key id does not match the key),
 * 'timestamp' (cosignature timestamp out of range).
 */
export class KeyError extends TlogError {}

/** A private key that signs notes under a key name and id. */
export interface NoteSigner {
  readonly name: string;
  /** uint32 key id. */
  readonly keyId: number;
  readonly type: KeyType;
  readonly publicKey: Uint8Array;
  /** Signs a note text (its UTF-8 bytes); returns the signature bytes that follow the 4-byte key id. */
  sign(msg: Uint8Array): Uint8Array;
}

/** A type 0x04 signer: also signs with an explicit timestamp (POSIX seconds). */
export interface CosignatureSigner extends NoteSigner {
  signAt(msg: Uint8Array, timestampSeconds: bigint | number): Uint8Array;
}

/** A public key that verifies note signatures under a key name and id. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly type: KeyType;
  readonly publicKey: Uint8Array;
  /** Verifies the signature bytes (after the key id) over a note text's UTF-8 bytes. Never throws. */
  verify(msg: Uint8Array, sig: Uint8Array): boolean;
}

const SURROGATE_LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// eslint-disable-next-line no-control-regex
const BAD_NAME_CHARS = /[\p{White_Space}+\u0000-\u001f]/u;

/** Whether `name` is a valid key name: non-empty, well-formed Unicode, no spaces, no '+', no control characters. */
export function isValidKeyName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && !BAD_NAME_CHARS.test(name) && !SURROGATE_LONE.test(name);
}

/**
 * Returns `name` typed as a string when it is a valid key name. Precondition: none; throws KeyError('key-name') when
 * isValidKeyName(name) is false.
 */
export function checkKeyName(name: unknown): string {
  if (!isValidKeyName(name)) {
    throw new KeyError(
      'key-name',
      `invalid key name ${JSON.stringify(name)}: must be non-empty, valid UTF-8, without spaces or '+'`,
    );
  }
  return name;
}

function checkType(type: number): KeyType {
  if (type !== KEY_TYPE_ED25519 && type !== KEY_TYPE_COSIGNATURE) {
    throw new KeyError(
      'key-type',
      `unsupported key type 0x${type.toString(16).padStart(2, '0')} (want 0x01 Ed25519 or 0x04 cosignature)`,
    );
  }
  return type;
}

/** Key id: first 4 bytes, big-endian, of SHA-256(name || 0x0A || type || publicKey). */
export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = sha256(concatBytes(utf8(name), new Uint8Array([0x0a, type]), publicKey));
  return ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
}

/** A key id as 8 lower-case hex digits. Precondition: `id` is a uint32 (other numbers are reduced modulo 2^32). */
export function keyIdHex(id: number): string {
  return (id >>> 0).toString(16).padStart(8, '0');
}

/** A key id as its 4 big-endian bytes. Precondition: `id` is a uint32 (higher bits are dropped). */
export function keyIdBytes(id: number): Uint8Array {
  return new Uint8Array([(id >>> 24) & 0xff, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff]);
}

/** The tlog-cosignature/v1 Ed25519 signed message: "cosignature/v1\ntime <T>\n" || note body. */
export function cosignatureMessage(body: Uint8Array, timestampSeconds: bigint): Uint8Array {
  return concatBytes(utf8(`cosignature/v1\ntime ${timestampSeconds}\n`), body);
}

function checkTimestamp(t: bigint | number): bigint {
  let ts: bigint;
  if (typeof t === 'number') {
    if (!Number.isSafeInteger(t) || t < 0) throw new KeyError('timestamp', `invalid cosignature timestamp ${t}`);
    ts = BigInt(t);
  } else ts = t;
  if (typeof ts !== 'bigint' || ts < 0n || ts > MAX_COSIGNATURE_TIMESTAMP) {
    throw new KeyError('timestamp', `cosignature timestamp out of range: ${String(t)}`);
  }
  return ts;
}

function u64be(v: bigint): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function readU64be(b: Uint8Array, off: number): bigint {
  let v = 0n;
  for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(b[off + i]);
  return v;
}

/** The timestamp of a type 0x04 signature (bytes after the key id). Throws KeyError if it is not 72 bytes. */
export function cosignatureTimestamp(sig: Uint8Array): bigint {
  if (sig.length !== COSIGNATURE_SIZE)
    throw new KeyError('key-length', `cosignature must be ${COSIGNATURE_SIZE} bytes, got ${sig.length}`);
  return readU64be(sig, 0);
}

/** Order of the Ed25519 base point. */
const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;

function numberLE(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]);
  return n;
}

// a small-order public key verifies forged signatures (R = identity, S = 0): no real key is one
function isSmallOrder(a: InstanceType<typeof ed.Point>): boolean {
  return a.clearCofactor().equals(ed.Point.ZERO);
}

/**
 * Whether a 32-byte Ed25519 public key is unusable: not a valid point encoding, or a point of small order,
 * for which signatures can be forged without a private key. Verifiers built elsewhere (e.g. on node:crypto)
 * should refuse such keys as this package's verify does. Precondition: none.
 */
export function isWeakEd25519Key(publicKey: Uint8Array): boolean {
  try {
    return publicKey.length !== ED25519_KEY_SIZE || isSmallOrder(ed.Point.fromBytes(publicKey, false));
  } catch {
    return true;
  }
}

/**
 * Cofactorless RFC 8032 verification, as Go's crypto/ed25519 does it: S < L and the encoding of [S]B - [k]A
 * equals R byte for byte. noble's verify uses the cofactored equation, which accepts signatures with a
 * small-order component in R that Go rejects; a log could then publish checkpoints some verifiers accept
 * and others do not.
 */
function edVerify(sig: Uint8Array, msg: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    if (sig.length !== ED25519_SIG_SIZE || publicKey.length !== ED25519_KEY_SIZE) return false;
    const r = sig.subarray(0, 32);
    const s = numberLE(sig.subarray(32));
    if (s >= ED25519_L) return false;
    const a = ed.Point.fromBytes(publicKey, false);
    if (isSmallOrder(a)) return false;
    const k = numberLE(sha512(concatBytes(r, publicKey, msg))) % ED25519_L;
    const check = ed.Point.BASE.multiplyUnsafe(s).subtract(a.multiplyUnsafe(k));
    return bytesEqual(check.toBytes(), r);
  } catch {
    return false;
  }
}

/** Builds a signer from a 32-byte Ed25519 seed. `now` (seconds) is the clock used by type 0x04 sign(). */
export function newSigner(
  name: string,
  type: number,
  seed: Uint8Array,
  opts: { now?: () => number | bigint } = {},
): NoteSigner {
  checkKeyName(name);
  const t = checkType(type);
  if (!(seed instanceof Uint8Array) || seed.length !== ED25519_KEY_SIZE) {
    throw new KeyError('key-length', `Ed25519 seed must be ${ED25519_KEY_SIZE} bytes, got ${seed?.length}`);
  }
  const secret = seed.slice();
  const publicKey = ed.getPublicKey(secret);
  const id = keyId(name, t, publicKey);
  if (t === KEY_TYPE_ED25519) {
    return {
      name,
      keyId: id,
      type: t,
      publicKey,
      sign: (msg) => ed.sign(msg, secret),
    };
  }
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const signer: CosignatureSigner = {
    name,
    keyId: id,
    type: t,
    publicKey,
    signAt(msg, timestampSeconds) {
      const ts = checkTimestamp(timestampSeconds);
      return concatBytes(u64be(ts), ed.sign(cosignatureMessage(msg, ts), secret));
    },
    sign(msg) {
      return signer.signAt(msg, BigInt(now()));
    },
  };
  return signer;
}

/** Builds a verifier from a 32-byte Ed25519 public key. */
export function newVerifier(name: string, type: number, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name);
  const t = checkType(type);
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_KEY_SIZE) {
    throw new KeyError('key-length', `Ed25519 public key must be ${ED25519_KEY_SIZE} bytes, got ${publicKey?.length}`);
  }
  const pk = publicKey.slice();
  const id = keyId(name, t, pk);
  if (t === KEY_TYPE_ED25519) {
    return {
      name,
      keyId: id,
      type: t,
      publicKey: pk,
      verify: (msg, sig) => sig.length === ED25519_SIG_SIZE && edVerify(sig, msg, pk),
    };
  }
  return {
    name,
    keyId: id,
    type: t,
    publicKey: pk,
    verify(msg, sig) {
      if (sig.length !== COSIGNATURE_SIZE) return false;
      const ts = readU64be(sig, 0);
      if (ts > MAX_COSIGNATURE_TIMESTAMP) return false;
      return edVerify(sig.subarray(8), cosignatureMessage(msg, ts), pk);
    },
  };
}

const HEX8 = /^[0-9a-fA-F]{8}$/;

function splitKey(text: string, parts: number, what: string): string[] {
  // the base64 key (last field) may itself contain '+'
  const f: string[] = [];
  let rest = text;
  for (let i = 0; i < parts - 1; i++) {
    const j = rest.indexOf('+');
    if (j < 0) throw new KeyError('key-format', `malformed ${what}: want ${parts} '+'-separated fields`);
    f.push(rest.slice(0, j));
    rest = rest.slice(j + 1);
  }
  f.push(rest);
  return f;
}

function decodeKeyMaterial(
  name: string,
  hex: string,
  b64: string,
  what: string,
): { type: KeyType; key: Uint8Array; id: number } {
  checkKeyName(name);
  if (!HEX8.test(hex))
    throw new KeyError('key-format', `malformed ${what}: key id ${JSON.stringify(hex)} is not 8 hex digits`);
  let raw: Uint8Array;
  try {
    raw = b64decode(b64, `${what} key`);
  } catch (e) {
    throw new KeyError('key-format', `malformed ${what}: ${errorMessage(e)}`, { cause: e });
  }
  if (raw.length === 0) throw new KeyError('key-format', `malformed ${what}: empty key`);
  const type = checkType(raw[0]);
  const key = raw.slice(1);
  if (key.length !== ED25519_KEY_SIZE) {
    throw new KeyError(
      'key-length',
      `malformed ${what}: Ed25519 key must be ${ED25519_KEY_SIZE} bytes, got ${key.length}`,
    );
  }
  return { type, key, id: parseInt(hex, 16) >>> 0 };
}

function stripNewline(text: string): string {
  if (typeof text !== 'string') throw new KeyError('key-format', 'key must be a string');
  return text.replace(/\r?\n$/, '');
}

/**
 * Parses a private key `PRIVATE+KEY+<name>+<hex8>+<base64(type || seed)>` (one trailing newline allowed)
 * and checks that the key id matches.
 */
export function parsePrivateKey(text: string, opts: { now?: () => number | bigint } = {}): NoteSigner {
  const f = splitKey(stripNewline(text), 5, 'private key');
  if (f[0] !== 'PRIVATE' || f[1] !== 'KEY')
    throw new KeyError('key-format', 'malformed private key: must start with PRIVATE+KEY+');
  const { type, key, id } = decodeKeyMaterial(f[2], f[3], f[4], 'private key');
  const signer = newSigner(f[2], type, key, opts);
  if (signer.keyId !== id)
    throw new KeyError('key-id', `private key id ${f[3]} does not match its name and key (${keyIdHex(signer.keyId)})`);
  return signer;
}

/** Parses a verifier key `<name>+<hex8>+<base64(type || public key)>` (one trailing newline allowed). */
export function parseVkey(text: string): NoteVerifier {
  const f = splitKey(stripNewline(text), 3, 'vkey');
  const { type, key, id } = decodeKeyMaterial(f[0], f[1], f[2], 'vkey');
  const v = newVerifier(f[0], type, key);
  if (v.keyId !== id)
    throw new KeyError('key-id', `vkey id ${f[1]} does not match its name and key (${keyIdHex(v.keyId)})`);
  return v;
}

/** Formats the vkey of a signer or verifier. */
export function vkeyOf(k: { name: string; type: number; publicKey: Uint8Array }): string {
  const id = keyId(k.name, k.type, k.publicKey);
  return `${k.name}+${keyIdHex(id)}+${b64encode(concatBytes(new Uint8Array([k.type]), k.publicKey))}`;
}

/** The verifier matching a signer. */
export function verifierOf(signer: NoteSigner): NoteVerifier {
  return newVerifier(signer.name, signer.type, signer.publicKey);
}

/** Generates a key pair (random unless a 32-byte seed is given). Returns both in text form. */
export function generateKey(
  name: string,
  type: number = KEY_TYPE_ED25519,
  seed?: Uint8Array,
): { privateKey: string; vkey: string } {
  checkKeyName(name);
  const t = checkType(type);
  const s = seed ?? ed.utils.randomSecretKey();
  const signer = newSigner(name, t, s);
  const privateKey = `PRIVATE+KEY+${name}+${keyIdHex(signer.keyId)}+${b64encode(concatBytes(new Uint8Array([t]), s))}`;
  return { privateKey, vkey: vkeyOf(signer) };
}

/** Whether two keys wrap the same public key (regardless of name, type and key id). */
export function samePublicKey(a: { publicKey: Uint8Array }, b: { publicKey: Uint8Array }): boolean {
  return bytesEqual(a.publicKey, b.publicKey);
}
