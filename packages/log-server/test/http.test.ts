/**
 * The HTTP layer's outside: the RFC 6962 API where CT clients look for it (/ct/v1/), CORS for web pages,
 * the bearer scheme in any case, and the limits on request bodies.
 */
import { expect } from 'chai';
import { createPublicKey, verify as edVerify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { b64decode, canonicalJson, hashLeaf, parseVkey, verifyConsistency, verifyInclusion } from '@trailmark/tlog';
import { startLogServer, type LogServer } from '../src/index.js';
import { sendWhileRefused } from '../../../test/lib/http.js';

/**
 * A CT client as RFC 6962 section 4 (and certificate-transparency-go's client) reads a log: every call is a
 * GET under `<base>/ct/v1/`, parameters as url.Values encodes them, and the tree head is trusted only once
 * its TLS DigitallySigned signature verifies with the log's public key.
 */
class CtClient {
  constructor(
    private readonly base: string,
    private readonly publicKey: Uint8Array,
  ) {}

  private async get(method: string, params: Record<string, string | number> = {}): Promise<any> {
    const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
    const r = await fetch(`${this.base}/ct/v1/${method}${q ? '?' + q : ''}`);
    const text = await r.text();
    if (r.status !== 200) throw new Error(`${method}: ${r.status} ${text}`);
    expect(r.headers.get('content-type')).to.match(/^application\/json/);
    return JSON.parse(text);
  }

  /** get-sth, with the tree head signature checked: hash 8, signature 7 (ed25519), uint16 length, signature. */
  async getSth(): Promise<{ size: number; timestamp: bigint; root: Uint8Array }> {
    const sth = await this.get('get-sth');
    const root = b64decode(sth.sha256_root_hash);
    const ds = Buffer.from(sth.tree_head_signature, 'base64');
    if (ds[0] !== 8 || ds[1] !== 7) throw new Error(`unexpected DigitallySigned algorithms ${ds[0]}/${ds[1]}`);
    const len = ds.readUInt16BE(2);
    if (ds.length !== 4 + len) throw new Error('DigitallySigned length does not match');
    // TreeHeadSignature: version v1 (0), signature_type tree_hash (1), uint64 timestamp, uint64 tree_size, root
    const tbs = Buffer.alloc(50);
    tbs[0] = 0;
    tbs[1] = 1;
    tbs.writeBigUInt64BE(BigInt(sth.timestamp), 2);
    tbs.writeBigUInt64BE(BigInt(sth.tree_size), 10);
    Buffer.from(root).copy(tbs, 18);
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(this.publicKey)]);
    if (!edVerify(null, tbs, createPublicKey({ key: spki, format: 'der', type: 'spki' }), ds.subarray(4)))
      throw new Error('tree head signature does not verify');
    return { size: sth.tree_size, timestamp: BigInt(sth.timestamp), root };
  }

  async getSthConsistency(first: number, second: number): Promise<Uint8Array[]> {
    return (await this.get('get-sth-consistency', { first, second })).consistency.map(b64decode);
  }

  async getProofByHash(hash: Uint8Array, treeSize: number): Promise<{ index: number; path: Uint8Array[] }> {
    const r = await this.get('get-proof-by-hash', { hash: Buffer.from(hash).toString('base64'), tree_size: treeSize });
    return { index: r.leaf_index, path: r.audit_path.map(b64decode) };
  }

  async getRawEntries(start: number, end: number): Promise<Uint8Array[]> {
    return (await this.get('get-entries', { start, end })).entries.map((e: { leaf_input: string }) =>
      b64decode(e.leaf_input),
    );
  }

  async getEntryAndProof(index: number, treeSize: number): Promise<{ leaf: Uint8Array; path: Uint8Array[] }> {
    const r = await this.get('get-entry-and-proof', { leaf_index: index, tree_size: treeSize });
    return { leaf: b64decode(r.leaf_input), path: r.audit_path.map(b64decode) };
  }
}

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

