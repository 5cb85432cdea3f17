import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { logEntries, waitFor } from '../../proxy/test/helpers.js';

import { find, run, statements, stopSharedPostgres, useRig, USERS } from './helpers.js';

const BIN = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

after(() => stopSharedPostgres());

describe('pg-proxy (real PostgreSQL 15, real log, psql and node-postgres)', function () {
  this.timeout(120_000);
  const rig = useRig();

  it('psql simple queries: results through the proxy, connect/request/response/disconnect events tied to the proxy user', async () => {
    await rig.startProxy();
    const r = await rig.psql(
      'alice',
      "INSERT INTO items VALUES (1, 'one'), (2, 'two'); SELECT name FROM items ORDER BY id",
    );
    expect(r.stderr).to.equal('');
    expect(r.stdout).to.equal('INSERT 0 2\none\ntwo');
    const bad = await rig.psql('alice', 'SELECT * FROM no_such_table');
    expect(bad.status).to.not.equal(0);
    expect(bad.stderr).to.match(/relation "no_such_table" does not exist/);
    // the upstream really has the rows (checked directly, not through the proxy)
    expect(rig.pg.sql('SELECT count(*) FROM items', 'app')).to.equal('2');
    const events = await rig.events();
    const connects = events.filter((e) => e.stage === 'connect');
    expect(connects).to.have.length(2);
    for (const c of connects) {
      expect(c.actor).to.deep.include({ id: 'alice', roles: ['dba'], ip: '127.0.0.1', user_agent: 'psql-test' });
      expect(c.action).to.deep.include({
        protocol: 'postgres',
        target: `postgres://127.0.0.1:${rig.pg.port}/app`,
        database: 'app',
      });
      expect(c.decision.allowed).to.equal(true);
    }
    const list = statements(events);
    const ins = find(list, "INSERT INTO items VALUES (1, 'one'), (2, 'two'); SELECT name FROM items ORDER BY id");
    expect(ins.request.actor.id).to.equal('alice');
    expect(ins.request.action).to.deep.include({
      protocol: 'postgres',
      params: 0,
      session_id: connects[0].action.session_id,
    });
    expect(ins.response.outcome).to.deep.include({ status: 'ok', command: 'SELECT 2', rows: 4 });
    const sel = find(list, 'SELECT * FROM no_such_table');
    expect(sel.response.outcome).to.deep.include({ status: 'error', sqlstate: '42P01' });
    const disconnects = events.filter((e) => e.stage === 'disconnect');
    expect(disconnects.map((d) => d.action.session_id).sort()).to.deep.equal(
      connects.map((c) => c.action.session_id).sort(),
    );
    for (const d of disconnects) {
      expect(d.outcome.statements).to.equal(1);
      expect(d.outcome.bytes).to.be.greaterThan(0);
    }
  });

  it('a failed login is logged (connect, allowed: false, actor null) and answered with SQLSTATE 28P01, as PostgreSQL does', async () => {
    await rig.startProxy();
    const wrong = await rig.psql('alice', 'SELECT 1', { password: 'not-the-password' });
    expect(wrong.status).to.not.equal(0);
    expect(wrong.stderr).to.match(/FATAL: {2}password authentication failed for user "alice"/);
    // the SQLSTATE, as a driver sees it
    const c = new pg.Client({
      host: '127.0.0.1',
      port: rig.proxy!.port,
      user: 'mallory',
      password: 'guess',
      database: 'app',
    });
    const err = await c.connect().then(
      () => null,
      (e: { code?: string; message: string }) => e,
    );
    expect(err?.code).to.equal('28P01');
    expect(err?.message).to.equal('password authentication failed for user "mallory"');
    const events = await rig.events();
    const refused = events.filter((e) => e.stage === 'connect');
    expect(refused).to.have.length(2);
    for (const e of refused) {
      expect(e.decision.allowed).to.equal(false);
      expect(e.actor.id).to.equal(null);
    }
    expect(refused[0].decision.reason).to.include('"alice"');
    expect(refused[1].decision.reason).to.include('"mallory"');
    expect(events.filter((e) => e.stage === 'request')).to.have.length(0);
    expect(JSON.stringify(events)).to.not.include('not-the-password');
  });

  it('node-postgres parameterized queries (extended protocol): statement text, parameter count, values only with --log-params', async () => {
    await rig.startProxy();
    const c = rig.client('alice');
    await c.connect();
    await c.query('INSERT INTO kv VALUES ($1, $2)', ['color', 'secret-value-blue']);
    const r = await c.query('SELECT v FROM kv WHERE k = $1', ['color']);
    expect(r.rows).to.deep.equal([{ v: 'secret-value-blue' }]);
    await c.query({ name: 'by-key', text: 'SELECT v FROM kv WHERE k = $1', values: ['color'] });
    await c.query({ name: 'by-key', text: 'SELECT v FROM kv WHERE k = $1', values: ['none'] });
    await c.query('SELECT $1::int / 0', [1]).catch(() => undefined);
    await c.end();
    const events = await rig.events();
    expect(JSON.stringify(events)).to.not.include('secret-value-blue');
    const list = statements(events);
    const ins = find(list, 'INSERT INTO kv VALUES ($1, $2)');
    expect(ins.request.action).to.deep.include({ method: 'extended', params: 2 });
    expect(ins.request.action).to.not.have.property('param_values');
    expect(ins.response.outcome).to.deep.include({ status: 'ok', command: 'INSERT 0 1', rows: 1 });
    const sels = list.filter((s) => s.request.action.statement === 'SELECT v FROM kv WHERE k = $1');
    expect(sels.map((s) => s.response.outcome.rows)).to.deep.equal([1, 1, 0]);
    expect(find(list, 'SELECT $1::int / 0').response.outcome).to.deep.include({ status: 'error', sqlstate: '22012' });

    // --log-params: the values are recorded
    await rig.proxy!.close();
    await rig.startProxy({ logParams: true });
    const c2 = rig.client('alice');
    await c2.connect();
    await c2.query('SELECT v FROM kv WHERE k = $1 AND $2::int > 0', ['color', 7]);
    await c2.end();
    const withParams = find(statements(await rig.events()), 'SELECT v FROM kv WHERE k = $1 AND $2::int > 0');
    expect(withParams.request.action.param_values).to.deep.equal(['color', '7']);
  });
});

