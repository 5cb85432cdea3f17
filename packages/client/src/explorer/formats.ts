/**
 * The export formats of a search: NDJSON (the API's event objects, one a line), CSV (one row per request
 * with its response's outcome) and OCSF 1.3 for SIEMs (HTTP Activity, class 4002, for HTTP events;
 * Datastore Activity, class 6005, for PostgreSQL events; other entries are left out of the OCSF export).
 */
import { b64encode } from '@trailmark/tlog';

/** One indexed event as the explorer stores and serves it: the request and, once logged, its response. */
export interface StoredEvent {
  leaf_index: number;
  leaf_hash: Uint8Array;
  /** The entry's canonical JSON text, as logged. */
  entry: string;
  response: { leaf_index: number; leaf_hash: Uint8Array; entry: string } | null;
}

/** One API event object as JSON text; the entries' canonical JSON is spliced in as logged. */
export function eventJson(e: StoredEvent): string {
  const r = e.response;
  const resp = r ? `{"leaf_index":${r.leaf_index},"leaf_hash":"${b64encode(r.leaf_hash)}","entry":${r.entry}}` : 'null';
  return `{"leaf_index":${e.leaf_index},"leaf_hash":"${b64encode(e.leaf_hash)}","entry":${e.entry},"response":${resp}}`;
}

type Obj = Record<string, any>;

const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {});

function parse(text: string): Obj {
  try {
    return obj(JSON.parse(text));
  } catch {
    return {};
  }
}

/** The CSV export's columns, in order. */
export const CSV_COLUMNS = [
  'leaf_index',
  'time',
  'stage',
  'protocol',
  'actor',
  'roles',
  'ip',
  'method',
  'target',
  'path',
  'query',
  'statement',
  'decision',
  'reason',
  'status',
  'duration_ms',
  'bytes',
  'request_id',
  'stream',
  'stream_seq',
  'proxy',
  'response_leaf_index',
  'leaf_hash',
] as const;

/** RFC 4180 field: quoted when it holds a comma, quote, CR or LF; a leading formula character is defused. */
function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  // spreadsheets run cells that start with these as formulas (CSV injection): prefix a quote
  if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV header line, CRLF-terminated as RFC 4180 says. */
export function csvHeader(): string {
  return CSV_COLUMNS.join(',') + '\r\n';
}

/** One CSV row: the event's fields, and its response's outcome when joined. */
export function csvRow(e: StoredEvent): string {
  const x = parse(e.entry);
  const resp = e.response ? parse(e.response.entry) : {};
  const action = obj(x.action);
  const actor = obj(x.actor);
  const decision = obj(x.decision);
  const outcome = { ...obj(x.outcome), ...obj(resp.outcome) };
  const stream = obj(x.stream);
  const row: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    leaf_index: e.leaf_index,
    time: x.time ?? x.stageTimestamp,
    stage: x.stage,
    protocol: action.protocol ?? (action.method ? 'http' : x.apiVersion ? 'kubernetes' : null),
    actor: actor.id ?? obj(x.user).username,
    roles: Array.isArray(actor.roles) ? actor.roles.join(' ') : null,
    ip: actor.ip ?? (Array.isArray(x.sourceIPs) ? x.sourceIPs[0] : null),
    method: action.method ?? x.verb,
    target: action.target ?? obj(x.objectRef).resource,
    path: action.path ?? x.requestURI,
    query: action.query,
    statement: action.statement,
    decision: typeof decision.allowed === 'boolean' ? (decision.allowed ? 'allowed' : 'denied') : null,
    reason: decision.reason,
    status: outcome.status ?? obj(x.responseStatus).code,
    duration_ms: outcome.duration_ms,
    bytes: outcome.bytes,
    request_id: x.request_id ?? x.auditID,
    stream: stream.id,
    stream_seq: stream.seq,
    proxy: x.proxy,
    response_leaf_index: e.response?.leaf_index,
    leaf_hash: b64encode(e.leaf_hash),
  };
  return CSV_COLUMNS.map((c) => csvField(row[c])).join(',') + '\r\n';
}

const OCSF_VERSION = '1.3.0';
const HTTP_ACTIVITY: Record<string, number> = {
  CONNECT: 1,
  DELETE: 2,
  GET: 3,
  HEAD: 4,
  OPTIONS: 5,
  POST: 6,
  PUT: 7,
  TRACE: 8,
  PATCH: 9,
};

/** OCSF Datastore Activity id for a SQL statement: Read 1, Update 2, Query 4, Write 5, Create 6, Delete 7, Other 99. */
function datastoreActivity(statement: unknown): number {
  const verb = typeof statement === 'string' ? (/^\s*(\w+)/.exec(statement)?.[1] ?? '').toUpperCase() : '';
  switch (verb) {
    case 'SELECT':
    case 'WITH':
    case 'SHOW':
      return 4;
    case 'UPDATE':
      return 2;
    case 'INSERT':
    case 'COPY':
      return 5;
    case 'CREATE':
      return 6;
    case 'DELETE':
    case 'DROP':
    case 'TRUNCATE':
      return 7;
    default:
      return 99;
  }
}

