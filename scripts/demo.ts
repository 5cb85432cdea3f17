/**
 * `npm run demo`: the whole Trailmark story on loopback, through the real `trailmark` command.
 *
 *   1. keys, a witness policy, two witnessing monitors, a log that asks them to cosign
 *   2. an upstream service behind the access proxy; traffic from alice, bob and a stranger
 *   3. a receipt for one access event, verified offline with the witness policy
 *   4. a full audit of the log
 *   5. the log operator forks the log (same key, a history without alice's access) and shows it to a victim;
 *      the victim's monitor gossips, the witnessing monitors catch the split view, and the evidence verifies
 *
 * Everything runs in a temporary directory that is removed at the end (also on failure or Ctrl-C).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
const tty = process.stdout.isTTY;
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const red = (s: string) => (tty ? `\x1b[31m${s}\x1b[0m` : s);
const green = (s: string) => (tty ? `\x1b[32m${s}\x1b[0m` : s);

let step = 0;
const section = (title: string) => console.log(`\n${bold(`── ${++step}. ${title} `.padEnd(78, '─'))}`);
const say = (s: string) => console.log(`   ${s}`);
const show = (s: string) =>
  console.log(
    s
      .replace(/\n$/, '')
      .split('\n')
      .map((l) => `   ${dim('│')} ${l}`)
      .join('\n'),
  );

const children: ChildProcess[] = [];
const servers: Server[] = [];
let work = '';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Runs `trailmark ARGS` to completion; prints the command and its output. */
async function trailmark(
  args: string[],
  opts: { expect?: number; quiet?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!opts.quiet)
    say(`${dim('$')} trailmark ${args.map((a) => (a.startsWith(work) ? a.replace(work, '$DEMO') : a)).join(' ')}`);
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
  if (!opts.quiet) {
    if (r.stdout.trim()) show(r.stdout);
    if (r.stderr.trim()) show(r.stderr);
    say(dim(`exit ${r.code}`));
  }
  if (opts.expect !== undefined && r.code !== opts.expect)
    throw new Error(`trailmark ${args[0]} exited ${r.code}, expected ${opts.expect}`);
  return r;
}

