/**
 * One client session through the pg-proxy: startup (SSLRequest, CancelRequest), SCRAM login as a proxy user,
 * the rules, the proxy's own login upstream, then both directions of the wire protocol.
 *
 * Client → upstream: frames are read in batches (everything the client has sent, pipelined messages included).
 * Each statement in a batch (a simple Query, an extended-protocol Execute, a fastpath FunctionCall) gets its
 * request event first; the batch is forwarded only once all of them are durable (spool) or acknowledged
 * (strict), so one fsync or one log round trip covers a whole pipeline. A statement that must not run (refused
 * by the rules, or the log could not record it) is replaced by a message the server rejects without running
 * anything (an Execute of a portal that does not exist, or EXECUTE of an unknown prepared statement), and the
 * server's error is rewritten into the proxy's: the error then reaches the client in protocol order and the
 * server leaves the transaction and the pipeline exactly as a failed statement would.
 *
 * Upstream → client: frames pass through unchanged; CommandComplete, ErrorResponse, EmptyQueryResponse,
 * PortalSuspended and ReadyForQuery complete the statements in order and give their response events.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import type { PgRules, PgUsers, Grant } from './config.js';
import {
  pgEvent,
  SessionEvents,
  statementText,
  type PgActor,
  type PgEvent,
  type PgTrail,
  type StatementOutcome,
} from './events.js';
import type { EncodedEvent } from '@trailmark/recorder';
import { liftsReadOnly } from './readonly.js';
import { mockVerifier, ScramServer, SCRAM_MECHANISM } from './scram.js';
import { cancelUpstream, loginUpstream, targetUrl, type UpstreamTarget } from './upstream.js';
import {
  authOk,
  authSasl,
  authSaslContinue,
  authSaslFinal,
  CANCEL_REQUEST,
  errorResponse,
  firstString,
  FrameReader,
  GSSENC_REQUEST,
  PROTOCOL_3,
  readBind,
  readError,
  readParse,
  readSaslInitial,
  SSL_REQUEST,
  startupParams,
  tagRows,
  type Frame,
} from './wire.js';
import { errorMessage } from '@trailmark/tlog';

/** What every client session of one proxy shares: users, rules, upstream targets, trail and TLS. */
export interface SessionConfig {
  proxy: string;
  users: PgUsers;
  rules: PgRules | null;
  upstream: UpstreamTarget;
  /** Read-only sessions log in here when given (a database role that cannot write). */
  upstreamReadOnly: UpstreamTarget | null;
  trail: PgTrail;
  logParams: boolean;
  tls: tls.SecureContext | null;
  /** Secret for mock SCRAM salts of unknown users. */
  mockSecret: Buffer;
  warn(line: string): void;
  /** Live sessions (closed on shutdown). */
  sessions: Set<Session>;
}

/** Startup parameters never passed upstream: the proxy sets user and database, and sessions are never replication. */
const NOT_FORWARDED = new Set(['user', 'database', 'replication']);
/** ...and, in read-only sessions, nothing that could set the read-only settings (options carries -c name=value). */
const NOT_FORWARDED_READ_ONLY = new Set(['options', 'default_transaction_read_only', 'transaction_read_only']);
/** Bytes a client may send ahead of the batch waiting for the log before the proxy stops reading it. */
const CLIENT_BACKLOG = 1 << 20;
/** A name no client uses: executing it fails in the server without running anything. */
const REFUSED_NAME = `trailmark_refused_${randomBytes(8).toString('hex')}`;

type ItemKind = 'Q' | 'E' | 'S';

interface Item {
  kind: ItemKind;
  /** CopyDone/CopyFail messages the client had sent before this one (see Session.copyEnds). */
  copyEnds: number;
  requestId: string | null;
  started: number;
  /** Set when the statement was not forwarded: the server's error for it is replaced by this one. */
  refused: { sqlstate: string; message: string } | null;
  status: 'ok' | 'error';
  command: string | null;
  rows: number | null;
  sqlstate: string | null;
}

