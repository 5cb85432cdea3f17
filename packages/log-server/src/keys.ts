/**
 * The log key: loaded from a file, or generated on first start, and wrapped so signatures come from
 * node:crypto (native Ed25519, ~30x the rate of the JS one) while staying byte-identical (Ed25519 is
 * deterministic; checked at load time).
 */
import { createPrivateKey, sign as nodeSign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, fsyncSync, closeSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { b64decode, bytesEqual, generateKey, KEY_TYPE_ED25519, parsePrivateKey, vkeyOf, type NoteSigner } from '@trailmark/tlog';
import { LogStateError } from './errors.js';

// DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface LogKey {
  signer: NoteSigner;
  vkey: string;
  origin: string;
}

function fastSigner(text: string, slow: NoteSigner): NoteSigner {
  // PRIVATE+KEY+<name>+<id>+<base64>: the name has no '+', the base64 may
  const raw = b64decode(text.trim().split('+').slice(4).join('+'), 'private key');
  const key: KeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw.subarray(1)]), format: 'der', type: 'pkcs8' });
  const sign = (msg: Uint8Array) => new Uint8Array(nodeSign(null, msg, key));
  const probe = new TextEncoder().encode('trailmark key self-check\n');
  if (!bytesEqual(sign(probe), slow.sign(probe))) return slow; // never sign with a key we cannot cross-check
  return { name: slow.name, keyId: slow.keyId, type: slow.type, publicKey: slow.publicKey, sign };
}

function writeFileDurably(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

/**
 * Loads the log key from `keyFile`, creating it (and keyFile.pub) named `origin` when `create` is set and the
 * file does not exist. Precondition: none; throws LogStateError naming what did not match.
 */
export function loadLogKey(keyFile: string, opts: { origin?: string; create: boolean }): LogKey {
  if (!existsSync(keyFile)) {
    if (!opts.create) throw new LogStateError('key-missing', `log key file ${keyFile} does not exist`);
    const name = opts.origin ?? 'localhost/trailmark';
    let generated: { privateKey: string; vkey: string };
    try {
      generated = generateKey(name, KEY_TYPE_ED25519);
    } catch (e) {
      throw new LogStateError('key-name', `cannot create a log key named ${JSON.stringify(name)}: ${(e as Error).message}`);
    }
    mkdirSync(dirname(keyFile), { recursive: true });
    writeFileDurably(keyFile, generated.privateKey + '\n', 0o600);
    writeFileDurably(keyFile + '.pub', generated.vkey + '\n', 0o644);
  }
  let text: string;
  try {
    text = readFileSync(keyFile, 'utf8');
  } catch (e) {
    throw new LogStateError('key-read', `cannot read log key ${keyFile}: ${(e as Error).message}`);
  }
  let slow: NoteSigner;
  try {
    slow = parsePrivateKey(text);
  } catch (e) {
    throw new LogStateError('key-format', `log key ${keyFile}: ${(e as Error).message}`);
  }
  if (slow.type !== KEY_TYPE_ED25519) throw new LogStateError('key-type', `log key ${keyFile} is not an Ed25519 (type 0x01) note key`);
  if (opts.origin !== undefined && opts.origin !== slow.name) {
    throw new LogStateError('origin-mismatch', `--origin ${JSON.stringify(opts.origin)} differs from the name of log key ${keyFile} (${JSON.stringify(slow.name)}); the origin is always the key's name`);
  }
  return { signer: fastSigner(text, slow), vkey: vkeyOf(slow), origin: slow.name };
}
