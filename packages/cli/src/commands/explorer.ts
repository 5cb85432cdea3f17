import type { Command } from 'commander';
import { startExplorer } from '@trailmark/explorer';
import { action, makeOutput, runUntilSignal } from '../program.js';
import { usage } from '../exit.js';
import { loadLogKey, loadPolicy, readTextFile } from './files.js';

interface ExplorerCliOptions {
  log: string;
  key?: string;
  logKey?: string;
  policy?: string;
  data: string;
  listen: string;
  interval: string;
}

/**
 * `trailmark explorer --log URL --key VKEY [--policy FILE] [--data DIR] [--listen HOST:PORT]` (contract
 * section 8): a verified index of the log, its search API and its page, until SIGTERM/SIGINT.
 */
export function registerExplorer(program: Command): void {
  program
    .command('explorer')
    .description('index the log (every entry checked against verified tiles) and serve its search API and page')
    .requiredOption('--log <url>', 'log URL')
    .option('--key <vkey>', 'log vkey, or a file holding it')
    .option('--log-key <vkey>', 'same as --key')
    .option('--policy <file>', 'tlog-policy file: checkpoints must meet its witness quorum (the page checks it too)')
    .option('--data <dir>', 'index directory (SQLite)', './trailmark-explorer')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8070')
    .option('--interval <ms>', 'poll interval for new checkpoints, milliseconds', '1000')
    .action(
      action(async (opts: ExplorerCliOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const interval = Number(opts.interval);
        if (!Number.isSafeInteger(interval) || interval < 50)
          throw usage(`--interval ${opts.interval} must be an integer >= 50 (milliseconds)`);
        const logKey = await loadLogKey(opts);
        const policyText = opts.policy !== undefined ? await readTextFile(opts.policy, 'policy file') : undefined;
        const policy = opts.policy !== undefined ? await loadPolicy(opts.policy) : undefined;
        let running;
        try {
          running = await startExplorer({
            log: opts.log,
            logKey,
            dataDir: opts.data,
            listen: opts.listen,
            intervalMs: interval,
            ...(policy ? { policy, policyText } : {}),
          });
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          throw usage(`cannot start the explorer: ${err.code ? `${err.code}: ` : ''}${err.message}`);
        }
        out.info(`url: ${running.url}`);
        out.info(`following: ${logKey.name} at ${opts.log}`);
        out.result({ ok: true, url: running.url, origin: logKey.name, log: opts.log });
        await runUntilSignal(() => running.close());
      }),
    );
}
