import type { Command } from 'commander';
import { action, makeOutput, runUntilSignal } from '../program.js';
import { usage, cannotCheck } from '../exit.js';

interface ServeOptions {
  data: string;
  store?: string;
  key?: string;
  create?: boolean;
  origin?: string;
  listen: string;
  policy?: string;
  submitTokens?: string;
}

/**
 * `trailmark serve`: runs the log until SIGTERM/SIGINT, printing `vkey: ...` and `url: ...` once it listens.
 * Logs go to stderr as JSON lines.
 */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a transparency log (LevelDB storage, signed checkpoints, tiles, RFC 6962 API)')
    .option('--data <dir>', 'data directory', './trailmark-data')
    .option(
      '--store <url>',
      'keep the log in PostgreSQL (postgres://USER@HOST:PORT/DB, password from PGPASSWORD or the URL) instead of LevelDB in DIR; every serve on the same store and key is one log',
    )
    .option('--key <file>', 'log private key (default DIR/log.key); created with a new log when it does not exist')
    .option(
      '--create',
      'start a new log for an existing key on a data directory that holds no log (refused without it: a second history under one key)',
    )
    .option('--origin <name>', 'log origin = key name, for a newly created key (default localhost/trailmark)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8080')
    .option('--policy <file>', 'tlog-policy file: witnesses to cosign checkpoints, and the quorum')
    .option('--submit-tokens <file>', 'bearer tokens accepted by the write API, one a line')
    .action(
      action(async (opts: ServeOptions, cmd: Command) => {
        // daemons are loaded when their command runs, so a read command never loads one (test/layering.test.ts)
        const { ConfigError, jsonLogger, LogServerError, readSubmitTokens, startLogServer } =
          await import('@trailmark/log-server');
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        let server;
        try {
          const submitTokens = opts.submitTokens ? readSubmitTokens(opts.submitTokens) : undefined;
          server = await startLogServer({
            // --store with a path rather than a postgres:// URL names the embedded LevelDB store, like --data
            dataDir: opts.store && !isPgUrl(opts.store) ? opts.store : opts.data,
            store: opts.store && isPgUrl(opts.store) ? opts.store : undefined,
            keyFile: opts.key,
            create: Boolean(opts.create),
            origin: opts.origin,
            listen: opts.listen,
            submitTokens,
            policyFile: opts.policy,
            logger: jsonLogger(process.stderr, { component: 'log' }),
          });
        } catch (e) {
          // a wrong configuration is the command's mistake; a store that cannot be served is not: both exit 2
          if (e instanceof ConfigError) throw usage(`refusing to start: ${e.message}`, undefined, e);
          if (e instanceof LogServerError) throw cannotCheck(`refusing to start: ${e.message}`, undefined, e);
          throw e;
        }
        out.info(`vkey: ${server.vkey}`);
        out.info(`url: ${server.url}`);
        out.result({ ok: true, vkey: server.vkey, url: server.url, origin: server.origin });
        await runUntilSignal(() => server.close());
      }),
    );
}

const isPgUrl = (s: string): boolean => /^postgres(ql)?:\/\//i.test(s);
