/**
 * Issue 10: no single client can stop the log or make it fail others. The log runs as `npm start` runs it
 * (the built CLI under `--max-semi-space-size=2 --max-old-space-size=128`) with a low open-file limit,
 * while hostile clients post bodies built to exhaust memory, stall uploads and hold idle sockets, and
 * honest clients write and read beside them.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '@trailmark/tlog';

const BIN = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const HEAP_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=128'];

/** Starts `trailmark serve` under `ulimit -n nofile`; resolves with its URL once it prints it. */
function serveLimited(dir: string, nofile: number): Promise<{ proc: ChildProcess; url: string; stderr: () => string }> {
  const cmd = `ulimit -n ${nofile} && exec "$0" "$@"`;
  const proc = spawn(
    'sh',
    ['-c', cmd, process.execPath, ...HEAP_FLAGS, BIN, 'serve', '--data', dir, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out} ${err}`)), 20_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const url = /^url: (\S+)$/m.exec(out);
      if (url) {
        clearTimeout(timer);
        resolve({ proc, url: url[1], stderr: () => err });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${err}`));
    });
  });
}

/** Peak resident memory of a process in bytes (VmHWM). */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** One request on its own connection (no pool): status, or the error's message. */
function rawPost(url: string, path: string, body: Buffer): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(
      `${url}${path}`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', (e) => resolve(e.message));
    req.end(body);
  });
}

/** `n` copies of `unit` joined by commas, between `head` and `tail`, as bytes. */
function repeated(head: string, unit: string, n: number, tail: string): Buffer {
  const u = Buffer.from(unit + ',');
  const b = Buffer.allocUnsafe(head.length + u.length * n - 1 + tail.length);
  b.write(head, 0);
  let o = head.length;
  for (let i = 0; i < n; i++) o += u.copy(b, o);
  b.write(tail, o - 1);
  return b;
}

/** Resolves once `done()` holds; rejects after `ms`, naming `what`. Polls every 50 ms. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Opens `n` sockets that send nothing; resolves once each is connected or closed. */
async function idleSockets(url: string, n: number, keep: Socket[]): Promise<void> {
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = connect(Number(new URL(url).port), '127.0.0.1');
          keep.push(s);
          s.on('error', () => {});
          s.on('connect', () => resolve());
          s.on('close', () => resolve());
        }),
    ),
  );
}

/**
 * `n` uploads that declare 16 MB, send 15 MB and stall; resolves once all is sent, with the status lines
 * answered so far (the array keeps filling as answers arrive).
 */
async function stalledUploads(url: string, n: number, keep: Socket[]): Promise<string[]> {
  const fifteen = Buffer.alloc(15_000_000, 0x20);
  const answers: string[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = connect(Number(new URL(url).port), '127.0.0.1');
          keep.push(s);
          let got = '';
          s.on('error', () => resolve());
          s.on('data', (d) => {
            got += d.toString();
            if (got.includes('\r\n\r\n')) answers.push(got.split('\r\n')[0]);
          });
          s.on('connect', () => {
            s.write(
              'POST /v1/add-entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n',
            );
            s.write(fifteen, () => resolve());
          });
        }),
    ),
  );
  return answers;
}

/** Hostile bodies, each on its own connection, and the statuses each must get. */
async function hostileBodies(url: string): Promise<{ got: (number | string)[]; want: number[] }> {
  const twoMillionEmpty = repeated('{"a":[', '{}', 2_000_000, ']}'); // 6 MB: one add-entry
  const tinyObjects = repeated('[', '{}', 1_300_000, ']'); // 3.9 MB: add-entries of tiny objects
  const oneHugeElement = repeated('[{"a":[', '{}', 1_300_000, ']}]');
  const sixteen = repeated('{"a":[', '{}', 5_500_000, ']}'); // 16.5 MB
  const deep = Buffer.from('[{"a":' + '['.repeat(300) + ']'.repeat(300) + '}]');
  const got = await Promise.all([
    rawPost(url, '/v1/add-entry', twoMillionEmpty),
    rawPost(url, '/v1/add-entry', twoMillionEmpty),
    rawPost(url, '/v1/add-entry', repeated('{"a":[', '0', 400_000, ']}')), // 800 KB, under the raw limit
    rawPost(url, '/v1/add-entries', tinyObjects),
    rawPost(url, '/v1/add-entries', oneHugeElement),
    rawPost(url, '/v1/add-entries', tinyObjects),
    rawPost(url, '/v1/add-entry', sixteen),
    rawPost(url, '/v1/add-entries', deep),
  ]);
  return { got, want: [413, 413, 413, 413, 413, 413, 413, 400] };
}

/**
 * Honest clients until stopped: a writer of single entries, a writer of ~100 KB batches, a reader of every
 * kind of read. `stop()` resolves with every answer that was not 200 (or failed) and the number answered.
 */
function honestClients(url: string): { stop(): Promise<{ failures: string[]; done: number }> } {
  const failures: string[] = [];
  let done = 0;
  let stopped = false;
  const loop = async (name: string, step: (i: number) => Promise<Response>) => {
    for (let i = 0; !stopped; i++) {
      try {
        const r = await step(i);
        const text = await r.text();
        if (r.status !== 200) failures.push(`${name} #${i}: ${r.status} ${text.slice(0, 200)}`);
        else done++;
      } catch (e) {
        failures.push(`${name} #${i}: ${errorMessage(e)} ${(e as { cause?: Error }).cause?.message ?? ''}`);
      }
    }
  };
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const reads = [
    '/checkpoint',
    '/v1/get-sth',
    '/v1/get-proof-by-index?leaf_index=7&tree_size=300',
    '/ct/v1/get-entries?start=5&end=10',
    '/tile/0/000',
  ];
  const loops = Promise.all([
    loop('add-entry', (i) => post('/v1/add-entry', { honest: i, who: 'alice', pad: 'x'.repeat(200) })),
    loop('add-entries', (i) =>
      post(
        '/v1/add-entries',
        Array.from({ length: 250 }, (_, j) => ({ batch: i, j, pad: 'y'.repeat(350) })),
      ),
    ),
    loop('reads', (i) => fetch(url + reads[i % reads.length])),
  ]);
  return {
    async stop() {
      stopped = true;
      await loops;
      return { failures, done };
    },
  };
}

