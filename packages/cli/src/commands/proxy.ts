import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { ProxyError, startProxy, type RunningProxy, type TrailMode } from '@trailmark/proxy';
import { TlogError } from '@trailmark/tlog';
import { action, makeOutput, runUntilSignal } from '../program.js';
import { EXIT_OK, usage } from '../exit.js';
import { loadVkey } from './files.js';

interface ProxyCliOptions {
  upstream: string;
  log: string;
  logKey: string;
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
  streamKey?: string;
  heartbeatSeconds?: string;
  benchWithoutStreams?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The log token from --log-token, --log-token-file or TRAILMARK_LOG_TOKEN (in that order), or undefined. */
async function readLogToken(opts: { logToken?: string; logTokenFile?: string }): Promise<string | undefined> {
  if (opts.logToken && opts.logTokenFile) throw usage('give --log-token or --log-token-file, not both');
  if (opts.logToken) return opts.logToken;
  if (opts.logTokenFile) {
    let text: string;
    try {
      text = await readFile(opts.logTokenFile, 'utf8');
    } catch (e) {
      throw usage(`cannot read --log-token-file ${opts.logTokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const token = text.split('\n')[0].trim();
    if (!token) throw usage(`--log-token-file ${opts.logTokenFile} is empty`);
    return token;
  }
  return process.env.TRAILMARK_LOG_TOKEN?.trim() || undefined;
}

/**
 * `trailmark proxy --upstream URL --log URL --log-key VKEY --tokens FILE [--log-token TOKEN] [--listen HOST:PORT]
 * [--spool DIR] [--mode spool|strict] [--name NAME] [--redact-header NAME ...] [--redact-query NAME ...]
 * [--admin-listen HOST:PORT] [--rules FILE]` (contract section 5).
 */
export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('access proxy: record every request to one upstream in the log (spool or strict mode)')
    .requiredOption('--upstream <url>', 'the upstream service origin (http or https)')
    .requiredOption('--log <url>', 'log base URL')
    .requiredOption('--log-key <vkey>', "the log's vkey or a file holding it")
    .requiredOption('--tokens <file>', 'JSON file mapping bearer tokens to identities {"<token>": {"id", "roles"}}')
    .option('--log-token <token>', 'bearer token for a log whose write API requires one (visible in ps: prefer the two below)')
    .option('--log-token-file <file>', 'read the log token from this file (first line)')
    .option('--listen <host:port>', 'where the proxy listens', '127.0.0.1:8081')
    .option('--spool <dir>', 'spool directory (events fsynced here before forwarding)', './trailmark-spool')
    .option('--mode <mode>', 'spool (default): durable locally first; strict: forward only after the log acknowledged', 'spool')
    .option('--name <name>', "the events' proxy field (default: the host name)")
    .option('--redact-header <name>', 'header whose value never reaches the log (repeatable)', collect)
    .option('--redact-query <name>', 'query parameter whose value never reaches the log (repeatable)', collect)
    .option('--admin-listen <host:port>', 'serve /healthz and /metrics here')
    .option('--stream-key <file>', "the stream key (signed-note private key); default: stream.key in the spool directory, created on first start")
    .option('--heartbeat-seconds <n>', 'seconds between signed heartbeat events (at most 60)', '30')
    // events without stream fields, as before streams: only for scripts/bench-proxy.ts to measure their cost
    .addOption(new Option('--bench-without-streams').hideHelp())
    .option('--rules <file>', 'JSON file of role rules {"<role>": {"methods": [...], "paths": [...]}}: 403 outside them')
    .action(
      action(async (opts: ProxyCliOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        // startProxy checks --mode and both URLs (a ProxyError, exit 2)
        const logKey = await loadVkey(opts.logKey);
        const logToken = await readLogToken(opts);
        const heartbeat = Number(opts.heartbeatSeconds);
        if (!(heartbeat > 0 && heartbeat <= 60)) throw usage(`--heartbeat-seconds must be a number in (0, 60], got ${JSON.stringify(opts.heartbeatSeconds)}`);
        let running: RunningProxy;
        try {
          running = await startProxy({
            upstream: opts.upstream,
            log: opts.log,
            logKey,
            tokens: opts.tokens,
            ...(logToken ? { logToken } : {}),
            ...(opts.rules ? { rules: opts.rules } : {}),
            listen: opts.listen,
            spoolDir: opts.spool,
            mode: opts.mode as TrailMode,
            ...(opts.name ? { name: opts.name } : {}),
            redactHeaders: opts.redactHeader ?? [],
            redactQuery: opts.redactQuery ?? [],
            ...(opts.adminListen ? { adminListen: opts.adminListen } : {}),
            ...(opts.streamKey ? { streamKey: opts.streamKey } : {}),
            heartbeatMs: Math.round(heartbeat * 1000),
            ...(opts.benchWithoutStreams ? { streams: false } : {}),
          });
        } catch (e) {
          if (e instanceof ProxyError || e instanceof TlogError) throw usage(e.message);
          const err = e as NodeJS.ErrnoException;
          throw usage(`cannot start the proxy: ${err.code ? `${err.code}: ` : ''}${err.message}`);
        }
        out.info(`url: ${running.url}`);
        if (running.adminUrl) out.info(`admin: ${running.adminUrl}`);
        out.info(`mode: ${opts.mode}, upstream: ${opts.upstream}, log: ${opts.log} (${logKey.name})`);
        out.info(`stream key: ${running.streamKey}`);
        out.info(`stream: ${running.streamId}`);
        out.result({ url: running.url, admin: running.adminUrl, mode: opts.mode, upstream: opts.upstream, log: opts.log, origin: logKey.name, stream_key: running.streamKey, stream: running.streamId });
        await runUntilSignal(() => running.close());
        return EXIT_OK;
      }),
    );
}
