import { expect } from 'chai';
import { generateKey, parsePrivateKey, parseVkey, KEY_TYPE_ED25519, type NoteVerifier } from '@trailmark/tlog';
import { rememberingVerifier } from '../src/index.js';

describe('rememberingVerifier', () => {
  const k = generateKey('example.com/log', KEY_TYPE_ED25519);
  const base = parseVkey(k.vkey);
  const signer = parsePrivateKey(k.privateKey);
  const msg = (i: number) => new TextEncoder().encode(`example.com/log\n${i}\nAAAA\n`);

  function counting(v: NoteVerifier): { v: NoteVerifier; calls: () => number } {
    let n = 0;
    return { v: { ...v, verify: (m, s) => (n++, v.verify(m, s)) }, calls: () => n };
  }

  it('gives the underlying answers, good and bad, and checks each (message, signature) once', () => {
    const c = counting(base);
    const r = rememberingVerifier(c.v, 8);
    expect([r.name, r.keyId, r.type]).to.deep.equal([base.name, base.keyId, base.type]);
    const sig = signer.sign(msg(1));
    const bad = Uint8Array.from(sig);
    bad[5] ^= 1;
    for (let round = 0; round < 3; round++) {
      expect(r.verify(msg(1), sig)).to.equal(true);
      expect(r.verify(msg(2), sig)).to.equal(false); // same signature, other message
      expect(r.verify(msg(1), bad)).to.equal(false);
    }
    expect(c.calls()).to.equal(3);
  });

  it('forgets the oldest answers beyond its capacity', () => {
    const c = counting(base);
    const r = rememberingVerifier(c.v, 4);
    const sigs = Array.from({ length: 6 }, (_, i) => signer.sign(msg(i)));
    sigs.forEach((s, i) => expect(r.verify(msg(i), s)).to.equal(true));
    expect(c.calls()).to.equal(6);
    expect(r.verify(msg(5), sigs[5])).to.equal(true); // still remembered
    expect(c.calls()).to.equal(6);
    expect(r.verify(msg(0), sigs[0])).to.equal(true); // forgotten: checked again
    expect(c.calls()).to.equal(7);
  });
});
