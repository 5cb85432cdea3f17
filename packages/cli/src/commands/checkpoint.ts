import type { Command } from 'commander';
import { TileVerifyError, TlogError, b64encode, keyIdHex, type NoteVerifier } from '@trailmark/tlog';
import {
  AuditError,
  AuditStateError,
  LogReadError,
  LogReader,
  fetchVerifiedCheckpoint,
  isNotEvidence,
} from '@trailmark/client';
import { action, makeOutput } from '../program.js';
import { CliError, failed, usage } from '../exit.js';
import { type LogKeyArgs, loadLogKey, loadPolicy, logKeyOptions, writeTextFile } from './files.js';

/**
 * Maps what the auditor's library throws to the contract's exit statuses: anything the log served that does
 * not verify is exit 1 (with what did not match); a log that cannot be read, or a bad local file, is exit 2.
 */
export function toCliError(e: unknown): unknown {
  if (e instanceof CliError) return e;
  // not a note, not signed by this key, another origin, not a proof: a mistake (exit 2), never evidence
  if (isNotEvidence(e))
    return usage(`${(e as Error).message}${mistakeHint((e as TlogError).code)}`, { reason: (e as TlogError).code });
  if (e instanceof TileVerifyError) {
    return failed(`verification failed: ${e.message}`, {
      reason: e.code,
      ...(e.path ? { tile: e.path } : {}),
      ...(e.leafIndex !== undefined ? { leaf_index: Number(e.leafIndex) } : {}),
    });
  }
  // an entry or index the verified tree does not hold: nothing misbehaved, the question was wrong (exit 2)
  if (e instanceof AuditError && e.code === 'not-found')
    return usage(`not in the log: ${e.message}`, { reason: e.code });
  if (e instanceof TlogError) return failed(`verification failed: ${e.message}`, { reason: e.code });
  if (e instanceof LogReadError) {
    const hint = e.status === 404 ? " (is --log the log's base URL? a Trailmark log serves /checkpoint)" : '';
    return usage(`cannot read the log: ${e.message}${hint}`, {
      reason: 'network',
      url: e.url,
      ...(e.status ? { status: e.status } : {}),
    });
  }
  if (e instanceof AuditStateError) return usage(e.message, { reason: 'state' });
  return e;
}

/** What to check next after a mistake (see toCliError). */
function mistakeHint(code: string): string {
  switch (code) {
    case 'malformed-note':
    case 'note-too-large':
    case 'too-many-signatures':
      return " (this is not a checkpoint: is --log the log's base URL, or the file the one you meant?)";
    case 'no-log-signature':
    case 'no-verified-signature':
    case 'origin-mismatch':
      return " (is --key this log's vkey? `trailmark serve` prints it, and keygen writes it to FILE.pub)";
    case 'malformed-proof':
      return ' (`trailmark prove inclusion --out FILE` writes a tlog-proof)';
    default:
      return '';
  }
}

/** Runs `fn`, rethrowing its errors as CLI errors (see toCliError). */
export async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toCliError(e);
  }
}

/** Options every command that reads a log takes. */
export interface LogArgs extends LogKeyArgs {
  log: string;
  retries: string;
  timeout: string;
}

/** Adds --log, --key (or --log-key), --retries and --timeout to a command. */
export function logOptions(cmd: Command): Command {
  return logKeyOptions(cmd.requiredOption('--log <url>', 'log URL'))
    .option('--retries <n>', 'retries of a failed request (429, 503, network errors), with backoff', '5')
    .option('--timeout <seconds>', 'timeout of one request', '15');
}

/** A LogReader for the --log URL and HTTP options; bad values are usage errors. */
export function logReader(args: LogArgs): LogReader {
  const retries = Number(args.retries);
  const timeout = Number(args.timeout);
  if (!Number.isInteger(retries) || retries < 0 || retries > 100)
    throw usage(`--retries must be 0..100, got ${args.retries}`);
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw usage(`--timeout must be a positive number of seconds, got ${args.timeout}`);
  try {
    return new LogReader(args.log, { retries, timeoutMs: timeout * 1000 });
  } catch (e) {
    throw usage(`--log: ${(e as Error).message}`);
  }
}

interface CheckpointOptions extends LogArgs {
  policy?: string;
  out?: string;
}

function keyLabel(v: { name: string; keyId: number }): string {
  return `${v.name}+${keyIdHex(v.keyId)}`;
}

/** `trailmark checkpoint --log URL --key VKEY [--policy FILE] [--out FILE]`: fetch, verify, print. */
export function registerCheckpoint(program: Command): void {
  logOptions(
    program
      .command('checkpoint')
      .description(
        "fetch the log's latest checkpoint and verify its signature (and witness cosignatures with --policy)",
      ),
  )
    .option('--policy <file>', 'tlog-policy file: witness cosignatures are verified and its quorum must be met')
    .option('--out <file>', 'also write the verified checkpoint note to FILE (for prove consistency --old)')
    .action(
      action(async (opts: CheckpointOptions, cmd: Command) => {
        const out = makeOutput(Boolean(cmd.optsWithGlobals().json));
        const logKey: NoteVerifier = await loadLogKey(opts);
        const policy = opts.policy !== undefined ? await loadPolicy(opts.policy) : undefined;
        const reader = logReader(opts);
        const log = await mapped(() => fetchVerifiedCheckpoint(reader, logKey, policy ? { policy } : {}));
        const cp = log.checkpoint;
        const verifiedCosigners = log.opened.cosignatures.map((c) => ({
          name: c.witness ?? c.verifier.name,
          key: keyLabel(c.verifier),
          timestamp: c.timestamp,
          verified: true,
        }));
        const known = new Set([keyLabel(logKey), ...verifiedCosigners.map((c) => c.key)]);
        const others = log.opened.note.signatures
          .map((s) => ({ name: s.name, key: keyLabel(s), verified: false }))
          .filter((s) => !known.has(s.key));
        if (opts.out !== undefined) await writeTextFile(opts.out, log.text);
        out.info(`verified checkpoint of ${cp.origin}`);
        out.info(`  tree size:   ${cp.size}`);
        out.info(`  root hash:   ${b64encode(cp.root)}`);
        out.info(`  signed by:   ${keyLabel(logKey)} (log key)`);
        for (const c of verifiedCosigners)
          out.info(
            `  cosigned by: ${c.name} (${c.key}, verified, time ${new Date(Number(c.timestamp) * 1000).toISOString()})`,
          );
        for (const s of others)
          out.info(
            `  also signed: ${s.key} (not verified: no key for it${policy ? ' in the policy' : '; give --policy'})`,
          );
        if (policy) out.info('  witness quorum: met');
        if (opts.out !== undefined) out.info(`  written to:  ${opts.out}`);
        out.result({
          ok: true,
          origin: cp.origin,
          tree_size: cp.size,
          root_hash: b64encode(cp.root),
          signers: [keyLabel(logKey)],
          cosigners: [...verifiedCosigners, ...others],
          checkpoint: log.text,
          ...(opts.out !== undefined ? { out: opts.out } : {}),
        });
      }),
    );
}
