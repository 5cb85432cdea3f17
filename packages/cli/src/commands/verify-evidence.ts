import type { Command } from 'commander';
import { EvidenceError, verifyEvidence } from '@trailmark/client';
import type { NoteVerifier } from '@trailmark/tlog';
import { action, makeOutput } from '../program.js';
import { failed, usage } from '../exit.js';
import { type LogKeyArgs, loadLogKey, loadPolicy, logKeyOptions, readTextFile } from './files.js';

interface EvidenceOptions extends LogKeyArgs {
  policy?: string;
}

/**
 * `trailmark verify evidence FILE --key VKEY`: offline check that a split-view evidence file (as written by a
 * monitor, or one element of GET /v1/evidence) proves the log misbehaved. Registered under `verify`.
 */
export function registerVerifyEvidence(program: Command): void {
  const verify =
    program.commands.find((c) => c.name() === 'verify') ?? program.command('verify').description('offline checks');
  logKeyOptions(verify.command('evidence'))
    .description('offline check of split-view evidence: two checkpoints signed by the log key that cannot be joined')
    .argument('<file>', 'evidence JSON file (one object, or an array as served by GET /v1/evidence)')
    .option(
      '--policy <file>',
      "tlog-policy file: also name the policy's witnesses that cosigned each side (and any that cosigned both)",
    )
    .action(
      action(async (file: string, opts: EvidenceOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const key = await loadLogKey(opts);
        const text = await readTextFile(file, 'evidence file');
        let doc: unknown;
        try {
          doc = JSON.parse(text);
        } catch {
          throw usage(`evidence file ${file} is not JSON`);
        }
        let witnesses: Map<string, NoteVerifier> | undefined;
        if (opts.policy !== undefined) {
          const policy = await loadPolicy(opts.policy);
          witnesses = new Map([...policy.witnesses.values()].map((w) => [w.name, w.verifier]));
        }
        const items = Array.isArray(doc) ? doc : [doc];
        if (items.length === 0) throw failed(`evidence file ${file} holds no evidence`);
        const results = items.map((item, i) => {
          try {
            return verifyEvidence(item, key, witnesses ? { witnesses } : {});
          } catch (e) {
            // a file that is not evidence at all is a mistake (exit 2); evidence that proves nothing is exit 1
            if (e instanceof EvidenceError && e.code === 'malformed-evidence') {
              throw usage(
                `${items.length > 1 ? `evidence[${i}]: ` : ''}${e.message} (a monitor writes evidence to DIR/evidence/ and serves it at GET /v1/evidence)`,
                { reason: e.code },
              );
            }
            if (e instanceof EvidenceError) {
              throw failed(`${items.length > 1 ? `evidence[${i}]: ` : ''}${e.message}`, { reason: e.code });
            }
            throw e;
          }
        });
        for (const r of results) {
          out.info(`verified: ${r.evidence.kind}: ${r.summary}`);
          r.evidence.seen.forEach((s, i) =>
            out.info(`  checkpoint ${i + 1} (size ${[r.first, r.second][i].size}) seen from ${s.from} at ${s.at}`),
          );
          if (r.cosigners) {
            out.info(
              `  cosigned by: checkpoint 1: ${r.cosigners.first.join(', ') || 'none'}; checkpoint 2: ${r.cosigners.second.join(', ') || 'none'}`,
            );
            if (r.cosigners.both.length)
              out.info(`  witnesses that cosigned both sides: ${r.cosigners.both.join(', ')}`);
          }
        }
        out.result({
          ok: true,
          evidence: results.map((r) => ({
            origin: r.evidence.origin,
            kind: r.evidence.kind,
            summary: r.summary,
            sizes: [r.first.size.toString(), r.second.size.toString()],
            ...(r.cosigners ? { cosigners: r.cosigners } : {}),
          })),
        });
      }),
    );
}
