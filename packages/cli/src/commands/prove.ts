import type { Command } from 'commander';
import {
  errorMessage,
  b64encode,
  openCheckpoint,
  TLOG_PROOF_HEADER,
  toU64,
  type Checkpoint,
  type NoteVerifier,
} from '@trailmark/tlog';
import { fetchVerifiedCheckpoint, findLeafIndex, proveConsistencyFromTiles, proveInclusion } from '@trailmark/client';
import { action, makeOutput } from '../program.js';
import { usage } from '../exit.js';
import { type LogArgs, logOptions, logReader, mapped } from './checkpoint.js';
import { entryLeafHash, loadLogKey, readTextFile, writeTextFile } from './files.js';

interface InclusionOptions extends LogArgs {
  index?: string;
  entry?: string;
  out?: string;
}

interface ConsistencyOptions extends LogArgs {
  old: string;
  out?: string;
}

/**
 * The older checkpoint for `prove consistency --old FILE`: a checkpoint note, or a consistency-proof file
 * from an earlier run (its new_checkpoint), so proofs chain. It must verify with the log key (else exit 2).
 */
async function loadOldCheckpoint(
  file: string,
  logKey: NoteVerifier,
): Promise<{ text: string; checkpoint: Checkpoint }> {
  let text = await readTextFile(file, 'old checkpoint');
  const hint = 'give the checkpoint note `trailmark checkpoint --out FILE` wrote, or a `prove consistency` file';
  if (text.startsWith(TLOG_PROOF_HEADER))
    throw usage(`old checkpoint ${file} is a tlog-proof, not a checkpoint: ${hint}`);
  if (text.trimStart().startsWith('{')) {
    let j: { new_checkpoint?: unknown };
    try {
      j = JSON.parse(text) as { new_checkpoint?: unknown };
    } catch {
      throw usage(`old checkpoint ${file} looks like JSON but does not parse`);
    }
    if (typeof j?.new_checkpoint !== 'string')
      throw usage(`old checkpoint ${file} is JSON without a new_checkpoint member: ${hint}`);
    text = j.new_checkpoint;
  }
  try {
    return { text, checkpoint: openCheckpoint(text, logKey).checkpoint };
  } catch (e) {
    throw usage(`old checkpoint ${file} does not verify with log key ${logKey.name}: ${errorMessage(e)}`);
  }
}

/** `trailmark prove inclusion|consistency`: proofs computed from tiles verified against the signed checkpoint. */
export function registerProve(program: Command): void {
  const prove = program
    .command('prove')
    .description("compute proofs from the log's tiles, each checked against its signed checkpoint");

  logOptions(
    prove.command('inclusion').description('write a tlog-proof (c2sp.org/tlog-proof@v1) that an entry is in the log'),
  )
    .option('--index <i>', 'leaf index of the entry')
    .option(
      '--entry <file>',
      'the entry, a JSON object (canonicalized with RFC 8785, then found by its leaf hash), or one line of `trailmark --json entries`',
    )
    .option('--out <file>', 'write the proof to FILE (.tlog-proof) instead of standard output')
    .action(
      action(async (opts: InclusionOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        if ((opts.index === undefined) === (opts.entry === undefined))
          throw usage('give exactly one of --index I or --entry FILE.json');
        let index: bigint | undefined;
        if (opts.index !== undefined) {
          try {
            index = toU64(opts.index, '--index');
          } catch (e) {
            throw usage(errorMessage(e));
          }
        }
        let wantHash: Uint8Array | undefined;
        if (opts.entry !== undefined) {
          wantHash = await entryLeafHash(opts.entry);
        }
        const logKey = await loadLogKey(opts);
        const reader = logReader(opts);
        const r = await mapped(async () => {
          const log = await fetchVerifiedCheckpoint(reader, logKey);
          const idx = index ?? (await findLeafIndex(reader, log, wantHash!));
          return { log, idx, ...(await proveInclusion(log, idx)) };
        });
        if (opts.out !== undefined) await writeTextFile(opts.out, r.proof);
        else if (!out.json) process.stdout.write(r.proof);
        if (opts.out !== undefined) {
          out.info(
            `wrote ${opts.out}: leaf ${r.idx} (hash ${b64encode(r.leafHash)}) is in ${r.log.checkpoint.origin} at tree size ${r.log.checkpoint.size}`,
          );
        }
        out.result({
          ok: true,
          origin: r.log.checkpoint.origin,
          leaf_index: r.idx,
          leaf_hash: b64encode(r.leafHash),
          tree_size: r.log.checkpoint.size,
          root_hash: b64encode(r.log.checkpoint.root),
          proof: r.proof,
          ...(opts.out !== undefined ? { out: opts.out } : {}),
        });
      }),
    );

  logOptions(
    prove
      .command('consistency')
      .description(
        "prove that the log's current checkpoint extends an older one; writes {old_checkpoint, new_checkpoint, proof}",
      ),
  )
    .requiredOption('--old <file>', 'the older checkpoint note (as written by `trailmark checkpoint --out`)')
    .option('--out <file>', 'write the proof JSON to FILE instead of standard output')
    .action(
      action(async (opts: ConsistencyOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const logKey = await loadLogKey(opts);
        const old = await loadOldCheckpoint(opts.old, logKey);
        const reader = logReader(opts);
        const r = await mapped(async () => {
          const log = await fetchVerifiedCheckpoint(reader, logKey);
          return { log, proof: await proveConsistencyFromTiles(log, old.checkpoint) };
        });
        const doc = { old_checkpoint: old.text, new_checkpoint: r.log.text, proof: r.proof.map((h) => b64encode(h)) };
        const text = JSON.stringify(doc, null, 2) + '\n';
        if (opts.out !== undefined) await writeTextFile(opts.out, text);
        else if (!out.json) process.stdout.write(text);
        if (opts.out !== undefined) {
          out.info(
            `wrote ${opts.out}: ${r.log.checkpoint.origin} at tree size ${r.log.checkpoint.size} is consistent with tree size ${old.checkpoint.size}`,
          );
        }
        out.result({
          ok: true,
          origin: r.log.checkpoint.origin,
          old_tree_size: old.checkpoint.size,
          new_tree_size: r.log.checkpoint.size,
          ...doc,
          ...(opts.out !== undefined ? { out: opts.out } : {}),
        });
      }),
    );
}
