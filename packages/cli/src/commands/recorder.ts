import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { availableParallelism } from 'node:os';
import type { RecorderOptions, RunningPool, RunningRecorder } from '@trailmark/proxy';
import { ProxyError, type TrailMode } from '@trailmark/recorder';
import { ClientError } from '@trailmark/client';
import { errorMessage, TlogError, errorCode } from '@trailmark/tlog';
import { makeOutput, runUntilSignal } from '../program.js';
import { EXIT_OK, usage, cannotCheck } from '../exit.js';
import { loadLogKey, logKeyOptions } from './files.js';

/** The options `proxy` and `forward-auth` share (contract section 5), as commander parses them. */
export interface RecorderCliOptions {
  log: string;
  key?: string;
  logKey?: string;
  tokens: string;
  logToken?: string;
  logTokenFile?: string;
  listen: string;
  spool: string;
  mode: string;
  name?: string;
  redactHeader?: string[];
  redactQuery?: string[];
  adminListen?: string;
  rules?: string;
  workers: string;
  streamKey?: string;
  heartbeatSeconds?: string;
  benchWithoutStreams?: boolean;
}

/** The log token from --log-token, --log-token-file or TRAILMARK_LOG_TOKEN (in that order), or undefined. */
async function readLogToken(opts: { logToken?: string; logTokenFile?: string }): Promise<string | undefined> {
  if (opts.logToken && opts.logTokenFile) throw usage('give --log-token or --log-token-file, not both');
  if (opts.logToken) return opts.logToken;
  if (opts.logTokenFile) {
    let text: string;
    try {
      text = await readFile(opts.logTokenFile, 'utf8');
    } catch (e) {
      throw usage(
        `cannot read --log-token-file ${opts.logTokenFile}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
      );
    }
    const token = text.split('\n')[0].trim();
    if (!token) throw usage(`--log-token-file ${opts.logTokenFile} is empty`);
    return token;
  }
  return process.env.TRAILMARK_LOG_TOKEN?.trim() || undefined;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Declares the shared options on a recording command. */
export function recorderOptions(cmd: Command, defaultListen: string): Command {
  return (
    logKeyOptions(cmd.requiredOption('--log <url>', 'log base URL'))
      .requiredOption('--tokens <file>', 'JSON file mapping bearer tokens to identities {"<token>": {"id", "roles"}}')
      .option(
        '--log-token <token>',
        'bearer token for a log whose write API requires one (visible in ps: prefer the two below)',
      )
      .option('--log-token-file <file>', 'read the log token from this file (first line); or set TRAILMARK_LOG_TOKEN')
      .option('--listen <host:port>', 'where it listens', defaultListen)
      .option(
        '--spool <dir>',
        'spool directory (request events fsynced here before the request proceeds)',
        './trailmark-spool',
      )
      .option(
        '--mode <mode>',
        'spool (default): durable locally first; strict: only after the log acknowledged',
        'spool',
      )
      .option('--name <name>', "the events' proxy field (default: the host name)")
      .option('--redact-header <name>', 'header whose value never reaches the log (repeatable)', collect)
      .option('--redact-query <name>', 'query parameter whose value never reaches the log (repeatable)', collect)
      .option('--admin-listen <host:port>', 'serve /healthz and /metrics here')
      .option(
        '--rules <file>',
        'JSON file of role rules {"<role>": {"methods": [...], "paths": [...]}}: 403 outside them',
      )
      .option(
        '--stream-key <file>',
        'the stream key (signed-note private key); default: stream.key in the spool directory, created on first start',
      )
      .option('--heartbeat-seconds <n>', 'seconds between signed heartbeat events (at most 60)', '30')
      // events without stream fields, as before streams: only for scripts/bench-proxy.ts to measure their cost
      .addOption(new Option('--bench-without-streams').hideHelp())
      .addOption(
        new Option('--workers <n>', 'processes serving the one listening address, each with its own spool and stream')
          // the proxy's defaultWorkers(), without loading the proxy for every command
          .default(String(availableParallelism()), 'the CPU count'),
      )
  );
}

/**
 * Starts a recording daemon with its workers and serves until a signal (the primary) or until the primary
 * stops it (a worker). `start` gets the shared options with the spool directory and listen address to use.
 * Precondition: opts parsed by recorderOptions. A configuration error is a usage error (exit 2).
 */
export async function runRecorder(
  daemon: 'proxy' | 'forward-auth',
  opts: RecorderCliOptions,
  cmd: Command,
  start: (common: RecorderOptions & { listen: string }) => Promise<RunningRecorder>,
  extra: Record<string, string>,
): Promise<number> {
  const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
  const logKey = await loadLogKey(opts);
  const workers = Number(opts.workers);
  const logToken = await readLogToken(opts);
  const heartbeat = Number(opts.heartbeatSeconds ?? '30');
  if (!(heartbeat > 0 && heartbeat <= 60))
    throw usage(`--heartbeat-seconds must be a number in (0, 60], got ${JSON.stringify(opts.heartbeatSeconds)}`);
  const common: RecorderOptions & { listen: string } = {
    log: opts.log,
    logKey,
    tokens: opts.tokens,
    ...(logToken ? { logToken } : {}),
    ...(opts.streamKey ? { streamKey: opts.streamKey } : {}),
    heartbeatMs: Math.round(heartbeat * 1000),
    ...(opts.benchWithoutStreams ? { streams: false } : {}),
    ...(opts.rules ? { rules: opts.rules } : {}),
    listen: opts.listen,
    spoolDir: opts.spool,
    mode: opts.mode as TrailMode,
    ...(opts.name ? { name: opts.name } : {}),
    redactHeaders: opts.redactHeader ?? [],
    redactQuery: opts.redactQuery ?? [],
    ...(opts.adminListen ? { adminListen: opts.adminListen } : {}),
  };
  // the pool serves /healthz and /metrics for all workers; the daemons themselves get no admin server
  const { adminListen: _admin, ...perWorker } = common;
  let pool: RunningPool;
  try {
    // daemons are loaded when their command runs, so a read command never loads one (test/layering.test.ts)
    const { runWorkers } = await import('@trailmark/proxy');
    pool = await runWorkers({
      workers,
      recorder: common,
      listen: opts.listen,
      daemon,
      start: async (spoolDir, listen) => {
        const running = await start({ ...perWorker, spoolDir, listen: listen ?? opts.listen });
        // each spool is its own stream (contract section 4); its key's vkey is what auditors pin
        if (running.streamKey) out.info(`stream key: ${running.streamKey}\nstream: ${running.streamId}`);
        return running;
      },
    });
  } catch (e) {
    if (e instanceof ProxyError || e instanceof ClientError || e instanceof TlogError) throw usage(e.message);
    const code = errorCode(e);
    throw cannotCheck(`cannot start ${daemon}: ${code ? `${code}: ` : ''}${errorMessage(e)}`, undefined, e);
  }
  if (pool.role === 'worker') {
    await pool.stopped;
    return EXIT_OK;
  }
  out.info(`url: ${pool.url}`);
  if (pool.adminUrl) out.info(`admin: ${pool.adminUrl}`);
  const described = Object.entries(extra)
    .map(([k, v]) => `${k}: ${v}, `)
    .join('');
  out.info(`mode: ${common.mode}, workers: ${pool.workers}, ${described}log: ${opts.log} (${logKey.name})`);
  for (const w of pool.pids()) out.info(`worker ${w.index}: pid ${w.pid}`);
  out.result({
    url: pool.url,
    admin: pool.adminUrl,
    mode: common.mode,
    workers: pool.workers,
    ...extra,
    log: opts.log,
    origin: logKey.name,
  });
  await runUntilSignal(() => pool.close());
  return EXIT_OK;
}
