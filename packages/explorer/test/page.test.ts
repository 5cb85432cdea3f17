import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { canonicalJson, generateKey, hashLeaf, parseVkey, verifyTlogProof } from '@trailmark/tlog';
import { launchChromium, type Chromium } from '../../../test/lib/chromium.js';
import type { RunningExplorer } from '../src/index.js';
import { startRelay, startTrail, type Trail } from './fixture.js';

/** TRAILMARK_SCREENSHOTS=DIR saves the page's screenshots there (docs/ holds the ones the docs show). */
const SHOTS = process.env.TRAILMARK_SCREENSHOTS;

type Ev = { leaf_index: number; entry: Record<string, any> };

/** The rows of the results table once every one is marked: [leaf index, data-verified]. */
async function markedRows(page: Page): Promise<[number, string][]> {
  await page.waitForFunction(
    () => {
      const rows = [...document.querySelectorAll('#results tbody tr')];
      return (
        document.body.dataset.ready === 'true' && rows.length > 0 && rows.every((r) => r.hasAttribute('data-verified'))
      );
    },
    undefined,
    { timeout: 30_000 },
  );
  return page.$$eval('#results tbody tr', (rows) =>
    rows.map(
      (r) => [Number((r as HTMLElement).dataset.leafIndex), (r as HTMLElement).dataset.verified!] as [number, string],
    ),
  );
}

describe('explorer page in headless Chromium (verifies every result against the log)', function () {
  this.timeout(120_000);
  let trail: Trail;
  let x: RunningExplorer;
  let browser: Chromium;
  const closers: (() => Promise<void>)[] = [];
  let alice: Ev[];

  before(async () => {
    trail = await startTrail();
    let logUrl = trail.log.url;
    const cors = (await fetch(`${logUrl}/checkpoint`)).headers.get('access-control-allow-origin');
    if (cors !== '*') {
      // contract section 3 has the log send it; until this log server does, a relay adds it so the page
      // (served from the explorer's origin) may read the log
      console.log('      (note: the log server sends no Access-Control-Allow-Origin; a relay adds it for this test)');
      const relay = await startRelay(logUrl, { headers: { 'access-control-allow-origin': '*' } });
      closers.push(relay.close);
      logUrl = relay.url;
    }
    x = await trail.startExplorer({ log: logUrl });
    await x.indexer.waitForIndexed(trail.size);
    alice = ((await (await fetch(`${x.url}/api/events?actor=alice`)).json()) as { events: Ev[] }).events;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    for (const c of closers) await c();
    await trail?.close();
  });

  it('loads /?actor=alice: the right rows appear, each verified', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${x.url}/?actor=alice`);
    const rows = await markedRows(page);
    expect(alice.length).to.be.greaterThan(2);
    expect(rows).to.deep.equal(alice.map((e) => [e.leaf_index, 'true']));
    expect(await page.inputValue('input[name=actor]')).to.equal('alice');
    expect(await page.textContent('#vkey')).to.contain(parseVkey(trail.vkey).name);
    expect(await page.textContent('#cpstate')).to.contain('verified');
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'explorer-results.png'), fullPage: true });
    await page.close();
  });

  it('marks the one event a relay in front of the explorer altered as failed', async () => {
    const victim = alice.find((e) => e.entry.action?.path === '/db/rows')!;
    const relay = await startRelay(x.url, {
      rewrite: (p, body) =>
        p.startsWith('/api/events')
          ? Buffer.from(body.toString().replace('"path":"/db/rows"', '"path":"/db/archive"'))
          : undefined,
    });
    closers.push(relay.close);
    const page = await browser.context.newPage();
    await page.goto(`${relay.url}/?actor=alice`);
    const rows = await markedRows(page);
    expect(rows).to.deep.equal(alice.map((e) => [e.leaf_index, e === victim ? 'false' : 'true']));
    expect(await page.textContent(`[data-leaf-index="${victim.leaf_index}"] td:nth-child(8)`)).to.equal('/db/archive');
    expect(await page.getAttribute(`[data-leaf-index="${victim.leaf_index}"] td.mark`, 'title')).to.match(
      /does not hold this entry/,
    );
    await page.close();
  });

  it('fails every result when pinned (#key=) to a key the log does not sign with', async () => {
    const other = generateKey(parseVkey(trail.vkey).name).vkey;
    const page = await browser.context.newPage();
    await page.goto(`${x.url}/?actor=alice#key=${encodeURIComponent(other)}`);
    const rows = await markedRows(page);
    expect(rows.map((r) => r[1])).to.deep.equal(alice.map(() => 'false'));
    expect(await page.textContent('#pinned')).to.contain('pinned');
    await page.close();
  });

  it('shows an event with its response, stream and receipt, and downloads a receipt that verifies offline', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${x.url}/?protocol=postgres`);
    await markedRows(page);
    const pg = (
      (await (await fetch(`${x.url}/api/events?protocol=postgres&status=ok`)).json()) as {
        events: (Ev & { response: Ev })[];
      }
    ).events[0];
    await page.click(`[data-leaf-index="${pg.leaf_index}"]`);
    await page.waitForSelector('#detail[data-verified="true"]');
    expect(await page.textContent('#d-request')).to.contain('SELECT name FROM invoices');
    expect(await page.textContent('#d-response')).to.contain('SELECT 3');
    expect(await page.textContent('#d-stream')).to.contain('pg-proxy-1/0');
    expect(await page.textContent('#d-receipt')).to.match(/^c2sp\.org\/tlog-proof@v1\n/);
    if (SHOTS) {
      await page.screenshot({ path: join(SHOTS, 'explorer-detail.png'), fullPage: true });
      await page.locator('#chart-box').screenshot({ path: join(SHOTS, 'explorer-chart.png') });
    }
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#d-download')]);
    expect(download.suggestedFilename()).to.equal(`event-${pg.leaf_index}.tlog-proof`);
    const receipt = await readFile(await download.path(), 'utf8');
    const v = verifyTlogProof(receipt, hashLeaf(canonicalJson(pg.entry)), parseVkey(trail.vkey));
    expect(v.index).to.equal(BigInt(pg.leaf_index));
    // the chart has the two PostgreSQL requests, the denied one marked
    expect(await page.getAttribute('#chart', 'data-total')).to.equal('2');
    await page.close();
  });
});