describe('pg-proxy: large statements and parameters', function () {
  this.timeout(120_000);
  const rig = useRig();

  it('a statement or parameters too large for one log entry still run; the event keeps what fits (params_truncated)', async () => {
    await rig.startProxy({ logParams: true });
    const c = rig.client('alice');
    await c.connect();
    const big = 'x'.repeat(20_000);
    const five = 'SELECT length(concat($1::text, $2::text, $3::text, $4::text, $5::text)) AS n';
    expect((await c.query(five, [big, big, big, big, big])).rows[0].n).to.equal(100_000);
    // control characters take six bytes each in JSON
    const comment = '\u0001'.repeat(40_000);
    expect((await c.query(`SELECT 7 AS n /* ${comment} */`)).rows[0].n).to.equal(7);
    await c.end();
    const list = statements(await rig.events());
    const withParam = find(list, five);
    expect(withParam.request.action).to.deep.include({ params: 5, params_truncated: true });
    expect(withParam.response.outcome).to.deep.include({ status: 'ok', rows: 1 });
    const long = list.find((s) => s.request.action.statement.startsWith('SELECT 7 AS n /*'));
    expect(long?.response.outcome).to.deep.include({ status: 'ok', rows: 1 });
  });
});

/** The part of node-postgres' Connection (pg/lib/connection.js) the COPY test drives by hand. */
interface PgConnection {
  removeAllListeners(): void;
  on(event: string, fn: (m: { text?: string; message?: string }) => void): void;
  parse(q: { text: string }): void;
  bind(c: object): void;
  execute(c: object): void;
  sync(): void;
  query(text: string): void;
  sendCopyFromChunk(b: Buffer): void;
  endCopyFrom(): void;
  end(): void;
}

