/**
 * The explorer's page: the search form (its fields are the query string, so `/?actor=alice` runs that
 * search), an activity chart, the results table and an event's detail. Every result is verified in the
 * browser against the log (verify.ts) and marked with data-verified="true" or "false" on its row
 * ([data-leaf-index="N"]); until then the attribute is absent.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { errorMessage, parsePolicy, parseVkey, type NoteVerifier, type Policy } from '@trailmark/tlog';
import { FILTER_PARAMS as FIELDS } from '@trailmark/client/explorer/params';
import { PageVerifier, type Verdict } from './verify.js';

interface ApiEntry {
  leaf_index: number;
  leaf_hash: string;
  entry: Record<string, any>;
}
interface ApiEvent extends ApiEntry {
  response: ApiEntry | null;
}
interface Info {
  log: string;
  key: string;
  policy: string | null;
  tree_size: number;
  state: string;
  alert: string | null;
}

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

let verifier: PageVerifier;
let cursor: string | null = null;
const shown = new Map<number, { ev: ApiEvent; verdict?: Promise<Verdict> }>();

function text(el: HTMLElement, s: string): HTMLElement {
  el.textContent = s;
  return el;
}

function filtersFromUrl(): URLSearchParams {
  const q = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const f of FIELDS) {
    const v = q.get(f);
    if (v) out.set(f, v);
  }
  return out;
}

function fillForm(q: URLSearchParams): void {
  const form = $<HTMLFormElement>('#search');
  for (const f of FIELDS) {
    const el = form.elements.namedItem(f) as HTMLInputElement | HTMLSelectElement | null;
    if (el) el.value = q.get(f) ?? '';
  }
}

async function getJson(path: string): Promise<any> {
  const r = await fetch(path, { cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
  return body;
}

/** The key to verify against: #key=VKEY pins one; otherwise the one the explorer names (shown). */
function chooseKey(info: Info): { key: NoteVerifier; pinned: boolean } {
  const pin = new URLSearchParams(location.hash.slice(1)).get('key');
  return pin ? { key: parseVkey(pin), pinned: true } : { key: parseVkey(info.key), pinned: false };
}

function describe(e: Record<string, any>): {
  time: string;
  actor: string;
  protocol: string;
  method: string;
  target: string;
  what: string;
  decision: string;
  status: string;
} {
  const a = e.action ?? {};
  if (e.kind === 'Event' && typeof e.apiVersion === 'string') {
    const d = e.annotations?.['authorization.k8s.io/decision'];
    return {
      time: e.stageTimestamp ?? '',
      actor: e.user?.username ?? '',
      protocol: 'kubernetes',
      method: e.verb ?? '',
      target: e.objectRef?.resource ?? '',
      what: e.requestURI ?? '',
      decision: d === 'allow' ? 'allowed' : d === 'forbid' ? 'denied' : '',
      status: String(e.responseStatus?.code ?? ''),
    };
  }
  const decision =
    typeof e.decision?.allowed === 'boolean' ? (e.decision.allowed ? 'allowed' : 'denied') : (e.stage ?? '');
  return {
    time: e.time ?? '',
    actor: e.actor ? (e.actor.id ?? '(unauthenticated)') : '',
    protocol: a.protocol ?? (a.method ? 'http' : ''),
    method: a.method ?? e.stage ?? '',
    target: a.target ?? '',
    what: a.statement ?? `${a.path ?? ''}${a.query ? `?${a.query}` : ''}`,
    decision,
    status: '',
  };
}

function row(ev: ApiEvent): HTMLTableRowElement {
  const tr = document.createElement('tr');
  tr.dataset.leafIndex = String(ev.leaf_index);
  const d = describe(ev.entry);
  const status = ev.response?.entry?.outcome?.status ?? ev.entry.outcome?.status ?? d.status;
  const mark = document.createElement('td');
  mark.className = 'mark';
  mark.title = 'verifying…';
  text(mark, '…');
  tr.append(mark);
  for (const v of [
    String(ev.leaf_index),
    d.time.replace('T', ' ').replace('Z', ''),
    d.actor,
    d.protocol,
    d.method,
    d.target,
    d.what,
    d.decision,
    status === undefined || status === null ? '' : String(status),
  ]) {
    tr.append(text(document.createElement('td'), v));
  }
  if (d.decision === 'denied') tr.classList.add('denied');
  tr.addEventListener('click', () => void showDetail(ev.leaf_index));
  return tr;
}

