/**
 * `trailmark audit` checks every proxy stream (contract sections 4 and 6), on a real log: events submitted
 * straight to it with a real stream key; a dropped event, a second event with one seq, a wrong prev and a
 * forged heartbeat signature each make the audit exit 1 naming the stream and the seqs; clean streams pass.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, startTestLog, tmp, type TestLog } from './auditor-helpers.js';
import { StreamWriter, exchange, leafHashOf, type StreamEvent } from '../../../test/lib/streams.js';

async function submit(log: TestLog, events: object[]): Promise<void> {
  const res = await fetch(`${log.server.url}/v1/add-entries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(events),
  });
  if (!res.ok) throw new Error(`add-entries: ${res.status} ${await res.text()}`);
}

/** A whole clean stream: start, two exchanges around a heartbeat, end. */
function cleanStream(w: StreamWriter): StreamEvent[] {
  return [
    w.next('start'),
    ...exchange(w, `${w.id}-r1`),
    w.next('heartbeat'),
    ...exchange(w, `${w.id}-r2`),
    w.next('end'),
  ];
}

describe('trailmark audit: stream completeness (real log server)', function () {
  this.timeout(60_000);
  const dir = tmp('tm-audit-streams-');
  const logs: TestLog[] = [];
  after(async () => {
    for (const l of logs) await l.close();
  });
  async function newLog(): Promise<TestLog> {
    const l = await startTestLog();
    logs.push(l);
    return l;
  }
  const audit = (log: TestLog, ...extra: string[]) =>
    cli(['audit', '--log', log.server.url, '--key', log.server.vkey, ...extra], dir);

  it('clean streams exit 0, one line a stream; a running stream and open requests are reported, not failed', async () => {
    const log = await newLog();
    const done = new StreamWriter('done', 'proxy-a');
    const run = new StreamWriter('run', 'proxy-b');
    await submit(log, [
      ...cleanStream(done),
      run.next('start'),
      run.next('request', { request_id: 'waiting' }),
      run.next('heartbeat'),
    ]);
    const r = await audit(log);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).to.have.length(3);
    expect(lines[1]).to.match(
      /^stream done \(proxy proxy-a\): seq 0\.\.6, 7 events, last heartbeat \S+Z \(seq 3\): complete$/,
    );
    expect(lines[2]).to.equal(
      `stream run (proxy proxy-b): seq 0..2, 3 events, last heartbeat ${lines[2].match(/heartbeat (\S+)/)![1]} (seq 2): no end yet; 1 request(s) without a response`,
    );
    const j = JSON.parse((await audit(log, '--json')).stdout);
    expect(j.ok).to.equal(true);
    expect(
      j.streams.map((s: { id: string; ended: boolean; holes: unknown[] }) => [s.id, s.ended, s.holes]),
    ).to.deep.equal([
      ['done', true, []],
      ['run', false, []],
    ]);
    expect(j.streams[0]).to.include({ first_seq: 0, last_seq: 6, events: 7, proxy: 'proxy-a' });
  });

  it('a dropped event, a duplicate seq, a wrong prev and a forged heartbeat: exit 1 naming each stream and seq', async () => {
    const log = await newLog();
    const ok = new StreamWriter('ok');
    const hole = new StreamWriter('hole');
    const dup = new StreamWriter('dup');
    const prev = new StreamWriter('prev');
    const forged = new StreamWriter('forged');
    const holeEvents = cleanStream(hole);
    const dupEvents = [dup.next('start'), dup.next('request', { request_id: 'd1' })];
    const injected = dup.build('request', { request_id: 'injected' }, 1, leafHashOf(dupEvents[0]));
    const prevEvents = [prev.next('start'), prev.next('request', { request_id: 'p1' })];
    const mislinked = prev.build('response', { request_id: 'p1' }, 2, leafHashOf(prevEvents[0]));
    const forgedEvents = [forged.next('start'), forged.build('heartbeat', {}, 1, forged.prev, StreamWriter.forger())];
    await submit(log, [
      ...cleanStream(ok),
      ...holeEvents.filter((e) => e.stream.seq !== 3 && e.stream.seq !== 4),
      ...dupEvents,
      injected,
      dup.next('response', { request_id: 'd1' }),
      dup.next('end'),
      ...prevEvents,
      mislinked,
      ...forgedEvents,
    ]);
    const r = await audit(log);
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expect(r.stdout).to.match(/^stream ok \(proxy proxy-a\): .*: complete$/m);
    expect(r.stderr).to.match(/^trailmark: stream check failed: /);
    expect(r.stderr).to.contain('stream hole (proxy proxy-a): missing seq 3-4');
    expect(r.stderr).to.contain('stream dup (proxy proxy-a): two events with seq 1');
    expect(r.stderr).to.contain('stream prev (proxy proxy-a): prev does not match at seq 2');
    expect(r.stderr).to.contain('stream forged (proxy proxy-a): bad signature at seq 1');
    expect(r.stderr).to.not.contain('stream ok');
    const j = await audit(log, '--json');
    expect(j.code).to.equal(1);
    const doc = JSON.parse(j.stdout);
    expect(doc).to.include({ ok: false, exit: 1 });
    const by = new Map(doc.streams.map((s: { id: string }) => [s.id, s]));
    expect(by.get('hole')).to.deep.include({ holes: [[3, 4]], duplicates: [], broken: [], ended: true });
    expect(by.get('dup')).to.deep.include({ duplicates: [1] });
    expect(by.get('prev')).to.deep.include({ broken: [2] });
    expect(by.get('forged')).to.deep.include({ bad_signatures: [1] });
  });

  it('with --state, streams are checked incrementally: a hole in what is new is caught, and stays reported', async () => {
    const log = await newLog();
    const w = new StreamWriter('inc');
    await submit(log, [w.next('start'), ...exchange(w, 'a')]);
    const state = join(dir, 'inc.state');
    expect((await audit(log, '--state', state)).code).to.equal(0);
    const saved = JSON.parse(readFileSync(state, 'utf8'));
    expect(saved.streams.streams[0]).to.include({ id: 'inc', last_seq: 2 });
    // new entries only: another stream's clean events, then this stream resumes after a dropped event
    w.next('heartbeat'); // written by the proxy, never logged
    await submit(log, [...cleanStream(new StreamWriter('other')), ...exchange(w, 'b')]);
    const r = await audit(log, '--state', state, '--json');
    expect(r.code, r.stdout).to.equal(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.from_size).to.equal(3);
    expect(doc.streams.find((s: { id: string }) => s.id === 'inc')).to.deep.include({ holes: [[3, 3]], events: 5 });
    const again = await audit(log, '--state', state);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.contain('stream inc (proxy proxy-a): missing seq 3');
  });
});
