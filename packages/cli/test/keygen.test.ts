import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KEY_TYPE_COSIGNATURE, KEY_TYPE_ED25519, parsePrivateKey, parseVkey, vkeyOf } from '@trailmark/tlog';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function run(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('trailmark keygen', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'trailmark-keygen-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a 0600 private key and FILE.pub, prints the vkey', () => {
    const r = run(['keygen', '--name', 'example.com/log', '--out', 'log.key'], dir);
    expect(r.code, r.stderr).to.equal(0);
    const vkey = r.stdout.trim();
    expect(r.stdout).to.equal(vkey + '\n');
    expect(readFileSync(join(dir, 'log.key.pub'), 'utf8')).to.equal(vkey + '\n');
    expect(statSync(join(dir, 'log.key')).mode & 0o777).to.equal(0o600);
    const signer = parsePrivateKey(readFileSync(join(dir, 'log.key'), 'utf8'));
    expect(signer.type).to.equal(KEY_TYPE_ED25519);
    expect(signer.name).to.equal('example.com/log');
    expect(vkeyOf(signer)).to.equal(vkey);
    expect(readFileSync(join(dir, 'log.key'), 'utf8')).to.match(
      /^PRIVATE\+KEY\+example\.com\/log\+[0-9a-f]{8}\+\S+\n$/,
    );
  });

  it('--witness makes a type 0x04 key; --json gives machine output', () => {
    const r = run(['--json', 'keygen', '--name', 'witness.example/w1', '--witness', '--out', 'w.key'], dir);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).to.equal(true);
    expect(parseVkey(out.vkey).type).to.equal(KEY_TYPE_COSIGNATURE);
    expect(parsePrivateKey(readFileSync(join(dir, 'w.key'), 'utf8')).type).to.equal(KEY_TYPE_COSIGNATURE);
  });

  it('refuses to overwrite an existing key or .pub file (exit 2)', () => {
    writeFileSync(join(dir, 'a.key'), 'precious');
    let r = run(['keygen', '--name', 'n', '--out', 'a.key'], dir);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/already exists/);
    expect(readFileSync(join(dir, 'a.key'), 'utf8')).to.equal('precious');
    writeFileSync(join(dir, 'b.key.pub'), 'precious');
    r = run(['keygen', '--name', 'n', '--out', 'b.key'], dir);
    expect(r.code).to.equal(2);
    expect(() => statSync(join(dir, 'b.key'))).to.throw();
  });

  it('usage errors exit 2: invalid name, missing options, unwritable path', () => {
    expect(run(['keygen', '--name', 'a b', '--out', 'x.key'], dir).code).to.equal(2);
    expect(run(['keygen', '--name', 'a+b', '--out', 'x.key'], dir).code).to.equal(2);
    expect(run(['keygen', '--out', 'x.key'], dir).code).to.equal(2);
    expect(run(['keygen', '--name', 'n'], dir).code).to.equal(2);
    const r = run(['keygen', '--name', 'n', '--out', join(dir, 'no', 'such', 'dir', 'k')], dir);
    expect(r.code).to.equal(2);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
  });
});