describe('pg-proxy: pipelines, COPY, cancel', function () {
  this.timeout(120_000);
  const rig = useRig(true);

  it('a pipelined batch (pgbench \\startpipeline, extended protocol): every statement recorded in order with its outcome', async () => {
    const script = join(rig.tmp.dir, 'pipeline.sql');
    writeFileSync(
      script,
      [
        '\\startpipeline',
        "INSERT INTO items VALUES (101, 'a');",
        "INSERT INTO items VALUES (102, 'b');",
        'SELECT 1/0;',
        "INSERT INTO items VALUES (103, 'c');",
        '\\endpipeline',
        'SELECT count(*) FROM items;',
        '',
      ].join('\n'),
    );
    const r = await run('pgbench', ['-n', '-M', 'extended', '-t', '1', '-f', script], rig.env('alice'));
    // the division by zero aborts the pipeline's implicit transaction: nothing of it is kept, as PostgreSQL does it
    expect(r.stderr + r.stdout).to.match(/division by zero/);
    expect(rig.pg.sql('SELECT count(*) FROM items', 'app')).to.equal('0');
    const list = statements(await rig.events());
    const texts = list.map((s) => s.request.action.statement);
    expect(texts).to.deep.equal([
      "INSERT INTO items VALUES (101, 'a');",
      "INSERT INTO items VALUES (102, 'b');",
      'SELECT 1/0;',
      "INSERT INTO items VALUES (103, 'c');",
    ]);
    expect(list.map((s) => s.request.action.method)).to.deep.equal(['extended', 'extended', 'extended', 'extended']);
    expect(list[0].response.outcome).to.deep.include({ status: 'ok', command: 'INSERT 0 1' });
    expect(list[2].response.outcome).to.deep.include({ status: 'error', sqlstate: '22012' });
    // the statement after the failure never ran: the server skipped it until Sync
    expect(list[3].response.outcome).to.deep.include({ status: 'error', command: null });
  });

  it('COPY in and out (psql \\copy): data through the proxy, the COPY statements recorded with their row counts', async () => {
    const input = Array.from({ length: 500 }, (_, i) => `${i}\tname-${i}`).join('\n') + '\n';
    const cin = await rig.psql('alice', '\\copy items FROM STDIN', { input });
    expect(cin.stderr).to.equal('');
    expect(rig.pg.sql('SELECT count(*), sum(id) FROM items', 'app')).to.equal('500|124750');
    const cout = await rig.psql('alice', 'COPY (SELECT * FROM items ORDER BY id) TO STDOUT');
    expect(cout.stdout.split('\n')).to.have.length(500);
    expect(cout.stdout.split('\n')[499]).to.equal('499\tname-499');
    const list = statements(await rig.events());
    expect(find(list, 'COPY  items FROM STDIN ').response.outcome).to.deep.include({
      status: 'ok',
      command: 'COPY 500',
      rows: 500,
    });
    expect(find(list, 'COPY (SELECT * FROM items ORDER BY id) TO STDOUT').response.outcome).to.deep.include({
      status: 'ok',
      command: 'COPY 500',
      rows: 500,
    });
  });

  it('extended-protocol COPY FROM STDIN with Sync sent before the data (ignored by the server in copy-in): recorded, and the statements after it keep their own outcomes', async () => {
    const c = rig.client('alice');
    await c.connect();
    // the driver's own message writer, without its query machinery: this pipeline is what some drivers send
    const conn = (c as unknown as { connection: PgConnection }).connection;
    conn.removeAllListeners();
    const got: string[] = [];
    let readyCount = 0;
    for (const ev of ['parseComplete', 'bindComplete', 'copyInResponse', 'commandComplete', 'errorMessage'])
      conn.on(ev, (m: { text?: string; message?: string }) => got.push(m.text ?? m.message ?? ev));
    conn.on('readyForQuery', () => readyCount++);
    conn.parse({ text: 'COPY items FROM STDIN' });
    conn.bind({});
    conn.execute({});
    conn.sync(); // ignored upstream: the server is in copy-in mode when it reads it
    conn.sendCopyFromChunk(Buffer.from('1\tone\n2\ttwo\n'));
    conn.endCopyFrom();
    conn.sync();
    await waitFor('the COPY to finish', () => readyCount === 1);
    conn.query('SELECT 42 AS answer');
    await waitFor('the query after it', () => readyCount === 2);
    expect(got).to.deep.equal(['parseComplete', 'bindComplete', 'copyInResponse', 'COPY 2', 'SELECT 1']);
    conn.end();
    expect(rig.pg.sql('SELECT count(*) FROM items', 'app')).to.equal('2');
    await rig.proxy!.settle();
    const list = statements(await rig.events());
    expect(find(list, 'COPY items FROM STDIN').response.outcome).to.deep.include({
      status: 'ok',
      command: 'COPY 2',
      rows: 2,
    });
    // before the ignored Sync was accounted for, this statement's response waited for a ReadyForQuery that had
    // already been used up: it came out without its command, or aborted at disconnect
    const after = find(list, 'SELECT 42 AS answer').response.outcome;
    expect(after).to.deep.include({ status: 'ok', command: 'SELECT 1', rows: 1 });
    expect(after).to.not.have.property('aborted');
  });

  it('a client that stops reading gets backpressure (the proxy stops reading its upstream, buffering nothing) while other sessions go on', async () => {
    const slow = rig.client('alice');
    slow.on('error', () => undefined); // destroyed below
    await slow.connect();
    const stream = (slow as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream;
    const before = process.memoryUsage().rss;
    // about 400 MB of rows; the client reads none of them
    void slow.query("SELECT repeat('x', 2000) FROM generate_series(1, 200000)").catch(() => undefined);
    stream.pause();
    await waitFor(
      'the query to run upstream',
      () =>
        rig.pg.sql(
          "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%' AND wait_event = 'ClientWrite'",
        ) === '1',
    );
    const other = rig.client('alice');
    await other.connect();
    for (let i = 0; i < 20; i++) expect((await other.query('SELECT $1::int AS i', [i])).rows[0].i).to.equal(i);
    await other.end();
    // the upstream backend waits to write (ClientWrite) instead of the proxy holding its output
    expect(
      rig.pg.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%' AND wait_event = 'ClientWrite'",
      ),
    ).to.equal('1');
    expect(process.memoryUsage().rss - before).to.be.below(100 * 1024 * 1024);
    stream.destroy();
    await waitFor(
      'the slow session to end upstream',
      () => rig.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%'") === '0',
    );
  });

  it('a cancelled long query: the cancel request reaches the upstream, the query stops, its response records 57014', async () => {
    const p = spawn('psql', ['-X', '-At', '-c', 'SELECT pg_sleep(30)'], { env: rig.env('alice') });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    await waitFor(
      'the query to run upstream',
      () =>
        rig.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'") ===
        '1',
    );
    p.kill('SIGINT'); // psql sends a CancelRequest on its own connection to the proxy
    await new Promise((r) => p.once('close', r));
    // cancelled, not run to its end: the server says so, and the response records 57014
    expect(stderr).to.match(/canceling statement due to user request/);
    const s = find(statements(await rig.events()), 'SELECT pg_sleep(30)');
    expect(s.response.outcome).to.deep.include({ status: 'error', sqlstate: '57014' });
  });

  it('a client that disconnects mid-query ends its upstream session (the query stops), and its statement gets an aborted response', async () => {
    const p = spawn('psql', ['-X', '-At', '-c', 'SELECT pg_sleep(31)'], { env: rig.env('alice') });
    await waitFor(
      'the query to run upstream',
      () => rig.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(31)'") === '1',
    );
    p.kill('SIGKILL');
    await waitFor(
      'the upstream backend to end',
      () => rig.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(31)'") === '0',
      10_000,
    );
    const events = await rig.events();
    const s = find(statements(events), 'SELECT pg_sleep(31)');
    expect(s.response.outcome).to.deep.include({ status: 'error', aborted: true });
    expect(events.filter((e) => e.stage === 'disconnect')).to.have.length(1);
  });
});

