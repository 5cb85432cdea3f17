import { expect } from 'chai';
import { BUNDLE, TILE, bundleKey, readU64, tileKey, u64 } from '../src/layout.js';

describe('storage key layout: uint64 indices as checked numbers', () => {
  it('writes indices big-endian across the 2^32 boundary and up to 2^53 - 1, and reads them back', () => {
    const cases: [number, string][] = [
      [0, '0000000000000000'],
      [255, '00000000000000ff'],
      [2 ** 32 - 1, '00000000ffffffff'],
      [2 ** 32, '0000000100000000'],
      [2 ** 32 + 5, '0000000100000005'],
      [Number.MAX_SAFE_INTEGER, '001fffffffffffff'],
    ];
    for (const [n, hex] of cases) {
      expect(u64(n).toString('hex'), String(n)).to.equal(hex);
      expect(readU64(u64(n), 0), String(n)).to.equal(n);
    }
    expect(bundleKey(2 ** 32 + 1).toString('hex')).to.equal(BUNDLE.toString(16) + '0000000100000001');
    expect(tileKey(3, 2 ** 40).toString('hex')).to.equal(TILE.toString(16) + '03' + '0000010000000000');
  });

  it('keys sort as their indices do (LevelDB orders by bytes)', () => {
    const ns = [0, 1, 255, 256, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER];
    const keys = ns.map((n) => bundleKey(n));
    const sorted = [...keys].sort(Buffer.compare);
    expect(sorted.map((k) => readU64(k, 1))).to.deep.equal(ns);
  });

  it('refuses an index a double cannot hold exactly, or a negative or fractional one, instead of writing a wrong key', () => {
    for (const bad of [2 ** 53, 2 ** 64, -1, 1.5, NaN])
      expect(() => bundleKey(bad), String(bad)).to.throw(RangeError, /not a non-negative safe integer/);
    const beyond = Buffer.from('0020000000000000', 'hex'); // 2^53
    expect(() => readU64(beyond, 0)).to.throw(RangeError, /beyond 2\^53/);
  });
});
