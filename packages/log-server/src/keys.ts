/**
 * The log key: loaded from a file, or generated on first start, and wrapped so signatures come from
 * node:crypto (native Ed25519, ~30x the rate of the JS one) while staying byte-identical (Ed25519 is
 * deterministic; checked at load time).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { nativeSigner, writeFileDurablySync } from '@trailmark/node';
import { dirname } from 'node:path';
import { errorMessage, generateKey, KEY_TYPE_ED25519, parsePrivateKey, vkeyOf, type NoteSigner } from '@trailmark/tlog';
import { LogStateError, ConfigError } from './errors.js';

/** The log's signing key with its vkey text and origin (the key name). */
export interface LogKey {
  signer: NoteSigner;
  vkey: string;
  origin: string;
}

/** A key generated in memory: nothing is written until `writeLogKey`, so a start that fails leaves no key behind. */
export interface NewLogKey {
  privateKey: string;
  vkey: string;
}

/** Generates a log key named `origin` (default localhost/trailmark). Throws ConfigError('key-name') on a bad name. */
export function generateLogKey(origin = 'localhost/trailmark'): NewLogKey {
  try {
    return generateKey(origin, KEY_TYPE_ED25519);
  } catch (e) {
    throw new ConfigError('key-name', `cannot create a log key named ${JSON.stringify(origin)}: ${errorMessage(e)}`, {
      cause: e,
    });
  }
}

/** Writes a generated key to `keyFile` (0600) and its vkey to `keyFile.pub` (0644), each written durably (fsynced, directory too). Returns the paths it created. */
export function writeLogKey(keyFile: string, k: NewLogKey): string[] {
  mkdirSync(dirname(keyFile), { recursive: true });
  writeFileDurablySync(keyFile, k.privateKey + '\n', { mode: 0o600 });
  writeFileDurablySync(keyFile + '.pub', k.vkey + '\n', { mode: 0o644 });
  return [keyFile, keyFile + '.pub'];
}

/**
 * Loads the log key from `keyFile`, creating it (and keyFile.pub) named `origin` when `create` is set and the
 * file does not exist. Precondition: none; throws LogStateError naming what did not match.
 */
export function loadLogKey(keyFile: string, opts: { origin?: string; create: boolean }): LogKey {
  if (!existsSync(keyFile)) {
    if (!opts.create) throw new LogStateError('key-missing', `log key file ${keyFile} does not exist`);
    writeLogKey(keyFile, generateLogKey(opts.origin));
  }
  let text: string;
  try {
    text = readFileSync(keyFile, 'utf8');
  } catch (e) {
    throw new LogStateError('key-read', `cannot read log key ${keyFile}: ${errorMessage(e)}`, { cause: e });
  }
  return parseLogKey(text, keyFile, opts.origin);
}

/** The signing key in a key file's text; `where` names it in errors. Throws LogStateError. */
export function parseLogKey(text: string, where: string, origin?: string): LogKey {
  let slow: NoteSigner;
  try {
    slow = parsePrivateKey(text);
  } catch (e) {
    throw new LogStateError('key-format', `log key ${where}: ${errorMessage(e)}`, { cause: e });
  }
  if (slow.type !== KEY_TYPE_ED25519)
    throw new LogStateError('key-type', `log key ${where} is not an Ed25519 (type 0x01) note key`);
  if (origin !== undefined && origin !== slow.name) {
    throw new LogStateError(
      'origin-mismatch',
      `--origin ${JSON.stringify(origin)} differs from the name of log key ${where} (${JSON.stringify(slow.name)}); the origin is always the key's name`,
      { expected: slow.name, found: origin },
    );
  }
  return { signer: nativeSigner(text), vkey: vkeyOf(slow), origin: slow.name };
}