describe('pg-proxy: rules and read-only roles', function () {
  this.timeout(120_000);
  const rig = useRig(true);

  it('a read-only role reads, is refused writes (by the database) and every way to lift read-only (by the proxy, logged as denied)', async () => {
    rig.pg.sql("INSERT INTO items VALUES (1, 'one')", 'app');
    expect((await rig.psql('bob', 'SELECT name FROM items')).stdout).to.equal('one');
    const write = await rig.psql('bob', "INSERT INTO items VALUES (2, 'two')");
    expect(write.stderr).to.match(/cannot execute INSERT in a read-only transaction/);
    for (const sql of [
      'SET default_transaction_read_only = off',
      'BEGIN READ WRITE',
      'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
      '/* x */ set  TRANSACTION_READ_ONLY TO off',
      // quoted identifiers name the same setting and function as bare ones
      'SET "default_transaction_read_only" = off',
      `SELECT "set_config"('default_transaction_read_only', 'off', false)`,
      `SET U&"default_transaction_read_\\006Fnly" = off`,
      `SET U&"default_transaction_read_!006Fnly" UESCAPE '!' = off`,
    ]) {
      const r = await rig.psql('bob', sql);
      expect(r.status, sql).to.not.equal(0);
      expect(r.stderr, sql).to.match(/trailmark: read-only session/);
    }
    // extended protocol, inside a transaction: the refusal aborts it as a failed statement would
    const c = rig.client('bob');
    await c.connect();
    await c.query('BEGIN');
    const err = await c.query("SELECT set_config('default_transaction_read_only', $1, false)", ['off']).then(
      () => null,
      (e: { code: string }) => e,
    );
    expect(err?.code).to.equal('25006');
    const after = await c.query('SELECT 1').then(
      () => null,
      (e: { code: string }) => e,
    );
    expect(after?.code).to.equal('25P02'); // in failed transaction
    await c.query('ROLLBACK');
    expect((await c.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only).to.equal('on');
    await c.end();
    expect(rig.pg.sql('SELECT count(*) FROM items', 'app')).to.equal('1');
    const list = statements(await rig.events());
    const denied = list.filter((s) => !s.request.decision.allowed);
    expect(denied.map((s) => s.request.action.statement)).to.deep.equal([
      'SET default_transaction_read_only = off',
      'BEGIN READ WRITE',
      'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
      '/* x */ set  TRANSACTION_READ_ONLY TO off',
      'SET "default_transaction_read_only" = off',
      `SELECT "set_config"('default_transaction_read_only', 'off', false)`,
      `SET U&"default_transaction_read_\\006Fnly" = off`,
      `SET U&"default_transaction_read_!006Fnly" UESCAPE '!' = off`,
      "SELECT set_config('default_transaction_read_only', $1, false)",
    ]);
    for (const d of denied) {
      expect(d.request.actor.id).to.equal('bob');
      expect(d.response.outcome).to.deep.include({ status: 'error', sqlstate: '25006' });
    }
    expect(find(list, "INSERT INTO items VALUES (2, 'two')").response.outcome).to.deep.include({
      status: 'error',
      sqlstate: '25006',
    });
    expect(find(list, "INSERT INTO items VALUES (2, 'two')").request.decision.allowed).to.equal(true);
  });

  it('--upstream-read-only: read-only sessions log in upstream as that role, with the password in its URL even when a shared one (PGPASSWORD) is given', async () => {
    rig.pg.sql('DROP ROLE IF EXISTS tm_reader');
    rig.pg.sql("CREATE ROLE tm_reader LOGIN PASSWORD 'reader-Secret-pw-9'");
    rig.pg.sql('GRANT SELECT ON items TO tm_reader', 'app');
    await rig.proxy!.close();
    const readOnly = new URL(rig.pg.url('app', 'tm_reader'));
    readOnly.password = 'reader-Secret-pw-9';
    // what the CLI passes with PGPASSWORD set: the main role's password for both logins
    await rig.startProxy({ upstreamReadOnly: readOnly.href, upstreamReadOnlyPassword: rig.pg.password });
    expect((await rig.psql('bob', 'SELECT current_user')).stdout).to.equal('tm_reader');
    expect((await rig.psql('alice', 'SELECT current_user')).stdout).to.equal('postgres');
    for (const e of await rig.events()) expect(JSON.stringify(e)).to.not.include('reader-Secret-pw-9');
  });

  it('databases per role: a database no role of the user allows is refused at login (logged with the identity refused)', async () => {
    const r = await rig.psql('bob', 'SELECT 1', { db: 'postgres' });
    expect(r.stderr).to.match(/permission denied for database "postgres"/);
    const r2 = await rig.psql('carol', 'SELECT 1');
    expect(r2.stderr).to.match(/permission denied for database "app"/);
    expect((await rig.psql('alice', 'SELECT current_database()', { db: 'postgres' })).stdout).to.equal('postgres');
    const connects = (await rig.events()).filter((e) => e.stage === 'connect');
    expect(connects.map((e) => [e.actor.id, e.action.database, e.decision.allowed])).to.deep.equal([
      ['bob', 'postgres', false],
      ['carol', 'app', false],
      ['alice', 'postgres', true],
    ]);
  });
});

describe('pg-proxy: strict mode and crashes', function () {
  this.timeout(180_000);
  const rig = useRig();
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it('strict mode with the log down: the proxy starts, the statement fails, nothing reaches the database; once the log is back it runs', async () => {
    await rig.log.stop();
    await rig.startProxy({ mode: 'strict', strictDeadlineMs: 1500 });
    const c = rig.client('alice');
    await c.connect();
    const err = await c.query("INSERT INTO items VALUES (1, 'while the log is down')").then(
      () => null,
      (e: { code: string; message: string }) => e,
    );
    expect(err?.code).to.equal('57P03');
    expect(err?.message).to.match(/access log could not record/);
    // the same through the extended protocol
    const err2 = await c.query('INSERT INTO items VALUES ($1, $2)', [2, 'also down']).then(
      () => null,
      (e: { code: string }) => e,
    );
    expect(err2?.code).to.equal('57P03');
    expect(rig.pg.sql('SELECT count(*) FROM items', 'app')).to.equal('0');
    await rig.log.start();
    await c.query("INSERT INTO items VALUES (3, 'log is back')");
    await c.end();
    expect(rig.pg.sql('SELECT id FROM items', 'app')).to.equal('3');
    const list = statements(await rig.events());
    expect(find(list, "INSERT INTO items VALUES (1, 'while the log is down')").response.outcome).to.deep.include({
      status: 'error',
      sqlstate: '57P03',
    });
    expect(find(list, 'INSERT INTO items VALUES ($1, $2)').response.outcome).to.deep.include({
      status: 'error',
      sqlstate: '57P03',
    });
    expect(find(list, "INSERT INTO items VALUES (3, 'log is back')").response.outcome).to.deep.include({
      status: 'ok',
      rows: 1,
    });
  });

  it('--workers 2: two processes on one address, each with its own spool; every statement recorded; SIGTERM stops them all', async () => {
    const args = [
      BIN,
      'pg-proxy',
      '--upstream',
      rig.pg.url('app'),
      '--log',
      rig.log.url,
      '--log-key',
      rig.log.vkey,
      '--users',
      rig.usersFile,
      '--listen',
      '127.0.0.1:0',
      '--spool',
      rig.spoolDir,
      '--name',
      'pg-test',
      '--workers',
      '2',
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGPASSWORD: rig.pg.password },
    });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    await waitFor('the pg-proxy workers to listen', () => /workers: 2/.test(out), 60_000);
    // port 0: the workers share the one port the primary bound, and say which
    const port = Number(/listening: postgres:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    const env = rig.env('alice', 'app', port);
    const runs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => run('psql', ['-X', '-At', '-c', `SELECT ${i} + 1000`], env)),
    );
    expect(runs.map((r) => r.stdout).sort()).to.deep.equal(['1000', '1001', '1002', '1003', '1004', '1005']);
    expect(existsSync(join(rig.spoolDir, 'worker-0'))).to.equal(true);
    expect(existsSync(join(rig.spoolDir, 'worker-1'))).to.equal(true);
    // 6 sessions: connect, request, response and disconnect each (each worker's stream adds its own start and
    // heartbeats, whose number depends on timing: only the sessions' events are counted)
    await waitFor(
      'the workers to ship',
      async () => (await logEntries(rig.log.url)).filter((e) => e.event.action?.protocol === 'postgres').length === 24,
      60_000,
    );
    // the primary prints each worker's stream key, as the log's start events carry them (contract section 4)
    const printed = [...out.matchAll(/^stream key: (\S+)$/gm)].map((m) => m[1]).sort();
    expect(printed).to.have.length(2);
    const started = (await logEntries(rig.log.url))
      .filter((e) => e.event.stage === 'start')
      .map((e) => (e.event as { stream_key: string }).stream_key)
      .sort();
    expect(started).to.deep.equal(printed);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).to.equal(0);
    const events = await rig.events();
    expect(events.filter((e) => e.stage === 'disconnect')).to.have.length(6);
    statements(events);
  });

  it('a proxy SIGKILLed mid-session: every statement that reached the database has its request event in the log', async () => {
    const pwFile = join(rig.tmp.dir, 'upstream-password');
    writeFileSync(pwFile, rig.pg.password + '\n');
    const args = [
      BIN,
      'pg-proxy',
      '--upstream',
      rig.pg.url('app'),
      '--upstream-password-file',
      pwFile,
      '--log',
      rig.log.url,
      '--log-key',
      rig.log.vkey,
      '--users',
      rig.usersFile,
      '--rules',
      rig.rulesFile,
      '--listen',
      '127.0.0.1:0',
      '--spool',
      rig.spoolDir,
      '--name',
      'pg-test',
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    await waitFor('the pg-proxy child to listen', () => /listening: \S+\n/.test(out), 60_000);
    const port = Number(/listening: postgres:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    // four clients insert as fast as they can, by both protocols, until the proxy dies under them
    let next = 0;
    const writer = async (extended: boolean) => {
      const c = new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'alice',
        password: USERS.alice.password,
        database: 'app',
      });
      c.on('error', () => undefined);
      await c.connect();
      try {
        for (;;) {
          const n = next++;
          const text = `INSERT INTO items VALUES (${n}, 'row ${n}')`;
          await (extended ? c.query({ name: `s${n}`, text }) : c.query(text));
        }
      } catch {
        /* the proxy is gone */
      }
    };
    const writers = [writer(false), writer(true), writer(false), writer(true)];
    await waitFor('some rows', () => Number(rig.pg.sql('SELECT count(*) FROM items', 'app')) >= 50);
    child.kill('SIGKILL');
    await Promise.all(writers);
    const ids = rig.pg.sql('SELECT id FROM items ORDER BY id', 'app').split('\n').map(Number);
    expect(ids.length).to.be.greaterThan(49);
    // a new proxy on the same spool ships what the killed one had made durable
    await rig.startProxy();
    const recorded = new Set(
      (await rig.events())
        .filter((e) => e.stage === 'request')
        .map((e) => /^INSERT INTO items VALUES \((\d+),/.exec(e.action.statement)?.[1])
        .filter((x) => x !== undefined)
        .map(Number),
    );
    const missing = ids.filter((id) => !recorded.has(id));
    expect(missing, 'rows in the database without a request event').to.deep.equal([]);
  });
});

