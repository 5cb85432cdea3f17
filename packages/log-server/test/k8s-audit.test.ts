/**
 * POST /v1/k8s-audit: kube-apiserver's audit webhook backend posts an audit.k8s.io/v1 EventList; each event
 * of `items` becomes one entry, durable and signed before the answer.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson, hashLeaf, openCheckpoint, parseVkey, verifyTlogProof } from '@trailmark/tlog';
import { startLogServer, type LogServer } from '../src/index.js';

/** Events as kube-apiserver writes them (audit.k8s.io/v1 Event fields, one per stage and level). */
function auditEvent(n: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    level: 'Metadata',
    auditID: `2f3c7a4e-${String(n).padStart(4, '0')}-4b1d-9a57-0c8e61f0d2b4`,
    stage: 'ResponseComplete',
    requestURI: `/api/v1/namespaces/default/pods?limit=500&n=${n}`,
    verb: 'list',
    user: { username: 'kubernetes-admin', groups: ['kubeadm:cluster-admins', 'system:authenticated'] },
    sourceIPs: ['172.18.0.1'],
    userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
    objectRef: { resource: 'pods', namespace: 'default', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: '2026-12-04T21:58:11.112334Z',
    stageTimestamp: '2026-12-04T21:58:11.118915Z',
    annotations: {
      'authorization.k8s.io/decision': 'allow',
      'authorization.k8s.io/reason':
        'RBAC: allowed by ClusterRoleBinding "kubeadm:cluster-admins" of ClusterRole "cluster-admin" to Group "kubeadm:cluster-admins"',
    },
    ...over,
  };
}

const createPod = auditEvent(1, {
  level: 'RequestResponse',
  verb: 'create',
  requestURI: '/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict',
  objectRef: { resource: 'pods', namespace: 'default', name: 'nginx', apiVersion: 'v1' },
  responseStatus: { metadata: {}, code: 201 },
  requestObject: {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: 'nginx',
      namespace: 'default',
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1","kind":"Pod"}\n' },
    },
    spec: { containers: [{ name: 'nginx', image: 'nginx:1.27', ports: [{ containerPort: 80 }], resources: {} }] },
  },
  responseObject: {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: 'nginx',
      namespace: 'default',
      uid: '9c0f8d7e-1a2b-4c3d-8e9f-a0b1c2d3e4f5',
      resourceVersion: '48213',
      creationTimestamp: '2026-12-04T21:58:12Z',
    },
    spec: {
      containers: [
        {
          name: 'nginx',
          image: 'nginx:1.27',
          terminationMessagePath: '/dev/termination-log',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
    },
    status: { phase: 'Pending', qosClass: 'BestEffort' },
  },
});
const forbidden = auditEvent(2, {
  verb: 'get',
  requestURI: '/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef',
  user: {
    username: 'system:serviceaccount:default:ci',
    uid: 'c1a2b3c4-0000-4000-8000-000000000001',
    groups: ['system:serviceaccounts', 'system:serviceaccounts:default', 'system:authenticated'],
  },
  objectRef: { resource: 'secrets', namespace: 'kube-system', name: 'bootstrap-token-abcdef', apiVersion: 'v1' },
  responseStatus: {
    metadata: {},
    status: 'Failure',
    message: 'secrets "bootstrap-token-abcdef" is forbidden',
    reason: 'Forbidden',
    details: { name: 'bootstrap-token-abcdef', kind: 'secrets' },
    code: 403,
  },
  annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': '' },
});
const received = auditEvent(3, {
  stage: 'RequestReceived',
  verb: 'watch',
  requestURI: '/api/v1/namespaces/default/events?watch=true',
});

/** The body kube-apiserver's webhook backend posts: an EventList of the batch. */
function eventList(items: unknown[] | null, over: Record<string, unknown> = {}): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items, ...over });
}

