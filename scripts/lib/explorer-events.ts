/**
 * The explorer benchmark's log: request/response pairs from 97 actors to 7 targets over 12 days, one
 * request in 20 denied, every event in one stream. Shared by the benchmark and its profiling harness.
 */
import { hash as nodeHash } from 'node:crypto';
import { canonicalJson } from '@trailmark/tlog';

/** The log's first event time. */
export const T0 = Date.parse('2026-01-01T00:00:00Z');

/** Event i of a log of n events; `prev` is the stream's previous leaf hash (base64), null for the first. */
export function benchEvent(i: number, n: number, prev: string | null): Uint8Array {
  const r = i >> 1;
  const time = new Date(T0 + r * Math.floor((12 * 86_400_000) / (n / 2))).toISOString();
  const denied = r % 20 === 7;
  if (i % 2 === 1) {
    return canonicalJson({
      schema: 'trailmark.access/v1',
      stage: 'response',
      id: `a-${r}`,
      request_id: `req-${r}`,
      time,
      proxy: 'bench-proxy',
      stream: { id: 'bench/0', seq: i, prev },
      outcome: { status: denied ? 403 : 200, bytes: 512, request_bytes: 0, duration_ms: 1.5 },
    });
  }
  return canonicalJson({
    schema: 'trailmark.access/v1',
    stage: 'request',
    id: `q-${r}`,
    request_id: `req-${r}`,
    time,
    proxy: 'bench-proxy',
    stream: { id: 'bench/0', seq: i, prev },
    actor: { id: `user${r % 97}`, roles: ['dba'], ip: '10.0.0.7', user_agent: 'curl/8' },
    action: {
      protocol: 'http',
      method: r % 5 === 0 ? 'POST' : 'GET',
      target: `https://svc${r % 7}.internal`,
      path: `/tables/t${r % 13}/rows/${r % 1000}`,
      query: `limit=${r % 50}`,
    },
    decision: { allowed: !denied, reason: denied ? 'no rule allows it' : 'role dba' },
  });
}

/** Events [start, end) of a log of n events with their RFC 6962 leaf hashes, chaining the stream from `prev`. */
export function benchLeaves(
  start: number,
  end: number,
  n: number,
  prev: string | null,
): { leaves: { index: number; data: Uint8Array; hash: Buffer }[]; prev: string | null } {
  const leaves = [];
  for (let i = start; i < end; i++) {
    const data = benchEvent(i, n, prev);
    const buf = new Uint8Array(data.length + 1);
    buf.set(data, 1);
    const hash = nodeHash('sha256', buf, 'buffer');
    prev = hash.toString('base64');
    leaves.push({ index: i, data, hash });
  }
  return { leaves, prev };
}
