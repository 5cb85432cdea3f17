/**
 * The log store's own ceiling (issue 10): what LevelDB absorbs when handed the log's writes directly, with
 * the entries already canonicalized and hashed, so that ingest through the API can be read against it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { canonicalJson, encodeEntryBundle, hashLeaf } from '@trailmark/tlog';

/** The server's largest group commit (LogServerOptions.maxBatchEntries' default). */
export const STORE_GROUP = 8000;

/** An event as the load generator makes it (same shape and size). */
export function benchEvent(tag: string, n: number): object {
  return {
    schema: 'trailmark.access/v1',
    stage: 'request',
    id: `${tag}-${n}`,
    request_id: `r-${tag}-${n}`,
    time: '2026-11-26T12:00:00.000Z',
    proxy: 'bench',
    actor: { id: 'alice', roles: ['dba'], ip: '10.1.2.3', user_agent: 'bench/1.0' },
    action: { method: 'GET', target: 'http://db.internal:8080', path: `/v1/rows/${n}`, query: {} },
    decision: { allowed: true, reason: 'role' },
  };
}

/**
 * What the store absorbs: the same canonical entry bytes, prepared (canonicalized and hashed) beforehand, laid
 * out as the log lays them (full bundles of 256 entries as one value, pending entries for the partial one, a
 * hash-index key per entry, full level-0 tiles, the level-1 partial tile and a state value per batch) and
 * written straight into LevelDB in sync batches of the server's largest group. Entries/s.
 */
export async function storeCeiling(n: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tm-bench-store-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const entries: Uint8Array[] = [];
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const e = canonicalJson(benchEvent('ceiling', i));
    entries.push(e);
    hashes.push(hashLeaf(e));
  }
  const key = (prefix: number[], i: number) => {
    const k = Buffer.alloc(prefix.length + 8);
    k.set(prefix);
    k.writeBigUInt64BE(BigInt(i), prefix.length);
    return k;
  };
  const state = Buffer.alloc(1200, 0x61);
  try {
    const t0 = performance.now();
    for (let start = 0; start < n; start += STORE_GROUP) {
      const end = Math.min(n, start + STORE_GROUP);
      const b = db.batch();
      for (let i = start; i < end; i++) {
        const h = Buffer.from(hashes[i]);
        b.put(Buffer.concat([Buffer.from([0x48]), h.subarray(0, 8)]), key([], i));
        if ((i + 1) % 256 === 0) {
          const first = i + 1 - 256;
          b.put(key([0x45], first / 256), encodeEntryBundle(entries.slice(first, i + 1)));
          b.put(key([0x54, 0], first / 256), Buffer.concat(hashes.slice(first, i + 1)));
          for (let j = first; j < start; j++) b.del(key([0x50], j));
        }
      }
      for (let j = Math.max(start, end - (end % 256)); j < end; j++) b.put(key([0x50], j), entries[j]);
      b.put(key([0x54, 1], Math.floor(end / 65536)), Buffer.alloc(32 * Math.max(1, Math.floor((end % 65536) / 256))));
      b.put(Buffer.from('S'), state);
      await b.write({ sync: true });
    }
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
