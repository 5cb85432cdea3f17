import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { auditLog, readAuditState, readAuditStreams, writeAuditState, type AuditProgress } from '@trailmark/client';
import { auditStore, LogStateError } from '@trailmark/log-server';
import { vkeyOf } from '@trailmark/tlog';
import { action, makeOutput, type Output } from '../program.js';
import { failed, usage } from '../exit.js';
import { type LogArgs, logReader, mapped } from './checkpoint.js';
import { loadLogKey, loadVkey } from './files.js';
import { auditStreams, reportStreams, streamsJson } from './streams.js';

interface AuditOptions extends Omit<LogArgs, 'log' | 'key'> {
  log?: string;
  key?: string;
  logKey?: string;
  data?: string;
  state?: string;
  concurrency?: string;
  workers?: string;
}

/**
 * `trailmark audit --log URL --key VKEY [--state FILE]`: every entry and tile (since the last audit with
 * --state) fetched and recomputed against the signed checkpoint; exit 1 on the first mismatch.
 * `trailmark audit --data DIR [--key VKEY]`: the same offline, on a stopped log's data directory (or a copy),
 * plus the dedup index; names the first damaged entry, tile or key.
 */
export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description(
      'fetch every entry bundle and tile, recompute every hash and the root, check them against the signed checkpoint (--data: a data directory, offline)',
    )
    .option('--log <url>', 'log URL')
    .option('--data <dir>', "audit a log's data directory offline instead (a stopped log, or a copy)")
    .option('--key <vkey>', 'log vkey, or a file holding it (required with --log)')
    .option('--log-key <vkey>', 'the same as --key')
    .option('--retries <n>', 'retries of a failed request (429, 503, network errors), with backoff', '5')
    .option('--timeout <seconds>', 'timeout of one request', '15')
    .option(
      '--state <file>',
      'remember the audited checkpoint; next time prove consistency with it and fetch only what is new',
    )
    .option('--concurrency <n>', 'entry bundles fetched at once', '16')
    .option('--workers <n>', 'worker threads that fetch and hash bundles (0: all on one thread)', '2')
    .action(
      action(async (opts: AuditOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        if (opts.key !== undefined && opts.logKey !== undefined && opts.key !== opts.logKey)
          throw usage('--key and --log-key name different keys');
        opts.key ??= opts.logKey;
        if (opts.data !== undefined) {
          if (opts.log !== undefined) throw usage('give either --log or --data, not both');
          return auditData(opts.data, opts.key, out);
        }
        if (opts.log === undefined || opts.key === undefined)
          throw usage('audit needs --log URL and --key VKEY (or --data DIR)');
        const concurrency = Number(opts.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256)
          throw usage(`--concurrency must be 1..256, got ${opts.concurrency}`);
        const workers = Number(opts.workers);
        if (!Number.isInteger(workers) || workers < 0 || workers > 16)
          throw usage(`--workers must be 0..16, got ${opts.workers}`);
        const logKey = await loadLogKey(opts);
        const reader = logReader({ ...opts, log: opts.log });
        const previous = opts.state !== undefined ? await mapped(() => readAuditState(opts.state!, logKey)) : null;
        const previousStreams = previous ? await mapped(() => readAuditStreams(opts.state!)) : undefined;

        // a progress bar only for a person watching a terminal; scripts and --json get none
        const showBar = !out.json && Boolean(process.stderr.isTTY);
        const bar = showBar
          ? new cliProgress.SingleBar(
              {
                format: 'auditing [{bar}] {percentage}% | {value}/{total} entries | {eta_formatted} left',
                stream: process.stderr,
                hideCursor: true,
              },
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
          report = await mapped(() =>
            auditLog(reader, logKey, { previous, bundleConcurrency: concurrency, workers, onProgress }),
          );
        } finally {
          if (started) bar!.stop();
        }
        // the tree verified: now every proxy stream in it (contract section 4)
        const streams = await auditStreams(reader, logKey, report, previousStreams);
        const seconds = (performance.now() - t0) / 1000;
        if (opts.state !== undefined)
          await mapped(() => writeAuditState(opts.state!, { ...report.state, streams: streams.state }));
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

/** `audit --data DIR [--key VKEY]`: exit 0 undamaged, 1 damaged (the first damage named), 2 unreadable. */
async function auditData(dir: string, keyArg: string | undefined, out: Output): Promise<void> {
  const vkey = keyArg !== undefined ? vkeyOf(await loadVkey(keyArg)) : undefined;
  let report;
  try {
    report = await auditStore(dir, { vkey });
  } catch (e) {
    if (e instanceof LogStateError) throw usage(`cannot audit ${dir}: ${e.message}`);
    throw e;
  }
  const details = {
    origin: report.origin,
    tree_size: report.size,
    root_hash: report.root,
    entries_verified: report.entries,
    tiles_verified: report.tiles,
    index_keys: report.indexKeys,
    key_given: report.keyGiven,
    damage: report.damage,
    more_damage: report.moreDamage,
  };
  if (!report.ok) {
    for (const d of report.damage.slice(1)) out.info(`  also: ${d}`);
    throw failed(`${dir}: damaged: ${report.damage[0]}`, details);
  }
  const against = report.keyGiven
    ? 'the given key'
    : "the store's own key (pass --key to check it is the log you expect)";
  out.info(
    `${report.origin}: ${report.size} entries, ${report.tiles} tiles and ${report.indexKeys} index keys verified; the root matches the checkpoint signed by ${against}`,
  );
  out.result({ ok: true, ...details });
}