describe('log server under hostile load (npm start heap flags, 512 open files)', function () {
  this.timeout(120_000);
  let dir: string;
  let server: { proc: ChildProcess; url: string; stderr: () => string } | undefined;
  let exited: number | null;
  const sockets: Socket[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-hostile-'));
    server = await serveLimited(dir, 512);
    exited = null;
    server.proc.on('exit', (code, signal) => (exited = code ?? (signal ? -1 : 0)));
    const seed = await fetch(`${server.url}/v1/add-entries`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ seed: i }))),
    });
    expect(seed.status).to.equal(200);
    await seed.arrayBuffer();
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
    if (server && server.proc.exitCode === null && server.proc.signalCode === null) server.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Waits until the server has taken all `n` idle sockets (it closes those beyond its cap of 128), then a
   * second more, after which the silent ones may be closed to make room.
   */
  async function serverHasSeen(n: number): Promise<void> {
    await until(
      () => sockets.filter((s) => s.destroyed || s.readyState === 'closed').length >= n - 128,
      30_000,
      'the server to refuse the sockets beyond its cap',
    );
    await new Promise((r) => setTimeout(r, 1200));
  }

  /** The log is alive and works: a write, read back, and /healthz. */
  async function stillWorks(url: string): Promise<void> {
    expect(exited, server!.stderr()).to.equal(null);
    const last = await fetch(`${url}/v1/add-entry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"after":"the storm"}',
    });
    expect(last.status).to.equal(200);
    const receipt = (await last.json()) as { leaf_index: number };
    const back = await fetch(`${url}/v1/get-entries?start=${receipt.leaf_index}&end=${receipt.leaf_index}`);
    const entries = ((await back.json()) as { entries: { leaf_input: string }[] }).entries;
    expect(Buffer.from(entries[0].leaf_input, 'base64').toString()).to.equal('{"after":"the storm"}');
    const health = await fetch(`${url}/healthz`);
    expect(health.status).to.equal(200);
    await health.arrayBuffer();
  }

  it('bodies built to exhaust memory (2 million {} in 6 MB, 1.3 million in 3.9 MB, 16 MB, deep nesting) get 413/400, honest requests beside them 200', async () => {
    const { url } = server!;
    const honest = honestClients(url);
    const { got, want } = await hostileBodies(url);
    const { failures, done } = await honest.stop();
    expect(got).to.deep.equal(want);
    expect(failures, failures.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(done).to.be.greaterThan(3);
    await stillWorks(url);
  });

  it('idle sockets beyond the open-file limit: storage keeps its files, honest clients still connect', async () => {
    const { url } = server!;
    await idleSockets(url, 600, sockets);
    await serverHasSeen(600);
    const honest = honestClients(url);
    await new Promise((r) => setTimeout(r, 1500));
    const { failures, done } = await honest.stop();
    expect(failures, failures.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(done).to.be.greaterThan(3);
    // the cap, (512 - 256) / 2 = 128, closed the rest
    expect(sockets.filter((s) => !s.destroyed && s.readyState === 'open').length).to.be.at.most(128);
    await stillWorks(url);
  });

  it('uploads that send 15 MB and stall: refused beyond the body budget, memory stays bounded', async () => {
    const { url, proc } = server!;
    const honest = honestClients(url);
    const answers = await stalledUploads(url, 30, sockets);
    await until(() => answers.length >= 29, 30_000, 'answers to the uploads beyond the budget');
    const { failures } = await honest.stop();
    const rss = peakRss(proc.pid!);
    // without a bound, the stalled uploads alone held 450 MB
    expect(rss, `peak RSS ${rss}`).to.be.lessThan(320 * 1024 * 1024);
    expect(answers.filter((a) => a.startsWith('HTTP/1.1 503')).length).to.be.greaterThan(20);
    expect(failures, failures.slice(0, 5).join('\n')).to.deep.equal([]);
    await stillWorks(url);
  });

  it('all of it at once: no honest request fails, the log stays up, memory stays bounded', async () => {
    const { url, proc } = server!;
    await idleSockets(url, 600, sockets);
    await serverHasSeen(600);
    const honest = honestClients(url);
    const [{ got, want }, answers] = await Promise.all([hostileBodies(url), stalledUploads(url, 30, sockets)]);
    await until(() => answers.length >= 29, 30_000, 'answers to the uploads beyond the budget');
    const { failures, done } = await honest.stop();
    expect(got).to.deep.equal(want);
    expect(answers.filter((a) => a.startsWith('HTTP/1.1 503')).length).to.be.greaterThan(20);
    expect(failures, failures.slice(0, 5).join('\n')).to.deep.equal([]);
    expect(done).to.be.greaterThan(10);
    const rss = peakRss(proc.pid!);
    expect(rss, `peak RSS ${rss}`).to.be.lessThan(320 * 1024 * 1024);
    if (process.env.TRAILMARK_TEST_VERBOSE)
      console.log(`peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB, ${done} honest requests answered`);
    await stillWorks(url);
  });
});
