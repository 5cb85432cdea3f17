import { expect } from 'chai';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redactPathParams, redactQuery } from '@trailmark/recorder';
import { ambiguousPath, ConfigError, Rules, splitTarget, TokenStore, bearerToken } from '../src/index.js';

describe('auth, rules, redaction', () => {
  it('redacts named query parameters, case-insensitively and percent-decoded, keeping the rest byte for byte', () => {
    const names = new Set(['password', 'access_token']);
    expect(redactQuery('a=1&Password=x&b=%20&access%5Ftoken=y&password&c', names)).to.equal(
      'a=1&Password=REDACTED&b=%20&access%5Ftoken=REDACTED&password=REDACTED&c',
    );
    expect(redactQuery('', names)).to.equal('');
    expect(redactQuery('%zz=1&password=2', names)).to.equal('%zz=1&password=REDACTED');
  });

  it('redacts every spelling an upstream reads as the parameter: name[], name[k], ;-separated, matrix params', () => {
    const names = new Set(['password']);
    const cases: [string, string][] = [
      ['password[]=S1', 'password[]=REDACTED'],
      ['password%5B%5D=S2&a=1', 'password%5B%5D=REDACTED&a=1'],
      ['user[name]=x&Password[0]=S3', 'user[name]=x&Password[0]=REDACTED'],
      ['a=1;password=S4', 'a=1;password=REDACTED'],
      ['a=1;%20password=S5', 'a=1;%20password=REDACTED'],
      ['password.x=S6', 'password.x=REDACTED'],
      ['passwords=keep', 'passwords=keep'],
    ];
    for (const [q, want] of cases) expect(redactQuery(q, names), q).to.equal(want);
    expect(redactQuery('pass.word=S7', new Set(['pass_word']))).to.equal('pass.word=REDACTED');
    expect(redactPathParams('/login;password=S8;lang=en/x', names)).to.equal('/login;password=REDACTED;lang=en/x');
  });

  it('finds the paths upstreams read differently: matrix params, encoded dots, slashes, semicolons, backslashes', () => {
    for (const p of [
      '/public/..;/admin',
      '/public/..%3b/admin',
      '/public/%2e%2e%3b/admin',
      '/public/%2E%2E/admin',
      '/a%2fb',
      '/a%5cb',
      '/a\\b',
      '/a%252e',
      '/x;jsessionid=1',
    ]) {
      expect(ambiguousPath(p), p).to.be.a('string');
    }
    for (const p of ['/public/a', '/public/%41b', '/a-b_c~d']) expect(ambiguousPath(p), p).to.equal(null);
    expect(splitTarget('*')).to.deep.equal({ path: '*', query: '' });
  });

  it('never lets a redacted value through, whatever the query looks like (property)', () => {
    const name = fc.constantFrom(
      'password',
      'PassWord',
      'pass%77ord',
      'password[]',
      'password[k]',
      'token',
      'q',
      'a+b',
    );
    const value = fc.stringMatching(/^[A-Za-z0-9%+._~-]{0,12}$/);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(name, value), { maxLength: 6 }),
        fc.stringMatching(/^[A-Za-z0-9]{8}$/).map((x) => `!${x}`),
        (pairs, secret) => {
          // '!' never occurs in the generated values, so the secret can only come from a redacted parameter
          const parts = pairs.map(
            ([n, v]) => `${n}=${n.toLowerCase().replace('%77', 'w').startsWith('password') ? secret + v : v}`,
          );
          const out = redactQuery(parts.join('&'), new Set(['password']));
          expect(out).to.not.include(secret);
          const outParts = out === '' ? [] : out.split('&');
          expect(outParts).to.have.length(parts.length === 0 ? 0 : parts.length);
          outParts.forEach((p, i) => {
            if (!pairs[i][0].toLowerCase().replace('%77', 'w').startsWith('password')) expect(p).to.equal(parts[i]);
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('normalizes paths the way the rules see them', () => {
    expect(splitTarget('/a/./b/../c?x=1&y')).to.deep.equal({ path: '/a/c', query: 'x=1&y' });
    expect(splitTarget('/a/%2e%2E/c')).to.deep.equal({ path: '/c', query: '' });
    expect(splitTarget('//host/p')).to.deep.equal({ path: '//host/p', query: '' });
    expect(splitTarget('http://elsewhere/x/../y?q')).to.deep.equal({ path: '/y', query: 'q' });
  });

  it('matches rule prefixes on whole segments, by role and method', () => {
    const r = new Rules({
      dba: { methods: ['GET', 'post'], paths: ['/db', '/files/'] },
      admin: [{ methods: ['*'], paths: ['/'] }],
    });
    expect(r.allows(['dba'], 'GET', '/db')).to.equal('dba');
    expect(r.allows(['dba'], 'POST', '/db/t/1')).to.equal('dba');
    expect(r.allows(['dba'], 'GET', '/dbx')).to.equal(null);
    expect(r.allows(['dba'], 'DELETE', '/db')).to.equal(null);
    expect(r.allows(['dba'], 'GET', '/files')).to.equal('dba');
    expect(r.allows(['dba'], 'GET', '/db/%2F../admin')).to.equal(null);
    expect(r.allows(['other', 'admin'], 'DELETE', '/anything')).to.equal('admin');
    expect(r.allows([], 'GET', '/db')).to.equal(null);
  });

  it('refuses malformed rules and tokens with messages that name the entry, never the token', () => {
    const bad: [() => unknown, RegExp][] = [
      [() => new Rules([]), /must be a JSON object/],
      [() => new Rules({ r: { methods: [], paths: ['/'] } }), /role "r" rule 1: "methods"/],
      [
        () => new Rules({ r: { methods: ['GET'], paths: ['db'] } }),
        /"paths" must be a non-empty array of prefixes starting with "\/"/,
      ],
      [() => new TokenStore({}), /no tokens defined/],
      [() => new TokenStore({ 'sekrit-1': { id: '' } }), /entry 1: "id" must be a non-empty string/],
      [() => new TokenStore({ ok: { id: 'a' }, 'sekrit-2': { id: 'b', roles: 'dba' } }), /entry 2 \(b\): "roles"/],
      [
        () => TokenStore.fromFile('/nonexistent/tokens.json'),
        /cannot read tokens file \/nonexistent\/tokens.json: ENOENT/,
      ],
    ];
    for (const [fn, re] of bad) {
      try {
        fn();
        expect.fail(`accepted: ${re}`);
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        expect((e as Error).message).to.match(re);
        expect((e as Error).message).to.not.match(/sekrit/);
      }
    }
  });

  it('says where a tokens file is not JSON without quoting any of it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-tokens-'));
    try {
      for (const text of [
        '{"abc-secret-tok": x}',
        '{"abc-secret-tok": {"id": "a"},}',
        '{\n"abc-secret-tok" {"id": "a"}}',
      ]) {
        const file = join(dir, 'tokens.json');
        writeFileSync(file, text);
        try {
          TokenStore.fromFile(file);
          expect.fail('accepted a broken tokens file');
        } catch (e) {
          expect(e).to.be.instanceOf(ConfigError);
          expect((e as Error).message).to.match(/is not valid JSON/);
          expect((e as Error).message).to.not.match(/abc|secret/);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('looks tokens up exactly and parses only bearer credentials', () => {
    const t = new TokenStore({ abc: { id: 'alice', roles: ['x'] } });
    expect(t.lookup('abc')).to.deep.equal({ id: 'alice', roles: ['x'] });
    expect(t.lookup('abcd')).to.equal(null);
    expect(bearerToken('Bearer abc')).to.equal('abc');
    expect(bearerToken('bearer   abc ')).to.equal('abc');
    expect(bearerToken('Basic YWJjOmRlZg==')).to.equal(null);
    expect(bearerToken('Bearer a b')).to.equal(null);
    expect(bearerToken(undefined)).to.equal(null);
  });
});