/** Client frames read together, forwarded together once their statements' request events are recorded. */
interface Batch {
  /** The frames to send upstream, in order. */
  out: Buffer[];
  /** The statements (one per event) and where their message sits in `out` (replaced when refused). */
  slots: { item: Item; at: number }[];
  events: (PgEvent | EncodedEvent)[];
  /** Per event: whether its statement is to be forwarded (false: refused by the rules). */
  forwarded: boolean[];
  /** The client sent Terminate: forward what came before it and end the session. */
  terminate: boolean;
}

interface Portal {
  sql: string;
  params: number;
  /** Kept only with --log-params (they hold slices of the client's buffers). */
  values: (Buffer | null)[];
  formats: number[];
}

const T = (c: string) => c.charCodeAt(0);

/**
 * One client connection: authenticates it with SCRAM, applies the rules, logs in upstream and relays frames, recording
 * connect, statement and disconnect events.
 */
export class Session {
  private client: net.Socket;
  private readonly reader = new FrameReader();
  private upstream: net.Socket | null = null;
  private upReader: FrameReader | null = null;
  private phase: 'startup' | 'sasl-first' | 'sasl-final' | 'connecting' | 'ready' | 'closed' = 'startup';
  private readonly sessionId = randomUUID();
  private readonly started = performance.now();
  private user = '';
  private database = '';
  /** The events' action.target: the upstream URL of this session's database (set once it is known). */
  private target = '';
  private appName: string | null = null;
  private params = new Map<string, string>();
  private scram: ScramServer | null = null;
  private actor: PgActor | null = null;
  /** Builds this session's request and response events (set with the actor). */
  private events: SessionEvents | null = null;
  private grant: Grant | null = null;
  private allowed: { allowed: true; reason: string } | null = null;
  private upTarget: UpstreamTarget;
  private backendKey: { pid: number; secret: number } | null = null;
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, Portal>();
  private readonly inflight: Item[] = [];
  /**
   * CopyDone and CopyFail messages the client has sent. A server in copy-in mode ignores Sync (protocol: "the
   * backend will ignore Flush and Sync messages received during copy-in mode"), so a client that pipelines a
   * Sync between the Execute of a COPY FROM STDIN and its data gets no ReadyForQuery for it: such Syncs must not
   * wait for one. The copy-in started by a statement sent after n copy ends lasts until the client's n+1st.
   */
  private copyEnds = 0;
  /** Client Syncs are ignored upstream while copyEnds is below this (a copy-in the server has started). */
  private syncsIgnoredBelow = 0;
  private pumping = false;
  private statementCount = 0;
  private bytesOut = 0;
  private bytesIn = 0;
  private connected = false;

  constructor(
    socket: net.Socket,
    private readonly cfg: SessionConfig,
  ) {
    this.client = socket;
    this.upTarget = cfg.upstream;
    cfg.sessions.add(this);
    socket.setNoDelay(true);
    // a client that does not finish logging in within a minute does not hold a connection
    socket.setTimeout(60_000, () => {
      if (this.phase !== 'ready') this.fatal('08006', 'trailmark: login not completed in time');
    });
    this.attachClient(socket);
  }

  private attachClient(s: net.Socket): void {
    s.on('data', (chunk: Buffer) => this.onClientData(chunk));
    s.on('error', () => this.close('client connection error'));
    s.on('close', () => this.close('client disconnected'));
  }

  private get ip(): string | null {
    return this.client.remoteAddress ?? null;
  }

  private send(b: Buffer): boolean {
    this.bytesOut += b.length;
    return this.client.write(b);
  }

  /** Answers FATAL and ends the connection. */
  private fatal(sqlstate: string, message: string): void {
    if (this.client.writable) this.client.end(errorResponse('FATAL', sqlstate, message));
    this.close(message);
  }

