/**
 * Bounds on what clients can make the log hold: request bodies in memory (all requests together), and open
 * connections (each one a file descriptor that LevelDB also needs).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** A body larger than this is "large": large bodies together may hold at most half the budget. */
export const LARGE_BODY_BYTES = 1024 * 1024;
/** Default budget of request-body memory: 64 MiB, counted as twice each body's bytes (raw and packed). */
export const DEFAULT_BODY_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * The memory all request bodies in flight may hold together, from the first byte read until the answer is
 * sent (the packed leaves live that long too). A body that does not fit is refused with 503 at once, not
 * queued. Large bodies may take only half, so a few huge uploads cannot starve ordinary writes.
 */
export class BodyBudget {
  used = 0;
  largeUsed = 0;

  constructor(readonly total = DEFAULT_BODY_BUDGET_BYTES) {}

  /** A new, empty reservation for one body. */
  reserve(): Reservation {
    return new Reservation(this);
  }
}

/**
 * One request body's share of a BodyBudget; it grows as the body is read and must be released once the answer is sent.
 */
export class Reservation {
  private held = 0;
  private large = false;

  constructor(private readonly budget: BodyBudget) {}

  /** Holds room for a body of `bodyBytes` (grows only); false, holding what it held, when the budget cannot. */
  grow(bodyBytes: number): boolean {
    const bytes = 2 * bodyBytes;
    if (bytes <= this.held) return true;
    const b = this.budget;
    const add = bytes - this.held;
    if (b.used + add > b.total) return false;
    if (bodyBytes > LARGE_BODY_BYTES) {
      const into = this.large ? add : bytes;
      if (b.largeUsed + into > b.total / 2) return false;
      b.largeUsed += into;
      this.large = true;
    }
    b.used += add;
    this.held = bytes;
    return true;
  }

  /** Gives everything back. Idempotent. */
  release(): void {
    const b = this.budget;
    b.used -= this.held;
    if (this.large) b.largeUsed -= this.held;
    this.held = 0;
    this.large = false;
  }
}

/** The process's soft RLIMIT_NOFILE, from /proc (Linux); undefined where it cannot be read. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * The default connection cap: half of the file descriptors left after 256 for storage and the process
 * (LevelDB keeps table files open), at most 10,000; 1,000 when the limit is unknown.
 */
export function defaultMaxConnections(nofile = openFileLimit()): number {
  if (nofile === undefined) return 1000;
  return Math.max(16, Math.min(10_000, Math.floor((nofile - 256) / 2)));
}

/** A socket that has sent nothing for this long may be closed to make room for another. */
const SILENT_MS = 1000;

/**
 * Caps the server's open connections at `max`. A connection beyond the cap takes the place of the oldest
 * one that has been open a second without sending a byte; when there is none, it is closed at once. So
 * idle sockets held open by one client cannot lock everyone else out, and the process never holds more
 * than `max` client sockets (plus the one being refused). `onClosed(reason)` counts connections refused
 * ('dropped') or closed to make room ('silent').
 */
export function capConnections(
  server: Server,
  max: number,
  onClosed: (reason: 'dropped' | 'silent') => void = () => {},
): void {
  const open = new Map<Socket, number>();
  server.on('connection', (s: Socket) => {
    const now = performance.now();
    if (open.size >= max) {
      let evicted = false;
      // Map iteration is in insertion order: oldest first
      for (const [old, since] of open) {
        if (now - since < SILENT_MS) break;
        if (old.bytesRead === 0) {
          open.delete(old);
          old.destroy();
          onClosed('silent');
          evicted = true;
          break;
        }
      }
      if (!evicted) {
        s.destroy();
        onClosed('dropped');
        return;
      }
    }
    open.set(s, now);
    s.once('close', () => open.delete(s));
  });
}
