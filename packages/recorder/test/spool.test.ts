import { expect } from 'chai';
import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Spool, SpoolError, MAX_RECORD_BYTES, checkSpool, salvageSpool } from '../src/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));

function rec(i: number): Buffer {
  return Buffer.from(JSON.stringify({ i, text: `event ${i}` }));
}

describe('spool', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tm-spool-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps records in order across reopen and removes them only on ack', async () => {
    let s = await Spool.open({ dir });
    await Promise.all(Array.from({ length: 50 }, (_, i) => s.append(rec(i))));
    expect(s.depth).to.equal(50);
    const b = await s.read(20);
    expect(b.records.map((r) => JSON.parse(r.data.toString()).i)).to.deep.equal(
      Array.from({ length: 20 }, (_, i) => i),
    );
    // crash between delivery and ack: nothing was acked, so everything is still there after reopening
    await s.close();
    s = await Spool.open({ dir });
    expect(s.depth).to.equal(50);
    const again = await s.read(20);
    expect(again.records.map((r) => r.data.toString())).to.deep.equal(b.records.map((r) => r.data.toString()));
    await s.ack(again);
    expect(s.depth).to.equal(30);
    await s.close();
    s = await Spool.open({ dir });
    expect(s.depth).to.equal(30);
    const rest = await s.read(1000);
    expect(rest.records.map((r) => JSON.parse(r.data.toString()).i)).to.deep.equal(
      Array.from({ length: 30 }, (_, i) => i + 20),
    );
    await s.ack(rest);
    expect(s.depth).to.equal(0);
    expect(s.oldestTime).to.equal(null);
    expect((await s.read()).records).to.have.length(0);
    await s.close();
  });

  it('rolls segments and deletes the ones wholly delivered', async () => {
    const s = await Spool.open({ dir, segmentBytes: 1024 });
    for (let i = 0; i < 200; i++) await s.append(rec(i));
    const segs = () => readdirSync(dir).filter((n) => n.endsWith('.seg'));
    expect(segs().length).to.be.greaterThan(5);
    let seen = 0;
    for (;;) {
      const b = await s.read(37);
      if (b.records.length === 0) break;
      for (const r of b.records) expect(JSON.parse(r.data.toString()).i).to.equal(seen++);
      await s.ack(b);
    }
    expect(seen).to.equal(200);
    expect(segs().length).to.equal(1);
    await s.close();
  });

  it('groups concurrent appends into few fsyncs and reports the oldest undelivered time', async () => {
    const s = await Spool.open({ dir });
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 2000 }, (_, i) => s.append(rec(i))));
    expect(s.depth).to.equal(2000);
    expect(s.oldestTime).to.be.within(t0, Date.now());
    const b = await s.read(10);
    await s.ack(b);
    expect(s.oldestTime).to.be.within(t0, Date.now());
    await s.close();
  });

  it('cuts a torn last record (incomplete, or with a bad checksum) and keeps every whole one', async () => {
    let s = await Spool.open({ dir });
    for (let i = 0; i < 5; i++) await s.append(rec(i));
    await s.close();
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.seg'))!,
    );
    let end = 0;
    for (let i = 0; i < 5; i++) end += 16 + rec(i).length;
    // the segment is preallocated: the data is followed by zeros, which read as "nothing more"
    expect(statSync(seg).size).to.be.greaterThan(end);
    expect(
      readFileSync(seg)
        .subarray(end)
        .every((b) => b === 0),
    ).to.equal(true);
    // a header announcing 100 bytes followed by only 10 bytes of payload: a write cut short by a crash
    const torn = Buffer.alloc(26, 0x41);
    torn.writeUInt32BE(100, 0);
    let fd = openSync(seg, 'r+');
    writeSync(fd, torn, 0, torn.length, end);
    closeSync(fd);
    s = await Spool.open({ dir });
    expect(s.truncatedBytes).to.be.greaterThan(0);
    expect(statSync(seg).size).to.equal(end);
    expect(s.depth).to.equal(5);
    await s.append(rec(5));
    await s.close();
    end += 16 + rec(5).length;
    // flip a byte inside the last record's payload: its CRC no longer matches
    fd = openSync(seg, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, end - 3);
    closeSync(fd);
    s = await Spool.open({ dir });
    expect(s.depth).to.equal(5);
    const all = await s.read();
    expect(all.records.map((r) => JSON.parse(r.data.toString()).i)).to.deep.equal([0, 1, 2, 3, 4]);
    await s.append(rec(6));
    const again = await s.read();
    expect(again.records.map((r) => JSON.parse(r.data.toString()).i)).to.deep.equal([0, 1, 2, 3, 4, 6]);
    await s.close();
  });

  it('refuses a damaged record that is not the tail of the last segment', async () => {
    let s = await Spool.open({ dir, segmentBytes: 200 });
    for (let i = 0; i < 20; i++) await s.append(rec(i));
    await s.close();
    const first = join(
      dir,
      readdirSync(dir)
        .filter((n) => n.endsWith('.seg'))
        .sort()[0],
    );
    const data = readFileSync(first);
    data[20] ^= 0xff;
    writeFileSync(first, data);
    try {
      s = await Spool.open({ dir });
      expect.fail('opened a damaged spool');
    } catch (e) {
      expect(e).to.be.instanceOf(SpoolError);
      expect((e as SpoolError).code).to.equal('corrupt');
      expect((e as Error).message).to.match(/damaged at byte 0/);
    }
  });

  it('refuses a damaged record followed by valid ones in the active segment, and salvage ships every valid one', async () => {
    let s = await Spool.open({ dir });
    for (let i = 0; i < 60; i++) await s.append(rec(i));
    // the first 3 were delivered
    await s.ack(await s.read(3));
    await s.close();
    const name = readdirSync(dir).find((n) => n.endsWith('.seg'))!;
    const seg = join(dir, name);
    // one flipped byte in the payload of record 6 (0-based): 54 acknowledged records after it
    let off = 0;
    for (let i = 0; i < 6; i++) off += 16 + rec(i).length;
    const data = readFileSync(seg);
    data[off + 16 + 3] ^= 0x01;
    writeFileSync(seg, data);
    try {
      await Spool.open({ dir });
      expect.fail('opened a spool whose acknowledged records are damaged');
    } catch (e) {
      expect((e as SpoolError).code).to.equal('corrupt');
      expect((e as Error).message)
        .to.contain(name)
        .and.to.contain(`byte ${off}`)
        .and.to.contain('spool salvage');
    }
    // nothing was cut: the damaged segment is as it was
    expect(readFileSync(seg).equals(data)).to.equal(true);
    const report = await checkSpool(dir);
    expect(report.ok).to.equal(false);
    expect(report.segments).to.have.length(1);
    expect(report.segments[0].damaged).to.deep.equal([{ offset: off, bytes: 16 + rec(6).length }]);
    expect(report.segments[0].records).to.equal(59);
    expect(report.segments[0].undelivered).to.equal(56);
    const salvage = await salvageSpool(dir);
    expect(salvage.kept).to.equal(56);
    expect(salvage.skipped).to.deep.equal([{ segment: name, offset: off, bytes: 16 + rec(6).length }]);
    expect(JSON.parse(readFileSync(join(dir, 'salvage.json'), 'utf8')).skipped).to.deep.equal(salvage.skipped);
    s = await Spool.open({ dir });
    expect(s.depth).to.equal(56);
    const all = await s.read();
    expect(all.records.map((r) => JSON.parse(r.data.toString()).i)).to.deep.equal([
      3,
      4,
      5,
      ...Array.from({ length: 53 }, (_, i) => i + 7),
    ]);
    await s.close();
    expect((await checkSpool(dir)).ok).to.equal(true);
  });

  it('refuses a zeroed record header followed by valid records (not a torn tail)', async () => {
    let s = await Spool.open({ dir });
    for (let i = 0; i < 10; i++) await s.append(rec(i));
    await s.close();
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.seg'))!,
    );
    const data = readFileSync(seg);
    let off = 0;
    for (let i = 0; i < 4; i++) off += 16 + rec(i).length;
    data.fill(0, off, off + 16);
    writeFileSync(seg, data);
    try {
      s = await Spool.open({ dir });
      expect.fail('cut valid records off as a torn tail');
    } catch (e) {
      expect((e as SpoolError).code).to.equal('corrupt');
      expect((e as Error).message).to.contain(`byte ${off}`);
    }
  });

  it('locks with a kernel lock: a stale lock file naming this or another live PID does not block a restart', async () => {
    // a proxy killed as PID 1 in a container restarts as PID 1 again; another's lock may name a reused live PID
    for (const pid of [process.pid, process.ppid, 1]) {
      writeFileSync(join(dir, 'lock'), `${pid}\n`);
      const s = await Spool.open({ dir });
      await s.append(rec(pid));
      await s.close();
    }
    // a live holder in another process blocks, and is released when that process is killed
    const child = spawn(process.execPath, ['--import=tsx', join(here, 'fixtures/spool-writer.ts'), dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) =>
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()),
    );
    try {
      await Spool.open({ dir });
      expect.fail('opened a spool another process holds');
    } catch (e) {
      expect((e as SpoolError).code).to.equal('locked');
      expect((e as Error).message).to.contain(`process ${child.pid}`);
    }
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    const s = await Spool.open({ dir, segmentBytes: 16 * 1024 });
    expect(s.depth).to.be.greaterThan(0);
    await s.close();
  });

  it('restarts as PID 1 in a PID namespace after a SIGKILL as PID 1 (a container)', async function () {
    this.timeout(30000);
    // the writer runs as PID 1 of a new PID namespace, as a proxy does in a container
    const runAsPid1 = () => {
      const c = spawn(
        'unshare',
        [
          '--pid',
          '--fork',
          '--kill-child',
          process.execPath,
          '--import=tsx',
          join(here, 'fixtures/spool-writer.ts'),
          dir,
          'pid',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const ready = new Promise<string>((resolve, reject) => {
        c.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /^ready pid (\d+)$/m.exec(out);
          if (m) resolve(m[1]);
        });
        c.on('exit', (code) => reject(new Error(`writer exited ${code}: ${err}`)));
      });
      return { c, ready };
    };
    const first = runAsPid1();
    let pid: string;
    try {
      pid = await first.ready;
    } catch (e) {
      if (/Operation not permitted|unshare failed/i.test((e as Error).message)) this.skip();
      throw e;
    }
    expect(pid).to.equal('1');
    expect(readFileSync(join(dir, 'lock'), 'utf8').trim()).to.equal('1');
    const exited = new Promise((r) => first.c.on('exit', r));
    first.c.kill('SIGKILL');
    await exited;
    // the lock file still names PID 1, which the restarted writer is again
    const second = runAsPid1();
    expect(await second.ready).to.equal('1');
    const exited2 = new Promise((r) => second.c.on('exit', r));
    second.c.kill('SIGKILL');
    await exited2;
  });

  it('rejects empty and oversized records, acks out of order, and a second user of the directory', async () => {
    const s = await Spool.open({ dir });
    for (const bad of [Buffer.alloc(0), Buffer.alloc(MAX_RECORD_BYTES + 1)]) {
      try {
        await s.append(bad);
        expect.fail('accepted a bad record');
      } catch (e) {
        expect((e as SpoolError).code).to.equal('too-large');
      }
    }
    await s.append(rec(1));
    await s.append(rec(2));
    const b1 = await s.read(1);
    await s.ack(b1);
    try {
      await s.ack(b1);
      expect.fail('acked twice');
    } catch (e) {
      expect((e as SpoolError).code).to.equal('ack-order');
    }
    try {
      await Spool.open({ dir });
      expect.fail('opened twice');
    } catch (e) {
      expect((e as SpoolError).code).to.equal('locked');
    }
    await s.close();
  });

  it('keeps every acknowledged append across a SIGKILL of the writing process', async function () {
    this.timeout(30000);
    const child = spawn(process.execPath, ['--import=tsx', join(here, 'fixtures/spool-writer.ts'), dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acked = new Set<number>();
    let buf = '';
    let ready = false;
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (l === 'ready') ready = true;
        const m = /^ok (\d+)$/.exec(l);
        if (m) acked.add(Number(m[1]));
      }
    });
    const exited = new Promise((r) => child.on('exit', r));
    const t0 = Date.now();
    while (acked.size < 3000 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    expect(ready).to.equal(true);
    expect(acked.size).to.be.greaterThan(100);
    const s = await Spool.open({ dir, segmentBytes: 16 * 1024 });
    const found = new Set<number>();
    for (;;) {
      const b = await s.read(500);
      if (b.records.length === 0) break;
      for (const r of b.records) {
        const k = JSON.parse(r.data.toString()).k as number;
        expect(found.has(k), `record ${k} twice`).to.equal(false);
        found.add(k);
      }
      await s.ack(b);
    }
    for (const k of acked) expect(found.has(k), `acknowledged record ${k} lost`).to.equal(true);
    await s.close();
  });
});