describe('pg-proxy: TLS, pg-password, SSLRequest', function () {
  this.timeout(120_000);
  const rig = useRig();

  it('without --tls-cert an SSLRequest is answered N (sslmode=require fails, prefer falls back to plain)', async () => {
    await rig.startProxy();
    const req = await rig.psql('alice', 'SELECT 1', { args: ['-d', 'sslmode=require dbname=app'] });
    expect(req.stderr).to.match(/server does not support SSL/);
    const prefer = await rig.psql('alice', '\\conninfo', { args: ['-d', 'sslmode=prefer dbname=app'] });
    expect(prefer.stdout).to.match(/You are connected to database "app" as user "alice"/);
    expect(prefer.stdout).to.not.match(/SSL/);
  });

  it('with --tls-cert/--tls-key clients talk TLS to the proxy (psql sslmode=require), and statements are recorded as usual', async () => {
    const key = join(rig.tmp.dir, 'key.pem');
    const cert = join(rig.tmp.dir, 'cert.pem');
    const gen = await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      process.env,
    );
    expect(gen.status, gen.stderr).to.equal(0);
    await rig.startProxy({ tlsCert: cert, tlsKey: key });
    const r = await rig.psql('alice', 'SELECT 40 + 2', { args: ['-d', 'sslmode=require dbname=app'] });
    expect(r.stdout).to.equal('42');
    const conn = await rig.psql('alice', '\\conninfo', {
      args: ['-d', `sslmode=verify-full sslrootcert=${cert} host=localhost dbname=app`],
    });
    expect(conn.stdout).to.match(/SSL connection \(protocol: TLSv1\.3/);
    expect(find(statements(await rig.events()), 'SELECT 40 + 2').response.outcome).to.deep.include({
      status: 'ok',
      command: 'SELECT 1',
    });
  });

  it("trailmark pg-password prints a verifier PostgreSQL itself accepts (the users file's format is pg_authid's)", async () => {
    const out = await run(process.execPath, [BIN, 'pg-password'], process.env, 'correct horse battery\n');
    expect(out.status).to.equal(0);
    const verifier = out.stdout;
    expect(verifier).to.match(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    rig.pg.sql(`CREATE ROLE dave LOGIN PASSWORD '${verifier}'`);
    expect(rig.pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'dave'")).to.equal(verifier);
    const env = { ...rig.pg.env, PGUSER: 'dave', PGPASSWORD: 'correct horse battery' };
    expect((await run('psql', ['-X', '-At', '-c', 'SELECT current_user'], env)).stdout).to.equal('dave');
    const wrong = await run('psql', ['-X', '-At', '-c', 'SELECT 1'], { ...env, PGPASSWORD: 'correct horse' });
    expect(wrong.stderr).to.match(/password authentication failed/);
  });
});
