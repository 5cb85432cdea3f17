/**
 * Exit 1 means evidence of misbehaviour and nothing else (contract section 6): a plain web server at --log, a key
 * for another log, a private key where the vkey belongs, a missing index are mistakes (exit 2) with a hint,
 * and `monitor --once` raises no alert for them. Every command takes --key and --log-key; --version works.
 */
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey, KEY_TYPE_COSIGNATURE } from '@trailmark/tlog';
import { cli, tamperedLogSuite, type TestLog } from './auditor-helpers.js';

const PAGE =
  '<!DOCTYPE html>\n<html><head><title>Directory listing for /</title></head><body><h1>Directory listing</h1></body></html>\n';

/** A web server that is not a log: every path answers `status` with an HTML page, as python3 -m http.server does. */
async function htmlServer(status: number): Promise<{ url: string; close(): Promise<void> }> {
  const s: Server = createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'text/html' });
    res.end(PAGE);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => s.close(() => r())),
  };
}

describe('mistakes are exit 2 with a hint, never exit 1 (real log server)', function () {
  this.timeout(60_000);
  let log: TestLog;
  let dir: string;
  tamperedLogSuite(
    'tm-mistakes-',
    (l) => l.add(5),
    (s) => ({ dir, log } = s),
  );

  for (const status of [200, 404]) {
    it(`a plain web server answering ${status} with HTML at --log: exit 2, no markup echoed, no alert`, async () => {
      const web = await htmlServer(status);
      try {
        const runs = [
          ['checkpoint', '--log', web.url, '--key', log.server.vkey, '--retries', '0'],
          ['audit', '--log', web.url, '--key', log.server.vkey, '--retries', '0'],
          ['prove', 'inclusion', '--log', web.url, '--key', log.server.vkey, '--index', '0', '--retries', '0'],
          ['entries', '--log', web.url, '--key', log.server.vkey, '--retries', '0'],
          ['monitor', '--once', '--log', web.url, '--log-key', log.server.vkey],
        ];
        for (const args of runs) {
          const r = await cli(args, dir);
          expect(r.code, `${args[0]}: ${r.stdout}${r.stderr}`).to.equal(2);
          const all = r.stdout + r.stderr;
          expect(all, args[0]).to.not.match(/<html|<h1|DOCTYPE/i);
          expect(all, args[0]).to.not.match(/ALERT|MISBEHAVIOUR/);
        }
        const once = await cli(['monitor', '--once', '--log', web.url, '--log-key', log.server.vkey], dir);
        expect(once.stdout).to.match(/could not check/);
        const cp = await cli(['checkpoint', '--log', web.url, '--key', log.server.vkey, '--retries', '0'], dir);
        expect(cp.stderr).to.match(
          status === 200
            ? /not a checkpoint: is --log the log's base URL/
            : /an HTML page \("Directory listing for \/"\).*is --log the log's base URL/,
        );
      } finally {
        await web.close();
      }
    });
  }

  it('a key for another log (same name or another name) is exit 2 with a hint, in the CLI and in monitor --once', async () => {
    for (const other of [generateKey('localhost/trailmark', 1).vkey, generateKey('other.example/log', 1).vkey]) {
      const r = await cli(['checkpoint', '--log', log.server.url, '--key', other], dir);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(/is --key this log's vkey\?/);
      const once = await cli(['monitor', '--once', '--log', log.server.url, '--log-key', other], dir);
      expect(once.code, once.stdout + once.stderr).to.equal(2);
      expect(once.stdout + once.stderr).to.not.match(/ALERT|MISBEHAVIOUR/);
    }
  });

  it('a private key or a witness key where the vkey belongs: exit 2, naming the .pub file, never echoing the key', async () => {
    const k = generateKey('localhost/other', 1);
    writeFileSync(join(dir, 'log.key'), k.privateKey + '\n');
    const f = await cli(['checkpoint', '--log', log.server.url, '--key', 'log.key'], dir);
    expect(f.code).to.equal(2);
    expect(f.stderr).to.equal(
      'trailmark: log.key is a private key; use log.key.pub (the vkey keygen wrote beside it)\n',
    );
    const s = await cli(['verify', 'inclusion', '--key', k.privateKey, '--proof', 'x', '--leaf-hash', 'x'], dir);
    expect(s.code).to.equal(2);
    expect(s.stderr).to.match(/that is a private key/);
    // PRIVATE+KEY+<name>+<hash>+<base64 key>: the base64 itself may hold '+' (and end with one)
    const secret = k.privateKey.split('+').slice(4).join('+');
    expect(secret).to.have.length.above(40);
    expect(s.stderr).to.not.contain(secret);
    const w = await cli(
      ['audit', '--log', log.server.url, '--key', generateKey('w.example', KEY_TYPE_COSIGNATURE).vkey],
      dir,
    );
    expect(w.code).to.equal(2);
    expect(w.stderr).to.match(/w\.example is a witness key/);
  });

  it('--log-key is accepted wherever --key is, and --key by the monitor', async () => {
    const pub = join(log.dir, 'log.key.pub');
    for (const args of [
      ['checkpoint', '--log', log.server.url, '--log-key', pub],
      ['audit', '--log', log.server.url, '--log-key', log.server.vkey],
      ['entries', '--log', log.server.url, '--log-key', pub, '--start', '4'],
      ['prove', 'inclusion', '--log', log.server.url, '--log-key', pub, '--index', '1', '--out', 'p1.tlog-proof'],
      ['verify', 'inclusion', '--log-key', pub, '--proof', 'p1.tlog-proof', '--leaf-hash', 'x'],
      ['monitor', '--once', '--log', log.server.url, '--key', pub],
    ]) {
      const r = await cli(args, dir);
      // verify with a bad --leaf-hash is a usage error after the key was accepted
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(args[0] === 'verify' ? 2 : 0);
      if (args[0] === 'verify') expect(r.stderr).to.match(/leaf-hash/);
    }
    const both = await cli(
      ['checkpoint', '--log', log.server.url, '--key', pub, '--log-key', generateKey('x', 1).vkey],
      dir,
    );
    expect(both.code).to.equal(2);
    expect(both.stderr).to.match(/once: --key or --log-key/);
  });

  it('the recorders (proxy, forward-auth, pg-proxy) take --key as well as --log-key, and need one of them', async () => {
    const pub = join(log.dir, 'log.key.pub');
    const missing = join(dir, 'no-such-file.json');
    const recorders = [
      ['proxy', '--upstream', 'http://127.0.0.1:9', '--log', log.server.url, '--tokens', missing],
      ['forward-auth', '--log', log.server.url, '--tokens', missing],
      ['pg-proxy', '--upstream', 'postgres://u@127.0.0.1:9/db', '--log', log.server.url, '--users', missing],
    ];
    for (const base of recorders) {
      for (const flag of ['--key', '--log-key']) {
        // the key is accepted, so what fails is the missing tokens/users file, named
        const r = await cli([...base, flag, pub, '--spool', join(dir, `spool-${base[0]}`), '--workers', '1'], dir);
        expect(r.code, `${base[0]} ${flag}: ${r.stderr}`).to.equal(2);
        expect(r.stderr, `${base[0]} ${flag}`).to.contain('no-such-file.json');
        expect(r.stderr, `${base[0]} ${flag}`).to.not.match(/--log-key|vkey/);
      }
      const none = await cli([...base, '--spool', join(dir, `spool-${base[0]}`), '--workers', '1'], dir);
      expect(none.code, `${base[0]} without a key: ${none.stderr}`).to.equal(2);
      expect(none.stderr).to.match(/--key VKEY \(or --log-key VKEY\)/);
    }
  });

  it('trailmark --version prints the version', async () => {
    const r = await cli(['--version'], dir);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(/^\d+\.\d+\.\d+\n$/);
  });
});
