import { expect } from 'chai';
import {
  errorMessage,
  canonicalJson,
  generateKey,
  hashLeaf,
  b64encode,
  parsePrivateKey,
  parseVkey,
} from '@trailmark/tlog';
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LogWriter, LogRejectedError, LogUnavailableError, nativeEd25519Verifier, ReceiptError } from '../src/index.js';
import { RestartableLog, startRelay, tempDir } from '../../proxy/test/helpers.js';

describe('nativeEd25519Verifier', () => {
  it('accepts and rejects exactly what the tlog verifier does', () => {
    const k = generateKey('example.com/log');
    const signer = parsePrivateKey(k.privateKey);
    const slow = parseVkey(k.vkey);
    const fast = nativeEd25519Verifier(slow);
    expect([fast.name, fast.keyId, fast.type]).to.deep.equal([slow.name, slow.keyId, slow.type]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(63), fc.nat(7), (msg, at, bit) => {
        const sig = signer.sign(msg);
        expect(fast.verify(msg, sig)).to.equal(true);
        const bad = sig.slice();
        bad[at] ^= 1 << bit;
        expect(fast.verify(msg, bad)).to.equal(slow.verify(msg, bad)).and.equal(false);
        expect(fast.verify(msg, sig.subarray(0, 63))).to.equal(false);
        const other = msg.length ? msg.slice(1) : new Uint8Array([1]);
        expect(fast.verify(other, sig)).to.equal(false);
      }),
      { numRuns: 25 },
    );
  });
});

