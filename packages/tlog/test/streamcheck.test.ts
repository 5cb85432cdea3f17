import { expect } from 'chai';
import { StreamChecker, type StreamCheckerState } from '../src/index.js';
import { StreamWriter, exchange, leafHashOf, type StreamEvent } from '../../../test/lib/streams.js';

/** Feeds events in order (leaf index = position), resuming from saved JSON halfway to show state round-trips. */
function check(events: StreamEvent[], now = Date.now()) {
  let c = new StreamChecker();
  const findings = [];
  for (let i = 0; i < events.length; i++) {
    if (i === Math.floor(events.length / 2))
      c = new StreamChecker(JSON.parse(JSON.stringify(c.state())) as StreamCheckerState);
    findings.push(...c.add(i, leafHashOf(events[i]), events[i], now));
  }
  return { c, findings, streams: c.streams() };
}

describe('StreamChecker (stream completeness, contract sections 4 and 6)', () => {
  it('a clean stream that ended is complete; one still running is reported, not failed', () => {
    const w = new StreamWriter('s1');
    const evs = [w.next('start'), ...exchange(w, 'r1'), w.next('heartbeat'), ...exchange(w, 'r2'), w.next('end')];
    const { findings, streams } = check(evs);
    expect(findings).to.deep.equal([]);
    expect(streams).to.have.length(1);
    expect(streams[0]).to.deep.include({
      id: 's1',
      proxy: 'proxy-a',
      first_seq: 0,
      last_seq: 6,
      events: 7,
      holes: [],
      duplicates: [],
      broken: [],
      ended: true,
      failed: false,
      status: 'complete',
      open_requests: [],
    });
    expect(streams[0].last_heartbeat!.seq).to.equal(3);
    const r = new StreamWriter('s2');
    const running = check([r.next('start'), r.next('request', { request_id: 'q' }), r.next('heartbeat')]).streams[0];
    expect(running).to.deep.include({ failed: false, ended: false, open_requests: ['q'] });
    expect(running.status).to.equal('no end yet; 1 request(s) without a response');
  });

  it('a dropped event is a hole naming the seqs; a stream first seen past seq 0 misses its start', () => {
    const w = new StreamWriter('s');
    const evs = [w.next('start'), ...exchange(w, 'a'), ...exchange(w, 'b'), w.next('heartbeat')];
    const { findings, streams } = check([evs[0], evs[1], evs[4], evs[5]]);
    expect(findings.map((f) => [f.kind, f.seqs])).to.deep.equal([['hole', [2, 3]]]);
    expect(streams[0]).to.deep.include({ holes: [[2, 3]], failed: true });
    expect(streams[0].status).to.match(/^missing seq 2-3/);
    expect(check(evs.slice(2)).streams[0].holes).to.deep.equal([[0, 1]]);
  });

  it('an injected event shows as a duplicate seq or a broken prev', () => {
    const w = new StreamWriter('s');
    const evs = [w.next('start'), w.next('request', { request_id: 'a' })];
    const injected = w.build('request', { request_id: 'evil' }, 1, leafHashOf(evs[0])); // a second seq 1, well linked
    evs.push(injected, w.next('response', { request_id: 'a' }));
    const dup = check(evs);
    expect(dup.findings.map((f) => [f.kind, f.seqs[0]])).to.deep.equal([['duplicate', 1]]);
    expect(dup.streams[0]).to.deep.include({ duplicates: [1], broken: [], failed: true });

    const v = new StreamWriter('t');
    const good = [v.next('start'), v.next('request', { request_id: 'a' })];
    const wrongPrev = v.build('response', { request_id: 'a' }, 2, leafHashOf(good[0]));
    const broken = check([...good, wrongPrev]);
    expect(broken.findings.map((f) => [f.kind, f.seqs[0]])).to.deep.equal([['broken', 2]]);
    expect(broken.streams[0].status).to.equal('prev does not match at seq 2; no end yet');
  });

  it('a heartbeat or end signed by another key is a bad signature; a good one vouches for liveness', () => {
    const w = new StreamWriter('s');
    const evs = [w.next('start'), w.next('heartbeat')];
    const forged = w.build('heartbeat', {}, w.seq, w.prev, StreamWriter.forger());
    const { findings, streams } = check([...evs, forged]);
    expect(findings.map((f) => [f.kind, f.seqs[0]])).to.deep.equal([['bad-signature', 2]]);
    expect(streams[0]).to.deep.include({ bad_signatures: [2], failed: true });
    expect(streams[0].last_heartbeat!.seq).to.equal(1);
    // the signature covers the position: a genuine signature moved to another seq does not verify
    const moved = { ...evs[1], stream: { ...evs[1].stream, seq: 5 } };
    expect(check([evs[0], evs[1], moved]).streams[0].bad_signatures).to.deep.equal([5]);
  });

  it('stalled: a stream with neither heartbeat nor end for longer than the threshold', () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const w = new StreamWriter('s', 'p', () => new Date(t));
    const evs = [w.next('start')];
    t += 60_000;
    evs.push(w.next('heartbeat'));
    const { c } = check(evs, t);
    expect(c.stalled(t + 179_000, 180_000)).to.deep.equal([]);
    expect(c.stalled(t + 181_000, 180_000).map((s) => s.id)).to.deep.equal(['s']);
    t += 1000;
    c.add(2, leafHashOf(evs[1]), w.next('end'), t);
    expect(c.stalled(t + 10_000_000, 180_000)).to.deep.equal([]);
  });

  it('ignores entries without a stream, and counts malformed stream members', () => {
    const c = new StreamChecker();
    expect(c.add(0, 'x', { schema: 'trailmark.access/v1', stage: 'request' })).to.deep.equal([]);
    expect(c.add(1, 'x', { stream: { id: 's', seq: -1, prev: null } })).to.deep.equal([]);
    expect(c.streams()).to.deep.equal([]);
    expect(c.malformedEvents()).to.deep.equal(['1']);
  });
});
