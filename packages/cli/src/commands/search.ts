import type { Command } from 'commander';
import {
  ExplorerReadError,
  FILTER_PARAMS,
  FilterError,
  VerifiedSearch,
  csvHeader,
  csvRow,
  eventJson,
  ocsfEvent,
  parseFilters,
  type StoredEvent,
} from '@trailmark/explorer';
import { action } from '../program.js';
import { usage } from '../exit.js';
import { mapped } from './checkpoint.js';
import { loadLogKey, loadPolicy } from './files.js';
import { makeWriter } from './entries.js';

type SearchCliOptions = Record<string, string | undefined> & {
  explorer: string;
  key?: string;
  logKey?: string;
  format: string;
  max?: string;
};

const FORMATS: Record<string, { header?: () => string; line: (e: StoredEvent) => string }> = {
  ndjson: { line: (e) => eventJson(e) + '\n' },
  csv: { header: csvHeader, line: csvRow },
  ocsf: {
    line: (e) => {
      const o = ocsfEvent(e);
      return o ? JSON.stringify(o) + '\n' : '';
    },
  },
};

/** commander's camelCase option name for a filter's query-string name (request_id -> requestId). */
const optName = (p: string) => p.replace(/_(\w)/g, (_m, c: string) => c.toUpperCase());

/**
 * `trailmark search --explorer URL --key VKEY [filters] [--format ndjson|csv|ocsf]` (contract section 6): runs
 * the search on an explorer and checks every result against the log (its leaf hash in a tile verified against
 * the signed checkpoint) before printing it. A result the log does not hold is exit 1.
 */
export function registerSearch(program: Command): void {
  const cmd = program
    .command('search')
    .description("search an explorer; every result is checked against the log's verified tiles before it is printed")
    .requiredOption('--explorer <url>', 'explorer URL')
    .option('--key <vkey>', 'log vkey, or a file holding it')
    .option('--log-key <vkey>', 'same as --key')
    .option(
      '--log <url>',
      "the log's URL (default: the one the explorer names; its checkpoints are verified with the key either way)",
    )
    .option('--policy <file>', 'tlog-policy file: the checkpoint must meet its witness quorum')
    .option('--format <format>', 'ndjson, csv or ocsf', 'ndjson')
    .option('--max <n>', 'stop after N results');
  for (const p of FILTER_PARAMS) {
    cmd.option(
      `--${p.replace(/_/g, '-')} <value>`,
      p === 'q'
        ? 'words in the path, query or statement'
        : p === 'path'
          ? 'path prefix (whole segments)'
          : `filter: ${p}`,
    );
  }
  cmd.action(
    action(async (opts: SearchCliOptions) => {
      const fmt = FORMATS[opts.format];
      if (!fmt) throw usage(`--format must be ndjson, csv or ocsf, got ${JSON.stringify(opts.format)}`);
      let max: number | undefined;
      if (opts.max !== undefined) {
        max = Number(opts.max);
        if (!Number.isSafeInteger(max) || max < 1) throw usage(`--max must be a positive integer, got ${opts.max}`);
      }
      const params = new URLSearchParams();
      for (const p of FILTER_PARAMS) if (opts[optName(p)] !== undefined) params.set(p, opts[optName(p)]!);
      let filters;
      try {
        filters = parseFilters(params);
      } catch (e) {
        if (e instanceof FilterError) throw usage(e.message);
        throw e;
      }
      const logKey = await loadLogKey(opts);
      const policy = opts.policy !== undefined ? await loadPolicy(opts.policy) : undefined;
      const search = new VerifiedSearch({
        explorer: opts.explorer,
        logKey,
        filters,
        ...(policy ? { policy } : {}),
        ...(opts.log ? { log: opts.log } : {}),
        ...(max ? { max } : {}),
      });
      const out = makeWriter();
      await mapped(async () => {
        try {
          if (fmt.header && !(await out.write(fmt.header()))) return;
          for await (const e of search.results()) if (!(await out.write(fmt.line(e)))) return;
        } catch (e) {
          if (e instanceof ExplorerReadError) throw usage(`cannot search the explorer: ${e.message}`);
          throw e;
        }
      });
    }),
  );
}
