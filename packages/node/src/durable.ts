/**
 * Durable file writes: after a crash the file is either as it was or complete with the new bytes, never torn,
 * and the change itself survives (the directory entry is fsynced too). One helper for every state file, key
 * file and evidence file the daemons and the CLI write.
 *
 * Steps: write a temp file beside the target, fsync it, rename it over the target (or hard-link it to the target
 * when `exclusive`, which fails with EEXIST instead of replacing a file), fsync the directory. A failed step
 * removes the temp file and rethrows the node:fs error (its `code`, e.g. EEXIST, ENOSPC, is kept).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';

/** How a durable write treats the target. */
export interface DurableWriteOptions {
  /** Permission bits of a file created (default 0o644; 0o600 for secrets). */
  mode?: number;
  /** Refuse to replace an existing file (EEXIST) rather than atomically replacing it. */
  exclusive?: boolean;
}

let tmpCounter = 0;
const tempName = (path: string) => `${path}.tmp-${process.pid}-${++tmpCounter}`;

/**
 * fsyncs a directory, so entries created, renamed or removed in it survive a crash.
 * Precondition: `dir` exists and is a directory.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncDir, blocking: for startup and shutdown paths only (a directory fsync can take milliseconds). */
export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to `path` durably (see the module comment). Precondition: the parent directory exists. */
export async function writeFileDurably(
  path: string,
  data: string | Uint8Array,
  opts: DurableWriteOptions = {},
): Promise<void> {
  const tmp = tempName(path);
  try {
    const fh = await fsp.open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.exclusive) {
      await fsp.link(tmp, path);
      await fsp.unlink(tmp);
    } else await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dirname(path));
}

/**
 * writeFileDurably, blocking: for code that must finish before anything else runs (startup, a CLI command).
 * Precondition: the parent directory exists.
 */
export function writeFileDurablySync(path: string, data: string | Uint8Array, opts: DurableWriteOptions = {}): void {
  const tmp = tempName(path);
  try {
    const fd = fs.openSync(tmp, 'wx', opts.mode ?? 0o644);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (opts.exclusive) fs.linkSync(tmp, path);
    else fs.renameSync(tmp, path);
  } finally {
    // after a link the temp name is a second name of the target; after a rename or a failure it is gone or junk
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* already renamed */
    }
  }
  fsyncDirSync(dirname(path));
}
