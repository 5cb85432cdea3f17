import type { Command } from 'commander';
import { ProxyError, type TrailMode } from '@trailmark/recorder';
import type { PgProxyService } from '@trailmark/pg-proxy';
import { ClientError } from '@trailmark/client';
import { TlogError, errorMessage, errorCode } from '@trailmark/tlog';
import { action, makeOutput, runUntilSignal } from '../program.js';
import { EXIT_OK, usage, cannotCheck } from '../exit.js';
import { loadLogKey, logKeyOptions, readTextFile } from './files.js';

interface PgProxyCliOptions {
  upstream: string;
  upstreamPasswordFile?: string;
  upstreamReadOnly?: string;
  log: string;
  key?: string;
  logKey?: string;
  logToken?: string;
  users: string;
  rules?: string;
  listen: string;
  spool: string;
  mode: string;
  name?: string;
  logParams?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  workers: string;
}

/** The first line of a file (a password file holds one line; its newline is not part of it). */
async function firstLine(file: string, what: string): Promise<string> {
  return (await readTextFile(file, what)).split(/\r?\n/)[0];
}

/**
 * `trailmark pg-proxy --upstream postgres://USER@HOST:PORT/DB --log URL --log-key VKEY --users FILE [--rules FILE]
 * [--listen HOST:PORT] [--spool DIR] [--mode spool|strict] [--name NAME] [--log-params] [--tls-cert FILE --tls-key FILE]`
 * (contract section 5b). The upstream password comes from --upstream-password-file, PGPASSWORD or the URL.
 */
export function registerPgProxy(program: Command): void {
  const cmd = program
    .command('pg-proxy')
    .description('PostgreSQL access proxy: SCRAM login as proxy users, every statement recorded in the log')
    .requiredOption('--upstream <url>', "the database and the proxy's own login there: postgres://USER@HOST:PORT/DB")
    .option('--upstream-password-file <file>', 'file holding the upstream password (else PGPASSWORD, else the URL)')
    .option(
      '--upstream-read-only <url>',
      'where read-only sessions log in: a database role that can only read (its password from the URL, else the same sources)',
    )
    .requiredOption('--log <url>', 'log base URL');
  logKeyOptions(cmd)
    .option('--log-token <token>', 'bearer token for a log whose write API requires one (or TRAILMARK_LOG_TOKEN)')
    .requiredOption(
      '--users <file>',
      'JSON users file {"<user>": {"password": "SCRAM-SHA-256$...", "roles": [...]}} (see pg-password)',
    )
    .option('--rules <file>', 'JSON rules file {"<role>": {"databases": [...], "read_only": bool}}')
    .option('--listen <host:port>', 'where the proxy listens', '127.0.0.1:6432')
    .option(
      '--spool <dir>',
      'spool directory (events fsynced here before statements are forwarded)',
      './trailmark-pg-spool',
    )
    .option(
      '--mode <mode>',
      'spool (default): durable locally first; strict: forward only after the log acknowledged',
      'spool',
    )
    .option('--name <name>', "the events' proxy field (default: the host name)")
    .option('--log-params', 'record the values of bound parameters (default: only their number)')
    .option('--tls-cert <file>', 'PEM certificate for TLS to clients (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for TLS to clients')
    .option(
      '--workers <n>',
      'serve with N processes on one address, each with its own spool DIR/worker-<i> (its own stream)',
      '1',
    )
    .action(
      action(async (opts: PgProxyCliOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const logKey = await loadLogKey(opts);
        const password = opts.upstreamPasswordFile
          ? await firstLine(opts.upstreamPasswordFile, 'upstream password file')
          : process.env.PGPASSWORD;
        const logToken = opts.logToken ?? process.env.TRAILMARK_LOG_TOKEN;
        const workers = Number(opts.workers);
        if (!Number.isInteger(workers) || workers < 1 || workers > 64)
          throw usage(`--workers must be 1..64, got ${opts.workers}`);
        // loaded here, not at start: other commands do not pay for it
        const { servePgProxy } = await import('@trailmark/pg-proxy');
        let running: PgProxyService;
        try {
          running = await servePgProxy(
            {
              upstream: opts.upstream,
              ...(password !== undefined ? { upstreamPassword: password, upstreamReadOnlyPassword: password } : {}),
              ...(opts.upstreamReadOnly ? { upstreamReadOnly: opts.upstreamReadOnly } : {}),
              log: opts.log,
              logKey,
              ...(logToken ? { logToken } : {}),
              users: opts.users,
              ...(opts.rules ? { rules: opts.rules } : {}),
              listen: opts.listen,
              spoolDir: opts.spool,
              mode: opts.mode as TrailMode,
              ...(opts.name ? { name: opts.name } : {}),
              logParams: Boolean(opts.logParams),
              ...(opts.tlsCert ? { tlsCert: opts.tlsCert } : {}),
              ...(opts.tlsKey ? { tlsKey: opts.tlsKey } : {}),
            },
            workers,
          );
        } catch (e) {
          if (e instanceof ProxyError || e instanceof ClientError || e instanceof TlogError) throw usage(e.message);
          const code = errorCode(e);
          throw cannotCheck(`cannot start the pg-proxy: ${code ? `${code}: ` : ''}${errorMessage(e)}`, undefined, e);
        }
        const url = `postgres://${running.host}:${running.port}`;
        // a worker process runs quietly: its primary speaks for the pool
        if (!running.worker) {
          out.info(`listening: ${url}`);
          // each worker's spool is its own stream (contract section 4); its key's vkey is what auditors pin
          for (const s of running.streams) out.info(`stream key: ${s.key}\nstream: ${s.id}`);
          out.info(`mode: ${opts.mode}, workers: ${running.workers}, log: ${opts.log} (${logKey.name})`);
          out.result({
            listen: url,
            mode: opts.mode,
            workers: running.workers,
            streams: running.streams,
            log: opts.log,
            origin: logKey.name,
          });
        }
        await runUntilSignal(() => running.close());
        return EXIT_OK;
      }),
    );
}

/**
 * `trailmark pg-password`: reads one password line from standard input and prints its SCRAM-SHA-256 verifier
 * in PostgreSQL's format, for the pg-proxy users file.
 */
export function registerPgPassword(program: Command): void {
  program
    .command('pg-password')
    .description('print a SCRAM-SHA-256 verifier (PostgreSQL format) for a password read from standard input')
    .action(
      action(async () => {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
        if (password === '') throw usage('no password on standard input (one line)');
        const { makeVerifier } = await import('@trailmark/pg-proxy');
        process.stdout.write(makeVerifier(password) + '\n');
        return EXIT_OK;
      }),
    );
}
