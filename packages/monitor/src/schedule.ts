/** The monitor's rounds: a loop that runs one round, waits a period, and runs again until stopped. */
import { errorMessage } from '@trailmark/tlog';
import type { Logger } from '@trailmark/node';
import type { Labelled, Outcome } from './outcome.js';

/** A loop started by startRounds. */
export interface Rounds {
  /** No new round starts; resolves once the round in flight (if any) is over. */
  stop(): Promise<void>;
}

/**
 * Runs `round` now and again `periodMs` after each one ends (rounds never overlap). A round that throws is
 * logged and the loop goes on.
 */
export function startRounds(round: () => Promise<void>, periodMs: number, log: Logger): Rounds {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let tick: Promise<void> | undefined;
  const loop = () => {
    tick = round()
      .catch((e) => log.error(errorMessage(e)))
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, periodMs);
      });
  };
  loop();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await tick;
    },
  };
}

/**
 * Logs what changed between rounds: a log or peer that starts or stops failing (once, not every round), and
 * each advance.
 */
export class ChangeReport {
  private readonly failing = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  /**
   * Logs the changes in one round's outcomes: a warning when something starts failing or its failure changes, a line
   * when it recovers, and a line for each advance.
   */
  report(outcomes: Labelled[]): void {
    const byWhat = new Map<string, Outcome[]>();
    for (const { what, outcome } of outcomes) byWhat.set(what, [...(byWhat.get(what) ?? []), outcome]);
    for (const [what, list] of byWhat) {
      const bad = list.find((o) => o.status === 'error' || o.status === 'pending');
      const before = this.failing.get(what);
      if (bad && before !== bad.message) {
        this.failing.set(what, bad.message);
        this.log.warn(`${what}: ${bad.message}`, { check: what });
      } else if (!bad && before !== undefined) {
        this.failing.delete(what);
        this.log.info(`${what}: checked again`, { check: what });
      }
      for (const o of list) if (o.status === 'advanced') this.log.info(`${what}: ${o.message}`, { check: what });
    }
  }
}
