/**
 * One log on PostgreSQL served by several `trailmark serve --store` processes (contract section 9): the
 * sequencer SIGKILLed under load and replaced within 10 s; a SIGSTOPped sequencer resumed after losing its
 * lease signs nothing; every acknowledged entry is in the log with its hash at its index, and every checkpoint
 * any client saw is a checkpoint of that one tree (never two roots for one size).
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { b64decode, b64encode, CompactRange, hashLeaf, openCheckpoint, parseVkey } from '@trailmark/tlog';
import { nodeHasher } from '@trailmark/log-server';
import { newPgDatabase, testPostgres } from './lib/pgstore.js';
import { BIN, cli, entry, keyFile, tempDir, waitFor } from './lib/util.js';

interface Frontend {
  proc: ChildProcess;
  url: string;
  stderr: () => string;
  stop(): Promise<void>;
}

async function startFrontend(store: string, key: string, extra: string[] = []): Promise<Frontend> {
  // port 0: the frontend says which port it got ("url: ..."), so no port is chosen before it is bound
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--store', store, '--key', key, '--listen', '127.0.0.1:0', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await waitFor(
    'the frontend to listen',
    async () => {
      if (proc.exitCode !== null) throw new Error(`serve exited ${proc.exitCode}: ${err}`);
      return /url: \S+\n/.test(out);
    },
    20_000,
  );
  return {
    proc,
    url: /url: (\S+)\n/.exec(out)![1],
    stderr: () => err,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGCONT');
        proc.kill('SIGTERM');
      }
      await exited;
    },
  };
}

/** What clients were told: index -> leaf hash from receipts, and every checkpoint note they received. */
class Seen {
  readonly acks = new Map<number, string>();
  readonly checkpoints: string[] = [];
  ack(idx: number, hash: string): void {
    const had = this.acks.get(idx);
    if (had !== undefined && had !== hash) throw new Error(`index ${idx} acknowledged for two different leaves`);
    this.acks.set(idx, hash);
  }
}

/**
 * Clients writing batches of unique events until stopped, each batch retried on the next frontend until one
 * acknowledges it (a dead or paused frontend costs a timeout, not the entries).
 */
