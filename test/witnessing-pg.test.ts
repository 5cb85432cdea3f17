/**
 * Witnessing with two frontends on one PostgreSQL store (issue 16): both run `serve --policy` with the same
 * policy and ask the same two real witnesses (witnessing monitors), entries are written through both, and
 * each ends up serving a cosigned checkpoint of the whole log that meets the quorum. A relay in front of each
 * witness records every checkpoint it is asked to cosign: no witness ever sees two roots for one size.
 */
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCheckpoint, parsePolicy, parseVkey } from '@trailmark/tlog';
import { startLogServer, type LogServer } from '@trailmark/log-server';
import type { RunningMonitor } from '@trailmark/monitor';
import { startWitnesses } from './lib/witnesses.js';
import { addEntries, entry, keyFile, onFreePort, tempDir, waitFor } from './lib/util.js';
import { newPgDatabase } from './lib/pgstore.js';

/** Every add-checkpoint body passing through, forwarded to `target`: the sizes and roots a witness saw. */
async function recordingRelay(
  target: string,
): Promise<{ url: string; seen: Map<string, Set<string>>; server: Server }> {
  const seen = new Map<string, Set<string>>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // tlog-witness add-checkpoint: "old N", proof lines, a blank line, then the checkpoint (origin, size, root)
      const note = body.toString('utf8').split('\n\n').slice(1).join('\n\n').split('\n');
      if (note.length >= 3) {
        const roots = seen.get(note[1]) ?? new Set<string>();
        roots.add(note[2]);
        seen.set(note[1], roots);
      }
      fetch(target + req.url, { method: req.method, headers: { 'content-type': 'text/plain' }, body }).then(
        async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
          res.end(Buffer.from(await r.arrayBuffer()));
        },
        () => {
          res.writeHead(502);
          res.end();
        },
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as { port: number };
  return { url: `http://127.0.0.1:${a.port}`, seen, server };
}

describe('witnessing with two frontends on one PostgreSQL store (end to end)', function () {
  this.timeout(60_000);
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const frontends: LogServer[] = [];
  const witnesses: RunningMonitor[] = [];
  const relays: Awaited<ReturnType<typeof recordingRelay>>[] = [];
  let policyFile: string;
  let logVkey: string;
  /** What the frontends warned about witnesses (a witness ahead of a frontend's view is no fork). */
  const warnings: string[] = [];
  const logger = {
    info() {},
    warn(msg: string, f?: Record<string, unknown>) {
      if (f?.witness) warnings.push(`${msg}: ${String(f.error)}`);
    },
    error(msg: string, f?: Record<string, unknown>) {
      warnings.push(`${msg}: ${JSON.stringify(f)}`);
    },
  };

  before(async () => {
    tmp = await tempDir('witnessing-pg');
    const store = await newPgDatabase();
    const origin = 'witnessing-pg.example/log';
    const lk = await keyFile(join(tmp.dir, 'log.key'), origin);
    logVkey = lk.vkey;
    const wk = await Promise.all([1, 2].map((i) => keyFile(join(tmp.dir, `w${i}.key`), `witness${i}.example`, true)));
    await onFreePort(async (port) => {
      try {
        const logUrl = `http://127.0.0.1:${port}`;
        await startWitnesses(witnesses, { url: logUrl, vkey: lk.vkey }, wk, tmp.dir);
        for (const w of witnesses) relays.push(await recordingRelay(w.url!));
        policyFile = join(tmp.dir, 'policy');
        await writeFile(
          policyFile,
          [
            `log ${lk.vkey}`,
            `witness w1 ${wk[0].vkey} ${relays[0].url}`,
            `witness w2 ${wk[1].vkey} ${relays[1].url}`,
            'group both all w1 w2',
            'quorum both',
            '',
          ].join('\n'),
        );
        for (const [i, listen] of [`127.0.0.1:${port}`, '127.0.0.1:0'].entries())
          frontends.push(
            await startLogServer({
              dataDir: join(tmp.dir, `frontend${i}`),
              store,
              keyFile: lk.file,
              create: true,
              listen,
              policyFile,
              logger,
            }),
          );
      } catch (e) {
        for (const f of frontends.splice(0)) await f.close();
        for (const r of relays.splice(0)) r.server.close();
        for (const w of witnesses.splice(0)) await w.close();
        throw e;
      }
    });
  });
  after(async () => {
    for (const f of frontends) await f.close();
    for (const r of relays) r.server.close();
    for (const w of witnesses) await w.close();
    await tmp?.cleanup();
  });

  /** The frontend's /checkpoint when it meets the policy's quorum at `size` or beyond. */
  const cosigned = async (url: string, size: number) => {
    const r = await fetch(`${url}/checkpoint`);
    if (r.status !== 200) return undefined;
    const opened = openCheckpoint(await r.text(), parseVkey(logVkey), {
      policy: parsePolicy(readFileSync(policyFile)),
    });
    return opened.checkpoint.size >= BigInt(size) ? opened : undefined;
  };

  it('both frontends serve cosigned checkpoints meeting the quorum; no witness sees two roots for one size', async () => {
    const urls = frontends.map((f) => f.url);
    let n = 0;
    // rounds of concurrent writes through both frontends, with pauses so that witnesses cosign several sizes
    for (let round = 0; round < 6; round++) {
      await Promise.all(
        urls.map((url, i) =>
          addEntries(
            url,
            Array.from({ length: 20 }, (_, j) => entry(`f${i}r${round}`, j)),
          ),
        ),
      );
      n += 40;
      await new Promise((r) => setTimeout(r, 300));
    }
    const got = await Promise.all(
      urls.map((url, i) =>
        waitFor(`frontend ${i}: a cosigned checkpoint of size ${n}`, () => cosigned(url, n), 20_000),
      ),
    );
    for (const c of got) {
      expect(c.checkpoint.size).to.equal(BigInt(n));
      expect(c.cosignatures.map((s) => s.witness).sort()).to.deep.equal(['w1', 'w2']);
    }
    expect(Buffer.from(got[0].checkpoint.root).equals(Buffer.from(got[1].checkpoint.root))).to.equal(true);
    expect([...new Set(warnings)]).to.deep.equal([]);
    for (const [w, relay] of relays.entries()) {
      expect(relay.seen.size, `witness ${w + 1} was asked to cosign`).to.be.greaterThan(1);
      for (const [size, roots] of relay.seen) expect([...roots], `witness ${w + 1}, size ${size}`).to.have.length(1);
    }
  });
});
