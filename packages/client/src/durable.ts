import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

let tmpCounter = 0;

/**
 * Writes a file so that after a crash it is either absent or complete: temp file, fsync, rename, fsync of the
 * directory; the temp file is removed when a step fails. Precondition: the parent directory exists.
 */
export async function writeFileDurably(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${++tmpCounter}`;
  try {
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
