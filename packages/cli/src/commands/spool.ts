import type { Command } from 'commander';
import { checkSpool, salvageSpool, ProxyError, type SpoolReport } from '@trailmark/recorder';
import { action, makeOutput, type Output } from '../program.js';
import { EXIT_FAILED, EXIT_OK, usage } from '../exit.js';

function describe(out: Output, r: SpoolReport): void {
  out.info(`spool ${r.dir}: ack at ${r.ack ? `segment ${r.ack.segment} offset ${r.ack.offset}` : 'the start'}`);
  for (const s of r.segments) {
    out.info(`  ${s.segment}: ${s.records} valid records, ${s.undelivered} undelivered`);
    for (const d of s.damaged) out.info(`    damaged at offset ${d.offset}: ${d.bytes} bytes, valid records follow`);
    if (s.tailBytes > 0) out.info(`    ${s.tailBytes} bytes of torn tail`);
  }
}

const wrap = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ProxyError) throw usage(e.message);
    throw e;
  }
};

/**
 * `trailmark spool check DIR` (exit 0 when the proxy would open it, 1 when it is damaged) and
 * `trailmark spool salvage DIR` (keep every valid undelivered record, drop the damaged bytes; the next proxy
 * start opens a new stream that records the loss).
 */
export function registerSpool(program: Command): void {
  const spool = program.command('spool').description("inspect or repair a proxy's spool directory");
  spool
    .command('check <dir>')
    .description('report valid, undelivered and damaged records (exit 1 when damaged)')
    .action(
      action(async (dir: string, _o: unknown, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const r = await wrap(() => checkSpool(dir));
        describe(out, r);
        out.info(
          r.ok
            ? 'ok: the spool opens as it is'
            : `damaged: run \`trailmark spool salvage ${dir}\` to ship what is valid`,
        );
        out.result(r);
        return r.ok ? EXIT_OK : EXIT_FAILED;
      }),
    );
  spool
    .command('salvage <dir>')
    .description('keep every valid undelivered record, drop damaged bytes; the proxy then starts a new stream')
    .action(
      action(async (dir: string, _o: unknown, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const r = await wrap(() => salvageSpool(dir));
        describe(out, r);
        if (r.into === null) out.info('nothing to salvage: the spool opens as it is');
        else {
          out.info(`kept ${r.kept} undelivered records in ${r.into}`);
          for (const k of r.skipped) out.info(`dropped ${k.bytes} bytes of ${k.segment} at offset ${k.offset}`);
        }
        out.result(r);
        return EXIT_OK;
      }),
    );
}
