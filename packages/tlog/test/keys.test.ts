import { expect } from 'chai';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  KEY_TYPE_COSIGNATURE,
  KEY_TYPE_ED25519,
  KeyError,
  b64decode,
  b64encode,
  concatBytes,
  generateKey,
  keyId,
  keyIdHex,
  parsePrivateKey,
  parseVkey,
  sha256,
  utf8,
  verifierOf,
  vkeyOf,
  isValidKeyName,
} from '../src/index.js';

const vectors = JSON.parse(readFileSync(new URL('./vectors/signed-note.json', import.meta.url), 'utf8'));

function expectKeyError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(KeyError);
    expect((e as KeyError).code).to.equal(code);
    expect((e as Error).message).to.be.a('string').and.not.empty;
    return;
  }
  expect.fail(`expected KeyError ${code}`);
}

describe('keys', () => {
  it('parses every vector vkey and computes its key id', () => {
    for (const k of vectors.ed25519_note_keys) {
      const v = parseVkey(k.vkey);
      expect(v.name).to.equal(k.name);
      expect(v.type).to.equal(KEY_TYPE_ED25519);
      expect(keyIdHex(v.keyId)).to.equal(k.vkey.split('+')[1]);
      expect(vkeyOf(v)).to.equal(k.vkey);
      const h = sha256(concatBytes(utf8(k.name), new Uint8Array([0x0a, 0x01]), v.publicKey));
      expect(v.keyId).to.equal(((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0);
    }
  });

  it('parses the vector private key and derives its vkey', () => {
    const k = vectors.ed25519_note_keys.find((x: { skey?: string }) => x.skey);
    const s = parsePrivateKey(k.skey);
    expect(vkeyOf(s)).to.equal(k.vkey);
    expect(vkeyOf(verifierOf(s))).to.equal(k.vkey);
    expect(parsePrivateKey(k.skey + '\n').keyId).to.equal(s.keyId);
  });

  it('generated keys round-trip for both types', () => {
    for (const type of [KEY_TYPE_ED25519, KEY_TYPE_COSIGNATURE]) {
      const { privateKey, vkey } = generateKey('example.com/log', type);
      expect(privateKey).to.match(/^PRIVATE\+KEY\+example\.com\/log\+[0-9a-f]{8}\+/);
      const s = parsePrivateKey(privateKey);
      const v = parseVkey(vkey);
      expect(s.type).to.equal(type);
      expect(vkeyOf(s)).to.equal(vkey);
      expect(v.keyId).to.equal(keyId('example.com/log', type, v.publicKey));
      const msg = utf8('hello\n');
      expect(v.verify(msg, s.sign(msg))).to.equal(true);
      expect(v.verify(utf8('hellp\n'), s.sign(msg))).to.equal(false);
    }
  });

  it('seeded generation is deterministic; property: any seed and valid name round-trips', () => {
    const seed = new Uint8Array(32).fill(7);
    expect(generateKey('a', 1, seed)).to.deep.equal(generateKey('a', 1, seed));
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.string({ minLength: 1, maxLength: 20 }).filter(isValidKeyName),
        fc.constantFrom(KEY_TYPE_ED25519, KEY_TYPE_COSIGNATURE),
        (s, name, type) => {
          const { privateKey, vkey } = generateKey(name, type, s);
          expect(vkeyOf(parsePrivateKey(privateKey))).to.equal(vkey);
          expect(vkeyOf(parseVkey(vkey))).to.equal(vkey);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('key ids differ between types for the same key', () => {
    const seed = new Uint8Array(32).fill(1);
    const a = parseVkey(generateKey('w', KEY_TYPE_ED25519, seed).vkey);
    const b = parseVkey(generateKey('w', KEY_TYPE_COSIGNATURE, seed).vkey);
    expect(a.publicKey).to.deep.equal(b.publicKey);
    expect(a.keyId).to.not.equal(b.keyId);
  });

  it('rejects invalid names', () => {
    for (const name of ['', 'a b', 'a+b', 'a\tb', 'a\u00a0b', 'a\u2003b', 'a\nb', '\ud800x']) {
      expectKeyError(() => generateKey(name), 'key-name');
    }
    expect(isValidKeyName('example.com/log42')).to.equal(true);
    expect(isValidKeyName('ünïcode/ok')).to.equal(true);
  });

  it('rejects malformed vkeys with clear errors', () => {
    const good = vectors.ed25519_note_keys[0].vkey as string;
    const [name, id, key] = [good.slice(0, good.indexOf('+')), good.split('+')[1], good.split('+').slice(2).join('+')];
    expectKeyError(() => parseVkey(`${name}+${id}`), 'key-format');
    expectKeyError(() => parseVkey(`${name}+${id.slice(1)}+${key}`), 'key-format');
    expectKeyError(() => parseVkey(`${name}+zzzzzzzz+${key}`), 'key-format');
    expectKeyError(() => parseVkey(`${name}+${id}+${key.slice(0, -1)}`), 'key-format');
    expectKeyError(() => parseVkey(`${name}+00000000+${key}`), 'key-id');
    expectKeyError(() => parseVkey(`Other+${id}+${key}`), 'key-id');
    const raw = b64decode(key);
    expectKeyError(() => parseVkey(`${name}+${id}+${b64encode(raw.slice(0, 32))}`), 'key-length');
    const t2 = raw.slice();
    t2[0] = 0x02;
    expectKeyError(() => parseVkey(`${name}+${id}+${b64encode(t2)}`), 'key-type');
    expectKeyError(() => parseVkey(`${name} +${id}+${key}`), 'key-name');
  });

  it('rejects malformed private keys', () => {
    const skey = vectors.ed25519_note_keys[0].skey as string;
    expectKeyError(() => parsePrivateKey(skey.replace('PRIVATE+KEY', 'PRIVATE+KEX')), 'key-format');
    expectKeyError(() => parsePrivateKey(skey.replace('+c74f20a3+', '+c74f20a4+')), 'key-id');
    expectKeyError(() => parsePrivateKey(skey.slice(0, -4)), 'key-length');
    expectKeyError(() => parsePrivateKey(skey.slice(0, -1)), 'key-format');
    expectKeyError(() => parsePrivateKey('PRIVATE+KEY+x'), 'key-format');
  });

  it('cosignature (0x04) keys sign timestamp || signature over the cosignature/v1 message', () => {
    const s = parsePrivateKey(
      generateKey('witness.example/w1', KEY_TYPE_COSIGNATURE, new Uint8Array(32).fill(3)).privateKey,
    );
    const v = verifierOf(s);
    const sig = (s as unknown as { signAt(m: Uint8Array, t: bigint): Uint8Array }).signAt(utf8('body\n'), 1679315147n);
    expect(sig.length).to.equal(72);
    expect(v.verify(utf8('body\n'), sig)).to.equal(true);
    const wrongTime = sig.slice();
    wrongTime[7] ^= 1;
    expect(v.verify(utf8('body\n'), wrongTime)).to.equal(false);
    expectKeyError(
      () => (s as unknown as { signAt(m: Uint8Array, t: bigint): Uint8Array }).signAt(utf8('b\n'), 1n << 63n),
      'timestamp',
    );
  });
});

describe('isWeakEd25519Key', () => {
  it('flags small-order points and invalid encodings, not real keys', async () => {
    const { generateKey, parseVkey, isWeakEd25519Key } = await import('../src/index.js');
    const v = parseVkey(generateKey('weak.example/log').vkey);
    expect(isWeakEd25519Key(v.publicKey)).to.equal(false);
    const identity = new Uint8Array(32);
    identity[0] = 1; // y = 1, x = 0: the neutral element
    expect(isWeakEd25519Key(identity)).to.equal(true);
    expect(isWeakEd25519Key(new Uint8Array(31))).to.equal(true);
    // y = 2 has no x on the curve: not a point at all
    const notAPoint = new Uint8Array(32);
    notAPoint[0] = 2;
    expect(isWeakEd25519Key(notAPoint)).to.equal(true);
  });
});