/** Verifies an event and its joined response; both must hold for the row to be marked verified. */
function verifyEvent(ev: ApiEvent): Promise<Verdict> {
  return (async () => {
    const main = await verifier.verify(ev.leaf_index, ev.entry);
    if (!main.ok || !ev.response) return main;
    const resp = await verifier.verify(ev.response.leaf_index, ev.response.entry);
    return resp.ok
      ? { ...main, why: `${main.why}; its response at index ${ev.response.leaf_index} too` }
      : { ok: false, why: `response: ${resp.why}` };
  })();
}

function mark(tr: HTMLElement, v: Verdict): void {
  tr.dataset.verified = String(v.ok);
  const td = tr.querySelector('td.mark') as HTMLElement;
  text(td, v.ok ? '✔' : '✘');
  td.title = v.why;
}

async function search(q: URLSearchParams, more: boolean): Promise<void> {
  $('#error').textContent = '';
  const tbody = $('#results tbody');
  if (!more) {
    tbody.replaceChildren();
    shown.clear();
    cursor = null;
  }
  const p = new URLSearchParams(q);
  p.set('limit', '100');
  if (more && cursor) p.set('cursor', cursor);
  const page = (await getJson(`api/events?${p}`)) as { tree_size: number; events: ApiEvent[]; next: string | null };
  cursor = page.next;
  $('#more').hidden = cursor === null;
  const rows = page.events.map((ev) => {
    const tr = row(ev);
    tbody.append(tr);
    const slot: { ev: ApiEvent; verdict?: Promise<Verdict> } = { ev };
    shown.set(ev.leaf_index, slot);
    return { tr, slot };
  });
  text($('#summary'), `${shown.size} shown, index holds ${page.tree_size} entries`);
  // a few at a time: each check waits on tile fetches from the log, and the verified tile reader shares a
  // tile fetched (or in flight) for one row with every other row that needs it
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const { tr, slot } = rows[next++];
      slot.verdict = verifyEvent(slot.ev);
      mark(tr, await slot.verdict);
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
}

function pretty(v: unknown): string {
  return JSON.stringify(v, null, 2);
}

async function showDetail(index: number): Promise<void> {
  const slot = shown.get(index);
  if (!slot) return;
  const box = $('#detail');
  box.hidden = false;
  box.dataset.leafIndex = String(index);
  text($('#d-index'), `#${index}`);
  text($('#d-request'), pretty(slot.ev.entry));
  text(
    $('#d-response'),
    slot.ev.response ? `#${slot.ev.response.leaf_index}\n${pretty(slot.ev.response.entry)}` : '(none joined)',
  );
  text($('#d-stream'), slot.ev.entry.stream ? pretty(slot.ev.entry.stream) : '(no stream position)');
  text($('#d-mark'), '…');
  text($('#d-why'), 'verifying…');
  text($('#d-receipt'), '');
  box.scrollIntoView({ block: 'nearest' });
  const v = await (slot.verdict ?? (slot.verdict = verifyEvent(slot.ev)));
  if (box.dataset.leafIndex !== String(index)) return;
  box.dataset.verified = String(v.ok);
  text($('#d-mark'), v.ok ? '✔ verified' : '✘ failed');
  text($('#d-why'), v.why);
  text($('#d-receipt'), v.receipt ?? '(no receipt: the log does not prove this entry)');
  const dl = $<HTMLButtonElement>('#d-download');
  dl.disabled = !v.receipt;
  dl.onclick = () => {
    if (!v.receipt) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([v.receipt], { type: 'text/plain' }));
    a.download = `event-${index}.tlog-proof`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
}

