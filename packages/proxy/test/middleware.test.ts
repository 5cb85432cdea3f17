import { expect } from 'chai';
import express from 'express';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { AccessTrail } from '@trailmark/recorder';
import { accessTrailMiddleware, TokenStore } from '../src/index.js';
import { accessCount, close, logEntries, RestartableLog, tempDir, waitFor } from './helpers.js';

describe('express middleware (real express app, real log)', function () {
  this.timeout(30_000);
  const tmp = tempDir('tm-mw-');
  const log = new RestartableLog(join(tmp.dir, 'log'));
  let trail: AccessTrail;
  let server: Server;
  let url: string;
  let handled = 0;

  before(async () => {
    await log.start();
    trail = await AccessTrail.open({ spoolDir: join(tmp.dir, 'spool'), log: { url: log.url, vkey: log.vkey } });
    const app = express();
    app.use(
      accessTrailMiddleware({
        trail,
        target: 'https://billing.internal',
        name: 'billing',
        tokens: new TokenStore({ 'carol-secret-999': { id: 'carol', roles: ['ops'] } }),
        redactQuery: ['card'],
      }),
    );
    app.get('/invoices/:id', (req, res) => {
      handled++;
      res.json({ invoice: req.params.id });
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await close(server);
    await trail.close();
    await log.stop();
    tmp.cleanup();
  });

  it('records request and response events around the handler, and refuses unauthenticated calls', async () => {
    const ok = await fetch(`${url}/invoices/42?card=4111111111111111`, {
      headers: { authorization: 'Bearer carol-secret-999' },
    });
    const okBody = await ok.text();
    expect(ok.status).to.equal(200);
    const denied = await fetch(`${url}/invoices/43`);
    expect(denied.status).to.equal(401);
    expect(handled).to.equal(1);
    await waitFor('four events in the log', async () => (await accessCount(log.url)) === 4);
    const entries = await logEntries(log.url);
    for (const e of entries) {
      expect(e.raw).to.not.include('carol-secret-999');
      expect(e.raw).to.not.include('4111111111111111');
    }
    const evs = entries.map((e) => e.event);
    const id = ok.headers.get('trailmark-request-id');
    const req = evs.find((e) => e.stage === 'request' && e.request_id === id)!;
    expect(req.actor.id).to.equal('carol');
    expect(req.proxy).to.equal('billing');
    expect(req.action).to.deep.equal({
      protocol: 'http',
      method: 'GET',
      target: 'https://billing.internal',
      path: '/invoices/42',
      query: 'card=REDACTED',
    });
    const res = evs.find((e) => e.stage === 'response' && e.request_id === id)!;
    expect(res.outcome).to.deep.include({ status: 200, bytes: Buffer.byteLength(okBody), request_bytes: 0 });
    const did = denied.headers.get('trailmark-request-id');
    expect(evs.find((e) => e.stage === 'request' && e.request_id === did)!.actor.id).to.equal(null);
    expect(evs.find((e) => e.stage === 'response' && e.request_id === did)!.outcome.status).to.equal(401);
  });

  it('strict mode: answers 503 without running the handler when the log does not acknowledge', async () => {
    const t2 = tempDir('tm-mw-strict-');
    const strict = await AccessTrail.open({
      spoolDir: t2.dir,
      log: { url: 'http://127.0.0.1:9', vkey: log.vkey, attempts: 2, backoffBaseMs: 5 },
      mode: 'strict',
      strictDeadlineMs: 500,
    });
    const app = express();
    let ran = 0;
    app.use(accessTrailMiddleware({ trail: strict, target: 'https://billing.internal', onError: () => {} }));
    app.get('/x', (_req, res) => {
      ran++;
      res.send('ok');
    });
    const s2 = app.listen(0, '127.0.0.1');
    await new Promise((r) => s2.once('listening', r));
    try {
      const r = await fetch(`http://127.0.0.1:${(s2.address() as { port: number }).port}/x`);
      expect(r.status).to.equal(503);
      expect(ran).to.equal(0);
      // logged locally: the request event (and the 503 response event) wait in the spool for the log
      await waitFor('two events spooled', () => strict.spool.depth === 2);
    } finally {
      await close(s2);
      await strict.close();
      t2.cleanup();
    }
  });
});
