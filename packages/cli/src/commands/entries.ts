import type { Command } from 'commander';
import { b64encode, fromUtf8, toU64 } from '@trailmark/tlog';
import { followEntries, nodeHasher, type VerifiedEntry } from '@trailmark/client';
import { action } from '../program.js';
import { usage } from '../exit.js';
import { type LogArgs, logOptions, logReader, mapped } from './checkpoint.js';
import { loadLogKey } from './files.js';

interface EntriesOptions extends LogArgs {
  start?: string;
  end?: string;
  follow?: boolean;
  interval: string;
}

/** Writes to stdout respecting backpressure; resolves false once the reader has gone (EPIPE, `| head`). */
export function makeWriter(): { write(s: string): Promise<boolean> } {
  let closed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') closed = true;
    else throw e;
  });
  return {
    async write(s) {
      if (closed) return false;
      if (!process.stdout.write(s)) await new Promise<void>((r) => process.stdout.once('drain', r));
      return !closed;
    },
  };
}

/**
 * One NDJSON line per entry. By default the leaf data itself (its canonical JSON is one line, so the line's
 * bytes hash to the leaf hash); with --json, {"leaf_index", "leaf_hash", "entry"}. Leaf data that is not a
 * JSON line (a log should never hold any) is shown as {"leaf_index", "leaf_data": base64}.
 */
function formatEntry(e: VerifiedEntry, json: boolean): string {
  let text: string | undefined;
  try {
    text = fromUtf8(e.data, 'entry');
    JSON.parse(text);
    if (text.includes('\n')) text = undefined;
  } catch {
    text = undefined;
  }
  if (text === undefined) {
    process.stderr.write(`trailmark: entry ${e.index} is not a JSON line; shown as base64\n`);
    return JSON.stringify({ leaf_index: Number(e.index), leaf_data: b64encode(e.data) }) + '\n';
  }
  if (!json) return text + '\n';
  return `{"leaf_index":${e.index},"leaf_hash":"${b64encode(nodeHasher.leaf(e.data))}","entry":${text}}\n`;
}

/** `trailmark entries --log URL --key VKEY [--start A] [--end B] [--follow]`: the verified trail as NDJSON. */
export function registerEntries(program: Command): void {
  logOptions(
    program
      .command('entries')
      .description('print logged entries as NDJSON, each checked against tiles verified against the signed checkpoint'),
  )
    .option('--start <a>', 'first leaf index', '0')
    .option('--end <b>', 'last leaf index, inclusive (default: the last one in the checkpoint)')
    .option('--follow', 'keep following the log: verify each new checkpoint, its consistency, and print new entries')
    .option('--interval <seconds>', 'poll interval with --follow', '5')
    .action(
      action(async (opts: EntriesOptions, cmd: Command) => {
        const json = Boolean(cmd.optsWithGlobals().json);
        let start: bigint;
        let end: bigint | undefined;
        try {
          start = toU64(opts.start ?? '0', '--start');
          if (opts.end !== undefined) end = toU64(opts.end, '--end') + 1n;
        } catch (e) {
          throw usage((e as Error).message);
        }
        if (end !== undefined && end <= start) throw usage(`--end ${opts.end} is before --start ${opts.start}`);
        const interval = Number(opts.interval);
        if (!Number.isFinite(interval) || interval <= 0)
          throw usage(`--interval must be a positive number of seconds, got ${opts.interval}`);
        const logKey = await loadLogKey(opts);
        const reader = logReader(opts);
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        const out = makeWriter();
        try {
          await mapped(async () => {
            const it = followEntries(reader, logKey, {
              start,
              ...(end !== undefined ? { end } : {}),
              follow: Boolean(opts.follow),
              intervalMs: interval * 1000,
              signal: stop.signal,
              onCheckpoint: (cp, prev) => {
                if (opts.follow) {
                  process.stderr.write(
                    `trailmark: verified checkpoint ${cp.origin} ${cp.size}${prev ? `, consistent with ${prev.size}` : ''}\n`,
                  );
                }
              },
            });
            for await (const e of it) {
              if (!(await out.write(formatEntry(e, json)))) return;
              if (stop.signal.aborted) return;
            }
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      }),
    );
}