let plot: uPlot | null = null;

async function chart(q: URLSearchParams): Promise<void> {
  // the finest bucket that the activity's time span suits: days, hours within two days, minutes within three hours
  const statsFor = (bucket: string) => getJson(`api/stats?${new URLSearchParams([...q, ['bucket', bucket]])}`);
  const span = (s: { buckets: { start: string }[] }) =>
    s.buckets.length < 2 ? 0 : Date.parse(s.buckets[s.buckets.length - 1].start) - Date.parse(s.buckets[0].start);
  let bucket = 'day';
  let stats = await statsFor(bucket);
  if (span(stats) <= 2 * 86_400_000) {
    bucket = 'hour';
    stats = await statsFor(bucket);
    if (span(stats) <= 3 * 3_600_000) {
      bucket = 'minute';
      stats = await statsFor(bucket);
    }
  }
  text($('#bucket'), bucket);
  const xs = stats.buckets.map((b: { start: string }) => Date.parse(b.start) / 1000);
  const allowed = stats.buckets.map((b: { allowed: number }) => b.allowed);
  const denied = stats.buckets.map((b: { denied: number }) => (b.denied > 0 ? b.denied : null));
  const el = $('#chart');
  plot?.destroy();
  el.replaceChildren();
  el.dataset.total = `${stats.total.allowed + stats.total.denied}`;
  plot = new uPlot(
    {
      width: Math.max(320, el.clientWidth || 900),
      height: 180,
      scales: { x: { time: true } },
      series: [
        {},
        {
          label: 'allowed',
          stroke: '#2b7a3d',
          fill: 'rgba(43,122,61,0.15)',
          paths: uPlot.paths.bars!({ size: [0.6, 40] }),
        },
        {
          label: 'denied',
          stroke: '#c62828',
          fill: 'rgba(198,40,40,0.5)',
          points: { show: true, size: 8, fill: '#c62828' },
          paths: uPlot.paths.bars!({ size: [0.3, 20] }),
        },
      ],
      axes: [{}, { label: 'requests' }],
    },
    [xs, allowed, denied],
    el,
  );
}

async function run(): Promise<void> {
  const q = filtersFromUrl();
  fillForm(q);
  await Promise.all([search(q, false), chart(q).catch((e) => console.warn('chart', e))]);
}

async function main(): Promise<void> {
  const info = (await getJson('api/info')) as Info;
  const { key, pinned } = chooseKey(info);
  let policy: Policy | undefined;
  if (info.policy) policy = parsePolicy(info.policy);
  verifier = new PageVerifier(info.log, key, policy);
  text($('#vkey'), `${key.name}+${key.keyId.toString(16).padStart(8, '0')}`);
  $('#vkey').title = pinned ? 'pinned with #key=' : 'named by the explorer; pin one with #key=VKEY';
  text($('#pinned'), pinned ? '(pinned)' : '(as named by the explorer: pin with #key=VKEY)');
  text($('#logurl'), info.log);
  verifier.checkpoint().then(
    (log) => {
      text($('#cpsize'), `size ${log.size}`);
      text($('#cpstate'), `✔ signature${policy ? ' and witness quorum' : ''} verified`);
    },
    (e) => text($('#cpstate'), `✘ checkpoint does not verify: ${errorMessage(e)}`),
  );
  if (info.state === 'stopped') text($('#error'), `The explorer stopped indexing: ${info.alert}`);
  $<HTMLFormElement>('#search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = new FormData(ev.target as HTMLFormElement);
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      const v = String(data.get(f) ?? '').trim();
      if (v) q.set(f, v);
    }
    history.pushState(null, '', `?${q}${location.hash}`);
    run().catch(showError);
  });
  $('#more').addEventListener('click', () => void search(filtersFromUrl(), true).catch(showError));
  window.addEventListener('popstate', () => void run().catch(showError));
  await run();
  document.body.dataset.ready = 'true';
}

function showError(e: unknown): void {
  text($('#error'), errorMessage(e));
}

main().catch(showError);
