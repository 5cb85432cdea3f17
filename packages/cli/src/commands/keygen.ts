import { existsSync, unlinkSync } from 'node:fs';
import { writeFileDurablySync } from '@trailmark/node';
import type { Command } from 'commander';
import { KEY_TYPE_COSIGNATURE, KEY_TYPE_ED25519, TlogError, generateKey, errorMessage } from '@trailmark/tlog';
import { action, makeOutput } from '../program.js';
import { usage, cannotCheck } from '../exit.js';

interface KeygenOptions {
  name: string;
  witness?: boolean;
  out: string;
}

/**
 * `trailmark keygen --name NAME [--witness] --out FILE`: writes the private key to FILE (mode 0600) and the vkey
 * to FILE.pub, prints the vkey. Never overwrites an existing file.
 */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('generate a log key (Ed25519 note key) or, with --witness, a witness cosignature key')
    .requiredOption('--name <name>', 'key name: the log origin (e.g. example.com/log) or the witness name')
    .option('--witness', 'generate a witness (tlog-cosignature, type 0x04) key instead of a log key')
    .requiredOption('--out <file>', 'private key file (mode 0600); the vkey goes to <file>.pub')
    .action(
      action(async (opts: KeygenOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const type = opts.witness ? KEY_TYPE_COSIGNATURE : KEY_TYPE_ED25519;
        let key: { privateKey: string; vkey: string };
        try {
          key = generateKey(opts.name, type);
        } catch (e) {
          if (e instanceof TlogError) throw usage(e.message);
          throw e;
        }
        const pubFile = `${opts.out}.pub`;
        for (const f of [opts.out, pubFile]) {
          if (existsSync(f)) throw usage(`${f} already exists; refusing to overwrite it`);
        }
        try {
          // exclusive: fail rather than overwrite if the file appeared meanwhile; durable: a key must survive a crash
          writeFileDurablySync(opts.out, key.privateKey + '\n', { mode: 0o600, exclusive: true });
        } catch (e) {
          throw cannotCheck(`cannot write ${opts.out}: ${errorMessage(e)}`, undefined, e);
        }
        try {
          writeFileDurablySync(pubFile, key.vkey + '\n', { mode: 0o644, exclusive: true });
        } catch (e) {
          unlinkSync(opts.out);
          throw cannotCheck(`cannot write ${pubFile}: ${errorMessage(e)}`, undefined, e);
        }
        out.info(key.vkey);
        out.result({
          ok: true,
          name: opts.name,
          type: opts.witness ? 'witness' : 'log',
          vkey: key.vkey,
          key_file: opts.out,
          vkey_file: pubFile,
        });
      }),
    );
}
