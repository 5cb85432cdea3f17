import { expect } from 'chai';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { canonicalJsonString } from '@trailmark/tlog';
import { isCanonicalObject, splitCanonicalArray } from '../src/canonscan.js';
import { prepareBatch, prepareAuditEvents, prepareEntry } from '../src/canon.js';

/** What the full path makes of `text`: its canonical form, or undefined when it is not a JSON object at all. */
function slowCanonical(text: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  try {
    return canonicalJsonString(v);
  } catch {
    return undefined;
  }
}

const fast = (text: string): boolean => {
  const b = Buffer.from(text, 'utf8');
  return isCanonicalObject(b, 0, b.length);
};

/** The check must say "canonical" exactly when the full path would give back the same text. */
function agrees(text: string): void {
  expect(fast(text), text).to.equal(slowCanonical(text) === text);
}

const key = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }).filter((s) => s.isWellFormed()),
  fc.constantFrom('a', 'a!', 'a ', 'ab', '\ue000', '\ud83d\ude00', '\uffff', '\u007f', '"', '\\', '\u001f', '\n'),
);
const num = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(1e21, 1e-7, -0, 5e-324, 2 ** 53 + 2, 123456789012345, 1234567890123456, 0.1, 100),
);
const leaf = fc.oneof(
  num,
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc.boolean(),
  fc.constant(null),
);
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('tree')), fc.dictionary(key, tie('tree'))),
}));
const object = fc.dictionary(key, tree);

/** Small edits that often turn canonical text into valid but non-canonical JSON (or into invalid JSON). */
const EDITS = [
  ' ',
  '\n',
  '0',
  '-',
  '.',
  'e',
  'E',
  '+',
  '1',
  '\\u0041',
  '\\/',
  '\\u001F',
  '\\u001f',
  '"',
  ',',
  '{}',
  '[]',
  '}',
  ']',
];

