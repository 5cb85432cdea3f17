/**
 * The statuses a proxy has sent, kept where a crash of the proxy cannot take them: contract section 4 gives a
 * request cut short by a crash an aborted response event with `status` the status sent (null only when none
 * was). The status is known only in memory until the response event is written at the end of the answer, so
 * each one is appended to a small file in the spool directory as the answer's head goes out. The write is not
 * fsynced: the page cache outlives the process (what a crash of the proxy takes), and a lost line only gives the
 * `null` a status nobody knows deserves. Two files take turns, so the pair stays small whatever the uptime; an
 * answer still streaming after two turns (hundreds of thousands of requests later) is then `null` too.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const CURRENT = 'sent-status';
const PREVIOUS = 'sent-status.1';
/** A turn's size: about 25,000 lines of `<uuid> <status>\n`. */
const TURN_BYTES = 1 << 20;

/** Reads the statuses recorded in `dir` (request_id → status); later lines win. Precondition: none. */
export async function readSentStatuses(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of [PREVIOUS, CURRENT]) {
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    // the last line may be cut by the crash: it then has no status and is skipped
    for (const line of text.split('\n')) {
      const m = /^(\S+) (\d{3})$/.exec(line);
      if (m) out.set(m[1], Number(m[2]));
    }
  }
  return out;
}

/** Appends `<request_id> <status>` lines to the spool directory's status files. */
export class SentStatuses {
  private fd: number | null = null;
  private bytes = 0;

  /** Starts afresh: the statuses read at this start have been used. Precondition: the spool dir is ours. */
  constructor(private readonly dir: string) {
    rmSync(join(dir, PREVIOUS), { force: true });
    rmSync(join(dir, CURRENT), { force: true });
  }

  /** Records that `status` went out for `requestId`. A failure to write is ignored (see the module comment). */
  note(requestId: string, status: number): void {
    try {
      if (this.fd === null) this.fd = openSync(join(this.dir, CURRENT), 'a');
      this.bytes += writeSync(this.fd, `${requestId} ${status}\n`);
      if (this.bytes >= TURN_BYTES) {
        closeSync(this.fd);
        this.fd = null;
        this.bytes = 0;
        renameSync(join(this.dir, CURRENT), join(this.dir, PREVIOUS));
      }
    } catch {
      /* the status is then unknown after a crash: the response event says null */
    }
  }

  /** Closes the file (the lines stay for the next start). Precondition: none. */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
