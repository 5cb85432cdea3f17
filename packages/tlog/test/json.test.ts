import { expect } from 'chai';
import fc from 'fast-check';
import { JsonError, canonicalJson, canonicalJsonString, canonicalizeJsonText, fromUtf8 } from '../src/index.js';

describe('RFC 8785 canonical JSON', () => {
  it('sorts keys, strips whitespace, normalizes numbers and strings (RFC 8785 examples)', () => {
    expect(canonicalJsonString({ b: 1, a: [true, null, 'x'], c: { z: 1e21, y: 0.000001, x: -0 } })).to.equal(
      '{"a":[true,null,"x"],"b":1,"c":{"x":0,"y":0.000001,"z":1e+21}}',
    );
    // RFC 8785 section 3.2.2.2: string escaping
    expect(canonicalJsonString({ s: '\u20ac$\u000f\nA\'B"\\\\"/' })).to.equal(
      '{"s":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
    // key order is by UTF-16 code units
    expect(canonicalJsonString({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, '1': 4, '\u00f6': 5 })).to.equal(
      '{"\\r":2,"1":4,"ö":5,"€":1,"😀":3}',
    );
    expect(fromUtf8(canonicalJson({ é: 'ü' }))).to.equal('{"é":"ü"}');
    expect(canonicalJson({ é: 1 })).to.deep.equal(new Uint8Array([0x7b, 0x22, 0xc3, 0xa9, 0x22, 0x3a, 0x31, 0x7d]));
  });

  it('canonicalizes JSON text', () => {
    expect(fromUtf8(canonicalizeJsonText(' { "b" : 2 , "a" : 1.50 } '))).to.equal('{"a":1.5,"b":2}');
    expect(() => canonicalizeJsonText('{')).to.throw(JsonError, /invalid JSON/);
    expect(() => canonicalizeJsonText('[1]')).to.throw(JsonError, /array/);
  });

  it('rejects non-objects and non-JSON values with clear errors', () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /undefined/],
      [null, /null/],
      [[1], /array/],
      ['s', /string/],
      [3, /number/],
      [{ a: undefined }, /\$\.a: undefined/],
      [{ a: [1, undefined] }, /\$\.a\[1\]: undefined/],
      [{ a: () => 1 }, /function/],
      [{ a: NaN }, /NaN/],
      [{ a: Infinity }, /Infinity/],
      [{ a: 1n }, /bigint/],
      [{ a: new Date(0) }, /Date/],
      [{ a: Symbol('x') }, /symbol/],
      [{ a: '\ud800' }, /surrogate/i],
    ];
    for (const [v, re] of cases) expect(() => canonicalJson(v), String(re)).to.throw(JsonError, re);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => canonicalJson(cyc)).to.throw(JsonError, /circular/);
    expect(canonicalJsonString([1, 'a'], { allowNonObject: true })).to.equal('[1,"a"]');
  });

  it('property: canonical form is stable and parses back to an equal value', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const c = canonicalJsonString(obj);
        expect(canonicalJsonString(JSON.parse(c))).to.equal(c);
        expect(fromUtf8(canonicalizeJsonText(JSON.stringify(obj, null, 2)))).to.equal(c);
      }),
      { numRuns: 200 },
    );
  });
});

describe('canonicalJson against the canonicalize package (RFC 8785 reference)', () => {
  it('property: same output for random JSON objects, including odd keys, numbers and Unicode', async () => {
    const { default: canonicalize } = await import('canonicalize');
    const key = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme' }),
      fc.string({ unit: 'binary' }).filter((s) => s.isWellFormed()),
    );
    const num = fc.oneof(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      fc.constantFrom(1e21, 1e-7, -0, 5e-324, 2 ** 53 + 2),
    );
    const leaf = fc.oneof(num, fc.string({ unit: 'grapheme' }), fc.boolean(), fc.constant(null));
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('tree')), fc.dictionary(key, tie('tree'))),
    }));
    fc.assert(
      fc.property(fc.dictionary(key, tree), (obj) => {
        expect(canonicalJsonString(obj)).to.equal(canonicalize(obj));
      }),
      { numRuns: 500 },
    );
  });
});