/** Starts a long-running `trailmark ARGS`, its output going to DEMO/logs/NAME.log; resolves once `ready` matches its stdout. */
async function daemon(
  name: string,
  args: string[],
  ready: RegExp,
): Promise<{ proc: ChildProcess; match: RegExpMatchArray }> {
  say(
    `${dim('$')} trailmark ${args.map((a) => (a.startsWith(work) ? a.replace(work, '$DEMO') : a)).join(' ')} ${dim('&')}`,
  );
  const logFile = createWriteStream(join(work, `${name}.log`));
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  proc.stderr.pipe(logFile);
  let out = '';
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}`)), 15_000);
    proc.stdout.on('data', (d) => {
      out += d;
      logFile.write(d);
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    proc.once('exit', (code) => reject(new Error(`${name} exited with ${code}; see ${name}.log`)));
  });
  return { proc, match };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const treeSize = async (url: string) =>
  ((await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;
const checkpointSize = async (url: string) => {
  const r = await fetch(`${url}/checkpoint`);
  return r.status === 200 ? Number((await r.text()).split('\n')[1]) : -1;
};

async function main(): Promise<void> {
  work = await mkdtemp(join(tmpdir(), 'trailmark-demo-'));
  console.log(bold('Trailmark demo') + dim(`  (working directory $DEMO = ${work})`));
  const origin = 'demo.trailmark.example/log';
  const [logPort, w1Port, w2Port, proxyPort, forkPort] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
  const logUrl = `http://127.0.0.1:${logPort}`;
  const key = join(work, 'log.key');
  const vkeyFile = `${key}.pub`;

  section('Keys and a witness policy');
  await trailmark(['keygen', '--name', origin, '--out', key], { expect: 0 });
  await trailmark(['keygen', '--witness', '--name', 'witness-1.demo.example', '--out', join(work, 'w1.key')], {
    expect: 0,
  });
  await trailmark(['keygen', '--witness', '--name', 'witness-2.demo.example', '--out', join(work, 'w2.key')], {
    expect: 0,
  });
  const logVkey = (await readFile(vkeyFile, 'utf8')).trim();
  const w1Vkey = (await readFile(join(work, 'w1.key.pub'), 'utf8')).trim();
  const w2Vkey = (await readFile(join(work, 'w2.key.pub'), 'utf8')).trim();
  const policy = join(work, 'policy.txt');
  await writeFile(
    policy,
    [
      '# tlog-policy: the log, its two witnesses, and the quorum a receipt needs',
      `log ${logVkey} ${logUrl}`,
      `witness w1 ${w1Vkey} http://127.0.0.1:${w1Port}`,
      `witness w2 ${w2Vkey} http://127.0.0.1:${w2Port}`,
      'group both all w1 w2',
      'quorum both',
      '',
    ].join('\n'),
  );
  say('policy.txt:');
  show(await readFile(policy, 'utf8'));

  section('Two witnessing monitors, gossiping with each other');
  const m1Url = `http://127.0.0.1:${w1Port}`;
  const m2Url = `http://127.0.0.1:${w2Port}`;
  const monitorArgs = (n: number, port: number, peer: string) => [
    'monitor',
    '--log',
    logUrl,
    '--log-key',
    vkeyFile,
    '--witness-key',
    join(work, `w${n}.key`),
    '--listen',
    `127.0.0.1:${port}`,
    '--data',
    join(work, `monitor-${n}`),
    '--peer',
    peer,
    '--interval',
    '500',
  ];
  await daemon('monitor-1', monitorArgs(1, w1Port, m2Url), /url: \S+/);
  await daemon('monitor-2', monitorArgs(2, w2Port, m1Url), /url: \S+/);
  say(`monitor-1 at ${m1Url}, monitor-2 at ${m2Url} (witness endpoint: POST /add-checkpoint)`);

  section('The log, asking both witnesses to cosign its checkpoints');
  await daemon(
    'log',
    [
      'serve',
      '--data',
      join(work, 'log-data'),
      '--key',
      key,
      '--create',
      '--listen',
      `127.0.0.1:${logPort}`,
      '--policy',
      policy,
    ],
    /url: \S+/,
  );
  say(`log at ${logUrl}, origin ${origin}`);

  section('An upstream service behind the access proxy');
  const upstream = createHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ service: 'patient-records', method: req.method, path: req.url }));
  });
  servers.push(upstream);
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
  const tokens = join(work, 'tokens.json');
  await writeFile(
    tokens,
    JSON.stringify(
      { 'alice-token': { id: 'alice', roles: ['doctor'] }, 'bob-token': { id: 'bob', roles: ['billing'] } },
      null,
      2,
    ),
  );
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  await daemon(
    'proxy',
    [
      'proxy',
      '--upstream',
      upstreamUrl,
      '--log',
      logUrl,
      '--log-key',
      vkeyFile,
      '--tokens',
      tokens,
      '--listen',
      `127.0.0.1:${proxyPort}`,
      '--spool',
      join(work, 'spool'),
      '--name',
      'demo-proxy',
      '--redact-query',
      'ssn',
    ],
    /listen|url|proxy/i,
  );
  // a bare TCP connect: an HTTP probe would itself become an access event
  await waitFor(
    'proxy',
    () =>
      new Promise<boolean>((resolve) => {
        const c = connect(proxyPort, '127.0.0.1', () => {
          c.end();
          resolve(true);
        });
        c.once('error', () => resolve(false));
      }),
  );
  say(`upstream at ${upstreamUrl}, proxy at ${proxyUrl}`);

  section('Traffic through the proxy');
  const before = await treeSize(logUrl);
  const requests: [string, string, string | undefined][] = [
    ['GET', '/patients/42', 'alice-token'],
    ['GET', '/patients/42/notes?ssn=123-45-6789', 'alice-token'],
    ['POST', '/invoices', 'bob-token'],
    ['GET', '/patients/7', undefined],
  ];
  for (const [method, path, token] of requests) {
    const r = await fetch(`${proxyUrl}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    say(
      `${method.padEnd(4)} ${path.padEnd(36)} as ${(token ?? 'nobody').replace('-token', '').padEnd(6)} → ${r.status}`,
    );
    await r.arrayBuffer();
  }
  const expected = before + requests.length * 2;
  await waitFor('the events in the log', async () => (await treeSize(logUrl)) >= expected);
  say(
    `the log now holds ${await treeSize(logUrl)} access events (a request and a response event per call; the ssn is redacted)`,
  );
  await waitFor('a cosigned checkpoint covering them', async () => (await checkpointSize(logUrl)) >= expected);
  say('GET /checkpoint (served once both witnesses cosigned it):');
  show(await (await fetch(`${logUrl}/checkpoint`)).text());

  section("A receipt for alice's first access, verified offline with the witness policy");
  const entries = await trailmark(
    ['--json', 'entries', '--log', logUrl, '--key', vkeyFile, '--start', String(before)],
    { quiet: true, expect: 0 },
  );
  const lines = entries.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { leaf_index: number; entry: Record<string, unknown> });
  const pick =
    lines.find((l) => l.entry.stage === 'request' && (l.entry.actor as { id?: string } | undefined)?.id === 'alice') ??
    lines[0];
  const event = pick.entry;
  const entryFile = join(work, 'event.json');
  await writeFile(entryFile, JSON.stringify(event, null, 2));
  say(`event.json (leaf ${pick.leaf_index}):`);
  show(JSON.stringify(event, null, 2));
  const receipt = join(work, 'event.tlog-proof');
  await trailmark(['prove', 'inclusion', '--log', logUrl, '--key', vkeyFile, '--entry', entryFile, '--out', receipt], {
    expect: 0,
  });
  say('event.tlog-proof:');
  show(await readFile(receipt, 'utf8'));
  await trailmark(
    ['verify', 'inclusion', '--key', vkeyFile, '--proof', receipt, '--entry', entryFile, '--policy', policy],
    { expect: 0 },
  );

  section('A full audit of the log');
  await trailmark(['audit', '--log', logUrl, '--key', vkeyFile], { expect: 0 });

  section('The monitors agree: the log is consistent');
  await trailmark(['monitor', '--once', '--log', logUrl, '--log-key', vkeyFile, '--peer', m1Url, '--peer', m2Url], {
    expect: 0,
  });

  section("The operator forks the log: same key, a history without alice's access");
  const forkUrl = `http://127.0.0.1:${forkPort}`;
  await daemon(
    'fork',
    ['serve', '--data', join(work, 'fork-data'), '--key', key, '--create', '--listen', `127.0.0.1:${forkPort}`],
    /url: \S+/,
  );
  const forged = [
    {
      schema: 'trailmark.access/v1',
      stage: 'request',
      id: 'forged-1',
      request_id: 'forged-1',
      note: 'bob looked at an invoice',
    },
    { schema: 'trailmark.access/v1', stage: 'response', id: 'forged-2', request_id: 'forged-1' },
    {
      schema: 'trailmark.access/v1',
      stage: 'request',
      id: 'forged-3',
      request_id: 'forged-3',
      note: 'nothing to see here',
    },
  ];
  const fr = await fetch(`${forkUrl}/v1/add-entries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(forged),
  });
  if (fr.status !== 200) throw new Error(`fork add-entries: ${fr.status}`);
  say(`the forked log at ${forkUrl} shows a victim a validly signed tree of ${await treeSize(forkUrl)} entries:`);
  show(await (await fetch(`${forkUrl}/checkpoint`)).text());

  section("The victim's monitor gossips with the witnessing monitors");
  const victim = await trailmark([
    'monitor',
    '--once',
    '--log',
    forkUrl,
    '--log-key',
    vkeyFile,
    '--peer',
    m1Url,
    '--peer',
    m2Url,
  ]);
  if (victim.code !== 1) throw new Error(`the victim's monitor should have exited 1, got ${victim.code}`);
  say(red('exit 1: misbehaviour found'));
  for (const [n, url] of [
    [1, m1Url],
    [2, m2Url],
  ] as const) {
    const evs = (await (await fetch(`${url}/v1/evidence`)).json()) as { kind: string; checkpoints: string[] }[];
    say(
      `monitor-${n}: GET /v1/evidence → ${evs.length} piece(s): ${evs.map((e) => `${e.kind} (sizes ${e.checkpoints.map((c) => c.split('\n')[1]).join(' and ')})`).join(', ')}`,
    );
    // the monitor logs JSON lines; an alert's message starts with ALERT
    const alerts = (await readFile(join(work, `monitor-${n}.log`), 'utf8'))
      .split('\n')
      .filter((l) => l.includes('ALERT'))
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    for (const a of alerts.slice(0, 2)) say(red(a.length > 200 ? a.slice(0, 197) + '...' : a));
  }

  section('Anyone can check the evidence offline: the log key proves the fork, the policy names the cosigners');
  const evidence = await (await fetch(`${m1Url}/v1/evidence`)).text();
  const evidenceFile = join(work, 'evidence.json');
  await writeFile(evidenceFile, JSON.stringify(JSON.parse(evidence)[0], null, 2));
  await trailmark(['verify', 'evidence', evidenceFile, '--key', vkeyFile, '--policy', policy], { expect: 0 });
  say('(the forked checkpoint carries no witness cosignature: under the policy, no receipt for it would verify)');
  console.log(
    `\n${green(bold('Demo complete:'))} receipts verify under the witness quorum, the audit recomputes the tree, and a`,
  );
  console.log('forked log is caught by gossip with evidence anyone can verify.');
}

async function cleanup(): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => {
            c.kill('SIGKILL');
            resolve();
          }, 5000);
          c.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  if (work) await rm(work, { recursive: true, force: true });
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) return;
  interrupted = true;
  console.log('\ninterrupted; cleaning up');
  void cleanup().then(() => process.exit(130));
});

// every failure is reported and cleaned up in the handlers; a failing cleanup is left to Node's unhandled-rejection crash
void main()
  .then(cleanup, async (e) => {
    console.error(red(`\ndemo failed: ${(e as Error).message}`));
    if (work) console.error(dim(`(daemon logs were in ${work}; removed now)`));
    await cleanup();
    process.exitCode = 1;
  })
  .then(() => {
    if (!process.exitCode) process.exitCode = 0;
  });
