/**
 * The stream's end (contract section 4): a signed `end` vouches for every event before it, so nothing may be
 * sealed after it in the same stream, even an event appended while the end is still being written.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventStream, loadStreamKey, Spool, SpoolError } from '../src/index.js';

describe('EventStream end', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tm-stream-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses an event appended while the end is being written, and the end stays the last record', async () => {
    const key = await loadStreamKey(join(dir, 'stream.key'), { create: true, name: 'trailmark-stream/test' });
    const spool = await Spool.open({ dir: join(dir, 'spool') });
    const stream = await EventStream.open(spool, { key, proxy: 'unit', heartbeatMs: 0 });
    const ending = stream.end();
    // a response event handed over in the same turn, before the end is durable
    let refused: unknown = null;
    await stream
      .append({ stage: 'response', request_id: 'r-late', outcome: { status: 200 } })
      .catch((e: unknown) => (refused = e));
    await ending;
    expect(refused).to.be.instanceOf(SpoolError);
    expect((refused as SpoolError).code).to.equal('closed');
    const stages: string[] = [];
    for await (const r of spool.records()) stages.push(JSON.parse(r.data.toString('utf8')).stage);
    expect(stages).to.deep.equal(['start', 'end']);
    await spool.close();
  });
});
