import { expect } from 'chai';
import { join } from 'node:path';
import { canonicalJson, b64encode, hashLeaf } from '@trailmark/tlog';
import { AccessTrail, requestEvent } from '../src/index.js';
import { logEntries, RestartableLog, startRelay, tempDir, treeSize, waitFor } from '../../proxy/test/helpers.js';

describe('shipper: nothing leaves the spool without a verified receipt', function () {
  this.timeout(30_000);
  const tmp = tempDir('tm-shipper-');
  const log = new RestartableLog(join(tmp.dir, 'log'));
  before(() => log.start());
  after(async () => {
    await log.stop();
    tmp.cleanup();
  });

  it('keeps a batch whose receipt lies, counts it, and delivers it exactly once when the receipts verify', async () => {
    let lie = true;
    const bogus = b64encode(hashLeaf(canonicalJson({ not: 'ours' })));
    const relay = await startRelay(log.url, {
      rewrite: (path, body) => {
        if (lie && path === '/v1/add-entries') body.entries[0].leaf_hash = bogus;
        return body;
      },
    });
    const trail = await AccessTrail.open({
      spoolDir: join(tmp.dir, 'spool'),
      log: { url: relay.url, vkey: log.vkey },
      shipper: { retryBaseMs: 20, retryMaxMs: 50, lingerMs: 0 },
    });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const ev = requestEvent({
          requestId: `req-${i}`,
          proxy: 'test',
          actor: { id: 'alice', roles: [], ip: '127.0.0.1', user_agent: null },
          action: { protocol: 'http', method: 'GET', target: 'http://upstream', path: `/x/${i}`, query: '' },
          decision: { allowed: true, reason: 'test' },
        });
        ids.push(ev.id);
        await trail.before(ev);
      }
      // the log accepts every batch (its tree grows) but the shipper rejects every receipt
      // twenty request events after the stream's start event
      await waitFor(
        'all twenty sent, receipts refused',
        async () => trail.shipper.stats.receiptFailures >= 2 && (await treeSize(log.url)) === 21,
      );
      // the log has the entries (it accepted them), but the spool keeps them: the receipts did not verify
      expect(trail.spool.depth).to.equal(21);
      expect(await treeSize(log.url)).to.equal(21);
      const metrics = await trail.registry.metrics();
      expect(Number(/^trailmark_log_receipt_failures_total (\d+)$/m.exec(metrics)![1])).to.be.at.least(2);
      lie = false;
      await trail.shipper.drained();
      // resends were answered with the original indexes: each event once in the log
      expect(await treeSize(log.url)).to.equal(21);
      const inLog = (await logEntries(log.url)).filter((e) => e.event.stage === 'request').map((e) => e.event.id);
      expect(inLog.sort()).to.deep.equal([...ids].sort());
      expect(trail.shipper.stats.delivered).to.equal(21);
    } finally {
      await trail.close();
      await relay.close();
    }
  });
});
