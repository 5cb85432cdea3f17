import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  errorMessage,
  KEY_TYPE_ED25519,
  b64encode,
  canonicalJson,
  fromUtf8,
  hashLeaf,
  parsePolicy,
  parseVkey,
  type NoteVerifier,
  type Policy,
  errorCode,
} from '@trailmark/tlog';
import { type CliError, usage, cannotCheck } from '../exit.js';

/**
 * Reads a local text file; any failure is a usage/I-O error (exit 2). With `strict`, invalid UTF-8 is refused
 * rather than decoded with replacement characters (for files whose exact bytes are checked).
 */
export async function readTextFile(file: string, what: string, opts: { strict?: boolean } = {}): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (e) {
    throw cannotCheck(`cannot read ${what} ${file}: ${errorCode(e) ?? errorMessage(e)}`, undefined, e);
  }
  if (!opts.strict) return data.toString('utf8');
  try {
    return fromUtf8(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), what);
  } catch {
    throw usage(`${what} ${file} is not valid UTF-8`);
  }
}

/** Writes an output file; any failure is an I/O error (exit 2). */
export async function writeTextFile(file: string, text: string): Promise<void> {
  try {
    await writeFile(file, text);
  } catch (e) {
    throw cannotCheck(`cannot write ${file}: ${errorCode(e) ?? errorMessage(e)}`, undefined, e);
  }
}

/** A private key where a vkey belongs: say which file to use instead, and never echo the key itself. */
function privateKeyHint(arg: string, isFile: boolean): CliError {
  return usage(
    isFile
      ? `${arg} is a private key; use ${arg}.pub (the vkey keygen wrote beside it)`
      : 'that is a private key, which must not be passed around; use its vkey (the FILE.pub keygen wrote)',
    { reason: 'private-key' },
  );
}

/**
 * A VKEY argument: the vkey string itself, or the path of a file holding one (such as FILE.pub).
 * Throws a usage error (exit 2) when it is neither, with a hint for the usual mix-ups (a private key).
 */
export async function loadVkey(arg: string, flag = '--key'): Promise<NoteVerifier> {
  const trimmed = arg.trim();
  if (trimmed.startsWith('PRIVATE+KEY+')) throw privateKeyHint(arg, false);
  try {
    return parseVkey(trimmed);
  } catch (asString) {
    let text: string;
    try {
      text = fromUtf8(new Uint8Array(await readFile(arg)), 'key file');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') {
        // a long argument without a path shape is a mistyped vkey: say why it does not parse
        throw usage(
          `${flag} ${JSON.stringify(arg.length > 120 ? `${arg.slice(0, 120)}...` : arg)} is neither a vkey (${errorMessage(asString)}) nor a readable file`,
        );
      }
      throw cannotCheck(`cannot read key file ${arg}: ${code ?? errorMessage(e)}`, undefined, e);
    }
    if (text.trim().startsWith('PRIVATE+KEY+')) throw privateKeyHint(arg, true);
    try {
      return parseVkey(text.trim());
    } catch (e) {
      throw usage(`key file ${arg}: ${errorMessage(e)}`);
    }
  }
}

/** The log's vkey flags: every command that takes it accepts both --key and --log-key (contract section 6). */
export interface LogKeyArgs {
  key?: string;
  logKey?: string;
}

/** Adds --key and --log-key to a command; read them with loadLogKey. */
export function logKeyOptions(cmd: Command): Command {
  return cmd
    .option('--key <vkey>', "the log's vkey, or a file holding it (such as log.key.pub)")
    .option('--log-key <vkey>', 'same as --key');
}

/**
 * The log's vkey from --key or --log-key (exactly one; exit 2 otherwise). A witness key is refused with a
 * hint: it cannot sign checkpoints, so it is always a mix-up.
 */
export async function loadLogKey(opts: LogKeyArgs): Promise<NoteVerifier> {
  if (opts.key !== undefined && opts.logKey !== undefined && opts.key !== opts.logKey)
    throw usage("give the log's vkey once: --key or --log-key, not both");
  const arg = opts.key ?? opts.logKey;
  if (arg === undefined)
    throw usage(
      "give the log's vkey with --key VKEY (or --log-key VKEY): the vkey string or a file holding it, such as log.key.pub",
    );
  const v = await loadVkey(arg, opts.key !== undefined ? '--key' : '--log-key');
  if (v.type !== KEY_TYPE_ED25519)
    throw usage(`${v.name} is a witness key (type 0x04); give the log's vkey (type 0x01)`, { reason: 'witness-key' });
  return v;
}

/** A tlog-policy file; unreadable or malformed is a usage error (exit 2). */
export async function loadPolicy(file: string, opts: { strict?: boolean } = {}): Promise<Policy> {
  const text = await readTextFile(file, 'policy file', opts);
  try {
    return parsePolicy(text);
  } catch (e) {
    throw usage(`policy file ${file}: ${errorMessage(e)}`);
  }
}

/** The member names of one line of `trailmark --json entries`. */
const ENTRIES_LINE_KEYS = ['entry', 'leaf_hash', 'leaf_index'];

/**
 * The leaf hash of the entry in FILE (`--entry`): either the entry itself, a JSON object canonicalized with RFC
 * 8785 first (what `trailmark entries` prints, one a line), or one line of `trailmark --json entries`
 * ({"leaf_index", "leaf_hash", "entry"}), whose entry is hashed and must give its leaf_hash. Exit 2 otherwise.
 */
export async function entryLeafHash(file: string): Promise<Uint8Array> {
  const text = await readTextFile(file, 'entry file', { strict: true });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    const lines = text.trim().split('\n').length;
    throw usage(
      `entry file ${file}: ${lines > 1 ? `holds ${lines} lines; save one entry (one line of \`trailmark entries\`)` : `invalid JSON: ${errorMessage(e)}`}`,
    );
  }
  const o = v as Record<string, unknown>;
  const isLine =
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.keys(o).sort().join() === ENTRIES_LINE_KEYS.join() &&
    typeof o.entry === 'object' &&
    o.entry !== null &&
    !Array.isArray(o.entry);
  let leaf: Uint8Array;
  try {
    leaf = hashLeaf(canonicalJson(isLine ? o.entry : v));
  } catch (e) {
    throw usage(`entry file ${file}: ${errorMessage(e)}`);
  }
  if (isLine && o.leaf_hash !== b64encode(leaf)) {
    throw usage(
      `entry file ${file}: its leaf_hash ${JSON.stringify(o.leaf_hash)} is not the hash of its entry (${b64encode(leaf)}); was the line edited?`,
    );
  }
  return leaf;
}
