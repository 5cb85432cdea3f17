import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  b64decode,
  canonicalJson,
  hashLeaf,
  openCheckpoint,
  parseVkey,
  verifyConsistency,
  verifyTlogProof,
} from '@trailmark/tlog';

const BIN = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

function serve(dir: string): Promise<{ proc: ChildProcess; url: string; vkey: string }> {
  const proc = spawn(process.execPath, [BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out} ${err}`)), 20000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const url = /^url: (\S+)$/m.exec(out);
      const vkey = /^vkey: (\S+)$/m.exec(out);
      if (url && vkey) {
        clearTimeout(timer);
        resolve({ proc, url: url[1], vkey: vkey[1] });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${err}`));
    });
  });
}

interface Ack {
  entry: object;
  index: number;
}

describe('log server crash (SIGKILL under concurrent load)', function () {
  this.timeout(60000);
  let dir: string;
  const procs: ChildProcess[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tm-crash-'));
  });
  after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every acknowledged entry at its acknowledged index, and the next checkpoint extends the last acknowledged one', async () => {
    const first = await serve(dir);
    procs.push(first.proc);
    const verifier = parseVkey(first.vkey);
    const acks: Ack[] = [];
    let lastCheckpoint = '';
    let lastSize = -1n;
    const noteCheckpoint = (note: string) => {
      const cp = openCheckpoint(note, verifier).checkpoint;
      if (cp.size > lastSize) {
        lastSize = cp.size;
        lastCheckpoint = note;
      }
    };
    let stop = false;
    const receipts: { entry: object; body: any }[] = [];
    const batches: { entries: object[]; body: any }[] = [];
    const client = async (c: number) => {
      for (let i = 0; !stop; i++) {
        const single = i % 2 === 0;
        const entry = { client: c, i, kind: 'single' };
        const entries = Array.from({ length: 25 }, (_, k) => ({
          client: c,
          i,
          k,
          kind: 'batch',
          pad: 'x'.repeat(200),
        }));
        let body: any;
        try {
          const r = await fetch(`${first.url}/v1/${single ? 'add-entry' : 'add-entries'}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(single ? entry : entries),
          });
          if (r.status !== 200) continue;
          body = await r.json();
        } catch {
          // the server was killed mid-request: not acknowledged
          continue;
        }
        if (single) receipts.push({ entry, body });
        else batches.push({ entries, body });
      }
    };
    const clients = Array.from({ length: 12 }, (_, c) => client(c));
    // kill once enough has been acknowledged (a fixed window acknowledges too little on a loaded machine)
    while (receipts.length <= 20 || batches.length <= 20) await new Promise((r) => setTimeout(r, 10));
    const exited = new Promise((r) => first.proc.once('exit', r));
    first.proc.kill('SIGKILL');
    await exited;
    stop = true;
    await Promise.all(clients);
    // an answer is an acknowledgement only if it verifies
    for (const { entry, body } of receipts) {
      const v = verifyTlogProof(body.proof, hashLeaf(canonicalJson(entry)), verifier);
      expect(Number(v.index)).to.equal(body.leaf_index);
      expect(v.checkpoint.size).to.equal(BigInt(body.tree_size));
      acks.push({ entry, index: body.leaf_index });
      noteCheckpoint(body.proof.slice(body.proof.indexOf('\n\n') + 2));
    }
    for (const { entries, body } of batches) {
      expect(openCheckpoint(body.checkpoint, verifier).checkpoint.size).to.equal(BigInt(body.tree_size));
      noteCheckpoint(body.checkpoint);
      body.entries.forEach((e: { leaf_index: number }, k: number) =>
        acks.push({ entry: entries[k], index: e.leaf_index }),
      );
    }
    expect(receipts.length).to.be.greaterThan(20);
    expect(batches.length).to.be.greaterThan(20);

    const second = await serve(dir);
    procs.push(second.proc);
    try {
      expect(second.vkey).to.equal(first.vkey);
      const sth = await (await fetch(`${second.url}/v1/get-sth`)).json();
      const now = openCheckpoint(sth.checkpoint, verifier).checkpoint;
      expect(now.size >= lastSize).to.equal(true);
      // every acknowledged entry, at its index
      const size = Number(now.size);
      const stored: string[] = [];
      for (let s = 0; s < size; s += 1000) {
        const r = await (
          await fetch(`${second.url}/v1/get-entries?start=${s}&end=${Math.min(s + 999, size - 1)}`)
        ).json();
        for (const e of r.entries) stored[e.leaf_index] = Buffer.from(e.leaf_input, 'base64').toString('utf8');
      }
      expect(stored.filter((x) => x !== undefined)).to.have.length(size);
      for (const a of acks)
        expect(stored[a.index], `acknowledged entry at ${a.index}`).to.equal(
          Buffer.from(canonicalJson(a.entry)).toString('utf8'),
        );
      // the tree after the crash extends the last acknowledged checkpoint
      const old = openCheckpoint(lastCheckpoint, verifier).checkpoint;
      const c = await (await fetch(`${second.url}/v1/get-sth-consistency?first=${old.size}&second=${now.size}`)).json();
      verifyConsistency(
        old.size,
        now.size,
        c.consistency.map((h: string) => b64decode(h)),
        old.root,
        now.root,
      );
      // and it keeps accepting entries
      const more = await fetch(`${second.url}/v1/add-entry`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"after":"crash"}',
      });
      expect(more.status).to.equal(200);
      expect((await more.json()).leaf_index).to.equal(size);
    } finally {
      const exited2 = new Promise((r) => second.proc.once('exit', r));
      second.proc.kill('SIGTERM');
      expect(await exited2).to.equal(0);
    }
  });
});
