/**
 * PostgreSQL access events (contract section 4, `action.protocol: "postgres"`): connect, request, response and
 * disconnect, all linked by `action.session_id`, request and response also by `request_id`.
 *
 * Every event the pg-proxy writes goes through PgTrail.write: one place that hands events to the shared
 * AccessTrail (spool, shipper, log client of @trailmark/proxy), so stream fields and anything else the trail
 * adds to events apply here unchanged.
 */
import {
  AccessTrail,
  ACCESS_SCHEMA,
  capString,
  EncodedEvent,
  newId,
  rfc3339ms,
  type AccessEvent,
} from '@trailmark/recorder';
import { canonicalJsonString } from '@trailmark/tlog';
import type { Receipt } from '@trailmark/client';

/** Who a PostgreSQL session belongs to: proxy user, roles, client address and application_name. */
export interface PgActor {
  id: string | null;
  roles: string[];
  ip: string | null;
  /** The client's application_name. */
  user_agent: string | null;
}

/**
 * A PostgreSQL access event (contract section 4, protocol `postgres`): connect, request, response or disconnect of one
 * session.
 */
export interface PgEvent {
  schema: typeof ACCESS_SCHEMA;
  stage: 'connect' | 'request' | 'response' | 'disconnect';
  id: string;
  time: string;
  proxy: string;
  request_id?: string;
  actor?: PgActor;
  action: Record<string, unknown> & { protocol: 'postgres'; session_id: string };
  decision?: { allowed: boolean; reason: string };
  outcome?: Record<string, unknown>;
}

/**
 * A statement's response outcome (contract section 4). Precondition: duration_ms and rows are finite numbers;
 * sqlstate is given (string or null) only when status is 'error'.
 */
export interface StatementOutcome {
  status: 'ok' | 'error';
  /** The command tag, such as `SELECT 3`, or null when none came. */
  command: string | null;
  rows: number | null;
  duration_ms: number;
  sqlstate?: string | null;
  /** The session ended before the statement's answer did. */
  aborted?: true;
}

/** SQL text kept in an event: the log's entries are at most 65,535 bytes, so long statements are cut. */
export const MAX_STATEMENT_CHARS = 16_384;
/** What an event may take in canonical JSON, leaving room for the fields a trail adds (stream position). */
const MAX_EVENT_BYTES = 60_000;
/** Room for punctuation, numbers and booleans (strings and key names are counted apart). */
const FIXED_BYTES = 1_000;

/**
 * A bound on an event's JSON size without serializing it: every string and key name takes at most six bytes
 * per UTF-16 unit plus its quotes and separator (counted as one more unit).
 */
function jsonBound(ev: PgEvent): number {
  let n = 0;
  const add = (v: unknown): void => {
    if (typeof v === 'string') n += v.length + 1;
    else if (Array.isArray(v)) for (const x of v) add(x);
    else if (v !== null && typeof v === 'object')
      for (const k in v) {
        n += k.length + 1;
        add((v as Record<string, unknown>)[k]);
      }
    else n += 4; // a number (ours are short), boolean or null, beside FIXED_BYTES
  };
  add(ev);
  return n * 6 + FIXED_BYTES;
}

/**
 * Keeps a request event within the log's entry size: parameter values go first (`params_truncated: true`),
 * then the statement is cut shorter. Escaping can make JSON up to six bytes per character, so a character cap
 * alone does not do it.
 */
export function fitEvent(ev: PgEvent): PgEvent {
  // the common case is decided without serializing (parameter values are counted for real: they are large)
  if (!('param_values' in ev.action) && jsonBound(ev) <= MAX_EVENT_BYTES) return ev;
  const size = () => Buffer.byteLength(JSON.stringify(ev));
  if (size() <= MAX_EVENT_BYTES) return ev;
  if ('param_values' in ev.action) {
    delete ev.action.param_values;
    ev.action.params_truncated = true;
  }
  for (let keep = 8192; size() > MAX_EVENT_BYTES && keep >= 256; keep >>= 1) {
    ev.action.statement = capString(String(ev.action.statement ?? ''), keep);
  }
  return ev;
}

/** A new PgEvent of `stage` with a fresh id and the current time. */
export function pgEvent(
  stage: PgEvent['stage'],
  proxy: string,
  fields: Omit<PgEvent, 'schema' | 'stage' | 'id' | 'time' | 'proxy'>,
): PgEvent {
  return { schema: ACCESS_SCHEMA, stage, id: newId(), time: rfc3339ms(), proxy, ...fields };
}

