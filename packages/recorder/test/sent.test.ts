/**
 * The statuses sent, kept for the aborted response event of a request a crash cut short (contract section 4):
 * they survive the process, and the files take turns so they stay small without losing the newest ones.
 */
import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSentStatuses, SentStatuses } from '../src/sent.js';

describe('SentStatuses', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tm-sent-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads back what was noted across a turn of files, bounded in size, and starts afresh', async () => {
    const sent = new SentStatuses(dir);
    // more than two turns (1 MiB each) of lines: the first ones go, the last turn's stay
    const n = 80_000;
    for (let i = 0; i < n; i++) sent.note(`req-${String(i).padStart(30, '0')}`, 200 + (i % 300));
    sent.close();
    const total = readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
    expect(total).to.be.at.most(2 << 20);
    const got = await readSentStatuses(dir);
    const last = n - 1;
    expect(got.get(`req-${String(last).padStart(30, '0')}`)).to.equal(200 + (last % 300));
    expect(got.get(`req-${String(30_000).padStart(30, '0')}`)).to.equal(200 + (30_000 % 300));
    expect(got.has(`req-${String(0).padStart(30, '0')}`)).to.equal(false);
    // the next start has used them: a new SentStatuses clears both files
    new SentStatuses(dir).close();
    expect((await readSentStatuses(dir)).size).to.equal(0);
  });
});