function startLoad(urls: () => string[], seen: Seen, tag: string, clients = 3) {
  let stop = false;
  let acked = 0;
  const runs = Array.from({ length: clients }, async (_, c) => {
    let i = 0;
    let turn = c;
    while (!stop) {
      const batch = Array.from({ length: 40 }, () => entry(`${tag}-${c}`, i++));
      for (;;) {
        const list = urls();
        const url = list[turn++ % list.length];
        try {
          const r = await fetch(`${url}/v1/add-entries`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(batch),
            signal: AbortSignal.timeout(4000),
          });
          if (r.status === 200) {
            const body = (await r.json()) as {
              checkpoint: string;
              entries: { leaf_index: number; leaf_hash: string }[];
            };
            for (const e of body.entries) seen.ack(e.leaf_index, e.leaf_hash);
            seen.checkpoints.push(body.checkpoint);
            acked += batch.length;
            break;
          }
          await r.arrayBuffer();
        } catch {
          // refused, reset or timed out: try the next frontend
        }
        if (stop) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  return {
    get acked() {
      return acked;
    },
    async stop() {
      stop = true;
      await Promise.all(runs);
    },
  };
}

/** Checks the log served at `url` against everything clients saw. */
async function verifyAgainst(url: string, vkey: string, seen: Seen): Promise<number> {
  const verifier = parseVkey(vkey);
  const size = Number(openCheckpoint(await (await fetch(`${url}/checkpoint`)).text(), verifier).checkpoint.size);
  const hashes: Uint8Array[] = [];
  while (hashes.length < size) {
    const r = (await (await fetch(`${url}/v1/get-entries?start=${hashes.length}&end=${size - 1}`)).json()) as {
      entries: { leaf_input: string }[];
    };
    for (const e of r.entries) hashes.push(hashLeaf(b64decode(e.leaf_input, 'leaf')));
  }
  for (const [idx, h] of seen.acks) {
    expect(idx, 'an acknowledged index is in the log').to.be.below(size);
    expect(b64encode(hashes[idx]), `leaf hash at ${idx}`).to.equal(h);
  }
  // roots at every size any client saw, from the entries: one root per size, the tree's
  const want = new Map<number, string>();
  for (const note of seen.checkpoints) {
    const cp = openCheckpoint(note, verifier).checkpoint;
    const s = Number(cp.size);
    const r = b64encode(cp.root);
    if (want.has(s)) expect(r, `two roots for size ${s}`).to.equal(want.get(s));
    want.set(s, r);
  }
  const cr = new CompactRange(0n, [], nodeHasher);
  for (let i = 0; i <= size; i++) {
    const w = want.get(i);
    if (w !== undefined) expect(b64encode(cr.root()), `root of size ${i}`).to.equal(w);
    if (i < size) cr.append(hashes[i]);
  }
  return size;
}

/** The pid in the lease row's holder (`host/pid/random`) while the lease is live. */
async function leaseHolder(db: string): Promise<number | undefined> {
  const pg = await testPostgres();
  const out = pg.sql(`SELECT holder FROM tm_lease WHERE expires > clock_timestamp()`, db);
  return out ? Number(out.split('/')[1]) : undefined;
}

describe('log on PostgreSQL: several serve processes', function () {
  this.timeout(120_000);
  let tmp: { dir: string; cleanup(): Promise<void> };
  const running: Frontend[] = [];
  beforeEach(async () => {
    tmp = await tempDir('pgfail');
    await testPostgres();
  });
  afterEach(async () => {
    for (const f of running.splice(0)) await f.stop();
    await tmp.cleanup();
  });

  async function twoFrontends(): Promise<{ db: string; vkey: string; a: Frontend; b: Frontend }> {
    const url = await newPgDatabase();
    const k = await keyFile(`${tmp.dir}/log.key`, 'failover.test/log');
    // an existing key on an empty store needs --create (contract section 3)
    const refused = await cli(['serve', '--store', url, '--key', k.file, '--listen', '127.0.0.1:0']);
    expect(refused.code).to.equal(2);
    expect(refused.stderr).to.match(/holds no log.*--create/s);
    const a = await startFrontend(url, k.file, ['--create']);
    running.push(a);
    const b = await startFrontend(url, k.file);
    running.push(b);
    return { db: url.split('/').pop()!, vkey: k.vkey, a, b };
  }

  it('the sequencer SIGKILLed under load: another frontend takes over within 10 s and nothing acknowledged is lost', async () => {
    const { db, vkey, a, b } = await twoFrontends();
    const live = [a, b];
    const seen = new Seen();
    const load = startLoad(() => live.map((f) => f.url), seen, 'kill');
    await waitFor('entries acknowledged', async () => load.acked >= 2000, 30_000);
    const holder = await waitFor('a sequencer', () => leaseHolder(db));
    const victim = live.find((f) => f.proc.pid === holder)!;
    const survivor = live.find((f) => f !== victim)!;
    expect(victim, 'the lease holder is one of the frontends').to.not.equal(undefined);
    victim.proc.kill('SIGKILL');
    const killedAt = Date.now();
    live.splice(live.indexOf(victim), 1);
    const before = load.acked;
    await waitFor(
      'the survivor to hold the lease',
      async () => (await leaseHolder(db)) === survivor.proc.pid,
      10_000,
      100,
    );
    await waitFor(
      'writes acknowledged after the kill',
      async () => load.acked >= before + 400,
      10_000 - (Date.now() - killedAt),
      50,
    );
    const tookOver = Date.now() - killedAt;
    expect(tookOver).to.be.below(10_000);
    await load.stop();
    const size = await verifyAgainst(survivor.url, vkey, seen);
    expect(size).to.be.at.least(seen.acks.size);
  });

  it('a SIGSTOPped sequencer loses its lease; resumed, it signs nothing and serves only the stored tree', async () => {
    const { db, vkey, a, b } = await twoFrontends();
    const seen = new Seen();
    const holder = await waitFor('a sequencer', () => leaseHolder(db));
    const paused = [a, b].find((f) => f.proc.pid === holder)!;
    const other = paused === a ? b : a;
    // the load goes to the other frontend: the paused one's entries reach the sequencer through the database
    const load = startLoad(() => [other.url], seen, 'stop');
    await waitFor('entries acknowledged', async () => load.acked >= 1000, 30_000);
    paused.proc.kill('SIGSTOP');
    // within 10 s of the pause (waitFor fails after that)
    await waitFor(
      'the other frontend to take the lease',
      async () => (await leaseHolder(db)) === other.proc.pid,
      10_000,
      100,
    );
    const before = load.acked;
    await waitFor('writes acknowledged by the new sequencer', async () => load.acked >= before + 400, 10_000);
    paused.proc.kill('SIGCONT');
    // it wakes with its old lease and whatever it had signed in memory, and finds out
    // (its renewal fails, its signed batch is fenced, or the server ended its session mid-transaction)
    await waitFor(
      'the resumed frontend to step down',
      async () => /lost the sequencer lease|not the sequencer any more|steps down/.test(paused.stderr()),
      20_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; its log:\n${paused.stderr().slice(-3000)}`);
    });
    const more = load.acked;
    await waitFor('writes go on', async () => load.acked >= more + 400, 10_000);
    await load.stop();
    expect(await leaseHolder(db)).to.equal(other.proc.pid);
    // both frontends serve checkpoints of the one tree; the resumed one catches up with the store
    const size = await verifyAgainst(other.url, vkey, seen);
    await waitFor(
      'the resumed frontend to serve the newest checkpoint',
      async () => {
        const note = await (await fetch(`${paused.url}/checkpoint`)).text();
        seen.checkpoints.push(note);
        return Number(openCheckpoint(note, parseVkey(vkey)).checkpoint.size) === size;
      },
      5_000,
    );
    await verifyAgainst(paused.url, vkey, seen);
    // and the store holds exactly one root per signed size, each the tree's
    const pg = await testPostgres();
    const stored = pg
      .sql(
        `SELECT replace(encode(convert_to(note, 'UTF8'), 'base64'), E'\\n', '') FROM tm_checkpoints ORDER BY size`,
        db,
      )
      .split('\n');
    expect(stored.length).to.be.above(2);
    for (const line of stored) seen.checkpoints.push(Buffer.from(line, 'base64').toString('utf8'));
    await verifyAgainst(other.url, vkey, seen);
  });
});