function statusOf(x: Obj, outcome: Obj): { status_id: number; status: string; status_code?: string } {
  const allowed = obj(x.decision).allowed;
  const code = outcome.status;
  if (allowed === false)
    return {
      status_id: 2,
      status: 'Failure',
      ...(code !== undefined && code !== null ? { status_code: String(code) } : {}),
    };
  if (code === undefined || code === null) return { status_id: 0, status: 'Unknown' };
  const failed = code === 'error' || (typeof code === 'number' && code >= 400);
  return { status_id: failed ? 2 : 1, status: failed ? 'Failure' : 'Success', status_code: String(code) };
}

/**
 * One OCSF event for an access event (with its response joined), or null for entries OCSF has no class for
 * here (Kubernetes audit events, stream heartbeats, non-access entries).
 */
export function ocsfEvent(e: StoredEvent): Obj | null {
  const x = parse(e.entry);
  if (x.schema !== 'trailmark.access/v1') return null;
  const action = obj(x.action);
  const protocol = action.protocol ?? (action.method ? 'http' : null);
  if (protocol !== 'http' && protocol !== 'postgres') return null;
  const resp = e.response ? parse(e.response.entry) : {};
  const outcome = { ...obj(x.outcome), ...obj(resp.outcome) };
  const actor = obj(x.actor);
  const decision = obj(x.decision);
  const time = Date.parse(x.time);
  const common: Obj = {
    time: Number.isFinite(time) ? time : null,
    severity_id: 1,
    severity: 'Informational',
    ...statusOf(x, outcome),
    metadata: {
      version: OCSF_VERSION,
      uid: x.id,
      correlation_uid: x.request_id,
      original_time: x.time,
      log_name: 'trailmark',
      product: { name: 'Trailmark', vendor_name: 'Trailmark', feature: { name: x.proxy ?? 'proxy' } },
    },
    actor: {
      user: {
        name: actor.id ?? null,
        uid: actor.id ?? null,
        groups: Array.isArray(actor.roles) ? actor.roles.map((r: string) => ({ name: r })) : [],
      },
    },
    src_endpoint: { ip: actor.ip ?? null },
    ...(typeof decision.allowed === 'boolean'
      ? {
          action_id: decision.allowed ? 1 : 2,
          action: decision.allowed ? 'Allowed' : 'Denied',
          disposition_id: decision.allowed ? 1 : 2,
          disposition: decision.allowed ? 'Allowed' : 'Blocked',
          status_detail: decision.reason,
        }
      : {}),
    ...(typeof outcome.duration_ms === 'number' ? { duration: Math.round(outcome.duration_ms) } : {}),
    unmapped: {
      trailmark: {
        leaf_index: e.leaf_index,
        leaf_hash: b64encode(e.leaf_hash),
        stage: x.stage,
        stream: x.stream ?? null,
        response_leaf_index: e.response?.leaf_index ?? null,
      },
    },
  };
  if (protocol === 'http') {
    const method = String(action.method ?? '').toUpperCase();
    const activity = HTTP_ACTIVITY[method] ?? 99;
    let hostname: string | null = null;
    try {
      hostname = new URL(action.target).hostname;
    } catch {
      /* not a URL */
    }
    return {
      category_uid: 4,
      category_name: 'Network Activity',
      class_uid: 4002,
      class_name: 'HTTP Activity',
      activity_id: activity,
      activity_name: activity === 99 ? method || 'Other' : method.charAt(0) + method.slice(1).toLowerCase(),
      type_uid: 4002 * 100 + activity,
      ...common,
      http_request: {
        http_method: method,
        uid: x.request_id,
        user_agent: actor.user_agent ?? null,
        url: {
          url_string: `${action.target ?? ''}${action.path ?? ''}${action.query ? `?${action.query}` : ''}`,
          hostname,
          path: action.path ?? null,
          query_string: action.query ?? null,
        },
      },
      ...(typeof outcome.status === 'number'
        ? { http_response: { code: outcome.status, length: outcome.bytes ?? null } }
        : {}),
      dst_endpoint: { hostname },
    };
  }
  const activity = x.stage === 'connect' ? 3 : datastoreActivity(action.statement);
  const names: Record<number, string> = {
    2: 'Update',
    3: 'Connect',
    4: 'Query',
    5: 'Write',
    6: 'Create',
    7: 'Delete',
    99: 'Other',
  };
  return {
    category_uid: 6,
    category_name: 'Application Activity',
    class_uid: 6005,
    class_name: 'Datastore Activity',
    activity_id: activity,
    activity_name: names[activity],
    type_uid: 6005 * 100 + activity,
    ...common,
    database: { name: action.database ?? null, type: 'PostgreSQL', type_id: 99, uid: action.target ?? null },
    ...(typeof action.statement === 'string' ? { query_info: { query_string: action.statement } } : {}),
    ...(action.session_id ? { session: { uid: action.session_id } } : {}),
  };
}