  /** Ends the client connection after what was written to it is sent (a stuck client is cut after 5 s). */
  private endClient(): void {
    const c = this.client;
    if (!c.writableEnded) c.end();
    setTimeout(() => c.destroy(), 5000).unref();
  }

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    this.reader.push(chunk);
    try {
      if (this.phase === 'startup') this.onStartup();
      else if (this.phase === 'sasl-first' || this.phase === 'sasl-final') this.onSasl();
      else if (this.phase === 'ready') {
        // frames read while a batch waits for the log queue up in the reader, and the next batch takes them
        // all; past CLIENT_BACKLOG bytes the client is not read until the batch in flight is forwarded
        if (this.pumping && this.reader.buffered > CLIENT_BACKLOG) this.client.pause();
        this.pump();
      }
      // 'connecting': frames wait in the reader until the upstream session is ready
    } catch (e) {
      this.fatal('08P01', `invalid message from the client: ${errorMessage(e)}`);
    }
  }

  private onStartup(): void {
    const msg = this.reader.startup();
    if (!msg) return;
    const code = msg.readInt32BE(4);
    if (code === SSL_REQUEST) {
      if (!this.cfg.tls) {
        this.client.write('N');
        return;
      }
      if (this.reader.buffered > 0) throw new Error('data after SSLRequest before the TLS handshake');
      this.client.write('S');
      const raw = this.client;
      raw.removeAllListeners('data');
      raw.removeAllListeners('close');
      raw.removeAllListeners('error');
      this.client = new tls.TLSSocket(raw, { isServer: true, secureContext: this.cfg.tls });
      this.attachClient(this.client);
      return;
    }
    if (code === GSSENC_REQUEST) {
      this.client.write('N');
      return;
    }
    if (code === CANCEL_REQUEST && msg.length === 16) {
      // the client holds the upstream backend's own key (passed through at login), so the cancel goes there as is
      void cancelUpstream(this.cfg.upstream, msg.readInt32BE(8), msg.readInt32BE(12));
      this.client.end();
      this.close('cancel request', false);
      return;
    }
    if (code !== PROTOCOL_3)
      return this.fatal('0A000', `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: only 3.0 is served`);
    this.params = startupParams(msg);
    this.user = this.params.get('user') ?? '';
    this.database = this.params.get('database') || this.user;
    this.target = targetUrl(this.cfg.upstream, this.database);
    this.appName = this.params.get('application_name') ?? null;
    if (!this.user) return this.fatal('28000', 'no PostgreSQL user name specified in startup packet');
    if (this.params.has('replication') && this.params.get('replication') !== 'false')
      return this.fatal('42501', 'replication connections are not served by the proxy');
    const u = this.cfg.users.get(this.user);
    this.scram = new ScramServer(u ? u.verifier : mockVerifier(this.user, this.cfg.mockSecret));
    this.phase = 'sasl-first';
    this.client.write(authSasl([SCRAM_MECHANISM]));
  }

  private onSasl(): void {
    for (const f of this.reader.frames()) {
      if (f.type !== T('p'))
        throw new Error(`expected a SASL response, got message type ${JSON.stringify(String.fromCharCode(f.type))}`);
      if (this.phase === 'sasl-first') {
        const { mechanism, data } = readSaslInitial(f.raw);
        if (mechanism !== SCRAM_MECHANISM)
          return this.fatal(
            '28000',
            `SASL mechanism ${JSON.stringify(mechanism)} is not supported (use SCRAM-SHA-256)`,
          );
        this.client.write(authSaslContinue(this.scram!.first(data)));
        this.phase = 'sasl-final';
      } else if (this.phase === 'sasl-final') {
        const serverFinal = this.scram!.final(f.raw.toString('utf8', 5));
        const u = this.cfg.users.get(this.user);
        if (serverFinal === null || !u)
          return void this.refuse(null, '28P01', `password authentication failed for user "${this.user}"`);
        this.phase = 'connecting';
        void this.admit(u.name, u.roles, serverFinal);
        return;
      }
    }
  }

  private connectEvent(actor: PgActor, allowed: boolean, reason: string) {
    return pgEvent('connect', this.cfg.proxy, {
      actor,
      action: {
        protocol: 'postgres',
        target: this.target,
        database: this.database,
        session_id: this.sessionId,
      },
      decision: { allowed, reason },
    });
  }

  /** A refused login: logged (actor.id null when authentication failed), then answered as PostgreSQL would. */
  private async refuse(
    identity: { id: string; roles: string[] } | null,
    sqlstate: string,
    message: string,
  ): Promise<void> {
    this.phase = 'closed';
    const reason = identity ? message : `${message} (claimed user ${JSON.stringify(this.user)})`;
    const actor = { id: identity?.id ?? null, roles: identity?.roles ?? [], ip: this.ip, user_agent: this.appName };
    try {
      await this.cfg.trail.write(this.connectEvent(actor, false, reason));
    } catch (e) {
      this.cfg.warn(`could not record a refused login: ${errorMessage(e)}`);
    }
    if (this.client.writable) this.client.end(errorResponse('FATAL', sqlstate, message));
    this.cfg.sessions.delete(this);
  }

  /** An authenticated user: rules, the connect event, the upstream login, then the session. */
  private async admit(id: string, roles: string[], serverFinal: string): Promise<void> {
    let grant: Grant | null = { role: null, readOnly: false };
    if (this.cfg.rules) grant = this.cfg.rules.grant(roles, this.database);
    else if (this.database !== this.cfg.upstream.database) grant = null;
    if (!grant) {
      return this.refuse(
        { id, roles },
        '42501',
        `permission denied for database "${this.database}": no rule gives user "${id}" (roles [${roles.join(', ')}]) this database`,
      );
    }
    this.grant = grant;
    this.actor = { id, roles, ip: this.ip, user_agent: this.appName };
    this.events = new SessionEvents(this.cfg.proxy, this.actor, this.database, this.target, this.sessionId);
    const reason =
      grant.role === null
        ? 'authenticated (SCRAM-SHA-256); no rules configured'
        : `authenticated (SCRAM-SHA-256); database allowed by role ${grant.role}${grant.readOnly ? ' (read-only)' : ''}`;
    try {
      await this.cfg.trail.write(this.connectEvent(this.actor, true, reason));
    } catch (e) {
      this.cfg.warn(`could not record a session start: ${errorMessage(e)}`);
      return this.fatal('57P03', 'trailmark: the access log cannot record this session');
    }
    this.connected = true;
    this.client.write(authSaslFinal(serverFinal));
    const readOnlyRole = grant.readOnly && this.cfg.upstreamReadOnly !== null;
    this.upTarget = readOnlyRole ? this.cfg.upstreamReadOnly! : this.cfg.upstream;
    const startup: Record<string, string> = {};
    for (const [k, v] of this.params) {
      if (NOT_FORWARDED.has(k) || (grant.readOnly && NOT_FORWARDED_READ_ONLY.has(k))) continue;
      startup[k] = v;
    }
    if (grant.readOnly) startup.default_transaction_read_only = 'on';
    try {
      const up = await loginUpstream(this.upTarget, this.database, startup);
      if (this.phase === 'closed') {
        up.socket.destroy();
        return;
      }
      this.upstream = up.socket;
      this.upReader = up.reader;
    } catch (e) {
      this.cfg.warn(`session ${this.sessionId}: ${errorMessage(e)}`);
      return this.fatal(
        '08006',
        `trailmark: the proxy could not open the upstream session for database "${this.database}"`,
      );
    }
    const upSock = this.upstream;
    upSock.on('data', (chunk: Buffer) => this.onUpstreamData(chunk));
    upSock.on('error', () => this.close('upstream connection error'));
    upSock.on('close', () => this.close('upstream closed the connection'));
    this.send(authOk());
    this.phase = 'ready';
    this.client.setTimeout(0);
    const pending = this.upReader.drain();
    this.upReader = new FrameReader();
    if (pending) this.onUpstreamData(pending);
    upSock.resume();
    this.pump();
  }

  // ---- client → upstream

  /**
   * Takes every whole frame the client has sent and forwards it, synchronously unless the batch holds statements:
   * then it goes on once their request events are recorded (recorded()). One batch at a time, in order.
   */
  private pump(): void {
    if (this.pumping || this.phase !== 'ready') return;
    try {
      for (;;) {
        const frames = this.reader.frames();
        if (frames.length === 0) break;
        const batch = this.prepare(frames);
        if (batch.events.length > 0) {
          this.pumping = true;
          this.cfg.trail.before(batch.events, batch.forwarded, (errors) => {
            try {
              this.recorded(batch, errors);
            } catch (e) {
              this.fatal('08P01', `invalid message from the client: ${errorMessage(e)}`);
            }
          });
          return;
        }
        if (!this.sendUpstream(batch)) return;
      }
    } catch (e) {
      this.fatal('08P01', `invalid message from the client: ${errorMessage(e)}`);
      return;
    }
    if (this.phase === 'ready' && this.client.isPaused()) this.client.resume();
  }

  /** The batch's request events were recorded (or failed: those statements are refused): forward it, go on. */
  private recorded(batch: Batch, errors: (Error | null)[]): void {
    this.pumping = false;
    errors.forEach((e, i) => {
      if (!e) return;
      batch.slots[i].item.refused ??= {
        sqlstate: '57P03',
        message: 'trailmark: the access log could not record this statement; it was not executed',
      };
      this.cfg.warn(`statement not forwarded: ${e.message}`);
    });
    if (this.phase !== 'ready' || !this.upstream) return;
    if (this.sendUpstream(batch)) this.pump();
  }

  /**
   * Writes a batch upstream (refused statements replaced). Returns false when the pump must stop: the session
   * ended, or the upstream socket is full (the pump resumes on its drain).
   */
  private sendUpstream(batch: Batch): boolean {
    const up = this.upstream;
    if (this.phase !== 'ready' || !up) return false;
    const { out, slots } = batch;
    const now = performance.now();
    for (const { item, at } of slots) {
      item.started = now;
      if (item.refused)
        out[at] =
          item.kind === 'E' ? serialize.execute({ portal: REFUSED_NAME }) : serialize.query(`EXECUTE ${REFUSED_NAME}`);
    }
    // frames read together are consecutive bytes of one buffer: each run of them goes out as one view of it
    // (one write, no copy), so a pipelined batch without refusals is a single write() rather than a writev
    const runs: Buffer[] = [];
    for (const b of out) {
      const last = runs.length > 0 ? runs[runs.length - 1] : null;
      if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset)
        runs[runs.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
      else runs.push(b);
    }
    let ok = true;
    if (runs.length === 1) ok = up.write(runs[0]);
    else if (runs.length > 1) {
      up.cork();
      for (const b of runs) ok = up.write(b) && ok;
      up.uncork();
    }
    if (batch.terminate) {
      up.end(serialize.end());
      this.endClient();
      return false;
    }
    if (ok) return true;
    this.pumping = true;
    const resume = () => {
      up.off('drain', resume);
      up.off('close', resume);
      this.pumping = false;
      this.pump();
    };
    up.on('drain', resume);
    up.on('close', resume);
    return false;
  }

  private request(
    requestId: string,
    method: string,
    sql: string,
    portal: Portal | null,
    decision: { allowed: boolean; reason: string },
  ): PgEvent | EncodedEvent {
    const action: Record<string, unknown> & { method: string; statement: string; params: number } = {
      method,
      statement: statementText(sql),
      params: portal ? portal.params : 0,
    };
    if (this.cfg.logParams && portal) {
      action.param_values = portal.values.map((v, i) =>
        v === null
          ? null
          : portal.formats[i] === 1
            ? { binary: v.toString('base64') }
            : statementText(v.toString('utf8')),
      );
    }
    return this.events!.request(requestId, action, decision);
  }

  private readOnlyCheck(sql: string): { allowed: boolean; reason: string } {
    const lift = this.grant!.readOnly ? liftsReadOnly(sql) : null;
    if (lift) return { allowed: false, reason: `read-only session: ${lift} is refused` };
    // the same for every statement of the session: made once
    return (this.allowed ??= {
      allowed: true,
      reason:
        this.grant!.role === null
          ? 'session authenticated'
          : `allowed by role ${this.grant!.role}${this.grant!.readOnly ? ' (read-only)' : ''}`,
    });
  }

  /** Reads a batch of client frames: tracks statements and portals, and builds the statements' request events. */
  private prepare(frames: Frame[]): Batch {
    const batch: Batch = { out: [], slots: [], events: [], forwarded: [], terminate: false };
    const { out, slots } = batch;
    const newItem = (kind: ItemKind, requestId: string | null): Item => ({
      kind,
      copyEnds: this.copyEnds,
      requestId,
      started: 0,
      refused: null,
      status: 'ok',
      command: null,
      rows: null,
      sqlstate: null,
    });
    for (const f of frames) {
      const { type, raw } = f;
      let sql: string | null = null;
      let portal: Portal | null = null;
      let method = '';
      if (type === T('Q')) {
        sql = firstString(raw);
        method = 'simple';
        this.statements.delete('');
        this.portals.delete('');
      } else if (type === T('E')) {
        portal = this.portals.get(firstString(raw)) ?? { sql: '', params: 0, values: [], formats: [] };
        sql = portal.sql;
        method = 'extended';
      } else if (type === T('F')) {
        sql = `-- fastpath function call, function oid ${raw.readInt32BE(5)}`;
        method = 'fastpath';
      } else if (type === T('P')) {
        const p = readParse(raw);
        this.statements.set(p.name, p.query);
      } else if (type === T('B')) {
        const b = readBind(raw);
        const keep = this.cfg.logParams;
        this.portals.set(b.portal, {
          sql: this.statements.get(b.statement) ?? '',
          params: b.values.length,
          values: keep ? b.values : [],
          formats: keep ? b.formats : [],
        });
      } else if (type === T('C')) {
        const which = String.fromCharCode(raw[5]);
        (which === 'S' ? this.statements : this.portals).delete(firstString(raw, 6));
      } else if (type === T('S')) {
        if (this.copyEnds >= this.syncsIgnoredBelow) this.inflight.push(newItem('S', null));
      } else if (type === T('c') || type === T('f')) {
        this.copyEnds++;
      } else if (type === T('X')) {
        batch.terminate = true;
        break;
      }
      if (sql === null) {
        out.push(raw);
        continue;
      }
      const decision = this.readOnlyCheck(sql);
      const requestId = randomUUID();
      const ev = this.request(requestId, method, sql, portal, decision);
      const item = newItem(type === T('E') ? 'E' : 'Q', requestId);
      this.statementCount++;
      if (!decision.allowed) item.refused = { sqlstate: '25006', message: `trailmark: ${decision.reason}` };
      batch.events.push(ev);
      batch.forwarded.push(decision.allowed);
      // queued at once, behind earlier statements: if the session ends while this batch waits for the log,
      // close() gives each its aborted response event
      this.inflight.push(item);
      slots.push({ item, at: out.length });
      out.push(raw); // replaced in sendUpstream when refused
    }
    return batch;
  }

  // ---- upstream → client

  private onUpstreamData(chunk: Buffer): void {
    const r = this.upReader!;
    r.push(chunk);
    let frames: Frame[];
    try {
      frames = r.frames();
    } catch (e) {
      this.fatal('08P01', `trailmark: the upstream sent a malformed message: ${errorMessage(e)}`);
      return;
    }
    if (frames.length === 0) return;
    // the frames of one read are consecutive bytes of one buffer: forward runs of them as one slice
    let run: Buffer | null = null;
    let runLen = 0;
    let ok = true;
    const flushRun = () => {
      if (run) ok = this.send(Buffer.from(run.buffer, run.byteOffset, runLen)) && ok;
      run = null;
      runLen = 0;
    };
    for (const f of frames) {
      const replacement = this.observe(f);
      if (replacement) {
        flushRun();
        ok = this.send(replacement) && ok;
        continue;
      }
      run ??= f.raw;
      runLen += f.raw.length;
    }
    flushRun();
    if (!ok && this.upstream) {
      // one slow client: stop reading its upstream until it catches up (others are not affected)
      const up = this.upstream;
      up.pause();
      this.client.once('drain', () => up.resume());
    }
  }

  /** Tracks statement completion; returns a replacement frame for a refused statement's error, else null. */
  private observe(f: Frame): Buffer | null {
    const head = this.inflight[0];
    switch (f.type) {
      case T('C'): {
        const tag = firstString(f.raw);
        if (!head || head.kind === 'S') return null;
        head.command = tag;
        const rows = tagRows(tag);
        if (rows !== null) head.rows = (head.kind === 'Q' ? (head.rows ?? 0) : 0) + rows;
        if (head.kind === 'E') this.complete();
        return null;
      }
      case T('I'):
      case T('s'):
        if (head?.kind === 'E') this.complete();
        return null;
      case T('E'): {
        if (!head || head.kind === 'S') return null;
        const fields = readError(f.raw);
        head.status = 'error';
        head.sqlstate ??= head.refused?.sqlstate ?? fields.get('C') ?? null;
        const replace = head.refused ? errorResponse('ERROR', head.refused.sqlstate, head.refused.message) : null;
        if (head.kind === 'E') this.complete();
        return replace;
      }
      case T('Z'): {
        // ReadyForQuery ends a simple query or a Sync; Executes still queued before it were skipped after an error
        while (this.inflight.length > 0) {
          const it = this.inflight[0];
          if (it.kind === 'E') {
            it.status = 'error';
            it.sqlstate ??= 'skipped';
            this.complete();
            continue;
          }
          this.complete();
          break;
        }
        return null;
      }
      case T('G'): {
        // copy-in: the Syncs the client sent after this statement and before its copy data ends get no answer
        if (!head || head.kind === 'S') return null;
        const n = head.copyEnds;
        for (let i = this.inflight.length - 1; i > 0; i--) {
          const it = this.inflight[i];
          if (it.kind === 'S' && it.copyEnds === n) this.inflight.splice(i, 1);
        }
        this.syncsIgnoredBelow = Math.max(this.syncsIgnoredBelow, n + 1);
        return null;
      }
      case T('K'):
        this.backendKey = { pid: f.raw.readInt32BE(5), secret: f.raw.readInt32BE(9) };
        return null;
      default:
        return null;
    }
  }

  private complete(aborted = false): void {
    const it = this.inflight.shift()!;
    if (!it.requestId) return;
    const outcome: StatementOutcome = {
      status: it.status,
      command: it.command,
      rows: it.rows,
      duration_ms: Math.round((performance.now() - it.started) * 1000) / 1000,
    };
    if (it.status === 'error') outcome.sqlstate = it.sqlstate;
    if (aborted) outcome.aborted = true;
    this.cfg.trail.later(this.events!.response(it.requestId, outcome));
  }

  /** Ends the session (once): statements still running are cancelled upstream and get aborted response events. */
  close(why: string, log = true): void {
    if (this.phase === 'closed' && !this.connected) {
      this.endClient();
      return;
    }
    const wasConnected = this.connected;
    this.connected = false;
    this.phase = 'closed';
    this.cfg.sessions.delete(this);
    const pendingStatements = this.inflight.some((i) => i.requestId);
    while (this.inflight.length > 0) {
      const it = this.inflight[0];
      if (it.requestId) {
        it.status = 'error';
        it.sqlstate ??= null;
      }
      this.complete(true);
    }
    const up = this.upstream;
    if (up && !up.destroyed) {
      if (pendingStatements && this.backendKey) {
        // a backend running a query does not notice its client is gone until it writes: cancel it first
        const key = this.backendKey;
        void cancelUpstream(this.upTarget, key.pid, key.secret).finally(() => up.destroy());
      } else up.end(serialize.end());
    }
    this.endClient();
    if (!log || !wasConnected) return;
    const ev = pgEvent('disconnect', this.cfg.proxy, {
      action: { protocol: 'postgres', session_id: this.sessionId },
      outcome: {
        duration_ms: Math.round((performance.now() - this.started) * 1000) / 1000,
        statements: this.statementCount,
        bytes: this.bytesOut,
        request_bytes: this.bytesIn,
        reason: why,
      },
    });
    this.cfg.trail.later(ev);
  }
}
