import { expect } from 'chai';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeEntryBundle, fullTileRoot, makeHasher, tilePath } from '@trailmark/tlog';
import { nodeHasher } from '../src/index.js';
import { BundleCheckPool } from '../src/reader/pool.js';

describe('BundleCheckPool (the audit worker threads)', () => {
  it('runs its workers from sources here, and says whether a bundle matches its tile and the tile its parent hash', async () => {
    const hasher = makeHasher((d) => nodeHasher.sha256(d));
    const entries = Array.from({ length: 256 }, (_, i) => Buffer.from(JSON.stringify({ i })));
    const tile = Buffer.concat(entries.map((e) => hasher.leaf(e)));
    const bundle = Buffer.from(encodeEntryBundle(entries));
    const tampered = Buffer.from(bundle);
    tampered[tampered.length - 2] ^= 1; // inside the last entry's JSON
    // bundle 0 is the log's own; bundle 1 has the same hash tile but one entry changed
    const files = new Map<string, Buffer>([
      [tilePath({ level: 0, index: 0n, width: 256 }), tile],
      [tilePath({ level: 0, index: 0n, width: 256, entries: true }), bundle],
      [tilePath({ level: 0, index: 1n, width: 256 }), tile],
      [tilePath({ level: 0, index: 1n, width: 256, entries: true }), tampered],
    ]);
    const server = createServer((req, res) => {
      const body = files.get((req.url ?? '').slice(1));
      if (body) res.writeHead(200).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect(BundleCheckPool.available()).to.equal(true);
    expect(BundleCheckPool.script?.pathname).to.match(/\/auditworker\.ts$/);
    const pool = new BundleCheckPool(2, url, {});
    try {
      const root = fullTileRoot(tile, hasher);
      const wrongRoot = Buffer.from(root);
      wrongRoot[0] ^= 1;
      const answers = await Promise.all([pool.check(0n, root), pool.check(1n, root), pool.check(0n, wrongRoot)]);
      expect(answers).to.deep.equal([true, false, false]);
    } finally {
      await pool.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