/** SQL text as recorded: cut to MAX_STATEMENT_CHARS characters (with '…') so the event fits a log entry. */
export function statementText(sql: string): string {
  return capString(sql, MAX_STATEMENT_CHARS);
}

/** A string's RFC 8785 form (throws JsonError for a lone surrogate, as canonicalJson does for a whole event). */
const q = (s: string): string => canonicalJsonString(s, { allowNonObject: true });
const qOrNull = (s: string | null): string => (s === null ? 'null' : q(s));
const SCHEMA_JSON = q(ACCESS_SCHEMA);
/** Decisions seen, by reason (a session has its allowed reason and a few refusal texts). */
const DECISION_CACHE = 32;

/**
 * Builds one session's request and response events directly in canonical form (EncodedEvent): what stays the
 * same for the whole session (actor, database, target, session id, proxy name) is encoded once, and each event
 * is a concatenation rather than an object the sealer then walks, sorts and quotes. The bytes are exactly those
 * of canonicalJson on the same event (tests compare them); events too large for the shortcut's size bound, and
 * those with parameter values, take the object path (pgEvent, fitEvent).
 */
export class SessionEvents {
  private readonly actorJson: string;
  private readonly proxyJson: string;
  /** `"protocol":"postgres","session_id":…` : the members of every action after `params`. */
  private readonly actionTail: string;
  private readonly databaseJson: string;
  private readonly responseAction: string;
  private readonly decisions = new Map<string, string>();

  private readonly targetJson: string;

  constructor(
    private readonly proxy: string,
    private readonly actor: PgActor,
    private readonly database: string,
    private readonly target: string,
    private readonly sessionId: string,
  ) {
    this.actorJson = canonicalJsonString(actor);
    this.proxyJson = q(proxy);
    this.databaseJson = q(database);
    const sid = q(sessionId);
    this.actionTail = `"protocol":"postgres","session_id":${sid},`;
    this.targetJson = q(target);
    this.responseAction = `{"protocol":"postgres","session_id":${sid}}`;
  }

  private decision(d: { allowed: boolean; reason: string }): string {
    const key = (d.allowed ? '1' : '0') + d.reason;
    let j = this.decisions.get(key);
    if (j === undefined) {
      j = `{"allowed":${d.allowed},"reason":${q(d.reason)}}`;
      if (this.decisions.size < DECISION_CACHE) this.decisions.set(key, j);
    }
    return j;
  }

  /**
   * A request event: `action` holds method, statement (already cut by statementText), params and, with
   * --log-params, param_values. Returns the encoded event, or the object form when it needs fitEvent.
   */
  request(
    requestId: string,
    action: Record<string, unknown> & { method: string; statement: string; params: number },
    decision: { allowed: boolean; reason: string },
  ): EncodedEvent | PgEvent {
    const head = 'param_values' in action ? null : this.requestHead(requestId, action, decision);
    // at most 3 UTF-8 bytes per UTF-16 unit: within the bound, the event fits without fitEvent's cuts
    if (head !== null && head.length * 3 + 64 <= MAX_EVENT_BYTES)
      return new EncodedEvent('request', requestId, head, `"time":"${rfc3339ms()}"`);
    return fitEvent(
      pgEvent('request', this.proxy, {
        request_id: requestId,
        actor: this.actor,
        action: {
          protocol: 'postgres',
          target: this.target,
          database: this.database,
          session_id: this.sessionId,
          ...action,
        },
        decision,
      }),
    );
  }

  /** The request event's members before "stream", or null for a lone surrogate (q throws). */
  private requestHead(
    requestId: string,
    action: { method: string; statement: string; params: number },
    decision: { allowed: boolean; reason: string },
  ): string | null {
    try {
      return (
        `"action":{"database":${this.databaseJson},"method":${q(action.method)},"params":${action.params},` +
        `${this.actionTail}"statement":${q(action.statement)},"target":${this.targetJson}},` +
        `"actor":${this.actorJson},"decision":${this.decision(decision)},"id":"${newId()}",` +
        `"proxy":${this.proxyJson},"request_id":"${requestId}","schema":${SCHEMA_JSON},"stage":"request"`
      );
    } catch {
      // the object path then, where sealing refuses the event as it refuses any such event
      return null;
    }
  }