describe('LogWriter against a real log', () => {
  const tmp = tempDir('tm-logclient-');
  const log = new RestartableLog(tmp.dir);
  before(() => log.start());
  after(async () => {
    await log.stop();
    tmp.cleanup();
  });

  const entry = (i: number) => canonicalJson({ test: 'logclient', i, nonce: Math.random() });

  it('verifies add-entry and add-entries receipts; a resend gets the original indexes', async () => {
    const c = new LogWriter({ url: log.url, vkey: log.vkey });
    const one = await c.addEntry(entry(0));
    expect(one.proof).to.match(/^c2sp.org\/tlog-proof@v1\n/);
    const batch = Array.from({ length: 300 }, (_, i) => entry(i + 1));
    const rs = await c.addEntries(batch);
    expect(rs).to.have.length(300);
    rs.forEach((r, i) => expect(Buffer.from(r.leafHash)).to.deep.equal(Buffer.from(hashLeaf(batch[i]))));
    const again = await c.addEntries(batch);
    expect(again.map((r) => r.leafIndex)).to.deep.equal(rs.map((r) => r.leafIndex));
    // old entries scattered among new ones, and one entry twice in the same batch
    const twice = entry(901);
    const mixed = [batch[7], entry(900), batch[250], twice, twice, batch[0]];
    const mr = await c.addEntries(mixed);
    expect([mr[0], mr[2], mr[5]].map((r) => r.leafIndex)).to.deep.equal(
      [rs[7], rs[250], rs[0]].map((r) => r.leafIndex),
    );
    expect(mr[3].leafIndex).to.equal(mr[4].leafIndex);
    expect(mr[1].leafIndex > rs[299].leafIndex).to.equal(true);
    expect(c.stats.receiptFailures).to.equal(0);
  });

  it('rejects receipts under another key of the same name, and counts them', async () => {
    const other = generateKey('test.example/log').vkey;
    const c = new LogWriter({ url: log.url, vkey: other });
    for (const call of [() => c.addEntry(entry(1000)), () => c.addEntries([entry(1001)])]) {
      try {
        await call();
        expect.fail('accepted a receipt signed by another key');
      } catch (e) {
        expect(e).to.be.instanceOf(ReceiptError);
        expect(errorMessage(e)).to.match(/does not verify|not signed/);
      }
    }
    expect(c.stats.receiptFailures).to.equal(2);
  });

  it('rejects a receipt whose leaf hash or inclusion does not match what was sent', async () => {
    const other = b64encode(hashLeaf(canonicalJson({ not: 'mine' })));
    const relay = await startRelay(log.url, {
      rewrite: (path, body) => {
        if (path === '/v1/add-entries') body.entries[1].leaf_hash = other;
        if (path === '/v1/add-entry') body.leaf_index = body.leaf_index + 1;
        return body;
      },
    });
    try {
      const c = new LogWriter({ url: relay.url, vkey: log.vkey });
      await c.addEntries([entry(2000), entry(2001)]).then(
        () => expect.fail('accepted a wrong leaf hash'),
        (e) => expect((e as ReceiptError).code).to.equal('leaf-hash'),
      );
      await c.addEntry(entry(2002)).then(
        () => expect.fail('accepted a wrong leaf index'),
        (e) => expect(e).to.be.instanceOf(ReceiptError),
      );
      expect(c.stats.receiptFailures).to.equal(2);
    } finally {
      await relay.close();
    }
  });

  /** A relay in front of the log that corrupts tiles, or answers 404 for them. */
  async function tileRelay(mode: 'corrupt' | 'absent') {
    const http = await import('node:http');
    const { listen, close } = await import('../../proxy/test/helpers.js');
    const paths: string[] = [];
    const handle = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      paths.push(req.url!);
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (mode === 'absent' && req.url!.startsWith('/tile/')) {
        res.writeHead(404);
        return void res.end();
      }
      const r = await fetch(log.url + req.url, {
        method: req.method,
        headers: { 'content-type': 'application/json' },
        body: req.method === 'POST' ? Buffer.concat(chunks) : undefined,
      });
      const body = Buffer.from(await r.arrayBuffer());
      if (mode === 'corrupt' && req.url!.startsWith('/tile/') && r.ok) body[0] ^= 1;
      res.writeHead(r.status);
      res.end(body);
    };
    // a request the handler fails (the log behind went away): drop the connection as a dead upstream would
    const server = http.createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
    const url = await listen(server);
    return { url, paths, close: () => close(server) };
  }

  it('rejects a batch receipt when a tile lies about the tree (inclusion fails against the signed root)', async () => {
    const relay = await tileRelay('corrupt');
    try {
      const c = new LogWriter({ url: relay.url, vkey: log.vkey });
      await c.addEntries([entry(3000), entry(3001), entry(3002)]).then(
        () => expect.fail('accepted an inclusion built from a corrupted tile'),
        (e) => expect((e as ReceiptError).code).to.equal('inclusion'),
      );
      expect(relay.paths.some((p) => p.startsWith('/tile/'))).to.equal(true);
    } finally {
      await relay.close();
    }
  });

  it('falls back to get-proof-by-index when tiles are not served, still verifying each proof', async () => {
    const relay = await tileRelay('absent');
    try {
      const c = new LogWriter({ url: relay.url, vkey: log.vkey });
      const rs = await c.addEntries([entry(3100), entry(3101), entry(3102)]);
      expect(rs).to.have.length(3);
      expect(relay.paths.filter((p) => p.startsWith('/v1/get-proof-by-index'))).to.have.length(3);
    } finally {
      await relay.close();
    }
  });

  it('retries 503 and 429 with backoff, honouring Retry-After', async () => {
    // the backoff alone would wait at most a few ms: each wait of a second or more is Retry-After's
    const failWith = [
      { status: 429, retryAfter: '1' },
      { status: 503, retryAfter: '1' },
      { status: 503, retryAfter: '0' },
    ];
    const relay = await startRelay(log.url, { failWith });
    try {
      const c = new LogWriter({ url: relay.url, vkey: log.vkey, backoffBaseMs: 2, backoffMaxMs: 5_000 });
      const r = await c.addEntries([entry(4000)]);
      expect(r).to.have.length(1);
      expect(c.stats.retries).to.equal(3);
      expect(relay.posts).to.have.length(4);
      const gaps = relay.posts.slice(1).map((t, i) => t - relay.posts[i]);
      // a timer may fire up to a millisecond early by performance.now()
      expect(gaps[0], 'wait after 429 with Retry-After: 1').to.be.at.least(999);
      expect(gaps[1], 'wait after 503 with Retry-After: 1').to.be.at.least(999);
    } finally {
      await relay.close();
    }
  });

  it('reads at most 16 MiB of an answer: a log that never stops sending cannot exhaust the proxy', async () => {
    let sent = 0;
    const hostile = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1 << 16, 0x20);
      const more = () => {
        while (!res.destroyed && sent < 64 << 20) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
    const c = new LogWriter({
      url: `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`,
      vkey: log.vkey,
      attempts: 1,
    });
    try {
      await c.addEntry(entry(4500)).then(
        () => expect.fail('an endless answer was accepted'),
        (e) => {
          expect(e).to.be.instanceOf(LogUnavailableError);
          expect((e as Error).message).to.match(/more than 16777216 bytes/);
        },
      );
      expect(sent).to.be.below(64 << 20);
    } finally {
      c.close();
      hostile.closeAllConnections();
      await new Promise((r) => hostile.close(r));
    }
  });

  it('gives up with LogUnavailableError when nothing answers, and LogRejectedError on a 4xx', async () => {
    const c = new LogWriter({ url: 'http://127.0.0.1:1', vkey: log.vkey, attempts: 3, backoffBaseMs: 5 });
    await c.addEntry(entry(5000)).then(
      () => expect.fail('no log, yet a receipt'),
      (e) => {
        expect(e).to.be.instanceOf(LogUnavailableError);
        expect(errorMessage(e)).to.match(/ECONNREFUSED/);
      },
    );
    expect(c.stats.retries).to.equal(2);
    const relay = await startRelay(log.url, { failFirst: 1, failStatus: 400 });
    try {
      const c2 = new LogWriter({ url: relay.url, vkey: log.vkey });
      await c2.addEntry(entry(5001)).then(
        () => expect.fail('a 400 was retried into success'),
        (e) => {
          expect(e).to.be.instanceOf(LogRejectedError);
          expect((e as LogRejectedError).status).to.equal(400);
        },
      );
    } finally {
      await relay.close();
    }
  });

  it('sends the bearer token to a log that requires one (401 without it, not retried)', async () => {
    const { startLogServer } = await import('@trailmark/log-server');
    const t2 = tempDir('tm-logclient-auth-');
    const guarded = await startLogServer({
      dataDir: t2.dir,
      listen: '127.0.0.1:0',
      submitTokens: ['log-submit-token'],
    });
    try {
      const anon = new LogWriter({ url: guarded.url, vkey: guarded.vkey });
      await anon.addEntries([entry(6000)]).then(
        () => expect.fail('wrote without a token'),
        (e) => expect((e as LogRejectedError).status).to.equal(401),
      );
      expect(anon.stats.retries).to.equal(0);
      const c = new LogWriter({ url: guarded.url, vkey: guarded.vkey, token: 'log-submit-token' });
      expect(await c.addEntries([entry(6001)])).to.have.length(1);
      expect((await c.addEntry(entry(6002))).leafIndex).to.equal(1n);
      anon.close();
      c.close();
    } finally {
      await guarded.close();
      t2.cleanup();
    }
  });
});