describe('log server: Kubernetes audit webhook (POST /v1/k8s-audit)', function () {
  this.timeout(60_000);
  let dir: string;
  let log: LogServer;
  const auth = { 'content-type': 'application/json', authorization: 'Bearer k8s-webhook-token' };
  const send = (body: string | Uint8Array, headers: Record<string, string> = auth) =>
    fetch(`${log.url}/v1/k8s-audit`, { method: 'POST', headers, body: body as BodyInit });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tm-k8s-'));
    log = await startLogServer({ dataDir: join(dir, 'data'), submitTokens: ['k8s-webhook-token'] });
  });
  after(async () => {
    await log?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('appends each event of an EventList as one entry, in order, canonicalized, under a signed checkpoint', async () => {
    const items = [createPod, forbidden, received];
    // as Go's encoding/json writes it: key order of the struct, <>& escaped
    const body = eventList(items).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
    const r = await send(body);
    const text = await r.text();
    expect(r.status, text).to.equal(200);
    const ans = JSON.parse(text);
    expect(ans.tree_size).to.equal(3);
    const verifier = parseVkey(log.vkey);
    const cp = openCheckpoint(ans.checkpoint, verifier).checkpoint;
    expect(cp.size).to.equal(3n);
    expect(ans.entries.map((e: { leaf_index: number }) => e.leaf_index)).to.deep.equal([0, 1, 2]);
    items.forEach((ev, i) =>
      expect(ans.entries[i].leaf_hash).to.equal(Buffer.from(hashLeaf(canonicalJson(ev))).toString('base64')),
    );
    const stored = await (await fetch(`${log.url}/v1/get-entries?start=0&end=2`)).json();
    stored.entries.forEach((e: { leaf_input: string }, i: number) => {
      expect(Buffer.from(e.leaf_input, 'base64').toString()).to.equal(Buffer.from(canonicalJson(items[i])).toString());
    });
    // a receipt for an event verifies offline
    const proof = await (await fetch(`${log.url}/v1/get-tlog-proof?leaf_index=1`)).text();
    expect(verifyTlogProof(proof, hashLeaf(canonicalJson(forbidden)), verifier).index).to.equal(1n);
  });

  it('a batch kube-apiserver retries lands once: the same events answer their first indices', async () => {
    const again = await send(eventList([createPod, forbidden, received]));
    expect(again.status).to.equal(200);
    const ans = await again.json();
    expect(ans.tree_size).to.equal(3);
    expect(ans.entries.map((e: { leaf_index: number }) => e.leaf_index)).to.deep.equal([0, 1, 2]);
  });

  it('a full batch of 400 events (the webhook default), prepared off the main thread', async () => {
    const items = Array.from({ length: 400 }, (_, i) => auditEvent(1000 + i));
    const body = eventList(items);
    expect(body.length).to.be.greaterThan(64 * 1024);
    const r = await send(body);
    expect(r.status).to.equal(200);
    const ans = await r.json();
    expect(ans.tree_size).to.equal(403);
    expect(ans.entries[399]).to.deep.equal({
      leaf_index: 402,
      leaf_hash: Buffer.from(hashLeaf(canonicalJson(items[399]))).toString('base64'),
    });
  });

  it('an empty batch (items [] or null) answers the current tree and appends nothing', async () => {
    for (const items of [[], null]) {
      const r = await send(eventList(items));
      expect(r.status).to.equal(200);
      const ans = await r.json();
      expect(ans.entries).to.deep.equal([]);
      expect(ans.tree_size).to.equal(403);
    }
  });

  it('needs a submit token like every write, with the bearer scheme in any case', async () => {
    const body = eventList([auditEvent(9)]);
    expect((await send(body, { 'content-type': 'application/json' })).status).to.equal(401);
    expect((await send(body, { 'content-type': 'application/json', authorization: 'Bearer nope' })).status).to.equal(
      401,
    );
    const ok = await send(body, { 'content-type': 'application/json', authorization: 'bearer k8s-webhook-token' });
    expect(ok.status).to.equal(200);
  });

  const bad: [string, () => string | Uint8Array, number, Record<string, string>?][] = [
    [
      'a single Event, not an EventList',
      () => JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...auditEvent(20) }),
      400,
    ],
    [
      'an EventList of another API version',
      () => eventList([auditEvent(21)], { apiVersion: 'audit.k8s.io/v1beta1' }),
      400,
    ],
    [
      'an EventList without items',
      () => JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {} }),
      400,
    ],
    ['items that are not an array', () => eventList(null).replace('"items":null', '"items":{"a":1}'), 400],
    ['an item that is not an object', () => eventList([auditEvent(22), 'oops']), 400],
    ['an array body', () => JSON.stringify([auditEvent(23)]), 400],
    ['malformed JSON', () => eventList([auditEvent(24)]).slice(0, -3), 400],
    ['trailing data', () => eventList([auditEvent(25)]) + '{}', 400],
    [
      'invalid UTF-8',
      () => Buffer.concat([Buffer.from(eventList([auditEvent(26)]).slice(0, -3)), Buffer.from([0xff, 0x5d, 0x7d])]),
      400,
    ],
    [
      'an event over 65,535 canonical bytes',
      () => eventList([auditEvent(27), auditEvent(28, { requestObject: { data: 'x'.repeat(70_000) } })]),
      413,
    ],
    [
      'an event with too many values to fit',
      () => eventList([auditEvent(29, { requestObject: { list: new Array(70_000).fill(0) } })]),
      413,
    ],
    ['more than 10,000 events', () => eventList(Array.from({ length: 10_001 }, () => ({}))), 413],
    ['a body over 16 MiB', () => eventList([auditEvent(30, { pad: ' '.repeat(17 * 1024 * 1024) })]), 413],
    [
      'YAML',
      () => 'kind: EventList\napiVersion: audit.k8s.io/v1\nitems: []\n',
      415,
      { 'content-type': 'application/yaml', authorization: auth.authorization },
    ],
    [
      'protobuf',
      () => new Uint8Array([0x6b, 0x38, 0x73, 0x00]),
      415,
      { 'content-type': 'application/vnd.kubernetes.protobuf', authorization: auth.authorization },
    ],
  ];
  for (const [name, body, status, headers] of bad) {
    it(`${name} → ${status}, nothing appended`, async () => {
      const r = await send(body(), headers ?? auth);
      const text = await r.text();
      expect(r.status, text.slice(0, 200)).to.equal(status);
      expect(JSON.parse(text).error).to.be.a('string').and.not.equal('');
      const sth = await (await fetch(`${log.url}/v1/get-sth`)).json();
      expect(sth.tree_size).to.equal(404);
    });
  }

  it('GET is 405', async () => {
    const r = await fetch(`${log.url}/v1/k8s-audit`);
    expect(r.status).to.equal(405);
    expect(r.headers.get('allow')).to.equal('POST');
  });
});