describe('log server HTTP: CT clients, CORS, bearer scheme, body limits', function () {
  this.timeout(60_000);
  let dir: string;
  let log: LogServer;
  const events = Array.from({ length: 300 }, (_, i) => ({ ct: i, path: `/p/${i}` }));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-http-'));
    log = await startLogServer({
      dataDir: join(dir, 'data'),
      submitTokens: ['Tok3n'],
      bodyBudgetBytes: 4 * 1024 * 1024,
    });
    const r = await post(`${log.url}/v1/add-entries`, JSON.stringify(events.slice(0, 200)), {
      authorization: 'Bearer Tok3n',
    });
    expect(r.status, await r.text()).to.equal(200);
  });
  after(async () => {
    await log?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a CT client reads and verifies the log under /ct/v1/: signed tree heads, consistency, proofs by hash, entries', async () => {
    const ct = new CtClient(log.url, parseVkey(log.vkey).publicKey);
    const first = await ct.getSth();
    expect(first.size).to.equal(200);
    const more = await post(`${log.url}/v1/add-entries`, JSON.stringify(events.slice(200)), {
      authorization: 'bearer Tok3n',
    });
    expect(more.status).to.equal(200);
    const second = await ct.getSth();
    expect(second.size).to.equal(300);
    verifyConsistency(
      first.size,
      second.size,
      await ct.getSthConsistency(first.size, second.size),
      first.root,
      second.root,
    );

    const entries = await ct.getRawEntries(150, 160);
    expect(entries).to.have.length(11);
    for (let k = 0; k < entries.length; k++) {
      const i = 150 + k;
      expect(Buffer.from(entries[k]).toString()).to.equal(Buffer.from(canonicalJson(events[i])).toString());
      const leafHash = hashLeaf(entries[k]);
      const byHash = await ct.getProofByHash(leafHash, second.size);
      expect(byHash.index).to.equal(i);
      verifyInclusion(i, second.size, leafHash, byHash.path, second.root);
      const ep = await ct.getEntryAndProof(i, first.size);
      expect(ep.leaf).to.deep.equal(entries[k]);
      verifyInclusion(i, first.size, hashLeaf(ep.leaf), ep.path, first.root);
    }
    // the same answers at /v1/
    for (const path of [
      'get-sth',
      'get-sth-consistency?first=7&second=300',
      'get-entries?start=0&end=3',
      'get-proof-by-index?leaf_index=5&tree_size=300',
      'get-tlog-proof?leaf_index=3',
    ]) {
      const [a, b] = await Promise.all([fetch(`${log.url}/v1/${path}`), fetch(`${log.url}/ct/v1/${path}`)]);
      expect(b.status, path).to.equal(200);
      expect(await b.text(), path).to.equal(await a.text());
    }
  });

  it('reads carry Access-Control-Allow-Origin: * and answer CORS preflight; writes do not', async () => {
    for (const path of [
      '/checkpoint',
      '/tile/0/000',
      '/tile/entries/000',
      '/v1/get-sth',
      '/ct/v1/get-sth',
      '/v1/get-proof-by-index?leaf_index=1&tree_size=300',
      '/v1/get-entries?start=9&end=1',
    ]) {
      const r = await fetch(log.url + path, { headers: { origin: 'https://verifier.example' } });
      expect(r.headers.get('access-control-allow-origin'), path).to.equal('*');
      await r.arrayBuffer();
    }
    const pre = await fetch(`${log.url}/tile/0/000`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://verifier.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'cache-control',
      },
    });
    expect(pre.status).to.equal(204);
    expect(pre.headers.get('access-control-allow-origin')).to.equal('*');
    expect(pre.headers.get('access-control-allow-methods')).to.match(/GET/);
    expect(pre.headers.get('access-control-allow-headers')).to.equal('cache-control');
    const write = await post(`${log.url}/v1/add-entry`, '{"cors":1}', {
      authorization: 'Bearer Tok3n',
      origin: 'https://verifier.example',
    });
    expect(write.status).to.equal(200);
    expect(write.headers.get('access-control-allow-origin')).to.equal(null);
  });

  it('the bearer scheme is case-insensitive; the token is not', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      const r = await post(`${log.url}/v1/add-entry`, JSON.stringify({ scheme }), { authorization: `${scheme} Tok3n` });
      expect(r.status, scheme).to.equal(200);
    }
    expect((await post(`${log.url}/v1/add-entry`, '{"a":1}', { authorization: 'bearer tok3n' })).status).to.equal(401);
  });

  it('an add-entry body over 1 MiB is 413 before it is read; one with more values than 65,535 canonical bytes can hold is 413 before it is parsed', async () => {
    const big = await post(`${log.url}/v1/add-entry`, '{"a":"' + ' '.repeat(1024 * 1024) + '"}', {
      authorization: 'Bearer Tok3n',
    });
    expect(big.status).to.equal(413);
    expect(((await big.json()) as { error: string }).error).to.match(/exceeds 1048576 bytes/);
    const many = await post(`${log.url}/v1/add-entry`, '{"a":[' + '0,'.repeat(70_000) + '0]}', {
      authorization: 'Bearer Tok3n',
    });
    expect(many.status).to.equal(413);
    // canonical as it stands, so measured rather than counted by the scan
    expect(((await many.json()) as { error: string }).error).to.match(
      /the entry (holds more than 65535|is 140009 bytes in canonical form)/,
    );
    // whitespace does not count: a pretty-printed entry of 60,000 canonical bytes is accepted
    const pretty = JSON.stringify(
      { list: Array.from({ length: 6000 }, (_, i) => `v${String(i).padStart(5, '0')}`) },
      null,
      40,
    );
    expect(pretty.length).to.be.greaterThan(65_535);
    const ok = await post(`${log.url}/v1/add-entry`, pretty, { authorization: 'Bearer Tok3n' });
    expect(ok.status, await ok.text()).to.equal(200);
  });

  it('add-entries: an element with too many values is 413 naming it, and a body the budget cannot hold is 503 with Retry-After', async () => {
    const elements = [
      ...Array.from({ length: 3000 }, (_, i) => JSON.stringify({ fine: i, pad: 'p'.repeat(30) })),
      '{"a":[' + '{},'.repeat(70_000) + '{}]}',
    ];
    const r = await post(`${log.url}/v1/add-entries`, '[' + elements.join(',') + ']', {
      authorization: 'Bearer Tok3n',
    });
    expect(r.status).to.equal(413);
    // the element is canonical, so it is measured as it stands rather than counted by the scan
    expect(((await r.json()) as { error: string }).error).to.match(
      /^entries\[3000\] (holds more than 65535|is 210010 bytes in canonical form)/,
    );
    // the budget is 4 MiB, counted twice per body: a declared 3 MB body does not fit
    const status = await new Promise<{ status: number; retry: string | undefined; body: string }>((resolve, reject) => {
      const req = request(
        `${log.url}/v1/add-entries`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': 3_000_000, authorization: 'Bearer Tok3n' },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, retry: res.headers['retry-after'], body }));
        },
      );
      req.on('error', reject);
      req.end(Buffer.alloc(3_000_000, 0x20));
    });
    expect(status.status).to.equal(503);
    expect(status.retry).to.match(/^\d+$/);
    expect(JSON.parse(status.body).error).to.match(/request bodies/);
    // and the budget is whole again afterwards
    const after = await post(`${log.url}/v1/add-entries`, JSON.stringify([{ after: 1 }]), {
      authorization: 'Bearer Tok3n',
    });
    expect(after.status).to.equal(200);
    const metrics = await (await fetch(`${log.url}/metrics`)).text();
    expect(metrics).to.match(/^trailmark_log_request_body_bytes 0$/m);
  });

  it('a client still sending a refused body reads the 413 (and a 401): the server ends its side and reads on, no reset', async () => {
    const big = await sendWhileRefused(
      `${log.url}/v1/add-entry`,
      `authorization: Bearer Tok3n\r\nconnection: close\r\ncontent-length: ${20 * 2 ** 20}\r\n`,
    );
    expect(big.error, big.answer).to.equal(undefined);
    expect(big.answer).to.match(/^HTTP\/1.1 413 /);
    expect(big.answer).to.match(/\r\nconnection: close\r\n/i);
    expect(big.answer).to.match(/exceeds 1048576 bytes/);
    const chunked = await sendWhileRefused(
      `${log.url}/v1/add-entries`,
      'authorization: Bearer wrong\r\ntransfer-encoding: chunked\r\n',
    );
    expect(chunked.error, chunked.answer).to.equal(undefined);
    expect(chunked.answer).to.match(/^HTTP\/1.1 401 /);
  });

  it('a request node cannot parse gets a JSON error like every other: 400 for a malformed one, 431 for headers too large', async () => {
    const u = new URL(log.url);
    const rawAnswer = (bytes: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(Number(u.port), u.hostname);
        let answer = '';
        s.on('data', (d: Buffer) => (answer += d.toString()));
        s.on('error', reject);
        s.on('close', () => resolve(answer));
        s.write(bytes);
      });
    const malformed = await rawAnswer('GET /checkpoint HTTP/1.1\r\nhost x\r\n\r\n');
    expect(malformed).to.match(/^HTTP\/1.1 400 /);
    expect(malformed).to.match(/\r\ncontent-type: application\/json\r\n/);
    expect(JSON.parse(malformed.slice(malformed.indexOf('\r\n\r\n') + 4))).to.deep.equal({
      error: 'malformed HTTP request',
    });
    const huge = await rawAnswer(`GET /checkpoint HTTP/1.1\r\nhost: x\r\nx-pad: ${'p'.repeat(20_000)}\r\n\r\n`);
    expect(huge).to.match(/^HTTP\/1.1 431 /);
    expect(JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4)).error).to.match(/headers are too large/);
    // the log still answers on a new connection
    expect((await fetch(`${log.url}/checkpoint`)).status).to.equal(200);
  });
});
