import type { Command } from 'commander';

/**
 * Each command lives in its own module under commands/ and registers itself here.
 * Commands only parse arguments and call into the packages.
 */
export function registerCommands(program: Command): void {
  void program;
}
