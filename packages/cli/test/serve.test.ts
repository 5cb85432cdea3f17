import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function run(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 30000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file and directory under `dir` with its mode and content hash: equal snapshots = byte-identical trees. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out[rel + name + '/'] = `dir ${st.mode}`;
        walk(p, rel + name + '/');
      } else out[rel + name] = `${st.mode} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir, '');
  return out;
}

/** Starts `serve`; resolves once it prints its URL. */
function serve(args: string[], cwd: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [BIN, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^url: (\S+)$/m.exec(out);
      if (m) resolve({ proc, url: m[1] });
    });
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await done;
}

describe('trailmark serve: creating a log, and starts that fail', function () {
  this.timeout(60000);
  let dir: string;
  let blocker: Server | undefined;
  const procs: ChildProcess[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trailmark-serve-'));
  });
  afterEach(async () => {
    for (const p of procs) await stop(p);
    procs.length = 0;
    blocker?.close();
    blocker = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function busyPort(): Promise<number> {
    blocker = createServer();
    await new Promise<void>((r) => blocker!.listen(0, '127.0.0.1', r));
    return (blocker.address() as { port: number }).port;
  }

  it('refuses an existing key on a data directory that holds no log (a mistyped --data) unless --create, creating nothing', async () => {
    expect(run(['keygen', '--name', 'serve.test/log', '--out', 'log.key'], dir).code).to.equal(0);
    const before = snapshot(dir);
    const r = run(['serve', '--key', 'log.key', '--data', 'trail-dta', '--listen', '127.0.0.1:0'], dir);
    expect(r.code, r.stderr).to.equal(2);
    expect(r.stderr)
      .to.match(/holds no log/)
      .and.match(/second history/)
      .and.match(/--create/);
    expect(snapshot(dir)).to.deep.equal(before);
    expect(existsSync(join(dir, 'trail-dta'))).to.equal(false);

    const created = await serve(
      ['--key', 'log.key', '--data', 'trail-dta', '--create', '--listen', '127.0.0.1:0'],
      dir,
    );
    procs.push(created.proc);
    expect(((await (await fetch(`${created.url}/v1/get-sth`)).json()) as { tree_size: number }).tree_size).to.equal(0);
  });

  it('a fresh start that fails (port in use) leaves no data directory and no key', async () => {
    const port = await busyPort();
    const r = run(['serve', '--data', 'fresh', '--listen', `127.0.0.1:${port}`], dir);
    expect(r.code, r.stderr).to.equal(2);
    expect(r.stderr).to.match(/cannot listen/);
    expect(readdirSync(dir)).to.deep.equal([]);
  });

  it('a start that fails on an existing log (port in use, missing policy, bad flag, locked directory) leaves it byte-identical', async () => {
    const first = await serve(['--data', 'data', '--listen', '127.0.0.1:0'], dir);
    const r0 = await fetch(`${first.url}/v1/add-entries`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ i }))),
    });
    expect(r0.status).to.equal(200);
    await stop(first.proc);
    const before = snapshot(dir);
    const port = await busyPort();
    const failures: [string[], RegExp][] = [
      [['--data', 'data', '--listen', `127.0.0.1:${port}`], /cannot listen/],
      [['--data', 'data', '--listen', '127.0.0.1:0', '--policy', 'no-such-policy.txt'], /policy/],
      [['--data', 'data', '--listen', 'nonsense'], /--listen/],
      [['--data', 'data', '--listen', '127.0.0.1:0', '--submit-tokens', 'no-such-tokens'], /submit tokens/],
      [['--data', 'data', '--bogus-flag'], /unknown option/],
    ];
    for (const [args, why] of failures) {
      const r = run(['serve', ...args], dir);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(why);
      expect(snapshot(dir), args.join(' ')).to.deep.equal(before);
    }

    // locked: another server holds the directory (idle, so it changes nothing itself)
    const holder = await serve(['--data', 'data', '--listen', '127.0.0.1:0'], dir);
    procs.push(holder.proc);
    const held = snapshot(dir);
    const r = run(['serve', '--data', 'data', '--listen', '127.0.0.1:0'], dir);
    expect(r.code, r.stderr).to.equal(2);
    expect(r.stderr).to.match(/in use by another process/);
    expect(snapshot(dir)).to.deep.equal(held);
  });

  it('warns when it listens beyond loopback without --submit-tokens', async () => {
    // 192.0.2.1 (TEST-NET-1) is not this machine's: the bind fails after the warning, and nothing is sent anywhere
    const r = run(['serve', '--data', 'data', '--listen', '192.0.2.1:0'], dir);
    expect(r.stderr).to.match(/write API is open/);
    expect(r.code).to.equal(2);
    expect(readdirSync(dir)).to.deep.equal([]);
    const quiet = run(['serve', '--data', 'data', '--listen', `127.0.0.1:${await busyPort()}`], dir);
    expect(quiet.stderr).not.to.match(/write API is open/);
  });
});
