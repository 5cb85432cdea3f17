import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import {
  b64decode,
  canonicalJson,
  decodeEntryBundle,
  generateKey,
  hashLeaf,
  merkleRoot,
  openCheckpoint,
  parseTlogProof,
  parseVkey,
  tilePath,
  tileRoot,
  tileHashes,
  verifyConsistency,
  verifyInclusion,
  verifyTlogProof,
  type NoteVerifier,
} from '@trailmark/tlog';
import { LogStateError, startLogServer, treeHeadSignatureInput, type LogServer } from '../src/index.js';
import { verify as edVerify, createPublicKey } from 'node:crypto';
import { STORES, storeOption } from '../../../test/lib/pgstore.js';

interface Api {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

async function call(url: string, init?: RequestInit): Promise<Api> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: r.status, body, text, headers: r.headers };
}

function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Api> {
  return call(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function bytes(url: string): Promise<{ status: number; data: Uint8Array; headers: Headers }> {
  const r = await fetch(url);
  return { status: r.status, data: new Uint8Array(await r.arrayBuffer()), headers: r.headers };
}

function rootOfCheckpoint(note: string, v: NoteVerifier) {
  return openCheckpoint(note, v).checkpoint;
}

for (const kind of STORES)
  describe(`log server (${kind})`, function () {
    this.timeout(60000);
    let dir: string;
    let log: LogServer;
    let verifier: NoteVerifier;
    const events = Array.from({ length: 600 }, (_, i) => ({
      n: i,
      who: `user-${i % 7}`,
      what: { path: `/r/${i}`, ok: i % 3 !== 0 },
    }));
    const leafHashes = events.map((e) => hashLeaf(canonicalJson(e)));

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'tm-log-'));
      log = await startLogServer({
        dataDir: join(dir, 'data'),
        origin: 'test.example/log',
        ...(await storeOption(kind)),
      });
      verifier = parseVkey(log.vkey);
      // 2 full level-0 tiles and a partial one, a partial level-1 tile
      const r = await post(`${log.url}/v1/add-entries`, events.slice(0, 500));
      expect(r.status, r.text).to.equal(200);
      const r2 = await post(`${log.url}/v1/add-entries`, events.slice(500));
      expect(r2.status, r2.text).to.equal(200);
    });
    after(async () => {
      await log?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('names the log by its key and serves a verifiable checkpoint', async () => {
      expect(log.origin).to.equal('test.example/log');
      expect(log.vkey.startsWith('test.example/log+')).to.equal(true);
      const r = await call(`${log.url}/checkpoint`);
      expect(r.status).to.equal(200);
      expect(r.headers.get('content-type')).to.equal('text/plain; charset=utf-8');
      expect(r.headers.get('cache-control')).to.not.match(/immutable/);
      const cp = rootOfCheckpoint(r.text, verifier);
      expect(cp.size).to.equal(600n);
      expect(Buffer.from(cp.root).equals(Buffer.from(merkleRoot(leafHashes)))).to.equal(true);
    });

    it('add-entries answers in request order with the checkpoint of exactly tree_size', async () => {
      const fresh = [{ k: 'a' }, events[3], { k: 'b' }, { k: 'a' }];
      const r = await post(`${log.url}/v1/add-entries`, fresh);
      expect(r.status, r.text).to.equal(200);
      expect(Object.keys(r.body).sort()).to.deep.equal(['checkpoint', 'entries', 'tree_size']);
      const cp = rootOfCheckpoint(r.body.checkpoint, verifier);
      expect(cp.size).to.equal(BigInt(r.body.tree_size));
      expect(r.body.tree_size).to.equal(602);
      expect(r.body.entries.map((e: any) => e.leaf_index)).to.deep.equal([600, 3, 601, 600]);
      r.body.entries.forEach((e: any, i: number) =>
        expect(e.leaf_hash).to.equal(Buffer.from(hashLeaf(canonicalJson(fresh[i]))).toString('base64')),
      );
      leafHashes.push(hashLeaf(canonicalJson({ k: 'a' })), hashLeaf(canonicalJson({ k: 'b' })));
    });

    it('add-entry returns a receipt whose tlog-proof verifies; a resubmission returns the original index', async () => {
      const entry = { z: 1, a: 'é', n: [3, 2, 1] };
      const r = await post(`${log.url}/v1/add-entry`, entry);
      expect(r.status, r.text).to.equal(200);
      expect(Object.keys(r.body).sort()).to.deep.equal(['leaf_hash', 'leaf_index', 'proof', 'timestamp', 'tree_size']);
      const lh = hashLeaf(canonicalJson(entry));
      expect(r.body.leaf_hash).to.equal(Buffer.from(lh).toString('base64'));
      expect(r.body.leaf_index).to.equal(602);
      expect(r.body.tree_size).to.equal(603);
      expect(r.body.timestamp)
        .to.be.a('number')
        .greaterThan(Date.now() - 60000)
        .lessThanOrEqual(Date.now());
      const v = verifyTlogProof(r.body.proof, lh, verifier);
      expect(v.checkpoint.size).to.equal(603n);
      expect(v.index).to.equal(602n);
      leafHashes.push(lh);
      // same canonical bytes with other key order and spacing
      const again = await post(`${log.url}/v1/add-entry`, '{ "n": [3,2,1], "a": "\\u00e9", "z": 1.0 }');
      expect(again.status, again.text).to.equal(200);
      expect(again.body.leaf_index).to.equal(602);
      expect(again.body.tree_size).to.equal(603);
      verifyTlogProof(again.body.proof, lh, verifier);
    });

    it('get-sth: fields, a TLS DigitallySigned Ed25519 signature over the TreeHeadSignature', async () => {
      const r = await call(`${log.url}/v1/get-sth`);
      expect(r.status).to.equal(200);
      expect(Object.keys(r.body).sort()).to.deep.equal([
        'checkpoint',
        'sha256_root_hash',
        'timestamp',
        'tree_head_signature',
        'tree_size',
      ]);
      const size = r.body.tree_size;
      expect(size).to.equal(leafHashes.length);
      const root = Buffer.from(merkleRoot(leafHashes));
      expect(r.body.sha256_root_hash).to.equal(root.toString('base64'));
      const cp = rootOfCheckpoint(r.body.checkpoint, verifier);
      expect(cp.size).to.equal(BigInt(size));
      const ds = Buffer.from(r.body.tree_head_signature, 'base64');
      expect([ds[0], ds[1], ds.readUInt16BE(2), ds.length]).to.deep.equal([8, 7, 64, 68]);
      const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(verifier.publicKey)]);
      const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      const msg = treeHeadSignatureInput(BigInt(r.body.timestamp), BigInt(size), root);
      expect(msg.length).to.equal(50);
      expect(edVerify(null, msg, pub, ds.subarray(4))).to.equal(true);
      msg[49] ^= 1;
      expect(edVerify(null, msg, pub, ds.subarray(4))).to.equal(false);
    });

    it('inclusion proofs by index and by hash verify against the served roots, at every tree size asked', async () => {
      for (const [idx, size] of [
        [0, 1],
        [0, 603],
        [255, 256],
        [256, 600],
        [511, 513],
        [599, 600],
        [602, 603],
        [300, 411],
      ]) {
        const root = merkleRoot(leafHashes.slice(0, size));
        const r = await call(`${log.url}/v1/get-proof-by-index?leaf_index=${idx}&tree_size=${size}`);
        expect(r.status, r.text).to.equal(200);
        expect(r.body.leaf_index).to.equal(idx);
        expect(r.body.leaf_hash).to.equal(Buffer.from(leafHashes[idx]).toString('base64'));
        verifyInclusion(
          idx,
          size,
          leafHashes[idx],
          r.body.audit_path.map((h: string) => b64decode(h)),
          root,
        );
        const h = await call(
          `${log.url}/v1/get-proof-by-hash?hash=${encodeURIComponent(r.body.leaf_hash)}&tree_size=${size}`,
        );
        expect(h.status, h.text).to.equal(200);
        expect(h.body.leaf_index).to.equal(idx);
        verifyInclusion(
          idx,
          size,
          leafHashes[idx],
          h.body.audit_path.map((x: string) => b64decode(x)),
          root,
        );
        const e = await call(`${log.url}/v1/get-entry-and-proof?leaf_index=${idx}&tree_size=${size}`);
        expect(e.status, e.text).to.equal(200);
        expect(hashLeaf(b64decode(e.body.leaf_input))).to.deep.equal(leafHashes[idx]);
        verifyInclusion(
          idx,
          size,
          leafHashes[idx],
          e.body.audit_path.map((x: string) => b64decode(x)),
          root,
        );
      }
    });

    it('get-proof-by-index gives the same answer however the query is written', async () => {
      const want = await call(`${log.url}/v1/get-proof-by-index?leaf_index=300&tree_size=600`);
      expect(want.status).to.equal(200);
      for (const q of [
        'tree_size=600&leaf_index=300',
        'leaf_index=300&tree_size=600&',
        'leaf_%69ndex=300&tree_size=600',
        'x=1&tree_size=600&leaf_index=300',
      ]) {
        const r = await call(`${log.url}/v1/get-proof-by-index?${q}`);
        expect(r.status, q).to.equal(200);
        expect(r.text, q).to.equal(want.text);
      }
    });

    it('consistency proofs verify; first=0 and first=second are empty', async () => {
      for (const [a, b] of [
        [1, 603],
        [256, 600],
        [300, 603],
        [599, 600],
        [7, 8],
        [0, 603],
        [603, 603],
      ]) {
        const r = await call(`${log.url}/v1/get-sth-consistency?first=${a}&second=${b}`);
        expect(r.status, r.text).to.equal(200);
        const proof = r.body.consistency.map((h: string) => b64decode(h));
        if (a === 0 || a === b) expect(proof).to.have.length(0);
        verifyConsistency(a, b, proof, merkleRoot(leafHashes.slice(0, a)), merkleRoot(leafHashes.slice(0, b)));
      }
    });

    it('get-entries returns canonical leaf data, end inclusive, clipped to the tree', async () => {
      const r = await call(`${log.url}/v1/get-entries?start=250&end=260`);
      expect(r.status).to.equal(200);
      expect(r.body.entries).to.have.length(11);
      r.body.entries.forEach((e: any, i: number) => {
        expect(e.leaf_index).to.equal(250 + i);
        expect(Buffer.from(e.leaf_input, 'base64').toString()).to.equal(
          Buffer.from(canonicalJson(events[250 + i])).toString(),
        );
      });
      const tail = await call(`${log.url}/v1/get-entries?start=600&end=99999`);
      expect(tail.body.entries.map((e: any) => e.leaf_index)).to.deep.equal([600, 601, 602]);
      const big = await call(`${log.url}/v1/get-entries?start=0&end=18446744073709551615`);
      expect(big.status).to.equal(200);
      expect(big.body.entries).to.have.length(603);
    });

    it('get-tlog-proof is a tlog-proof against the latest checkpoint', async () => {
      const r = await call(`${log.url}/v1/get-tlog-proof?leaf_index=42`);
      expect(r.status).to.equal(200);
      const v = verifyTlogProof(r.text, leafHashes[42], verifier);
      expect(v.checkpoint.size).to.equal(603n);
      expect(parseTlogProof(r.text).index).to.equal(42n);
    });

    it('tiles and entry bundles reproduce the root; full ones are immutable, partial ones are not', async () => {
      const size = leafHashes.length; // 603: tiles 0/0, 0/1 full, 0/2.p/91, 1/0.p/2
      const level0: Uint8Array[] = [];
      for (const [n, w] of [
        [0, 256],
        [1, 256],
        [2, 91],
      ]) {
        const t = await bytes(`${log.url}/${tilePath({ level: 0, index: BigInt(n), width: w })}`);
        expect(t.status).to.equal(200);
        expect(t.headers.get('content-type')).to.equal('application/octet-stream');
        expect(t.headers.get('cache-control')).to.equal(w === 256 ? 'public, max-age=31536000, immutable' : 'no-cache');
        level0.push(...tileHashes(t.data));
        const b = await bytes(`${log.url}/${tilePath({ level: 0, index: BigInt(n), width: w, entries: true })}`);
        expect(b.status).to.equal(200);
        expect(b.headers.get('cache-control')).to.equal(w === 256 ? 'public, max-age=31536000, immutable' : 'no-cache');
        const entries = decodeEntryBundle(b.data);
        expect(entries).to.have.length(w);
        entries.forEach((e, i) => expect(hashLeaf(e)).to.deep.equal(tileHashes(t.data)[i]));
      }
      expect(level0).to.have.length(size);
      expect(Buffer.from(merkleRoot(level0)).equals(Buffer.from(merkleRoot(leafHashes)))).to.equal(true);
      const l1 = await bytes(`${log.url}/tile/1/000.p/2`);
      expect(l1.status).to.equal(200);
      expect(tileHashes(l1.data)[0]).to.deep.equal(tileRoot(level0.slice(0, 256)));
      expect(tileHashes(l1.data)[1]).to.deep.equal(tileRoot(level0.slice(256, 512)));
      // a narrower partial tile of an existing one is its prefix
      const p = await bytes(`${log.url}/tile/0/001.p/3`);
      expect(p.status).to.equal(200);
      expect(tileHashes(p.data)).to.deep.equal(level0.slice(256, 259));
      for (const missing of [
        'tile/0/002',
        'tile/0/002.p/92',
        'tile/0/003.p/1',
        'tile/1/000',
        'tile/2/000.p/1',
        'tile/entries/002',
        'tile/entries/x001/000',
      ]) {
        const m = await call(`${log.url}/${missing}`);
        expect(m.status, missing).to.equal(404);
        expect(m.body.error).to.be.a('string');
      }
      for (const bad of [
        'tile/0/2',
        'tile/00/000',
        'tile/0/000.p/256',
        'tile/0/000.p/0',
        'tile/64/000',
        'tile/0/x000/001',
        'tile/x/000',
        'tile/0/000/',
      ]) {
        const m = await call(`${log.url}/${bad}`);
        expect(m.status, bad).to.equal(400);
        expect(m.body.error).to.be.a('string');
      }
    });

    describe('client mistakes get a clear 4xx JSON error', () => {
      const bad: [string, string, string | RequestInit, number][] = [
        ['add-entry malformed JSON', '/v1/add-entry', '{"a":', 400],
        ['add-entry array', '/v1/add-entry', '[{"a":1}]', 400],
        ['add-entry number', '/v1/add-entry', '42', 400],
        ['add-entry string', '/v1/add-entry', '"x"', 400],
        ['add-entry null', '/v1/add-entry', 'null', 400],
        ['add-entry true', '/v1/add-entry', 'true', 400],
        ['add-entry empty body', '/v1/add-entry', '', 400],
        ['add-entry over 65,535 canonical bytes', '/v1/add-entry', JSON.stringify({ a: 'x'.repeat(65_530) }), 413],
        ['add-entries object', '/v1/add-entries', '{"a":1}', 400],
        ['add-entries scalar', '/v1/add-entries', '7', 400],
        ['add-entries empty array', '/v1/add-entries', '[]', 400],
        ['add-entries element not an object', '/v1/add-entries', '[{"a":1}, 2]', 400],
        ['add-entries nested array element', '/v1/add-entries', '[[{"a":1}]]', 400],
        [
          'add-entries over 10,000',
          '/v1/add-entries',
          JSON.stringify(Array.from({ length: 10_001 }, (_, i) => ({ i }))),
          413,
        ],
        [
          'add-entries element too large',
          '/v1/add-entries',
          JSON.stringify([{ a: 1 }, { a: 'y'.repeat(70_000) }]),
          413,
        ],
        [
          'large add-entries (worker) with a scalar element',
          '/v1/add-entries',
          JSON.stringify([...Array.from({ length: 3000 }, (_, i) => ({ big: i, pad: 'p'.repeat(30) })), 'oops']),
          400,
        ],
        [
          'large add-entries (worker) malformed JSON',
          '/v1/add-entries',
          JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ big: i, pad: 'p'.repeat(30) }))).slice(0, -2),
          400,
        ],
        [
          'large add-entries (worker) not an array',
          '/v1/add-entries',
          JSON.stringify({ list: Array.from({ length: 3000 }, (_, i) => ({ big: i, pad: 'p'.repeat(30) })) }),
          400,
        ],
        [
          'add-entries invalid UTF-8',
          '/v1/add-entries',
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: new Uint8Array([0x5b, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d, 0x5d]),
          },
          400,
        ],
        [
          'add-entry other charset',
          '/v1/add-entry',
          { method: 'POST', headers: { 'content-type': 'application/json; charset=latin1' }, body: '{"a":1}' },
          415,
        ],
        ['add-entry nested deeper than 256', '/v1/add-entry', '{"a":' + '['.repeat(5000) + ']'.repeat(5000) + '}', 400],
        ['add-entry infinite number', '/v1/add-entry', '{"n":1e400}', 400],
        ['add-entry lone surrogate', '/v1/add-entry', '{"s":"\\ud800"}', 400],
        [
          'add-entry gzip encoding',
          '/v1/add-entry',
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
            body: '{"a":1}',
          },
          415,
        ],
        ['add-entries over 16 MiB', '/v1/add-entries', JSON.stringify([{ a: 'z'.repeat(17 * 1024 * 1024) }]), 413],
        [
          'wrong content type',
          '/v1/add-entry',
          { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"a":1}' },
          415,
        ],
        ['no content type', '/v1/add-entry', { method: 'POST', body: new Uint8Array(Buffer.from('{"a":1}')) }, 415],
        [
          'form content type on add-entries',
          '/v1/add-entries',
          { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' },
          415,
        ],
        ['GET on add-entry', '/v1/add-entry', { method: 'GET' }, 405],
        ['POST on get-sth', '/v1/get-sth', { method: 'POST' }, 405],
        ['unknown endpoint', '/v1/nope', { method: 'GET' }, 404],
      ];
      for (const [name, path, body, status] of bad) {
        it(`${name} → ${status}`, async () => {
          const r = typeof body === 'string' ? await post(log.url + path, body) : await call(log.url + path, body);
          expect(r.status, r.text.slice(0, 200)).to.equal(status);
          expect(r.body, r.text.slice(0, 200)).to.be.an('object');
          expect(r.body.error).to.be.a('string').and.not.equal('');
          expect(r.headers.get('content-type')).to.match(/^application\/json/);
        });
      }

      const queries: [string, number][] = [
        ['/v1/get-proof-by-index?leaf_index=abc&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=-1&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=01&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=1.5&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=1&tree_size=18446744073709551616', 400],
        ['/v1/get-proof-by-index?leaf_index=1', 400],
        ['/v1/get-proof-by-index?leaf_index=1&leaf_index=2&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=1&tree_size=100000', 404],
        ['/v1/get-proof-by-index?leaf_index=1&tree_size=18446744073709551615', 404],
        ['/v1/get-proof-by-index?leaf_index=10&tree_size=10', 404],
        ['/v1/get-proof-by-index?leaf_index=0&tree_size=0', 404],
        // the plain two-parameter form has its own parser: the same answers
        ['/v1/get-proof-by-index?tree_size=10&tree_size=10', 400],
        ['/v1/get-proof-by-index?leaf_index=3&leaf_index=3', 400],
        ['/v1/get-proof-by-index?tree_size=603&leaf_index=603', 404],
        ['/v1/get-proof-by-index?tree_size=604&leaf_index=0', 404],
        ['/v1/get-proof-by-index?tree_size=999999999999999&leaf_index=0', 404],
        ['/v1/get-proof-by-index?tree_size=10&leaf_index=00', 400],
        ['/v1/get-proof-by-hash?hash=AAAA&tree_size=10', 400],
        ['/v1/get-proof-by-hash?hash=not-base64!&tree_size=10', 400],
        ['/v1/get-proof-by-hash?tree_size=10', 400],
        [`/v1/get-proof-by-hash?hash=${encodeURIComponent(Buffer.alloc(32, 7).toString('base64'))}&tree_size=10`, 404],
        [
          `/v1/get-proof-by-hash?hash=${encodeURIComponent(Buffer.from(hashLeaf(canonicalJson(events[500]))).toString('base64'))}&tree_size=500`,
          404,
        ],
        ['/v1/get-sth-consistency?first=5&second=4', 400],
        ['/v1/get-sth-consistency?first=5', 400],
        ['/v1/get-sth-consistency?first=x&second=4', 400],
        ['/v1/get-sth-consistency?first=1&second=100000', 404],
        ['/v1/get-entries?start=5&end=4', 400],
        ['/v1/get-entries?start=-5&end=4', 400],
        ['/v1/get-entries?start=5', 400],
        ['/v1/get-entries?start=100000&end=100001', 404],
        ['/v1/get-entry-and-proof?leaf_index=1&tree_size=abc', 400],
        ['/v1/get-entry-and-proof?leaf_index=700&tree_size=603', 404],
        ['/v1/get-tlog-proof?leaf_index=99999', 404],
        ['/v1/get-tlog-proof?leaf_index=', 400],
        ['/v1/get-tlog-proof', 400],
      ];
      for (const [q, status] of queries) {
        it(`GET ${q.slice(0, 90)} → ${status}`, async () => {
          const r = await call(log.url + q);
          expect(r.status, r.text).to.equal(status);
          expect(r.body.error).to.be.a('string').and.not.equal('');
        });
      }

      it('the log still works after all of that', async () => {
        const r = await call(`${log.url}/healthz`);
        expect(r.status).to.equal(200);
        expect(r.body.status).to.equal('ok');
        expect(r.body.tree_size).to.equal(603);
      });
    });

    it('/metrics exposes entries, tree size, batch sizes, commit latency and queue depth', async () => {
      const r = await call(`${log.url}/metrics`);
      expect(r.status).to.equal(200);
      expect(r.headers.get('content-type')).to.match(/^text\/plain/);
      expect(r.text).to.match(/^trailmark_log_entries_total 603$/m);
      expect(r.text).to.match(/^trailmark_log_tree_size 603$/m);
      expect(r.text).to.match(/^trailmark_log_duplicate_entries_total 3$/m);
      expect(r.text).to.match(/^trailmark_log_commit_batch_entries_count \d+$/m);
      expect(r.text).to.match(/^trailmark_log_commit_duration_seconds_bucket/m);
      expect(r.text).to.match(/^trailmark_log_submit_to_signed_seconds_count \d+$/m);
      expect(r.text).to.match(/^trailmark_log_queue_depth 0$/m);
      expect(r.text).to.match(/^trailmark_log_process_resident_memory_bytes \d+/m);
    });
  });

