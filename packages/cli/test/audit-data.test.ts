import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { generateKey } from '@trailmark/tlog';
import { startLogServer } from '@trailmark/log-server';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function audit(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'audit', ...args], { encoding: 'utf8', timeout: 30000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

const key = (prefix: number, ...rest: number[]) => Buffer.from([prefix, ...rest]);
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

describe('trailmark audit --data (offline audit of a data directory)', function () {
  this.timeout(60000);
  let root: string;
  let data: string;
  let n = 0;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'trailmark-audit-data-'));
    data = join(root, 'data');
    const log = await startLogServer({ dataDir: data, origin: 'audit-data.test/log' });
    const r = await fetch(`${log.url}/v1/add-entries`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ event: i, pad: 'x'.repeat(i % 40) }))),
    });
    expect(r.status).to.equal(200);
    await log.close();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  /** A copy of the log with `fn` applied to its database. */
  async function damaged(fn: (db: Level<Uint8Array, Uint8Array>) => Promise<void>): Promise<string> {
    const dir = join(root, `copy-${n++}`);
    cpSync(data, dir, { recursive: true });
    const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    await fn(db);
    await db.close();
    return dir;
  }

  async function flipByte(db: Level<Uint8Array, Uint8Array>, k: Buffer, offset: number): Promise<void> {
    const v = Buffer.from(await db.get(k));
    v[offset] ^= 0x01;
    await db.put(k, v);
  }

  it('passes an intact store, with and without the log key', () => {
    const ok = audit(['--data', data, '--key', join(data, 'log.key.pub')]);
    expect(ok.code, ok.out).to.equal(0);
    expect(ok.out).to.match(/1000 entries, \d+ tiles and 1000 index keys verified/);
    expect(audit(['--data', data]).code).to.equal(0);
  });

  it('names the entry whose bundle byte was damaged', async () => {
    // bundle 1: entry 256 starts at offset 2 (after its uint16 length); damage a byte inside its JSON
    const dir = await damaged((db) => flipByte(db, key(0x45, ...u64(1)), 5));
    const r = audit(['--data', dir, '--key', join(data, 'log.key.pub')]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.match(/damaged: entry 256 \(entry bundle 1\)/);
  });

  it('names a damaged level-0 tile and a damaged level-1 tile', async () => {
    const t0 = await damaged((db) => flipByte(db, key(0x54, 0, ...u64(2)), 32 * 7 + 3));
    const r0 = audit(['--data', t0]);
    expect(r0.code, r0.out).to.equal(1);
    expect(r0.out).to.match(/damaged: tile 0\/2 is damaged: hash 7/);
    const t1 = await damaged((db) => flipByte(db, key(0x54, 1, ...u64(0)), 32 + 1));
    const r1 = audit(['--data', t1]);
    expect(r1.code, r1.out).to.equal(1);
    expect(r1.out).to.match(/damaged: tile 1\/0 is damaged: hash 1/);
  });

  it('names a pending entry, and a dedup index that lost an entry', async () => {
    const p = await damaged((db) => flipByte(db, key(0x50, ...u64(900)), 3));
    const rp = audit(['--data', p]);
    expect(rp.code, rp.out).to.equal(1);
    expect(rp.out).to.match(/damaged: the log state: the entries give root/);
    const h = await damaged(async (db) => {
      for await (const k of db.keys({ gte: Buffer.from([0x48]), lt: Buffer.from([0x49]), limit: 1 })) await db.del(k);
    });
    const rh = audit(['--data', h]);
    expect(rh.code, rh.out).to.equal(1);
    expect(rh.out).to.match(/damaged: entry \d+ has no hash index key/);
  });

  it('exit 2: no log there, or a key of another log', () => {
    expect(audit(['--data', join(root, 'nothing')]).code).to.equal(2);
    const other = generateKey('other.test/log', 1).vkey;
    const r = audit(['--data', data, '--key', other]);
    expect(r.code, r.out).to.equal(2);
    expect(r.out).to.match(/belongs to log/);
  });
});
