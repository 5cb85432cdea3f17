/**
 * What the index keeps of one log entry: the searchable fields of an access event (contract section 4, HTTP
 * and PostgreSQL alike) or of a Kubernetes audit event (audit.k8s.io/v1 Event: user, verb, resource).
 * Entries of any other shape are still indexed (by leaf index and time when they have one), never dropped.
 */
import { ACCESS_SCHEMA } from '@trailmark/tlog';

/** How an entry takes part in the request/response join. */
export const KIND_OTHER = 0;
/** A request event with a request_id, to which its response event is joined. */
export const KIND_REQUEST = 1;
/** A response event with a request_id, joined to its request. */
export const KIND_RESPONSE = 2;

/** The searchable fields of one log entry, as stored in the index (null where the entry has none). */
export interface IndexedFields {
  kind: number;
  stage: string | null;
  requestId: string | null;
  timeMs: number | null;
  actor: string | null;
  target: string | null;
  method: string | null;
  path: string | null;
  protocol: string | null;
  /** 1 allowed, 0 denied, null when the entry carries no decision. */
  decision: number | null;
  /** The outcome's status as text (HTTP codes, PostgreSQL "ok"/"error", Kubernetes response codes). */
  status: string | null;
  streamId: string | null;
  streamSeq: number | null;
  proxy: string | null;
  /** Full-text words: the path, query and statement. */
  words: string;
  /** The stream position object, when the entry has a well-formed one. */
  stream: { id: string; seq: number; prev: string | null } | null;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function timeOf(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

function statusText(v: unknown): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return typeof v === 'string' ? v : null;
}

function streamOf(v: unknown): IndexedFields['stream'] {
  if (!isObj(v) || typeof v.id !== 'string' || typeof v.seq !== 'number' || !Number.isSafeInteger(v.seq) || v.seq < 0)
    return null;
  return { id: v.id, seq: v.seq, prev: typeof v.prev === 'string' ? v.prev : null };
}

function empty(): IndexedFields {
  return {
    kind: KIND_OTHER,
    stage: null,
    requestId: null,
    timeMs: null,
    actor: null,
    target: null,
    method: null,
    path: null,
    protocol: null,
    decision: null,
    status: null,
    streamId: null,
    streamSeq: null,
    proxy: null,
    words: '',
    stream: null,
  };
}

/** The indexed fields of one parsed entry. Precondition: none (any JSON value). */
export function normalize(e: unknown): IndexedFields {
  const f = empty();
  if (!isObj(e)) return f;
  if (e.schema === ACCESS_SCHEMA) return accessEvent(e, f);
  if (e.kind === 'Event' && typeof e.apiVersion === 'string' && e.apiVersion.startsWith('audit.k8s.io/'))
    return k8sEvent(e, f);
  f.timeMs = timeOf(e.time);
  return f;
}

function accessEvent(e: Obj, f: IndexedFields): IndexedFields {
  f.stage = str(e.stage);
  f.requestId = str(e.request_id);
  f.timeMs = timeOf(e.time);
  f.proxy = str(e.proxy);
  f.stream = streamOf(e.stream);
  f.streamId = f.stream?.id ?? null;
  f.streamSeq = f.stream?.seq ?? null;
  if (isObj(e.actor)) f.actor = str(e.actor.id);
  const words: string[] = [];
  if (isObj(e.action)) {
    const a = e.action;
    f.protocol = str(a.protocol) ?? (typeof a.method === 'string' ? 'http' : null);
    f.target = str(a.target);
    f.method = str(a.method);
    f.path = str(a.path);
    for (const w of [a.path, a.query, a.statement]) if (typeof w === 'string' && w) words.push(w);
  }
  if (isObj(e.decision) && typeof e.decision.allowed === 'boolean') f.decision = e.decision.allowed ? 1 : 0;
  if (isObj(e.outcome)) f.status = statusText(e.outcome.status);
  f.words = words.join(' ');
  if (f.stage === 'request' && f.requestId !== null) f.kind = KIND_REQUEST;
  else if (f.stage === 'response' && f.requestId !== null) f.kind = KIND_RESPONSE;
  return f;
}

/**
 * A Kubernetes audit event is a request and its decision in one: actor = user.username, method = verb,
 * target = the resource (group/resource), path = requestURI, status = responseStatus.code, decision from the
 * authorizer's `authorization.k8s.io/decision` annotation.
 */
function k8sEvent(e: Obj, f: IndexedFields): IndexedFields {
  f.protocol = 'kubernetes';
  f.stage = str(e.stage);
  f.requestId = str(e.auditID);
  f.timeMs = timeOf(e.stageTimestamp) ?? timeOf(e.requestReceivedTimestamp);
  if (isObj(e.user)) f.actor = str(e.user.username);
  f.method = str(e.verb);
  f.path = str(e.requestURI);
  const words: string[] = [];
  if (f.path) words.push(f.path);
  if (isObj(e.objectRef)) {
    const r = e.objectRef;
    const resource = str(r.resource);
    const group = str(r.apiGroup);
    if (resource) f.target = group ? `${group}/${resource}` : resource;
    for (const w of [r.namespace, r.name, resource]) if (typeof w === 'string' && w) words.push(w);
  }
  if (isObj(e.responseStatus)) f.status = statusText(e.responseStatus.code);
  if (isObj(e.annotations)) {
    const d = e.annotations['authorization.k8s.io/decision'];
    if (d === 'allow') f.decision = 1;
    else if (d === 'forbid') f.decision = 0;
  }
  f.words = words.join(' ');
  f.kind = KIND_REQUEST;
  return f;
}
