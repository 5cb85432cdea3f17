/**
 * Gossip with peer monitors: pull their latest checkpoints and evidence (GET /v1/checkpoints, /v1/evidence)
 * and push ours (POST /v1/gossip). What is pulled is checked by the Monitor, never trusted.
 */
import { errorMessage } from '@trailmark/tlog';
import type { Counter } from 'prom-client';
import { MonitorError } from './errors.js';
import { getJson, httpRequest, joinUrl, type Evidence, type RequestLimits } from '@trailmark/client';
import type { Outcome } from './outcome.js';

/** What a round of gossip sends: our latest checkpoints and the evidence we hold. */
export interface GossipPayload {
  checkpoints: string[];
  evidence: Evidence[];
}

/** How the Monitor checks what a peer sends. */
export interface GossipChecks {
  observe(note: string, from: string): Promise<Outcome>;
  importEvidence(v: unknown, from: string): Promise<Outcome>;
}

/** Pulls a peer's checkpoints and evidence and checks each with `checks`. Precondition: none. */
export async function pullPeer(
  peer: string,
  checks: GossipChecks,
  limits: RequestLimits,
  errors: Counter,
): Promise<Outcome[]> {
  let list: unknown;
  try {
    list = await getJson(joinUrl(peer, '/v1/checkpoints'), limits);
  } catch (e) {
    errors.inc({ what: 'peer' });
    return [{ status: 'error', message: `could not pull checkpoints from peer ${peer}: ${errorMessage(e)}` }];
  }
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) {
    errors.inc({ what: 'peer' });
    return [{ status: 'error', message: `peer ${peer}: /v1/checkpoints is not a JSON array of notes` }];
  }
  const out: Outcome[] = [];
  for (const note of list as string[]) out.push(await checks.observe(note, peer));
  let evs: unknown;
  try {
    evs = await getJson(joinUrl(peer, '/v1/evidence'), limits);
  } catch (e) {
    errors.inc({ what: 'peer' });
    out.push({ status: 'error', message: `could not pull evidence from peer ${peer}: ${errorMessage(e)}` });
    return out;
  }
  if (Array.isArray(evs)) for (const ev of evs) out.push(await checks.importEvidence(ev, peer));
  return out;
}

/** Pushes `payload` to a peer's POST /v1/gossip. Precondition: none. */
export async function pushPeer(
  peer: string,
  { checkpoints, evidence }: GossipPayload,
  limits: RequestLimits,
  errors: Counter,
): Promise<Outcome> {
  if (checkpoints.length === 0 && evidence.length === 0) return { status: 'ok', message: 'nothing to push yet' };
  const url = joinUrl(peer, '/v1/gossip');
  try {
    // "evidence" is an optional extension of the contract's body: portable evidence spreads with the gossip
    const r = await httpRequest(url, {
      method: 'POST',
      body: JSON.stringify(evidence.length ? { checkpoints, evidence } : { checkpoints }),
      headers: { 'content-type': 'application/json' },
      ...limits,
    });
    if (r.status !== 200) throw new MonitorError('http-status', `POST ${url}: status ${r.status}`);
    return { status: 'ok', message: `pushed ${checkpoints.length} checkpoint(s) to ${peer}` };
  } catch (e) {
    errors.inc({ what: 'peer' });
    return { status: 'error', message: `could not push to peer ${peer}: ${errorMessage(e)}` };
  }
}
