import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpTransport, TransportError, backoffMs, DEFAULT_RETRY, retryAfterMs } from '../src/index.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A real server on a kernel-chosen port answering with the handlers in turn (the last one repeats). */
async function serve(...handlers: Handler[]): Promise<{ url: string; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const srv = http.createServer((req, res) => handlers[Math.min(hits++, handlers.length - 1)](req, res));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return {
    url,
    hits: () => hits,
    close: () => new Promise((r) => (srv.closeAllConnections(), srv.close(() => r()))),
  };
}

const answer =
  (status: number, body = '', headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

/** The TransportError `p` rejects with (fails the test when it resolves or rejects with anything else). */
const failure = (p: Promise<unknown>): Promise<TransportError> =>
  p.then(
    () => expect.fail('expected a TransportError'),
    (e: unknown) => (expect(e).to.be.instanceOf(TransportError), e as TransportError),
  );

const fast = { baseMs: 1, maxMs: 5 };

describe('HttpTransport (the one HTTP client)', () => {
  it('retries 429, 500, 502, 503, 504 and a dropped connection, then answers', async () => {
    const drop: Handler = (req) => req.socket.destroy();
    const s = await serve(answer(429), answer(500), answer(502), drop, answer(503), answer(504), answer(200, 'ok'));
    const t = new HttpTransport(s.url, { retry: { ...fast, attempts: 7 } });
    try {
      const res = await t.request('/x');
      expect(res.body.toString()).to.equal('ok');
      expect(s.hits()).to.equal(7);
      expect(t.stats.retries).to.equal(6);
    } finally {
      t.close();
      await s.close();
    }
  });

  it('does not retry a 404 and reports it as http-status with the status and the summary of the body', async () => {
    const s = await serve(answer(404, '{"error":"no such tile"}'), answer(200));
    const t = new HttpTransport(s.url, { retry: fast });
    try {
      const e = await failure(t.request('/tile/0/000'));
      expect([e.code, e.status, s.hits()]).to.deep.equal(['http-status', 404, 1]);
      expect(e.message).to.contain('no such tile');
    } finally {
      t.close();
      await s.close();
    }
  });

  it('gives up after the attempts with the last failure', async () => {
    const s = await serve(answer(503));
    const t = new HttpTransport(s.url, { retry: { ...fast, attempts: 3 } });
    try {
      const e = await failure(t.request('/'));
      expect([e.code, e.status, s.hits()]).to.deep.equal(['http-status', 503, 3]);
    } finally {
      t.close();
      await s.close();
    }
  });

  it('honours Retry-After in seconds and as an HTTP-date', async () => {
    const date = () => new Date(Date.now() + 1500).toUTCString();
    const s = await serve(
      answer(429, '', { 'retry-after': '1' }),
      (req, res) => answer(503, '', { 'retry-after': date() })(req, res),
      answer(200),
    );
    const t = new HttpTransport(s.url, { retry: fast });
    try {
      const t0 = Date.now();
      await t.request('/');
      // the jitter alone would wait at most 2 x 5 ms; an HTTP-date has one-second resolution, so >= 0.5 s
      expect(Date.now() - t0).to.be.at.least(1500);
    } finally {
      t.close();
      await s.close();
    }
    expect(retryAfterMs('120')).to.equal(120_000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:00 GMT'))).to.equal(60_000);
    expect(retryAfterMs('soon')).to.equal(undefined);
  });

  it('full jitter: waits are spread over [0, min(max, base * 2^n)), Retry-After wins when longer', () => {
    const p = { ...DEFAULT_RETRY, baseMs: 100, maxMs: 1000 };
    expect(backoffMs(p, 0, undefined, () => 0.999)).to.be.closeTo(99.9, 0.01);
    expect(backoffMs(p, 5, undefined, () => 0.5)).to.equal(500);
    expect(backoffMs(p, 0, undefined, () => 0)).to.equal(0);
    expect(backoffMs(p, 0, 3000, () => 0.5)).to.equal(3000);
    expect(backoffMs(p, 0, 60_000, () => 0.5)).to.equal(p.maxRetryAfterMs);
  });

  it('caps the answer: a longer body fails as too-large, declared or streamed, and is not retried; an error page is cut, not refused', async () => {
    const stream: Handler = (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(4096, 0x61);
      let n = 0;
      const more = () => {
        while (n++ < 1000) if (!res.write(chunk)) return void res.once('drain', more);
        res.end();
      };
      more();
    };
    const s = await serve(answer(200, 'x'.repeat(2000)), stream, answer(404, 'not here\n' + 'x'.repeat(5000)));
    const t = new HttpTransport(s.url, { maxBytes: 1000, retry: fast });
    try {
      expect((await failure(t.request('/a'))).message).to.match(
        /larger than 1000 bytes \((declared 2000, exceeds|more than) 1000/,
      );
      expect((await failure(t.request('/b'))).code).to.equal('too-large');
      expect(s.hits()).to.equal(2);
      // an error answer larger than the cap still says what it is
      const e = await failure(t.request('/c'));
      expect([e.code, e.status, e.message]).to.deep.equal(['http-status', 404, `GET ${s.url}/c: HTTP 404: not here`]);
    } finally {
      t.close();
      await s.close();
    }
  });

  it('times out a server that trickles, and aborts on the signal, also during a wait between attempts', async () => {
    const trickle: Handler = (_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 20);
      res.on('close', () => clearInterval(t));
    };
    const s = await serve(trickle);
    const t = new HttpTransport(s.url, { timeoutMs: 200, retry: { attempts: 1 } });
    try {
      const e = await failure(t.request('/'));
      expect(e.code).to.equal('timeout');
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      expect((await failure(t.request('/', { signal: ac.signal, timeoutMs: 5000 }))).code).to.equal('aborted');
    } finally {
      t.close();
      await s.close();
    }
    const s2 = await serve(answer(503, '', { 'retry-after': '5' }));
    const t2 = new HttpTransport(s2.url);
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const t0 = Date.now();
      const e = await failure(t2.request('/', { signal: ac.signal }));
      expect([e.code, e.status]).to.deep.equal(['http-status', 503]);
      expect(Date.now() - t0).to.be.below(4000);
    } finally {
      t2.close();
      await s2.close();
    }
  });

  it('a refused connection is a network error with the socket error as cause; a deadline ends the retries', async () => {
    const s = await serve(answer(200));
    const url = s.url;
    await s.close();
    const t = new HttpTransport(url, { retry: { baseMs: 200, maxMs: 200, attempts: 50, deadlineMs: 300 } });
    const t0 = Date.now();
    const e = await failure(t.request('/'));
    expect(e.code).to.equal('network');
    expect((e.cause as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
    expect(t.stats.requests).to.be.below(50);
    expect(Date.now() - t0).to.be.below(5000);
    t.close();
  });

  it('json() parses the answer, else bad-json; bad URLs are refused at construction', async () => {
    const s = await serve(answer(200, '{"a":1}'), answer(200, '<html>'));
    const t = new HttpTransport(s.url + '/prefix/');
    try {
      expect(await t.json('/x')).to.deep.equal({ a: 1 });
      expect((await failure(t.json('/x'))).code).to.equal('bad-json');
    } finally {
      t.close();
      await s.close();
    }
    expect(() => new HttpTransport('ftp://x')).to.throw(TransportError, /http or https/);
  });

  it('sends the method, body, headers, and the base path prefix', async () => {
    let seen = '';
    const s = await serve((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => {
        seen = `${req.method} ${req.url} ${req.headers.authorization} ${b}`;
        res.end('{}');
      });
    });
    const t = new HttpTransport(s.url + '/log', { headers: { authorization: 'Bearer a' } });
    try {
      await t.request('/v1/add-entries', { method: 'POST', body: '[1]' });
      expect(seen).to.equal('POST /log/v1/add-entries Bearer a [1]');
    } finally {
      t.close();
      await s.close();
    }
  });
});
