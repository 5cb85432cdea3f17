import type { Command } from 'commander';
import { action } from '../program.js';
import { recorderOptions, runRecorder, type RecorderCliOptions } from './recorder.js';

interface ProxyCliOptions extends RecorderCliOptions {
  upstream: string;
}

/**
 * `trailmark proxy --upstream URL --log URL --log-key VKEY --tokens FILE [--log-token TOKEN] [--listen HOST:PORT]
 * [--spool DIR] [--mode spool|strict] [--name NAME] [--redact-header NAME ...] [--redact-query NAME ...]
 * [--admin-listen HOST:PORT] [--rules FILE] [--workers N]` (contract section 5).
 */
export function registerProxy(program: Command): void {
  const cmd = program
    .command('proxy')
    .description('access proxy: record every request to one upstream in the log (spool or strict mode)')
    .requiredOption('--upstream <url>', 'the upstream service origin (http or https)');
  recorderOptions(cmd, '127.0.0.1:8081').action(
    action(async (opts: ProxyCliOptions, c: Command) =>
      // startProxy checks --mode and both URLs (a ProxyError, exit 2)
      runRecorder(
        'proxy',
        opts,
        c,
        async (common) => (await import('@trailmark/proxy')).startProxy({ ...common, upstream: opts.upstream }),
        {
          upstream: opts.upstream,
        },
      ),
    ),
  );
}