  /** A response event (contract section 4): the outcome's members are written in canonical order as they come. */
  response(requestId: string, outcome: StatementOutcome): EncodedEvent {
    const { status, command, rows, duration_ms: ms, sqlstate, aborted } = outcome;
    // RFC 8785 writes numbers as ECMAScript's Number.prototype.toString does (String(n)), members sorted by key
    const json =
      `{${aborted ? '"aborted":true,' : ''}"command":${qOrNull(command)},"duration_ms":${String(ms)},` +
      `"rows":${rows === null ? 'null' : String(rows)},` +
      `${sqlstate === undefined ? '' : `"sqlstate":${qOrNull(sqlstate)},`}"status":"${status}"}`;
    return new EncodedEvent(
      'response',
      requestId,
      `"action":${this.responseAction},"id":"${newId()}","outcome":${json},` +
        `"proxy":${this.proxyJson},"request_id":"${requestId}","schema":${SCHEMA_JSON},"stage":"response"`,
      `"time":"${rfc3339ms()}"`,
    );
  }
}

/** How long a response or disconnect event may wait for the next request event's write (ms). */
const DEFER_MS = 250;

/**
 * The trail as the pg-proxy uses it. Request and connect events are written at once (the statement or session
 * waits for them). Response and disconnect events wait up to DEFER_MS to join the next such write: the spool
 * writes one group at a time, so a response event written alone would make the session's next statement wait
 * for two disk flushes instead of one.
 *
 * In spool mode the events go to the spool through callbacks, not promises: a session records a whole batch of
 * pipelined statements with one callback, which spares a promise and a microtask per event on the hot path.
 */
export class PgTrail {
  /** Writes started and not settled yet, and who waits for that number to reach zero. */
  private inflight = 0;
  private idle: (() => void)[] = [];
  private deferred: (PgEvent | EncodedEvent)[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly settled = (): void => {
    if (--this.inflight === 0) for (const r of this.idle.splice(0)) r();
  };

  constructor(
    readonly trail: AccessTrail,
    private readonly warn: (line: string) => void = (l) => process.stderr.write(`trailmark pg-proxy: ${l}\n`),
  ) {}

  /** Resolves once every write started so far has settled (before closing the spool). */
  async settle(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushDeferred();
    while (this.inflight > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  /** Records one event the caller waits for (connect events): resolves once it is durable in the spool. */
  write(event: PgEvent): Promise<Receipt | null> {
    // deferred events join this write (appends made in one turn of the event loop share one flush)
    this.flushDeferred();
    // AccessTrail's types name the HTTP events; it stores any JSON event as its canonical bytes
    this.inflight++;
    return this.trail.after(event as unknown as AccessEvent).then(
      () => {
        this.settled();
        return null;
      },
      (e: unknown) => {
        this.settled();
        throw e;
      },
    );
  }

  /**
   * Records the request events of a batch of statements before they are forwarded, then calls `done` once with
   * each event's error (null: durable in the spool, and in strict mode, where `forwarded[i]`, acknowledged by
   * the log). Events of refused statements (not forwarded) are only spooled. Never calls `done` synchronously.
   */
  before(events: (PgEvent | EncodedEvent)[], forwarded: boolean[], done: (errors: (Error | null)[]) => void): void {
    this.flushDeferred();
    if (events.length === 0) {
      queueMicrotask(() => done([]));
      return;
    }
    const errors: (Error | null)[] = new Array<Error | null>(events.length).fill(null);
    let left = events.length;
    this.inflight += events.length;
    const one = (i: number) => (e: Error | null) => {
      errors[i] = e;
      this.settled();
      if (--left === 0) done(errors);
    };
    const strict = this.trail.mode === 'strict';
    for (let i = 0; i < events.length; i++) {
      const cb = one(i);
      // spool mode's guarantee is the spool's: durable before forwarding, as for any other event
      if (!strict || !forwarded[i]) {
        this.trail.afterThen(events[i] as unknown as AccessEvent, cb);
        continue;
      }
      this.trail.before(events[i] as unknown as AccessEvent).then(
        () => cb(null),
        (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))),
      );
    }
  }

  /**
   * Records an event nobody waits for (response, disconnect): durably in the spool, after at most DEFER_MS.
   * A failure is reported through the warn function.
   */
  later(event: PgEvent | EncodedEvent): void {
    this.inflight++;
    this.deferred.push(event);
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.flushDeferred();
    }, DEFER_MS);
  }

  private readonly laterDone = (e: Error | null): void => {
    if (e) this.warn(`could not spool a response or disconnect event: ${e.message}`);
    this.settled();
  };

  private flushDeferred(): void {
    // the timer is left to run out (it then finds nothing or newer events): one timer per DEFER_MS rather than
    // a setTimeout and a clearTimeout per statement
    if (this.deferred.length === 0) return;
    const batch = this.deferred;
    this.deferred = [];
    for (const ev of batch) this.trail.afterThen(ev as unknown as AccessEvent, this.laterDone);
  }
}
