/**
 * The trailmark program: every command registered, argv parsed. Kept apart from program.ts (the helpers every
 * command uses) so that a command module never imports the others, and through them every daemon.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT_ERROR, EXIT_OK } from './exit.js';
import { registerCommands } from './commands/index.js';
import { reportError } from './program.js';

/** The version of @trailmark/cli, from its package.json (dist/ and src/ both sit one level below it). */
function cliVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
}

/**
 * Builds the `trailmark` command with every subcommand; commander errors are thrown (exitOverride) so main can map them
 * to exit codes.
 */
export function buildProgram(): Command {
  const program = new Command('trailmark')
    .description('Trailmark: a transparency log for access trails')
    .version(cliVersion(), '-V, --version', 'print the version')
    .option('--json', 'machine-readable output')
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerCommands(program);
  return program;
}

/**
 * Runs the CLI and resolves to its exit code, reporting every failure itself. Precondition: `argv` is in process.argv
 * form (node path and script first).
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version are successes; every other parse failure is a usage error
      return err.exitCode === 0 ? EXIT_OK : EXIT_ERROR;
    }
    return reportError(err, false);
  }
}