describe('log server: tokens, overload, restart, refusal', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tm-log-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('--submit-tokens: writes need a listed bearer token, reads stay public', async () => {
    const log = await startLogServer({ dataDir: dir, submitTokens: ['s3cret', 'other'] });
    try {
      expect((await post(`${log.url}/v1/add-entry`, { a: 1 })).status).to.equal(401);
      expect((await post(`${log.url}/v1/add-entry`, { a: 1 }, { authorization: 'Bearer wrong' })).status).to.equal(401);
      expect((await post(`${log.url}/v1/add-entries`, [{ a: 1 }], { authorization: 'Basic s3cret' })).status).to.equal(
        401,
      );
      const denied = await post(`${log.url}/v1/add-entries`, [{ a: 1 }]);
      expect(denied.body.error).to.match(/Bearer/);
      const ok = await post(`${log.url}/v1/add-entry`, { a: 1 }, { authorization: 'Bearer s3cret' });
      expect(ok.status, ok.text).to.equal(200);
      const ok2 = await post(`${log.url}/v1/add-entries`, [{ a: 2 }], { authorization: 'Bearer other' });
      expect(ok2.status, ok2.text).to.equal(200);
      expect((await call(`${log.url}/checkpoint`)).status).to.equal(200);
      expect((await call(`${log.url}/v1/get-entries?start=0&end=1`)).body.entries).to.have.length(2);
    } finally {
      await log.close();
    }
  });

  it('a large add-entries body (prepared in the worker thread) is sequenced like a small one', async () => {
    const log = await startLogServer({ dataDir: dir });
    try {
      const small = await post(`${log.url}/v1/add-entries`, [{ first: true }]);
      expect(small.status).to.equal(200);
      const big = Array.from({ length: 2000 }, (_, i) => ({ bulk: i, pad: 'q'.repeat(60) }));
      const r = await post(`${log.url}/v1/add-entries`, [...big, { first: true }]);
      expect(r.status, r.text).to.equal(200);
      expect(r.body.tree_size).to.equal(2001);
      expect(r.body.entries).to.have.length(2001);
      expect(r.body.entries[2000].leaf_index).to.equal(0);
      r.body.entries.slice(0, 2000).forEach((e: any, i: number) => {
        expect(e.leaf_index).to.equal(1 + i);
        expect(e.leaf_hash).to.equal(Buffer.from(hashLeaf(canonicalJson(big[i]))).toString('base64'));
      });
      const back = await call(`${log.url}/v1/get-entries?start=1001&end=1001`);
      expect(Buffer.from(back.body.entries[0].leaf_input, 'base64').toString()).to.equal(
        Buffer.from(canonicalJson(big[1000])).toString(),
      );
    } finally {
      await log.close();
    }
  });

  it('a full queue answers 503 with Retry-After, and accepted entries still commit', async () => {
    const log = await startLogServer({ dataDir: dir, maxQueuedEntries: 1 });
    try {
      const rs = await Promise.all(Array.from({ length: 60 }, (_, i) => post(`${log.url}/v1/add-entry`, { i })));
      const busy = rs.filter((r) => r.status === 503);
      const ok = rs.filter((r) => r.status === 200);
      expect(busy.length + ok.length).to.equal(60);
      expect(busy.length).to.be.greaterThan(0);
      expect(ok.length).to.be.greaterThan(0);
      for (const b of busy) {
        expect(b.headers.get('retry-after')).to.match(/^\d+$/);
        expect(b.body.error).to.match(/overloaded/);
      }
      const sth = await call(`${log.url}/v1/get-sth`);
      expect(sth.body.tree_size).to.equal(ok.length);
    } finally {
      await log.close();
    }
  });

  it('recovers after a restart: same tree, same key, dedup across restarts, keeps growing consistently', async () => {
    let log = await startLogServer({ dataDir: dir });
    const vkey = log.vkey;
    const first = await post(
      `${log.url}/v1/add-entries`,
      Array.from({ length: 300 }, (_, i) => ({ i })),
    );
    const before = await call(`${log.url}/v1/get-sth`);
    await log.close();
    log = await startLogServer({ dataDir: dir });
    try {
      expect(log.vkey).to.equal(vkey);
      const after = await call(`${log.url}/v1/get-sth`);
      expect(after.body).to.deep.equal(before.body);
      const dup = await post(`${log.url}/v1/add-entry`, { i: 299 });
      expect(dup.body.leaf_index).to.equal(299);
      expect(dup.body.tree_size).to.equal(300);
      const more = await post(`${log.url}/v1/add-entry`, { i: 300 });
      expect(more.body.leaf_index).to.equal(300);
      const c = await call(`${log.url}/v1/get-sth-consistency?first=300&second=301`);
      const v = parseVkey(vkey);
      verifyConsistency(
        300,
        301,
        c.body.consistency.map((h: string) => b64decode(h)),
        rootOfCheckpoint(first.body.checkpoint, v).root,
        b64decode((await call(`${log.url}/v1/get-sth`)).body.sha256_root_hash),
      );
    } finally {
      await log.close();
    }
  });

  it('close() (SIGTERM in serve) answers what it accepted, and everything answered is in the log after a restart', async () => {
    let log = await startLogServer({ dataDir: dir });
    const sent = Array.from({ length: 300 }, (_, i) => ({ shutdown: i }));
    const pending = sent.map((e) => post(`${log.url}/v1/add-entry`, e).catch((err: Error) => err));
    // close while the first answers arrive and the rest are queued or in flight
    await Promise.race(pending);
    await log.close();
    const results = await Promise.all(pending);
    const answered = results.flatMap((r, i) => (r instanceof Error ? [] : [{ r, i }]));
    for (const { r } of answered) expect([200, 503], r.text).to.include(r.status);
    const ok = answered.filter(({ r }) => r.status === 200);
    expect(ok.length).to.be.greaterThan(0);
    log = await startLogServer({ dataDir: dir });
    try {
      for (const { r, i } of ok) {
        const back = await call(`${log.url}/v1/get-entries?start=${r.body.leaf_index}&end=${r.body.leaf_index}`);
        expect(Buffer.from(back.body.entries[0].leaf_input, 'base64').toString()).to.equal(JSON.stringify(sent[i]));
      }
    } finally {
      await log.close();
    }
  });

  async function tamper(fn: (db: Level<Uint8Array, Uint8Array>) => Promise<void>): Promise<void> {
    const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    try {
      await fn(db);
    } finally {
      await db.close();
    }
  }

  async function seed(n: number): Promise<void> {
    const log = await startLogServer({ dataDir: dir });
    const r = await post(
      `${log.url}/v1/add-entries`,
      Array.from({ length: n }, (_, i) => ({ i })),
    );
    expect(r.status).to.equal(200);
    await log.close();
  }

  async function refusal(): Promise<LogStateError> {
    try {
      const log = await startLogServer({ dataDir: dir });
      await log.close();
    } catch (e) {
      expect(e).to.be.instanceOf(LogStateError);
      return e as LogStateError;
    }
    throw new Error('the server started on a tampered store');
  }

  it('refuses to start when a stored tile no longer matches the signed checkpoint', async () => {
    await seed(300);
    await tamper(async (db) => {
      const key = Buffer.from([0x54, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // tile 1/0.p/1: the hash of tile 0/0
      const t = Buffer.from(await db.get(key));
      expect(t.length).to.equal(32);
      t[5] ^= 0xff;
      await db.put(key, t);
    });
    const e = await refusal();
    expect(e.code).to.equal('root-mismatch');
    expect(e.message).to.match(/altered/);
  });

  it('refuses to start when an entry of the partial bundle was altered', async () => {
    await seed(10);
    await tamper(async (db) => {
      const key = Buffer.from([0x50, 0, 0, 0, 0, 0, 0, 0, 3]); // pending entry 3
      expect(Buffer.from(await db.get(key)).toString()).to.equal('{"i":3}');
      await db.put(key, Buffer.from('{"i":33}'));
    });
    const e = await refusal();
    expect(e.code).to.equal('root-mismatch');
  });

  it('refuses to start when an entry of the partial bundle is missing', async () => {
    await seed(10);
    await tamper(async (db) => db.del(Buffer.from([0x50, 0, 0, 0, 0, 0, 0, 0, 9])));
    expect((await refusal()).code).to.equal('entries');
  });

  it('refuses a data directory signed by another key, and an --origin that is not the key name', async () => {
    await seed(3);
    const other = generateKey('localhost/trailmark');
    writeFileSync(join(dir, 'log.key'), other.privateKey + '\n');
    expect((await refusal()).code).to.equal('key-mismatch');
    let err: unknown;
    try {
      await startLogServer({ dataDir: dir, origin: 'elsewhere.example/log' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(LogStateError);
    expect((err as LogStateError).code).to.equal('origin-mismatch');
  });

  it('refuses a store whose signed state was swapped for another size', async () => {
    await seed(5);
    let old: Uint8Array | undefined;
    await tamper(async (db) => {
      old = await db.get(Buffer.from('S'));
    });
    const log = await startLogServer({ dataDir: dir });
    await post(`${log.url}/v1/add-entry`, { more: true });
    await log.close();
    // an old state with newer entries: signing from it would give size 6 a second root
    await tamper(async (db) => db.put(Buffer.from('S'), old!));
    const e = await refusal();
    expect(e.code).to.equal('rolled-back');
    expect(e.message).to.match(/beyond the signed size 5/);
  });
});
