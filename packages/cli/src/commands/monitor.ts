import type { Command } from 'commander';
import type { RunningMonitor } from '@trailmark/monitor';
import { errorMessage, TlogError, errorCode } from '@trailmark/tlog';
import { action, makeOutput, runUntilSignal } from '../program.js';
import { EXIT_OK, usage, cannotCheck } from '../exit.js';
import { loadLogKey, readTextFile } from './files.js';

interface MonitorCliOptions {
  log: string[];
  logKey?: string[];
  key?: string[];
  witnessKey?: string;
  peer?: string[];
  listen?: string;
  data?: string;
  once?: boolean;
  alertWebhook?: string;
  interval: string;
  streamStall: string;
  streams: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/**
 * `trailmark monitor --log URL --log-key VKEY [--witness-key FILE] [--peer URL ...] [--listen HOST:PORT]
 * [--data DIR] [--once] [--alert-webhook URL]` (contract section 7). --log/--log-key may repeat, paired in order.
 */
export function registerMonitor(program: Command): void {
  program
    .command('monitor')
    .description('follow logs, witness (cosign) consistent checkpoints, gossip with peers, keep split-view evidence')
    .requiredOption('--log <url>', 'log base URL (repeat to follow several logs)', collect)
    .option('--log-key <vkey>', "the log's vkey or a file holding it (one per --log, in order)", collect)
    .option('--key <vkey>', 'same as --log-key', collect)
    .option('--witness-key <file>', 'witness private key (trailmark keygen --witness): serve POST /add-checkpoint')
    .option('--peer <url...>', 'peer monitor base URLs to pull from and push to (--peer A B, or --peer A --peer B)')
    .option(
      '--listen <host:port>',
      'HTTP address for witness, gossip, evidence and metrics (default 127.0.0.1:8090; none with --once)',
    )
    .option(
      '--data <dir>',
      'data directory (LevelDB view, witness state, evidence files); without it the view lives only for this run',
    )
    .option('--once', 'check the logs and peers one time and exit: 0 consistent, 1 misbehaviour, 2 could not check')
    .option('--alert-webhook <url>', 'POST each new piece of evidence (JSON) to this URL')
    .option('--interval <ms>', 'polling and gossip period in milliseconds', '2000')
    .option('--stream-stall <seconds>', 'alert on a proxy stream with neither heartbeat nor end for this long', '180')
    .option('--no-streams', 'do not read entries to check proxy streams (only checkpoints)')
    .action(
      action(async (opts: MonitorCliOptions, cmd: Command) => {
        // daemons are loaded when their command runs, so a read command never loads one (test/layering.test.ts)
        const { MonitorError, startMonitor } = await import('@trailmark/monitor');
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        if (opts.logKey && opts.key) throw usage("give the logs' vkeys with --log-key or with --key, not both");
        const keys = opts.logKey ?? opts.key ?? [];
        if (opts.log.length !== keys.length) {
          throw usage(`give one --log-key per --log (got ${opts.log.length} --log and ${keys.length} --log-key)`);
        }
        const interval = Number(opts.interval);
        if (!Number.isSafeInteger(interval) || interval < 50)
          throw usage(`--interval ${opts.interval} must be an integer >= 50 (milliseconds)`);
        const stall = Number(opts.streamStall);
        if (!Number.isFinite(stall) || stall <= 0)
          throw usage(`--stream-stall ${opts.streamStall} must be a positive number of seconds`);
        const logs = await Promise.all(
          opts.log.map(async (url, i) => ({ url, vkey: await loadLogKey({ logKey: keys[i] }) })),
        );
        let witnessKey: string | undefined;
        if (opts.witnessKey) {
          witnessKey = await readTextFile(opts.witnessKey, 'witness key');
        }
        const listen = opts.once ? opts.listen : (opts.listen ?? '127.0.0.1:8090');
        let running: RunningMonitor;
        try {
          running = await startMonitor({
            logs,
            peers: opts.peer,
            dataDir: opts.data,
            witnessKey,
            listen,
            alertWebhook: opts.alertWebhook,
            pollIntervalMs: interval,
            gossipIntervalMs: interval,
            follow: !opts.once,
            followStreams: opts.streams,
            streamStallMs: stall * 1000,
            // JSON lines on stderr, readable text on a terminal (the shared daemon logger)
          });
        } catch (e) {
          if (e instanceof MonitorError || e instanceof TlogError) throw usage(e.message);
          const code = errorCode(e);
          throw cannotCheck(`cannot start the monitor: ${code ? `${code}: ` : ''}${errorMessage(e)}`, undefined, e);
        }
        if (opts.once) {
          try {
            const r = await running.monitor.checkOnce();
            for (const o of r.outcomes) out.info(`${o.outcome.status.padEnd(12)} ${o.what}: ${o.outcome.message}`);
            for (const ev of r.evidence) out.info(`evidence     ${ev.origin} ${ev.kind}: ${ev.detail}`);
            if (r.evidence.length && opts.data === undefined) {
              // nothing is kept without --data: print the evidence itself, so it can be saved and verified offline
              out.info(
                'the evidence (not kept without --data; save it and check it with `trailmark verify evidence FILE --key VKEY`):',
              );
              out.info(JSON.stringify(r.evidence, null, 2));
            }
            out.info(
              r.code === 0 ? 'all consistent' : r.code === 1 ? 'MISBEHAVIOUR FOUND' : 'could not check everything',
            );
            out.result({
              ok: r.code === 0,
              exit: r.code,
              outcomes: r.outcomes.map((o) => ({ what: o.what, ...o.outcome })),
              evidence: r.evidence,
            });
            return r.code;
          } finally {
            await running.close();
          }
        }
        if (running.url) out.info(`url: ${running.url}`);
        if (running.witnessVkey) out.info(`witness: ${running.witnessVkey}`);
        for (const l of logs) out.info(`following: ${l.vkey.name} at ${l.url}`);
        out.result({
          url: running.url,
          witness: running.witnessVkey,
          logs: logs.map((l) => ({ origin: l.vkey.name, url: l.url })),
        });
        await runUntilSignal(() => running.close());
        return EXIT_OK;
      }),
    );
}

/**
 * `trailmark monitor-ack --data DIR [ID ...]`: an operator has seen the evidence (all of it without ids); the
 * monitor's /healthz is healthy again once every piece it holds is acknowledged. Works beside a running monitor.
 */
export function registerMonitorAck(program: Command): void {
  program
    .command('monitor-ack')
    .description("acknowledge evidence in a monitor's data directory, so its /healthz reports healthy again")
    .requiredOption('--data <dir>', "the monitor's data directory")
    .argument('[ids...]', 'evidence ids (file names in DIR/evidence without .json); default: all')
    .action(
      action(async (ids: string[], opts: { data: string }, cmd: Command) => {
        const { acknowledgeEvidence } = await import('@trailmark/monitor');
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        let done: string[];
        try {
          done = await acknowledgeEvidence(opts.data, ids);
        } catch (e) {
          throw usage(errorMessage(e));
        }
        out.info(done.length ? `acknowledged: ${done.join(', ')}` : `no evidence in ${opts.data}`);
        out.result({ ok: true, acknowledged: done });
      }),
    );
}
