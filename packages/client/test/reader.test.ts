import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { encodeEntryBundle, fullTileRoot, makeHasher } from '@trailmark/tlog';
import { LogReadError, LogReader, nodeAccelerator, nodeHasher, retryAfterMs } from '../src/index.js';

/** A scripted HTTP server: each request is answered by `handler`. */
async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function failure(p: Promise<unknown>): Promise<LogReadError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(LogReadError);
    return e as LogReadError;
  }
  throw new Error('expected a LogReadError');
}

describe('LogReader (HTTP)', () => {
  it('retries 503 and 429 honouring Retry-After, then succeeds', async () => {
    const seen: number[] = [];
    const s = await serve((req, res) => {
      seen.push(Date.now());
      if (seen.length === 1) res.writeHead(503, { 'retry-after': '1' }).end('{"error":"busy"}');
      else if (seen.length === 2) res.writeHead(429, { 'retry-after': '0' }).end();
      else res.writeHead(200).end('origin\n1\nAAAA\n');
    });
    try {
      const r = new LogReader(s.url, { baseDelayMs: 1 });
      expect(await r.checkpoint()).to.equal('origin\n1\nAAAA\n');
      expect(seen).to.have.length(3);
      expect(seen[1] - seen[0]).to.be.at.least(950);
      expect(r.stats.retries).to.equal(2);
    } finally {
      await s.close();
    }
  });

  it('gives up after its retries with the last error, and never retries a 404', async () => {
    let n = 0;
    const s = await serve((req, res) => {
      n++;
      if (req.url === '/missing') res.writeHead(404).end('{"error":"no such tile"}');
      else res.writeHead(503).end('{"error":"overloaded"}');
    });
    try {
      const r = new LogReader(s.url, { retries: 2, baseDelayMs: 1 });
      const e = await failure(r.get('busy', 100));
      expect(e.status).to.equal(503);
      expect(e.message).to.equal(`GET ${s.url}/busy: HTTP 503: overloaded`);
      expect(n).to.equal(3);
      const m = await failure(r.get('missing', 100));
      expect(m.message).to.contain('HTTP 404: no such tile');
      expect(n).to.equal(4);
    } finally {
      await s.close();
    }
  });

  it('times out a silent server and retries network errors', async () => {
    let n = 0;
    const s = await serve(() => {
      n++; // never answers
    });
    try {
      const r = new LogReader(s.url, { retries: 1, timeoutMs: 150, baseDelayMs: 1 });
      const e = await failure(r.checkpoint());
      expect(e.message).to.match(/timed out after 150 ms/);
      expect(n).to.equal(2);
    } finally {
      await s.close();
    }
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    let active = 0;
    let peak = 0;
    const s = await serve((req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        res.writeHead(200).end('x');
      }, 20);
    });
    try {
      const r = new LogReader(s.url, { concurrency: 3 });
      await Promise.all(Array.from({ length: 12 }, (_, i) => r.get(`p${i}`, 10)));
      expect(peak).to.equal(3);
    } finally {
      await s.close();
    }
  });

  it('fetches the full tile when a partial one is gone, and cuts it to the width', async () => {
    const tile = randomBytes(256 * 32);
    const entries = Array.from({ length: 256 }, (_, i) => Buffer.from(`{"i":${i}}`));
    const bundle = Buffer.from(encodeEntryBundle(entries));
    const s = await serve((req, res) => {
      if (req.url === '/tile/0/x001/234') res.writeHead(200).end(tile);
      else if (req.url === '/tile/entries/x001/234') res.writeHead(200).end(bundle);
      else res.writeHead(404).end();
    });
    try {
      const r = new LogReader(s.url);
      const t = await r.tile({ level: 0, index: 1234n, width: 5 });
      expect(Buffer.from(t).equals(tile.subarray(0, 160))).to.equal(true);
      const b = await r.tile({ level: 0, index: 1234n, width: 3, entries: true });
      expect(Buffer.from(b).equals(Buffer.from(encodeEntryBundle(entries.slice(0, 3))))).to.equal(true);
    } finally {
      await s.close();
    }
  });

  it('refuses oversized bodies and non-http URLs', async () => {
    const s = await serve((req, res) => res.writeHead(200).end(Buffer.alloc(9000)));
    try {
      const e = await failure(new LogReader(s.url).tile({ level: 1, index: 0n, width: 256 }));
      expect(e.message).to.match(/(exceeds|more than) 8192/);
    } finally {
      await s.close();
    }
    expect(() => new LogReader('ftp://example.com')).to.throw(LogReadError, /http or https/);
    expect(retryAfterMs('7')).to.equal(7000);
    expect(retryAfterMs(new Date(Date.now() + 5000).toUTCString())).to.be.within(3000, 5000);
    expect(retryAfterMs('soon')).to.equal(undefined);
  });
});

describe('nodeAccelerator', () => {
  const reference = makeHasher((d) => nodeHasher.sha256(d));

  it('computes the same tile roots as the reference', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8192, maxLength: 8192 }), (tile) => {
        expect(
          Buffer.from(nodeAccelerator.fullTileRoot(tile)).equals(Buffer.from(fullTileRoot(tile, reference))),
        ).to.equal(true);
      }),
      { numRuns: 20 },
    );
  });

  it('says a bundle matches exactly when every entry hashes to its tile hash', () => {
    const entries = Array.from({ length: 256 }, (_, i) => Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(i % 50) })));
    const tile = Buffer.concat(entries.map((e) => reference.leaf(e)));
    const bundle = Buffer.from(encodeEntryBundle(entries));
    expect(nodeAccelerator.bundleMatches(bundle, tile, 256)).to.equal(true);
    expect(Buffer.from(bundle).equals(Buffer.from(encodeEntryBundle(entries))), 'input left unchanged').to.equal(true);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bundle.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const b = Buffer.from(bundle);
        b[at] ^= x;
        expect(nodeAccelerator.bundleMatches(b, tile, 256)).to.equal(false);
      }),
      { numRuns: 200 },
    );
    expect(nodeAccelerator.bundleMatches(bundle.subarray(0, bundle.length - 1), tile, 256)).to.equal(false);
    expect(nodeAccelerator.bundleMatches(Buffer.concat([bundle, Buffer.from([0, 0])]), tile, 256)).to.equal(false);
    expect(nodeAccelerator.bundleMatches(bundle, tile.subarray(32), 255)).to.equal(false);
  });
});
