import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  canonicalJson,
  decodeEntryBundle,
  entriesPath,
  hashLeaf,
  openCheckpoint,
  parseVkey,
  verifyInclusion,
} from '@trailmark/tlog';
import { loadLogKey, LogStore, startLogServer, toLeaf, type LogServer } from '../src/index.js';

/**
 * Issue 10, item 1: reads at the right edge while batches are being written. Every read must answer from a
 * durable tree (no 5xx) and its bytes must be the entries acknowledged at those indices.
 */
describe('reads while a batch is prepared but not yet durable', function () {
  this.timeout(30000);
  let dir: string;
  let store: LogStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-edge-store-'));
    store = await LogStore.open(
      join(dir, 'db'),
      loadLogKey(join(dir, 'log.key'), { create: true, origin: 'edge.test/log' }),
    );
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('entries, bundles, tiles and proofs answer from the durable tree while the next batch fills its bundle and tiles', async () => {
    const leaves = Array.from({ length: 1_000 }, (_, i) => toLeaf({ edge: i }, 'entry'));
    await store.append(leaves.slice(0, 300)); // bundle 1 and tile 0/1 hold 44 durable entries
    const durable = leaves.slice(0, 300).map((l) => Buffer.from(l.data).toString());
    const p = await store.prepare(leaves.slice(300)); // fills bundles 1..2 and tiles 0/1..0/2 in memory only
    expect(store.size).to.equal(300);
    const got = (await store.entries(0, 300)).map((d) => Buffer.from(d).toString());
    expect(got).to.deep.equal(durable);
    const bundle = decodeEntryBundle((await store.bundleData(1, 44))!).map((d) => Buffer.from(d).toString());
    expect(bundle).to.deep.equal(durable.slice(256));
    expect(await store.bundleData(1, 45)).to.equal(undefined);
    expect(await store.bundleData(2, 1)).to.equal(undefined);
    expect((await store.tileData(0, 1, 44))!.length).to.equal(44 * 32);
    expect(await store.tileData(0, 1, 45)).to.equal(undefined);
    expect(await store.tileData(0, 2, 1)).to.equal(undefined);
    const root = await store.rootAt(300);
    expect(Buffer.from(root).equals(store.tree.root)).to.equal(true);
    verifyInclusion(299, 300, leaves[299].hash, await store.inclusionProof(299, 300), root);
    await store.commit(p);
    expect((await store.entries(299, 1_000)).map((d) => Buffer.from(d).toString())).to.deep.equal(
      leaves.slice(299).map((l) => Buffer.from(l.data).toString()),
    );
  });
});

describe('reads while writes are in flight', function () {
  this.timeout(60000);
  let dir: string;
  let server: LogServer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-edge-'));
    // small batches per commit, so several are prepared and written while the readers run
    server = await startLogServer({ dataDir: dir, origin: 'edge.test/log', maxBatchEntries: 700 });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('get-entries, get-entry-and-proof and entry bundles at the edge never fail and return the acknowledged bytes', async () => {
    const url = server.url;
    const verifier = parseVkey(server.vkey);
    const acked = new Map<number, string>();
    const seen: { index: number; data: Buffer; where: string }[] = [];
    const failures: string[] = [];
    let writing = true;
    const size = async () => ((await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number }).tree_size;

    const writer = async (w: number) => {
      for (let b = 0; b < 10; b++) {
        const batch = Array.from({ length: 700 }, (_, i) => ({ w, b, i, pad: 'x'.repeat(i % 50) }));
        const r = await fetch(`${url}/v1/add-entries`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(batch),
        });
        if (r.status !== 200) {
          failures.push(`add-entries ${r.status}: ${await r.text()}`);
          continue;
        }
        const body = (await r.json()) as { entries: { leaf_index: number }[] };
        body.entries.forEach((e, i) => acked.set(e.leaf_index, Buffer.from(canonicalJson(batch[i])).toString('utf8')));
      }
    };
    const reader = async (k: number) => {
      let n = 0;
      while (writing || n < 5) {
        n++;
        const s = await size();
        if (s < 600) continue;
        const start = s - 600 + ((n * 97 + k * 31) % 300);
        const which = (n + k) % 3;
        if (which === 0) {
          const r = await fetch(`${url}/v1/get-entries?start=${start}&end=${s - 1}`);
          if (r.status !== 200) failures.push(`get-entries ${start}..${s - 1}: ${r.status} ${await r.text()}`);
          else
            for (const e of ((await r.json()) as { entries: { leaf_index: number; leaf_input: string }[] }).entries)
              seen.push({ index: e.leaf_index, data: Buffer.from(e.leaf_input, 'base64'), where: 'get-entries' });
        } else if (which === 1) {
          const idx = s - 1 - (n % 200);
          const r = await fetch(`${url}/v1/get-entry-and-proof?leaf_index=${idx}&tree_size=${s}`);
          if (r.status !== 200) failures.push(`get-entry-and-proof ${idx}/${s}: ${r.status} ${await r.text()}`);
          else {
            const body = (await r.json()) as { leaf_input: string; audit_path: string[] };
            const data = Buffer.from(body.leaf_input, 'base64');
            seen.push({ index: idx, data, where: 'get-entry-and-proof' });
            const sth = (await (await fetch(`${url}/v1/get-sth-consistency?first=${s}&second=${s}`)).json()) as unknown;
            expect(sth).to.deep.equal({ consistency: [] });
            // the proof must verify against the root the log serves for that size (get-sth may be larger by now)
            const root = await rootAt(url, s, verifier);
            if (root)
              verifyInclusion(
                idx,
                s,
                hashLeaf(data),
                body.audit_path.map((p) => Buffer.from(p, 'base64')),
                root,
              );
          }
        } else {
          const bundle = Math.floor((s - 1) / 256);
          const width = s - bundle * 256;
          const path = '/' + entriesPath(bundle, width).replace(/^\//, '');
          const r = await fetch(url + path);
          if (r.status !== 200) failures.push(`${path}: ${r.status} ${await r.text()}`);
          else
            decodeEntryBundle(new Uint8Array(await r.arrayBuffer())).forEach((d, i) =>
              seen.push({ index: bundle * 256 + i, data: Buffer.from(d), where: path }),
            );
        }
      }
    };
    const writers = Promise.all([0, 1, 2].map(writer)).finally(() => (writing = false));
    await Promise.all([writers, ...[0, 1, 2, 3].map(reader)]);
    expect(failures).to.deep.equal([]);
    expect(acked.size).to.equal(21_000);
    expect(seen.length).to.be.greaterThan(1000);
    for (const s of seen) expect(s.data.toString('utf8'), `${s.where}: entry ${s.index}`).to.equal(acked.get(s.index));
  });
});

/** The root of the tree of `size`, from the checkpoint when get-sth is still at that size (else undefined). */
async function rootAt(url: string, size: number, v: ReturnType<typeof parseVkey>): Promise<Uint8Array | undefined> {
  const sth = (await (await fetch(`${url}/v1/get-sth`)).json()) as { tree_size: number; checkpoint: string };
  if (sth.tree_size !== size) return undefined;
  return openCheckpoint(sth.checkpoint, v).checkpoint.root;
}
