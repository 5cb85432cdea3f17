/**
 * The log side of witnessing, end to end: `startLogServer` with a tlog-policy asks two witnessing monitors
 * (a third witness is down) to cosign; GET /checkpoint serves the newest checkpoint meeting the quorum; a
 * receipt from the log verifies with `trailmark verify inclusion --policy`, and fails under a policy whose
 * quorum needs the missing witness; a restarted log serves its witnessed checkpoint at once.
 */
import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, openCheckpoint, parsePolicy, parseVkey } from '@trailmark/tlog';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import type { RunningMonitor } from '@trailmark/monitor';
import { startWitnesses } from './lib/witnesses.js';
import { cli, startSilentServer, addEntries, entry, keyFile, onFreePort, tempDir, waitFor } from './lib/util.js';

describe('log-side witnessing with a policy (end to end)', function () {
  this.timeout(30_000);
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let logUrl: string;
  let log: LogServer | undefined;
  const witnesses: RunningMonitor[] = [];
  let policyFile: string;
  let strictPolicyFile: string;
  let logKeyFile: string;
  let logVkey: string;

  before(async () => {
    tmp = await tempDir('witnessing');
    const origin = 'witnessing.example/log';
    const lk = await keyFile(join(tmp.dir, 'log.key'), origin);
    logKeyFile = lk.file;
    logVkey = lk.vkey;
    const wk = await Promise.all(
      [1, 2, 3].map((i) => keyFile(join(tmp.dir, `w${i}.key`), `witness${i}.example`, true)),
    );
    // the witnesses must know the log's URL before it starts: choose its port, and start all again on another
    // if something takes it meanwhile
    await onFreePort(async (port) => {
      try {
        logUrl = `http://127.0.0.1:${port}`;
        await startWitnesses(witnesses, { url: logUrl, vkey: lk.vkey }, wk.slice(0, 2), tmp.dir); // w3 stays down
        const lines = [
          `log ${lk.vkey}`,
          `witness w1 ${wk[0].vkey} ${witnesses[0].url}`,
          `witness w2 ${wk[1].vkey} ${witnesses[1].url}`,
          `witness w3 ${wk[2].vkey} http://127.0.0.1:9`,
        ];
        policyFile = join(tmp.dir, 'policy');
        await writeFile(policyFile, [...lines, 'group two 2 w1 w2 w3', 'quorum two', ''].join('\n'));
        strictPolicyFile = join(tmp.dir, 'policy-all');
        await writeFile(strictPolicyFile, [...lines, 'group every all w1 w2 w3', 'quorum every', ''].join('\n'));
        log = await startLogServer({
          dataDir: join(tmp.dir, 'log'),
          keyFile: logKeyFile,
          create: true,
          listen: `127.0.0.1:${port}`,
          policyFile,
        });
      } catch (e) {
        for (const w of witnesses.splice(0)) await w.close();
        throw e;
      }
    });
  });
  after(async () => {
    await log?.close();
    for (const w of witnesses) await w.close();
    await tmp.cleanup();
  });

  const cosignedCheckpoint = async (minSize: number) => {
    const r = await fetch(`${logUrl}/checkpoint`);
    if (r.status !== 200) return undefined;
    const text = await r.text();
    const opened = openCheckpoint(text, parseVkey(logVkey), {
      policy: parsePolicy(await import('node:fs').then((fs) => fs.readFileSync(policyFile))),
    });
    return opened.checkpoint.size >= BigInt(minSize) ? { text, opened } : undefined;
  };

  it('serves the newest checkpoint meeting the quorum although one witness is down', async () => {
    await addEntries(
      logUrl,
      [0, 1, 2].map((i) => entry('w', i)),
    );
    const got = await waitFor('cosigned checkpoint of size 3', () => cosignedCheckpoint(3), 10_000);
    expect(got.opened.cosignatures.map((c) => c.witness).sort()).to.deep.equal(['w1', 'w2']);
  });

  it('a receipt verifies with --policy, and fails a policy whose quorum needs the down witness', async () => {
    const r = await fetch(`${logUrl}/v1/add-entry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(entry('w', 99)),
    });
    expect(r.status).to.equal(200);
    const receipt = (await r.json()) as { leaf_index: number; leaf_hash: string; tree_size: number };
    await waitFor('cosigned checkpoint covering the entry', () => cosignedCheckpoint(receipt.tree_size), 10_000);
    const pr = await fetch(`${logUrl}/v1/get-tlog-proof?leaf_index=${receipt.leaf_index}`);
    expect(pr.status).to.equal(200);
    const proofFile = join(tmp.dir, 'receipt.tlog-proof');
    await writeFile(proofFile, await pr.text());
    const ok = await cli([
      'verify',
      'inclusion',
      '--key',
      logKeyFile + '.pub',
      '--proof',
      proofFile,
      '--leaf-hash',
      receipt.leaf_hash,
      '--policy',
      policyFile,
    ]);
    expect(ok.code, ok.stdout + ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/quorum met/);
    const strict = await cli([
      'verify',
      'inclusion',
      '--key',
      logVkey,
      '--proof',
      proofFile,
      '--leaf-hash',
      receipt.leaf_hash,
      '--policy',
      strictPolicyFile,
    ]);
    expect(strict.code, strict.stdout + strict.stderr).to.equal(1);
  });

  it('the witnesses also follow the log, and a restarted log serves its witnessed checkpoint at once', async () => {
    const before = (await cosignedCheckpoint(1))!;
    await waitFor('witness views', async () => {
      for (const w of witnesses)
        if (((await w.monitor.view('witnessing.example/log'))?.size ?? 0n) < before.opened.checkpoint.size)
          return false;
      return true;
    });
    await log!.close();
    log = await startLogServer({
      dataDir: join(tmp.dir, 'log'),
      keyFile: logKeyFile,
      create: true,
      listen: new URL(logUrl).host,
      policyFile,
    });
    const r = await fetch(`${logUrl}/checkpoint`);
    expect(r.status).to.equal(200);
    const after = openCheckpoint(await r.text(), parseVkey(logVkey)).checkpoint;
    expect(after.size).to.equal(before.opened.checkpoint.size);
    for (const w of witnesses) expect(await (await fetch(`${w.url}/v1/evidence`)).json()).to.deep.equal([]);
  });

  it('a forked checkpoint the operator submits to the witnesses is refused and becomes evidence', async () => {
    const fork = await startLogServer({
      dataDir: join(tmp.dir, 'fork'),
      keyFile: logKeyFile,
      create: true,
      listen: '127.0.0.1:0',
      policyFile,
    });
    try {
      await addEntries(fork.url, [entry('fork', 0), entry('fork', 1)]);
      for (const w of witnesses) {
        const evs = await waitFor('evidence at the witness', async () => {
          const e = (await (await fetch(`${w.url}/v1/evidence`)).json()) as {
            kind: string;
            seen: { from: string }[];
          }[];
          return e.length > 0 && e;
        });
        expect(evs[0].kind).to.equal('inconsistent');
        expect(evs[0].seen.map((s) => s.from).join(' ')).to.contain('add-checkpoint from');
      }
      // the fork never reaches its quorum
      expect((await fetch(`${fork.url}/checkpoint`)).status).to.equal(503);
    } finally {
      await fork.close();
    }
  });

  it('refuses to start with a policy whose quorum no reachable witness can meet, or that does not list the log', async () => {
    const noUrl = join(tmp.dir, 'policy-no-url');
    const w = (await import('node:fs'))
      .readFileSync(policyFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('witness w1'))!
      .split(' ');
    await writeFile(noUrl, `witness w1 ${w[2]}\nquorum w1\n`);
    const otherLog = join(tmp.dir, 'policy-other-log');
    const other = await keyFile(join(tmp.dir, 'other-log.key'), 'other.example/log');
    await writeFile(otherLog, `log ${other.vkey}\nquorum none\n`);
    for (const [file, why] of [
      [noUrl, /cannot meet quorum/],
      [otherLog, /does not list this log/],
    ] as const) {
      try {
        const s = await startLogServer({
          dataDir: join(tmp.dir, 'refused'),
          keyFile: logKeyFile,
          create: true,
          listen: '127.0.0.1:0',
          policyFile: file,
        });
        await s.close();
        expect.fail('started');
      } catch (e) {
        expect(errorMessage(e)).to.match(why);
      }
    }
  });

  it('a witness that never answers holds up neither receipts nor the log shutdown', async () => {
    const hang = await startSilentServer();
    const { sockets, url: hangUrl } = hang;
    const wk = await keyFile(join(tmp.dir, 'hang.key'), 'hanging.example', true);
    const hangPolicy = join(tmp.dir, 'policy-hang');
    await writeFile(hangPolicy, `log ${logVkey}\nwitness h ${wk.vkey} ${hangUrl}\nquorum h\n`);
    const l = await startLogServer({
      dataDir: join(tmp.dir, 'hang-log'),
      keyFile: logKeyFile,
      create: true,
      listen: '127.0.0.1:0',
      policyFile: hangPolicy,
    });
    try {
      const r = await fetch(`${l.url}/v1/add-entry`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(entry('hang', 0)),
      });
      expect(r.status).to.equal(200);
      // the receipt did not wait for the witness to answer or time out: no request to it has ended yet
      expect([...sockets].filter((s) => s.closed)).to.have.length(0);
      expect((await fetch(`${l.url}/checkpoint`)).status).to.equal(503);
      await waitFor('a request at the hanging witness', async () => sockets.size > 0);
    } finally {
      const t1 = Date.now();
      await l.close();
      expect(Date.now() - t1).to.be.below(2000);
      await hang.close();
    }
  });

  it('a restarted log ignores a stored witnessed checkpoint its own entries do not extend', async () => {
    const dir = join(tmp.dir, 'other-tree');
    const l = await startLogServer({ dataDir: dir, keyFile: logKeyFile, create: true, listen: '127.0.0.1:0' });
    await addEntries(
      l.url,
      Array.from({ length: 12 }, (_, i) => entry('other', i)),
    );
    await l.close();
    // the main log's cosigned checkpoint (smaller, same key, another history) planted in this data dir
    const cosigned = await (await fetch(`${logUrl}/checkpoint`)).text();
    await writeFile(join(dir, 'witnessed-checkpoint'), cosigned);
    const l2 = await startLogServer({
      dataDir: dir,
      keyFile: logKeyFile,
      create: true,
      listen: '127.0.0.1:0',
      policyFile,
    });
    try {
      const r = await fetch(`${l2.url}/checkpoint`);
      expect(r.status).to.equal(503);
    } finally {
      await l2.close();
    }
  });
});
