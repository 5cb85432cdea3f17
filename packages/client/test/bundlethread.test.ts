import { expect } from 'chai';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  TileVerifyError,
  VerifiedTileReader,
  encodeEntryBundle,
  fullTileRoot,
  makeHasher,
  tilePath,
} from '@trailmark/tlog';
import { LogReader, nodeHasher, verifiedBundles, verifiedBundlesOffThread, type VerifiedLog } from '../src/index.js';

/** A static log of two full bundles (512 entries), optionally with one entry of bundle 1 altered. */
async function serveLog(tamper: boolean) {
  const hasher = makeHasher((d) => nodeHasher.sha256(d));
  const entries = Array.from({ length: 512 }, (_, i) => Buffer.from(JSON.stringify({ i, who: `user${i % 7}` })));
  const tiles = [0, 1].map((t) => Buffer.concat(entries.slice(t * 256, t * 256 + 256).map((e) => hasher.leaf(e))));
  const bundles = [0, 1].map((t) => Buffer.from(encodeEntryBundle(entries.slice(t * 256, t * 256 + 256))));
  if (tamper) bundles[1][bundles[1].length - 3] ^= 1; // inside the last entry's JSON
  const roots = tiles.map((t) => fullTileRoot(t, hasher));
  const files = new Map<string, Buffer>([
    [tilePath({ level: 0, index: 0n, width: 256 }), tiles[0]],
    [tilePath({ level: 0, index: 1n, width: 256 }), tiles[1]],
    [tilePath({ level: 0, index: 0n, width: 256, entries: true }), bundles[0]],
    [tilePath({ level: 0, index: 1n, width: 256, entries: true }), bundles[1]],
    [tilePath({ level: 1, index: 0n, width: 2 }), Buffer.concat(roots)],
  ]);
  const server = createServer((req, res) => {
    const body = files.get((req.url ?? '').slice(1));
    if (body) res.writeHead(200).end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const reader = new LogReader(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { retries: 0 });
  const size = 512n;
  const root = hasher.node(roots[0], roots[1]);
  // only the verified tree is used: what a checkpoint verified with the log key gives
  const log = () =>
    ({
      checkpoint: { size, root },
      tiles: new VerifiedTileReader(size, root, reader.fetchTile, { hasher: nodeHasher }),
    }) as unknown as VerifiedLog;
  const close = async () => {
    reader.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { reader, log, close };
}

async function collect(
  gen: AsyncGenerator<{ start: bigint; entries: Uint8Array[]; tile: Uint8Array; offset: number }>,
) {
  const out: { index: bigint; data: string; leafHash: string }[] = [];
  for await (const b of gen) {
    b.entries.forEach((e, i) => {
      const t = (b.offset + i) * 32;
      out.push({
        index: b.start + BigInt(i),
        data: Buffer.from(e).toString(),
        leafHash: Buffer.from(b.tile.subarray(t, t + 32)).toString('hex'),
      });
    });
  }
  return out;
}

describe('verifiedBundlesOffThread (entry bundles read and verified on a worker thread)', () => {
  it('hands out the same verified entries and leaf hashes as verifiedBundles, from its worker thread', async () => {
    const l = await serveLog(false);
    try {
      const fallbacks: string[] = [];
      const off = await collect(verifiedBundlesOffThread(l.reader, l.log(), 10n, 500n, 1, (w) => fallbacks.push(w)));
      const here = await collect(verifiedBundles(l.log(), 10n, 500n, 1));
      expect(fallbacks).to.deep.equal([]);
      expect(off.length).to.equal(490);
      expect(off[0]).to.include({ index: 10n, data: '{"i":10,"who":"user3"}' });
      expect(off).to.deep.equal(here);
      const hasher = makeHasher((d) => nodeHasher.sha256(d));
      for (const e of off) expect(e.leafHash).to.equal(Buffer.from(hasher.leaf(Buffer.from(e.data))).toString('hex'));
    } finally {
      await l.close();
    }
  });

  it('on an entry that does not match its tile, hands out what verified and throws the reference error', async () => {
    const l = await serveLog(true);
    try {
      const fallbacks: string[] = [];
      const got: bigint[] = [];
      let err: unknown = null;
      try {
        for await (const b of verifiedBundlesOffThread(l.reader, l.log(), 0n, 512n, 1, (w) => fallbacks.push(w)))
          got.push(b.start);
      } catch (e) {
        err = e;
      }
      expect(got).to.deep.equal([0n]);
      expect(err).to.be.instanceOf(TileVerifyError);
      expect((err as TileVerifyError).code).to.equal('entry-mismatch');
      expect(fallbacks.join('\n')).to.match(/entry 511/);
    } finally {
      await l.close();
    }
  });
});
