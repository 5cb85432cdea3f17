import { readFile, writeFile } from 'node:fs/promises';
import { fromUtf8, parsePolicy, parseVkey, type NoteVerifier, type Policy } from '@trailmark/tlog';
import { usage } from '../exit.js';

/**
 * Reads a local text file; any failure is a usage/I-O error (exit 2). With `strict`, invalid UTF-8 is refused
 * rather than decoded with replacement characters (for files whose exact bytes are checked).
 */
export async function readTextFile(file: string, what: string, opts: { strict?: boolean } = {}): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (e) {
    throw usage(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
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
    throw usage(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * A VKEY argument: the vkey string itself, or the path of a file holding one (such as FILE.pub).
 * Throws a usage error (exit 2) when it is neither.
 */
export async function loadVkey(arg: string): Promise<NoteVerifier> {
  try {
    return parseVkey(arg.trim());
  } catch (asString) {
    let text: string;
    try {
      text = fromUtf8(new Uint8Array(await readFile(arg)), 'key file');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') {
        throw usage(`--key ${JSON.stringify(arg)} is neither a vkey (${(asString as Error).message}) nor a readable file`);
      }
      throw usage(`cannot read key file ${arg}: ${code ?? (e as Error).message}`);
    }
    try {
      return parseVkey(text.trim());
    } catch (e) {
      throw usage(`key file ${arg}: ${(e as Error).message}`);
    }
  }
}

/** A tlog-policy file; unreadable or malformed is a usage error (exit 2). */
export async function loadPolicy(file: string, opts: { strict?: boolean } = {}): Promise<Policy> {
  const text = await readTextFile(file, 'policy file', opts);
  try {
    return parsePolicy(text);
  } catch (e) {
    throw usage(`policy file ${file}: ${(e as Error).message}`);
  }
}
