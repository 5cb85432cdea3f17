import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { createLogger } from '../src/index.js';

function capture(tty: boolean): { stream: PassThrough & { isTTY?: boolean }; lines(): string[] } {
  const stream: PassThrough & { isTTY?: boolean } = new PassThrough();
  if (tty) stream.isTTY = true;
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, lines: () => text.split('\n').filter(Boolean) };
}

describe('createLogger (the one daemon logging style)', () => {
  it('writes one JSON object a line by default: time, level, msg, then the base and record fields', () => {
    const c = capture(false);
    const log = createLogger(c.stream, { component: 'monitor' });
    log.warn('log http://x: could not fetch', { check: 'log http://x', size: 12n, error: new Error('boom') });
    log.error('ALERT split-view e.example', { alert: 'split-view' });
    const [a, b] = c.lines().map((l) => JSON.parse(l));
    expect(Object.keys(a).slice(0, 3)).to.deep.equal(['time', 'level', 'msg']);
    expect(a).to.deep.include({
      level: 'warn',
      component: 'monitor',
      size: '12',
      error: { name: 'Error', message: 'boom' },
    });
    expect(Number.isNaN(Date.parse(a.time))).to.equal(false);
    expect(b).to.include({ level: 'error', msg: 'ALERT split-view e.example', alert: 'split-view' });
  });

  it('writes readable lines on a terminal, one record a line even when the message holds control characters', () => {
    const c = capture(true);
    const log = createLogger(c.stream, { component: 'log' });
    log.info('log serving', { url: 'http://127.0.0.1:8080', origin: 'example.com/log', note: 'two words' });
    log.error('bad\nline\u001b[31m');
    const lines = c.lines();
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(
      /^\d{4}-\d\d-\d\dT\S+Z INFO {2}log serving component=log url=http:\/\/127\.0\.0\.1:8080 origin=example\.com\/log note="two words"$/,
    );
    expect(lines[1]).to.match(/ERROR bad line \[31m component=log$/);
    // an explicit format wins over the terminal check
    const j = capture(true);
    createLogger(j.stream, {}, 'json').info('x');
    expect(JSON.parse(j.lines()[0])).to.include({ msg: 'x' });
  });
});
