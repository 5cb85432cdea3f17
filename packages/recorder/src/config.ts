/**
 * Configuration helpers both recording proxies use: reading a JSON configuration file, and their --listen.
 */
import { readFileSync } from 'node:fs';
import { splitHostPort } from '@trailmark/node';
import { ConfigError } from './errors.js';

/** The parsed contents of a JSON configuration file (tokens, rules, users). Throws ConfigError(kind) when it cannot be read or is not JSON. */
export function readJsonFile(kind: string, path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      kind,
      `cannot read ${kind} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8's message may quote the text around the error, and a tokens file is made of secrets: say where only
    const msg = (e as Error).message;
    const at = /at position (\d+)/.exec(msg);
    let where = '';
    if (at) {
      const before = text.slice(0, Number(at[1])).split('\n');
      where = ` at line ${before.length}, column ${before[before.length - 1].length + 1}`;
    }
    throw new ConfigError(kind, `${kind} file ${path} is not valid JSON${where}${kind === 'rules' ? `: ${msg}` : ''}`);
  }
}

/** Parses HOST:PORT (IPv6 in brackets; an empty host listens on every address). Precondition: none; throws ConfigError. */
export function parseListen(s: string, what = '--listen'): { host: string; port: number } {
  const hp = splitHostPort(s);
  if (!hp) throw new ConfigError('listen', `${what} must be HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: hp.host ?? '0.0.0.0', port: hp.port };
}
