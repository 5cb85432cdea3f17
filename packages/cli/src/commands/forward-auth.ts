import type { Command } from 'commander';
import { action } from '../program.js';
import { recorderOptions, runRecorder, type RecorderCliOptions } from './recorder.js';

interface ForwardAuthCliOptions extends RecorderCliOptions {
  target?: string;
}

/**
 * `trailmark forward-auth --log URL --log-key VKEY --tokens FILE [--rules FILE] [--target URL] [--listen HOST:PORT]
 * [--spool DIR] [--mode spool|strict] [--name NAME] [...]` (contract section 5): answers a gateway's auth
 * subrequests (nginx auth_request, Traefik ForwardAuth, Caddy forward_auth, Envoy ext_authz) and records them.
 */
export function registerForwardAuth(program: Command): void {
  const cmd = program
    .command('forward-auth')
    .description(
      "record requests for a gateway's auth subrequests (nginx auth_request, Traefik, Caddy, Envoy ext_authz)",
    )
    .option('--target <url>', 'action.target when the gateway sends no X-Forwarded-Proto/X-Forwarded-Host');
  recorderOptions(cmd, '127.0.0.1:8082').action(
    action(async (opts: ForwardAuthCliOptions, c: Command) =>
      runRecorder(
        'forward-auth',
        opts,
        c,
        async (common) =>
          (await import('@trailmark/proxy')).startForwardAuth({
            ...common,
            ...(opts.target ? { target: opts.target } : {}),
          }),
        opts.target ? { target: opts.target } : {},
      ),
    ),
  );
}
