import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '@trailmark/tlog';
import {
  ConfigError,
  LogServerError,
  LogStateError,
  parseListen,
  readSubmitTokens,
  startLogServer,
} from '../src/index.js';

/** What `f` rejected with; fails the test when it resolves. */
async function rejection(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  return expect.fail('expected a rejection');
}

// `trailmark serve` refuses to start (exit 2) on any LogServerError: a wrong configuration is a ConfigError, not
// a store that cannot be served, and each says which part is wrong by its code
describe('log-server errors', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tm-errors-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('an unreadable submit tokens file is a ConfigError that keeps the file system error as its cause', async () => {
    const e = await rejection(() => readSubmitTokens(join(dir, 'missing')));
    expect(e).to.be.instanceOf(ConfigError).and.instanceOf(LogServerError);
    expect(e).not.to.be.instanceOf(LogStateError);
    expect((e as ConfigError).code).to.equal('submit-tokens');
    expect(((e as ConfigError).cause as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });

  it('a malformed --listen is a ConfigError', async () => {
    const e = await rejection(() => parseListen('localhost'));
    expect(e).to.be.instanceOf(ConfigError);
    expect((e as ConfigError).code).to.equal('listen');
  });

  it('a policy that does not list the log is a ConfigError, and nothing is created', async () => {
    const policy = join(dir, 'policy');
    writeFileSync(policy, 'log example.com/other+00000000+AQ==\n');
    const data = join(dir, 'data');
    const e = await rejection(() => startLogServer({ dataDir: data, create: true, policyFile: policy }));
    expect(e).to.be.instanceOf(ConfigError);
    expect((e as ConfigError).code).to.equal('policy');
    expect(existsSync(data)).to.equal(false);
  });

  it('a data directory of another key is a LogStateError naming the key expected and the key found', async () => {
    const data = join(dir, 'data');
    const log = await startLogServer({ dataDir: data, create: true });
    await log.close();
    const first = log.vkey;
    const other = generateKey('localhost/trailmark');
    writeFileSync(join(data, 'log.key'), other.privateKey + '\n');
    const e = await rejection(() => startLogServer({ dataDir: data }));
    expect(e).to.be.instanceOf(LogStateError);
    expect((e as LogStateError).code).to.equal('key-mismatch');
    expect((e as LogStateError).expected).to.equal(other.vkey);
    expect((e as LogStateError).found).to.equal(first);
  });
});
