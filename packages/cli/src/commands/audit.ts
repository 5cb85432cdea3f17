import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { auditLog, readAuditState, readAuditStreams, writeAuditState, type AuditProgress } from '@trailmark/monitor';
import { action, makeOutput } from '../program.js';
import { usage } from '../exit.js';
import { type LogArgs, logOptions, logReader, mapped } from './checkpoint.js';
import { loadLogKey } from './files.js';
import { auditStreams, reportStreams, streamsJson } from './streams.js';

interface AuditOptions extends LogArgs {
  state?: string;
  concurrency?: string;
  workers?: string;
}

/**
 * `trailmark audit --log URL --key VKEY [--state FILE]`: every entry and tile (since the last audit with
 * --state) fetched and recomputed against the signed checkpoint; exit 1 on the first mismatch.
 */
export function registerAudit(program: Command): void {
  logOptions(
    program
      .command('audit')
      .description('fetch every entry bundle and tile, recompute every hash and the root, check them against the signed checkpoint'),
  )
    .option('--state <file>', 'remember the audited checkpoint; next time prove consistency with it and fetch only what is new')
    .option('--concurrency <n>', 'entry bundles fetched at once', '16')
    .option('--workers <n>', 'worker threads that fetch and hash bundles (0: all on one thread)', '2')
    .action(
      action(async (opts: AuditOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const concurrency = Number(opts.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw usage(`--concurrency must be 1..256, got ${opts.concurrency}`);
        const workers = Number(opts.workers);
        if (!Number.isInteger(workers) || workers < 0 || workers > 16) throw usage(`--workers must be 0..16, got ${opts.workers}`);
        const logKey = await loadLogKey(opts);
        const reader = logReader(opts);
        const previous = opts.state !== undefined ? await mapped(() => readAuditState(opts.state!, logKey)) : null;
        const previousStreams = previous ? await mapped(() => readAuditStreams(opts.state!)) : undefined;

        // a progress bar only for a person watching a terminal; scripts and --json get none
        const showBar = !out.json && Boolean(process.stderr.isTTY);
        const bar = showBar
          ? new cliProgress.SingleBar(
              { format: 'auditing [{bar}] {percentage}% | {value}/{total} entries | {eta_formatted} left', stream: process.stderr, hideCursor: true },
              cliProgress.Presets.shades_classic,
            )
          : null;
        let started = false;
        const onProgress = (p: AuditProgress) => {
          if (!bar) return;
          if (!started) {
            bar.start(Number(p.entriesTotal), 0);
            started = true;
          }
          bar.update(Number(p.entriesDone));
        };
        const t0 = performance.now();
        let report;
        try {
          report = await mapped(() => auditLog(reader, logKey, { previous, bundleConcurrency: concurrency, workers, onProgress }));
        } finally {
          if (started) bar!.stop();
        }
        // the tree verified: now every proxy stream in it (contract section 4)
        const streams = await auditStreams(reader, logKey, report, previousStreams);
        const seconds = (performance.now() - t0) / 1000;
        if (opts.state !== undefined) await mapped(() => writeAuditState(opts.state!, { ...report.state, streams: streams.state }));
        out.info(`${report.origin}: ${report.summary}`);
        const code = reportStreams(out, streams);
        out.result({
          ok: code === 0,
          ...(code !== 0 ? { exit: code } : {}),
          origin: report.origin,
          tree_size: report.treeSize,
          root_hash: report.rootHash,
          from_size: report.fromSize,
          entries_verified: report.entriesVerified,
          tiles_verified: report.tilesVerified,
          tiles_total: report.tilesTotal,
          ...(report.consistentWith !== undefined ? { consistent_with: report.consistentWith } : {}),
          summary: report.summary,
          seconds: Math.round(seconds * 1000) / 1000,
          ...(opts.state !== undefined ? { state: opts.state } : {}),
          ...streamsJson(streams),
        });
        return code;
      }),
    );
}
