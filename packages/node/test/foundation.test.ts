import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generateKey,
  parsePrivateKey,
  parseVkey,
  rfc6962,
  KEY_TYPE_COSIGNATURE,
  type NoteVerifier,
} from '@trailmark/tlog';
import * as node from '../src/index.js';

const { KeyedLock, hashChildren, nativeSigner, nativeVerifier, nodeAccelerator, nodeHasher, splitHostPort } = node;
const { rememberingVerifier, writeFileDurably, writeFileDurablySync } = node;

describe('hasher', () => {
  it('hashes leaves and nodes byte-identically to the portable RFC 6962 hasher', () => {
    for (const n of [0, 1, 31, 1000]) {
      const d = Uint8Array.from({ length: n }, (_, i) => (i * 7) & 0xff);
      expect(nodeHasher.leaf(d)).to.deep.equal(rfc6962.leaf(d));
    }
    const a = rfc6962.leaf(new Uint8Array([1]));
    const b = rfc6962.leaf(new Uint8Array([2]));
    expect(Buffer.from(nodeHasher.node(a, b))).to.deep.equal(Buffer.from(rfc6962.node(a, b)));
    expect(Buffer.from(hashChildren(Buffer.concat([Buffer.alloc(3), a, b]), 3, 35))).to.deep.equal(
      Buffer.from(rfc6962.node(a, b)),
    );
  });

  it('the tile accelerator agrees with the reference root and refuses a bundle that does not match', () => {
    const entries = Array.from({ length: 256 }, (_, i) => Buffer.from(`{"n":${i}}`));
    const bundle = Buffer.concat(entries.flatMap((e) => [Buffer.from([e.length >> 8, e.length & 0xff]), e]));
    const leaves = entries.map((e) => rfc6962.leaf(e));
    const tile = Buffer.concat(leaves);
    let level = leaves;
    while (level.length > 1) level = level.flatMap((_, i) => (i % 2 ? [] : [rfc6962.node(level[i], level[i + 1])]));
    expect(Buffer.from(nodeAccelerator.fullTileRoot(tile))).to.deep.equal(Buffer.from(level[0]));
    expect(nodeAccelerator.bundleMatches(bundle, tile, 256)).to.equal(true);
    const bad = Buffer.from(bundle);
    bad[5] ^= 1;
    expect(nodeAccelerator.bundleMatches(bad, tile, 256)).to.equal(false);
  });
});

describe('ed25519', () => {
  const k = generateKey('example.com/log');
  const msg = new TextEncoder().encode('example.com/log\n1\nroot\n');

  it('the native signer signs byte-identically to tlog; the native verifier agrees with tlog on good and bad', () => {
    const fast = nativeSigner(k.privateKey);
    const slow = parsePrivateKey(k.privateKey);
    expect(fast.sign).to.not.equal(slow.sign);
    const sig = fast.sign(msg);
    expect(Buffer.from(sig)).to.deep.equal(Buffer.from(slow.sign(msg)));
    const v = nativeVerifier(parseVkey(k.vkey));
    expect(v.verify(msg, sig)).to.equal(true);
    const bad = Uint8Array.from(sig);
    bad[10] ^= 1;
    expect([v.verify(msg, bad), parseVkey(k.vkey).verify(msg, bad)]).to.deep.equal([false, false]);
    expect(v.verify(msg, sig.subarray(0, 63))).to.equal(false);
  });

  it('a cosignature key keeps tlog signer and verifier (its message is built by tlog)', () => {
    const w = generateKey('witness.example', KEY_TYPE_COSIGNATURE);
    const v = parseVkey(w.vkey);
    expect(nativeVerifier(v)).to.equal(v);
    expect(nativeSigner(w.privateKey).type).to.equal(KEY_TYPE_COSIGNATURE);
  });

  it('the remembering verifier asks once per (message, signature) and forgets the oldest beyond capacity', () => {
    let calls = 0;
    const inner = parseVkey(k.vkey);
    const counting: NoteVerifier = { ...inner, verify: (m, s) => (calls++, inner.verify(m, s)) };
    const r = rememberingVerifier(counting, 2);
    const sig = nativeSigner(k.privateKey).sign(msg);
    const m2 = new TextEncoder().encode('two\n');
    const m3 = new TextEncoder().encode('three\n');
    expect([r.verify(msg, sig), r.verify(msg, sig), r.verify(m2, sig)]).to.deep.equal([true, true, false]);
    expect(calls).to.equal(2);
    r.verify(m3, sig);
    r.verify(msg, sig);
    expect(calls).to.equal(4);
  });
});

describe('durable writes', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tm-durable-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, write] of [
    ['writeFileDurably', writeFileDurably],
    ['writeFileDurablySync', async (...a: Parameters<typeof writeFileDurablySync>) => writeFileDurablySync(...a)],
  ] as const) {
    it(`${name}: writes, replaces, refuses to replace when exclusive, leaves no temp file, keeps the mode`, async () => {
      const f = join(dir, 'state');
      await write(f, 'one\n', { mode: 0o600 });
      await write(f, new TextEncoder().encode('two\n'));
      expect(readFileSync(f, 'utf8')).to.equal('two\n');
      let err: NodeJS.ErrnoException | undefined;
      await Promise.resolve(write(f, 'three\n', { exclusive: true })).catch((e) => (err = e));
      expect(err?.code).to.equal('EEXIST');
      expect(readFileSync(f, 'utf8')).to.equal('two\n');
      await write(join(dir, 'key'), 'k\n', { mode: 0o600, exclusive: true });
      expect(statSync(join(dir, 'key')).mode & 0o777).to.equal(0o600);
      expect(readdirSync(dir).sort()).to.deep.equal(['key', 'state']);
      err = undefined;
      await Promise.resolve(write(join(dir, 'missing', 'x'), 'x')).catch((e) => (err = e));
      expect((err as NodeJS.ErrnoException | undefined)?.code).to.equal('ENOENT');
      expect(existsSync(join(dir, 'missing'))).to.equal(false);
    });
  }
});

describe('KeyedLock', () => {
  it('runs sections of one key one at a time in arrival order, other keys alongside, and survives a failure', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const step =
      (tag: string, ms: number, fail = false) =>
      async () => {
        order.push(`${tag}+`);
        await new Promise((r) => setTimeout(r, ms));
        order.push(`${tag}-`);
        if (fail) throw new Error(tag);
        return tag;
      };
    const results = await Promise.allSettled([
      lock.run('a', step('a1', 30, true)),
      lock.run('a', step('a2', 1)),
      lock.run('b', step('b1', 1)),
    ]);
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'fulfilled', 'fulfilled']);
    expect(order.indexOf('a2+')).to.be.greaterThan(order.indexOf('a1-'));
    expect(order.indexOf('b1-')).to.be.lessThan(order.indexOf('a1-'));
    expect(lock.busyKeys).to.equal(0);
  });
});

describe('splitHostPort', () => {
  it('splits HOST:PORT and [v6]:PORT, leaves an empty host to the caller, refuses the malformed', () => {
    expect(splitHostPort('127.0.0.1:8080')).to.deep.equal({ host: '127.0.0.1', port: 8080 });
    expect(splitHostPort('[::1]:0')).to.deep.equal({ host: '::1', port: 0 });
    expect(splitHostPort(':80')).to.deep.equal({ host: undefined, port: 80 });
    for (const bad of ['host', 'host:65536', 'a:b:80', 'host:', '[::1]80'])
      expect(splitHostPort(bad)).to.equal(undefined);
  });
});
