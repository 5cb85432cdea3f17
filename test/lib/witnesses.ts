/** Real witnesses for a log in tests: trailmark monitors with witness keys, polling fast. */
import { join } from 'node:path';
import { silentLogger } from '@trailmark/node';
import { startMonitor, type RunningMonitor } from '@trailmark/monitor';

/**
 * Starts one witness per key for the log at `logUrl`, each with its data under `dir` (w1, w2, ...), pushing each
 * into `into` as it starts so that the caller's cleanup stops those started before a failure.
 */
export async function startWitnesses(
  into: RunningMonitor[],
  log: { url: string; vkey: string },
  keys: readonly { privateKey: string }[],
  dir: string,
): Promise<void> {
  for (let i = 0; i < keys.length; i++) {
    into.push(
      await startMonitor({
        logs: [log],
        witnessKey: keys[i].privateKey,
        dataDir: join(dir, `w${i + 1}`),
        listen: '127.0.0.1:0',
        pollIntervalMs: 200,
        logger: silentLogger,
      }),
    );
  }
}