describe('canonical check on raw bytes (canonscan)', () => {
  it('property: canonical text of any JSON object is recognized', () => {
    fc.assert(
      fc.property(object, (obj) => {
        const c = canonicalJsonString(obj);
        expect(fast(c), c).to.equal(true);
      }),
      { numRuns: 200 },
    );
  });

  it('property: says "canonical" exactly when parse + canonicalize gives back the same text', () => {
    fc.assert(
      fc.property(object, fc.nat(), fc.nat(), fc.constantFrom(...EDITS), (obj, at, len, edit) => {
        const c = canonicalJsonString(obj);
        agrees(JSON.stringify(obj));
        agrees(JSON.stringify(obj, null, 1));
        // insert, replace or delete at a random place (whole code points: the body is valid UTF-8)
        const cps = [...c];
        const p = at % (cps.length + 1);
        agrees([...cps.slice(0, p), edit, ...cps.slice(p)].join(''));
        agrees([...cps.slice(0, p), edit, ...cps.slice(p + 1 + (len % 3))].join(''));
        agrees([...cps.slice(0, p), ...cps.slice(p + 1 + (len % 3))].join(''));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses each way text can differ from its canonical form', () => {
    const cases: [string, boolean][] = [
      ['{}', true],
      ['{"a":1}', true],
      ['{ "a":1}', false],
      ['{"a":1 }', false],
      ['{"a": 1}', false],
      ['{"a":1.0}', false],
      ['{"a":1e3}', false],
      ['{"a":1000}', true],
      ['{"a":-0}', false],
      ['{"a":0}', true],
      ['{"a":00}', false],
      ['{"a":-}', false],
      ['{"a":1E+21}', false],
      ['{"a":1e+21}', true],
      ['{"a":1e21}', false],
      ['{"a":0.000001}', true],
      ['{"a":1e-7}', true],
      ['{"a":1e400}', false],
      ['{"a":123456789012345678}', false],
      ['{"a":123456789012345680}', true],
      ['{"a":"\\u001f"}', true],
      ['{"a":"\\u001F"}', false],
      ['{"a":"\\u0008"}', false],
      ['{"a":"\\b"}', true],
      ['{"a":"\\u0041"}', false],
      ['{"a":"\\/"}', false],
      ['{"a":"/"}', true],
      ['{"a":"\\ud83d\\ude00"}', false],
      ['{"a":"\u2028"}', true],
      ['{"a":1,"a":1}', false],
      ['{"a":1,"a!":1}', true],
      ['{"a!":1,"a":1}', false],
      ['{"a":1,"ab":1}', true],
      ['{"ab":1,"a":1}', false],
      // UTF-16 order puts a supplementary character (a surrogate pair) before U+E000, unlike UTF-8 byte order
      ['{"\ud83d\ude00":1,"\ue000":2}', true],
      ['{"\ue000":2,"\ud83d\ude00":1}', false],
      ['{"\\n":1,"a":2}', true],
      ['{"a":2,"\\n":1}', false],
      ['{"a":[1,2,{"b":null,"c":true,"d":false}]}', true],
      ['{"a":[1,2,]}', false],
      ['{"a":tru}', false],
      ['{"a":nul}', false],
      ['{"a":1}x', false],
      ['{"a":1', false],
      ['[1]', false],
      ['"a"', false],
    ];
    for (const [t, want] of cases) {
      expect(fast(t), t).to.equal(want);
      agrees(t);
    }
  });

  it('stays within its range: bytes after the end never complete a value', () => {
    const b = Buffer.from('{"a":1,"b":"x"}');
    for (let e = 1; e < b.length; e++) expect(isCanonicalObject(b, 0, e), String(e)).to.equal(false);
    expect(isCanonicalObject(b, 0, b.length)).to.equal(true);
    const t = Buffer.from('{"a":tr}ue');
    expect(isCanonicalObject(t, 0, 8)).to.equal(false);
  });

  it('splits an array of canonical objects in one pass, and gives up on anything else', () => {
    const split = (t: string, max = 10) => {
      const b = Buffer.from(t);
      const r = splitCanonicalArray(b, 0, b.length, max);
      return r && Array.from({ length: r.length / 2 }, (_, i) => b.toString('utf8', r[2 * i], r[2 * i + 1]));
    };
    expect(split('[{"a":1},{"b":[1,{"c":2}]}]')).to.deep.equal(['{"a":1}', '{"b":[1,{"c":2}]}']);
    expect(split(' [ {} ,\n\t{"a":"]"} ] ')).to.deep.equal(['{}', '{"a":"]"}']);
    for (const t of ['[]', '[{}', '[{},]', '[{}{}]', '[{}]x', '[{"b":1,"a":2}]', '[{},1]', '{"a":1}', '[{} ,', ' ']) {
      expect(split(t), t).to.equal(undefined);
    }
    expect(split('[{},{},{}]', 3)).to.have.length(3);
    expect(split('[{},{},{},{}]', 3)).to.equal(undefined);
  });

  it('refuses nesting beyond what canonicalization accepts (256 containers)', () => {
    const nest = (n: number) => '{"a":' + '['.repeat(n - 1) + ']'.repeat(n - 1) + '}';
    expect(fast(nest(256))).to.equal(true);
    expect(slowCanonical(nest(256))).to.equal(nest(256));
    expect(fast(nest(257))).to.equal(false);
    expect(slowCanonical(nest(257))).to.equal(undefined);
  });
});

describe('batch preparation: canonical entries taken as they stand', () => {
  const leafHash = (d: Uint8Array) =>
    createHash('sha256')
      .update(Buffer.concat([Buffer.from([0]), d]))
      .digest();

  it('property: every entry is packed as its canonical form and hashed, canonical or not', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(object, fc.constantFrom(0, 1, 2)), { minLength: 1, maxLength: 8 }), (list) => {
        const texts = list.map(([o, how]) =>
          how === 0 ? canonicalJsonString(o) : how === 1 ? JSON.stringify(o) : JSON.stringify(o, null, 2),
        );
        const p = prepareBatch(Buffer.from(' [ ' + texts.join(' ,\n') + ' ] '));
        expect(p.offsets.length).to.equal(list.length + 1);
        list.forEach(([o], i) => {
          const leaf = Buffer.from(p.data.subarray(p.offsets[i] + 1, p.offsets[i + 1]));
          expect(leaf.toString('utf8')).to.equal(canonicalJsonString(o));
          expect(Buffer.from(p.hashes.subarray(i * 32, i * 32 + 32))).to.deep.equal(leafHash(leaf));
        });
      }),
      { numRuns: 60 },
    );
  });

  it('names the entry at fault, fast path or not', () => {
    const big = '{"a":"' + 'x'.repeat(70_000) + '"}';
    expect(() => prepareBatch(Buffer.from(`[{"a":1},${big}]`)))
      .to.throw()
      .that.deep.includes({ status: 413 });
    try {
      prepareBatch(Buffer.from(`[{"a":1},${big}]`));
    } catch (e) {
      expect((e as { message: string }).message).to.match(/^entries\[1\] is 70008 bytes in canonical form/);
    }
    // a body of more than 64 KiB is split before parsing: a malformed element is named too
    const pad = ',{"pad":"' + 'x'.repeat(70_000) + '"}';
    for (const [bad, re, small] of [
      ['[1]', /entries\[1\] must be a JSON object, got an array/, true],
      ['{"a":1e400}', /entries\[1\].*Infinity/, true],
      ['{"a":01}', /malformed JSON in entries\[1\]/, false],
    ] as const) {
      for (const body of [`[{"a":1},${bad}]`, `[{"a":1},${bad}${pad}]`]) {
        try {
          prepareBatch(Buffer.from(body));
          expect.fail(body);
        } catch (e) {
          expect((e as { status: number }).status, body).to.equal(400);
          if (small || body.length > 65536) expect((e as { message: string }).message, body).to.match(re);
        }
      }
    }
  });

  it('add-entry: a canonical body is taken as it stands, any other canonicalized, to the same leaf', () => {
    const obj = { b: [1, 'x', { d: null, c: true }], a: 0.5, é: '\u001f' };
    const want = canonicalJsonString(obj);
    for (const body of [want, ` ${want}\n`, JSON.stringify(obj), JSON.stringify(obj, null, 2)]) {
      const leaf = prepareEntry(Buffer.from(body));
      expect(Buffer.from(leaf.data).toString('utf8'), body).to.equal(want);
      expect(Buffer.from(leaf.hash)).to.deep.equal(leafHash(leaf.data));
    }
    const big = '{"a":"' + 'x'.repeat(70_000) + '"}';
    expect(() => prepareEntry(Buffer.from(big)))
      .to.throw()
      .that.deep.includes({
        status: 413,
        message: 'the entry is 70008 bytes in canonical form; at most 65535 are accepted',
      });
    expect(() => prepareEntry(Buffer.from('[1]')))
      .to.throw()
      .that.deep.includes({ status: 400 });
  });

  it('k8s audit items: canonical and non-canonical events give the same leaves', () => {
    const ev = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: 'x', stage: 'ResponseComplete' };
    const body = (items: string[]) =>
      Buffer.from(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${items.join(',')}]}`);
    const a = prepareAuditEvents(body([JSON.stringify(ev), canonicalJsonString(ev)]));
    const leaf = (i: number) => Buffer.from(a.data.subarray(a.offsets[i] + 1, a.offsets[i + 1])).toString();
    expect(leaf(0)).to.equal(canonicalJsonString(ev));
    expect(leaf(1)).to.equal(canonicalJsonString(ev));
  });
});
