import type { Command } from 'commander';
import {
  errorMessage,
  TlogError,
  b64decode,
  b64encode,
  openCheckpoint,
  verifyConsistency,
  verifyTlogProof,
} from '@trailmark/tlog';
import { action, makeOutput } from '../program.js';
import { type CliError, failed, usage } from '../exit.js';
import { isNotEvidence } from '@trailmark/client';
import { toCliError } from './checkpoint.js';
import { type LogKeyArgs, entryLeafHash, loadLogKey, loadPolicy, logKeyOptions, readTextFile } from './files.js';

/** Runs a verification step; library errors become "verification failed" (exit 1), mistakes exit 2. */
function check<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isNotEvidence(e)) {
      const mapped = toCliError(e) as CliError;
      throw usage(`${what}: ${mapped.message}`, mapped.details);
    }
    if (e instanceof TlogError) throw failed(`${what}: ${e.message}`, { reason: e.code });
    throw e;
  }
}

interface InclusionOptions extends LogKeyArgs {
  proof: string;
  entry?: string;
  leafHash?: string;
  policy?: string;
}

interface ConsistencyOptions extends LogKeyArgs {
  proof: string;
}

/** Adds the `verify` command group (offline proof checks against a log key) to `program`. */
export function registerVerify(program: Command): void {
  const verify = program.command('verify').description('offline checks of proofs against a log key');

  logKeyOptions(verify.command('inclusion'))
    .description('check a tlog-proof (.tlog-proof) for an entry or a leaf hash')
    .requiredOption('--proof <file>', 'tlog-proof file (c2sp.org/tlog-proof@v1)')
    .option(
      '--entry <file>',
      'the entry, a JSON object (canonicalized with RFC 8785 before hashing), or one line of `trailmark --json entries`',
    )
    .option('--leaf-hash <b64>', 'the leaf hash, SHA-256(0x00 || leaf data), base64')
    .option('--policy <file>', 'tlog-policy file: witness cosignatures must meet its quorum')
    .action(
      action(async (opts: InclusionOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        if ((opts.entry === undefined) === (opts.leafHash === undefined))
          throw usage('give exactly one of --entry FILE or --leaf-hash B64');
        const logKey = await loadLogKey(opts);
        let leafHash: Uint8Array;
        if (opts.entry !== undefined) {
          leafHash = await entryLeafHash(opts.entry);
        } else {
          try {
            leafHash = b64decode(opts.leafHash!, '--leaf-hash');
          } catch (e) {
            throw usage(errorMessage(e));
          }
          if (leafHash.length !== 32) throw usage(`--leaf-hash must be 32 bytes, got ${leafHash.length}`);
        }
        const policy = opts.policy !== undefined ? await loadPolicy(opts.policy, { strict: true }) : undefined;
        const proofText = await readTextFile(opts.proof, 'proof file', { strict: true });
        const r = check('inclusion proof', () =>
          verifyTlogProof(proofText, leafHash, logKey, policy ? { policy } : {}),
        );
        const cosigners = r.cosignatures.map((c) => c.witness ?? c.verifier.name);
        out.info(
          `verified: leaf ${r.index} (hash ${b64encode(leafHash)}) is in ${r.checkpoint.origin} at tree size ${r.checkpoint.size}` +
            (policy
              ? `; witness quorum met (${cosigners.length ? cosigners.join(', ') : 'no cosignatures required'})`
              : ''),
        );
        if (r.extra !== undefined) out.info(`extra data (not authenticated): ${b64encode(r.extra)}`);
        out.result({
          ok: true,
          origin: r.checkpoint.origin,
          leaf_index: r.index,
          leaf_hash: b64encode(leafHash),
          tree_size: r.checkpoint.size,
          root_hash: b64encode(r.checkpoint.root),
          cosigned_by: cosigners,
          ...(r.extra !== undefined ? { extra: b64encode(r.extra) } : {}),
        });
      }),
    );

  logKeyOptions(verify.command('consistency'))
    .description('check a consistency proof file {"old_checkpoint","new_checkpoint","proof"}')
    .requiredOption('--proof <file>', 'consistency proof JSON file (as written by `trailmark prove consistency`)')
    .action(
      action(async (opts: ConsistencyOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const logKey = await loadLogKey(opts);
        const text = await readTextFile(opts.proof, 'proof file', { strict: true });
        let doc: unknown;
        try {
          doc = JSON.parse(text);
        } catch (e) {
          throw usage(
            `proof file ${opts.proof} is not JSON: ${errorMessage(e)} (\`trailmark prove consistency\` writes one)`,
            { reason: 'malformed-proof' },
          );
        }
        const d = doc as { old_checkpoint?: unknown; new_checkpoint?: unknown; proof?: unknown };
        if (
          typeof doc !== 'object' ||
          doc === null ||
          Array.isArray(doc) ||
          typeof d.old_checkpoint !== 'string' ||
          typeof d.new_checkpoint !== 'string' ||
          !Array.isArray(d.proof) ||
          !d.proof.every((h) => typeof h === 'string')
        ) {
          throw usage(
            'proof file must hold {"old_checkpoint": text, "new_checkpoint": text, "proof": [base64, ...]} (`trailmark prove consistency` writes one)',
            { reason: 'malformed-proof' },
          );
        }
        const oldCp = check('old checkpoint', () => openCheckpoint(d.old_checkpoint as string, logKey)).checkpoint;
        const newCp = check('new checkpoint', () => openCheckpoint(d.new_checkpoint as string, logKey)).checkpoint;
        if (oldCp.origin !== newCp.origin)
          throw failed(`checkpoints are from different logs: ${oldCp.origin} and ${newCp.origin}`, {
            reason: 'origin-mismatch',
          });
        let proof: Uint8Array[];
        try {
          proof = d.proof.map((h, i) => b64decode(h, `proof hash ${i}`));
        } catch (e) {
          throw usage(`proof file ${opts.proof}: ${errorMessage(e)}`, { reason: 'malformed-proof' });
        }
        if (oldCp.size > newCp.size) {
          throw failed(`old checkpoint size ${oldCp.size} is larger than new checkpoint size ${newCp.size}`, {
            reason: 'size-order',
          });
        }
        check('consistency proof', () => verifyConsistency(oldCp.size, newCp.size, proof, oldCp.root, newCp.root));
        out.info(`verified: ${newCp.origin} at tree size ${newCp.size} is consistent with tree size ${oldCp.size}`);
        out.result({
          ok: true,
          origin: newCp.origin,
          old_tree_size: oldCp.size,
          new_tree_size: newCp.size,
          old_root_hash: b64encode(oldCp.root),
          new_root_hash: b64encode(newCp.root),
        });
      }),
    );
}
