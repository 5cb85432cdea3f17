/**
 * The pg-proxy builds its statement events directly in canonical form (SessionEvents → EncodedEvent) and the
 * stream seals them by concatenation: what reaches the spool must be exactly canonicalJson of the same event,
 * or the log would store other bytes than the leaf hashes chain.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { EventStream, leafHash, loadStreamKey, Spool } from '@trailmark/recorder';
import { canonicalJson } from '@trailmark/tlog';
import { SessionEvents, statementText } from '../src/events.js';
import { tempDir } from '../../proxy/test/helpers.js';

type Ev = Record<string, any>;

async function sealed(build: (e: SessionEvents) => unknown[]): Promise<{ bytes: Buffer; ev: Ev }[]> {
  const tmp = tempDir('tm-pg-events-');
  try {
    const key = await loadStreamKey(join(tmp.dir, 'stream.key'), { create: true, name: 'trailmark-stream/test' });
    const spool = await Spool.open({ dir: join(tmp.dir, 'spool') });
    const stream = await EventStream.open(spool, { key, proxy: 'pg "edge" ü', heartbeatMs: 0 });
    const actor = { id: 'alice', roles: ['dba', 'rôle "x"'], ip: '127.0.0.1', user_agent: 'app\n\u0001\u2028😀' };
    const events = new SessionEvents('pg "edge" ü', actor, 'app-db', 'postgres://127.0.0.1:5432/app-db', 'sess-1');
    await Promise.all(build(events).map((e) => stream.append(e as never)));
    const out: { bytes: Buffer; ev: Ev }[] = [];
    for await (const r of spool.records()) out.push({ bytes: r.data, ev: JSON.parse(r.data.toString('utf8')) });
    await spool.close();
    return out;
  } finally {
    tmp.cleanup();
  }
}

describe('pg-proxy: events built in canonical form', () => {
  it('request and response events are byte for byte canonicalJson of themselves, chained in the stream', async () => {
    const allowed = { allowed: true, reason: 'allowed by role dba' };
    const refused = { allowed: false, reason: 'read-only session: "SET" is refused \\ ü' };
    const records = await sealed((e) => [
      e.request('r-1', { method: 'extended', statement: "SELECT $1::text, 'é\"\\\t😀'", params: 1 }, allowed),
      e.request('r-2', { method: 'simple', statement: '', params: 0 }, refused),
      e.response('r-1', { status: 'ok', command: 'SELECT 1', rows: 1, duration_ms: 0.123 }),
      e.response('r-2', {
        status: 'error',
        command: null,
        rows: null,
        duration_ms: 12,
        sqlstate: '25006',
        aborted: true,
      }),
      e.response('r-3', { status: 'error', command: 'tag "x" ü', rows: 0, duration_ms: 123456.789, sqlstate: null }),
      e.response('r-4', { status: 'ok', command: 'COPY 1000000', rows: 1e6, duration_ms: 0.001 }),
    ]);
    // start, then the six events
    expect(records.map((r) => r.ev.stage)).to.deep.equal([
      'start',
      'request',
      'request',
      'response',
      'response',
      'response',
      'response',
    ]);
    for (let i = 0; i < records.length; i++) {
      const { bytes, ev } = records[i];
      expect(Buffer.from(canonicalJson(ev)).equals(bytes), `record ${i} is canonical`).to.equal(true);
      expect(ev.stream.seq).to.equal(i);
      expect(ev.stream.prev).to.equal(i === 0 ? null : leafHash(records[i - 1].bytes).toString('base64'));
    }
    const [, r1, r2, s1, s2, s3, s4] = records.map((r) => r.ev);
    expect(r1).to.include({ schema: 'trailmark.access/v1', stage: 'request', request_id: 'r-1', proxy: 'pg "edge" ü' });
    expect(r1.action).to.deep.equal({
      protocol: 'postgres',
      method: 'extended',
      target: 'postgres://127.0.0.1:5432/app-db',
      database: 'app-db',
      session_id: 'sess-1',
      statement: "SELECT $1::text, 'é\"\\\t😀'",
      params: 1,
    });
    expect(r1.actor).to.deep.equal({
      id: 'alice',
      roles: ['dba', 'rôle "x"'],
      ip: '127.0.0.1',
      user_agent: 'app\n\u0001\u2028😀',
    });
    expect(r1.decision).to.deep.equal(allowed);
    expect(r2.decision).to.deep.equal(refused);
    expect(r1.id).to.match(/^[0-9a-f-]{36}$/);
    expect(r1.id).to.not.equal(r2.id);
    expect(r1.time).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(s1.action).to.deep.equal({ protocol: 'postgres', session_id: 'sess-1' });
    expect(s1.outcome).to.deep.equal({ status: 'ok', command: 'SELECT 1', rows: 1, duration_ms: 0.123 });
    expect(s2.outcome).to.include({ sqlstate: '25006', aborted: true, command: null });
    expect(s3.outcome).to.deep.equal({
      status: 'error',
      command: 'tag "x" ü',
      rows: 0,
      duration_ms: 123456.789,
      sqlstate: null,
    });
    expect(s4.outcome).to.deep.equal({ status: 'ok', command: 'COPY 1000000', rows: 1e6, duration_ms: 0.001 });
  });

  it('a statement too large for the shortcut takes the object path and is cut to fit a log entry', async () => {
    const huge = statementText("SELECT '" + '"'.repeat(40_000) + "'");
    const records = await sealed((e) => [
      e.request('r-big', { method: 'simple', statement: huge, params: 0 }, { allowed: true, reason: 'ok' }),
    ]);
    const { bytes, ev } = records[1];
    expect(Buffer.from(canonicalJson(ev)).equals(bytes)).to.equal(true);
    expect(bytes.length).to.be.at.most(65_535);
    expect(ev.action.statement.endsWith('…')).to.equal(true);
    expect(ev.request_id).to.equal('r-big');
  });

  it('a lone surrogate in a statement is refused when sealed, as for any event (the statement is then not run)', async () => {
    const tmp = tempDir('tm-pg-events-');
    try {
      const key = await loadStreamKey(join(tmp.dir, 'stream.key'), { create: true, name: 'trailmark-stream/test' });
      const spool = await Spool.open({ dir: join(tmp.dir, 'spool') });
      const stream = await EventStream.open(spool, { key, proxy: 'p', heartbeatMs: 0 });
      const e = new SessionEvents('p', { id: 'a', roles: [], ip: null, user_agent: null }, 'd', 't', 's');
      const ev = e.request(
        'r',
        { method: 'simple', statement: 'SELECT \ud800', params: 0 },
        { allowed: true, reason: 'ok' },
      );
      let err: Error | null = null;
      await stream.append(ev as never).catch((x: Error) => (err = x));
      expect(String(err)).to.match(/surrogate/);
      await spool.close();
    } finally {
      tmp.cleanup();
    }
  });
});
