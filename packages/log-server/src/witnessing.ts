/**
 * The log side of witnessing (`trailmark serve --policy FILE`): asks every witness in a tlog-policy to cosign
 * the log's checkpoints with C2SP tlog-witness v1.0.0 `POST <url>/add-checkpoint`, and serves the newest
 * checkpoint whose cosignatures meet the policy's quorum.
 *
 * Each witness is driven on its own: one request in flight at a time, its own backoff, its own idea of the
 * witness's last cosigned size (learned from 409 answers). A witness that is down only lacks its own
 * cosignature. Checkpoints are re-submitted at a steady cadence, so cosignatures stay fresh even when no
 * entries arrive. The newest witnessed checkpoint is written to DIR/witnessed-checkpoint (fsynced) so a
 * restarted log serves it at once.
 */
import { readFile } from 'node:fs/promises';
import { writeFileDurably } from '@trailmark/node';
import { join } from 'node:path';
import {
  errorMessage,
  addSignatures,
  evaluateQuorum,
  openCheckpoint,
  parseNote,
  parsePolicy,
  parseSignatureLine,
  parseVkey,
  policyHasLog,
  verifyConsistency,
  verifyCosignature,
  type NoteVerifier,
  type Policy,
  type PolicyWitness,
} from '@trailmark/tlog';
import { WitnessClient } from '@trailmark/client';
import { ConfigError } from './errors.js';
import type { Witnessing, WitnessingContext } from './witness-hook.js';

/** Timing of the requests to witnesses. */
export interface WitnessingOptions {
  /** How often each witness is considered for a new request (default 1000 ms). */
  intervalMs?: number;
  /** Re-ask for a fresh cosignature of an unchanged checkpoint after this long (default 60 s). */
  refreshMs?: number;
  /** Deadline of one add-checkpoint request (default 10 s). */
  timeoutMs?: number;
  /** Longest backoff after failures (default 30 s). */
  maxBackoffMs?: number;
}

interface WitnessState {
  w: PolicyWitness & { url: string };
  client: WitnessClient;
  /** The witness's last cosigned size for our origin, as far as we know. */
  known: bigint | undefined;
  busy: boolean;
  failures: number;
  notBefore: number;
  /** Size and time of our last cosignature from this witness. */
  cosignedSize: bigint | undefined;
  cosignedAt: number;
}

interface Candidate {
  size: bigint;
  note: string;
  /** Cosignature line by witness name. */
  lines: Map<string, string>;
}

const MAX_CANDIDATES = 64;
const STATE_FILE = 'witnessed-checkpoint';

/**
 * Builds the witnessing module from the server's context. Precondition: ctx.policyFile is readable.
 * Rejects with ConfigError('policy') when the policy is malformed or does not accept this log.
 */
export async function createWitnessing(ctx: WitnessingContext, opts: WitnessingOptions = {}): Promise<Witnessing> {
  const { policy, logVerifier } = await loadWitnessPolicy(ctx.policyFile, ctx.origin, ctx.vkey);
  const w = new LogWitnessing(ctx, policy, logVerifier, opts);
  await w.init();
  return w;
}

/**
 * Reads and checks a policy file for this log without starting anything (the server checks it before it
 * creates or opens anything). Rejects with ConfigError('policy').
 */
export async function loadWitnessPolicy(
  policyFile: string,
  origin: string,
  vkey: string,
): Promise<{ policy: Policy; logVerifier: NoteVerifier }> {
  let policy: Policy;
  try {
    policy = parsePolicy(await readFile(policyFile));
  } catch (e) {
    throw new ConfigError('policy', `policy file ${policyFile}: ${errorMessage(e)}`, { cause: e });
  }
  const logVerifier = parseVkey(vkey);
  if (!policyHasLog(policy, logVerifier))
    throw new ConfigError('policy', `policy file ${policyFile} does not list this log's key (${origin})`);
  const reachable = new Set([...policy.witnesses.values()].filter((w) => w.url).map((w) => w.name));
  if (!evaluateQuorum(policy, reachable)) {
    // without URLs the log cannot ask enough witnesses, and /checkpoint would never be served
    throw new ConfigError(
      'policy',
      `policy file ${policyFile}: the witnesses with URLs (${[...reachable].join(', ') || 'none'}) cannot meet quorum ${policy.quorum}`,
    );
  }
  return { policy, logVerifier };
}

class LogWitnessing implements Witnessing {
  private readonly witnesses: WitnessState[] = [];
  private readonly candidates = new Map<bigint, Candidate>();
  private published: string | undefined;
  private publishedSize = -1n;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly inflight = new Set<Promise<void>>();
  private readonly intervalMs: number;
  private readonly refreshMs: number;
  private readonly timeoutMs: number;
  private readonly maxBackoffMs: number;
  private persisting: Promise<void> = Promise.resolve();
  private kick: NodeJS.Timeout | undefined;
  /** Aborts requests in flight on close: a hanging witness must not hold up the log's shutdown. */
  private readonly closing = new AbortController();

  constructor(
    private readonly ctx: WitnessingContext,
    private readonly policy: Policy,
    private readonly logVerifier: NoteVerifier,
    opts: WitnessingOptions,
  ) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.refreshMs = opts.refreshMs ?? 60_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    for (const w of policy.witnesses.values()) {
      if (!w.url) {
        ctx.logger.warn('witness has no URL in the policy; it cannot be asked to cosign', { witness: w.name });
        continue;
      }
      this.witnesses.push({
        w: { ...w, url: w.url },
        client: new WitnessClient(w.url, this.timeoutMs),
        known: undefined,
        busy: false,
        failures: 0,
        notBefore: 0,
        cosignedSize: undefined,
        cosignedAt: 0,
      });
    }
  }

  /** Restores the stored witnessed checkpoint, then starts asking witnesses. Precondition: called once. */
  async init(): Promise<void> {
    await this.restore();
    const latest = this.ctx.latest();
    if (this.policy.quorum === 'none') this.publish(latest.checkpoint, latest.size);
    this.onCheckpoint(latest.checkpoint, latest.size);
    this.schedule(0);
  }

  /** Reloads the newest witnessed checkpoint from disk, if it still verifies and is not beyond the log. */
  private async restore(): Promise<void> {
    let text: string;
    try {
      text = await readFile(join(this.ctx.dataDir, STATE_FILE), 'utf8');
    } catch {
      return;
    }
    try {
      const { checkpoint } = openCheckpoint(text, this.logVerifier, { policy: this.policy });
      const latest = this.ctx.latest();
      if (checkpoint.size > latest.size)
        throw new Error(`it has size ${checkpoint.size}, beyond the log's ${latest.size}`);
      // it must belong to this tree: never serve a checkpoint the stored entries do not extend
      const proof = checkpoint.size < latest.size ? await this.ctx.consistencyProof(checkpoint.size, latest.size) : [];
      verifyConsistency(checkpoint.size, latest.size, proof, checkpoint.root, latest.root);
      if (checkpoint.size > this.publishedSize) {
        this.published = text;
        this.publishedSize = checkpoint.size;
      }
    } catch (e) {
      this.ctx.logger.warn('ignoring stored witnessed checkpoint', { error: errorMessage(e) });
    }
  }

  onCheckpoint(checkpoint: string, size: bigint): void {
    if (this.closed) return;
    if (!this.candidates.has(size)) this.candidates.set(size, { size, note: checkpoint, lines: new Map() });
    while (this.candidates.size > MAX_CANDIDATES) {
      const oldest = [...this.candidates.keys()].reduce((a, b) => (a < b ? a : b));
      this.candidates.delete(oldest);
    }
    if (this.policy.quorum === 'none') this.publish(checkpoint, size);
    // ask soon, coalescing bursts of commits into one round
    if (!this.kick) {
      this.kick = setTimeout(() => {
        this.kick = undefined;
        this.round();
      }, 20);
    }
  }

  checkpoint(): string | undefined {
    return this.published;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.kick) clearTimeout(this.kick);
    this.closing.abort();
    await Promise.allSettled([...this.inflight]);
    await this.persisting;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.round();
      this.schedule(this.intervalMs);
    }, ms);
    this.timer.unref?.();
  }

  /** Starts a request to every idle witness that has something to cosign. */
  private round(): void {
    if (this.closed) return;
    const latest = this.ctx.latest();
    const now = Date.now();
    for (const s of this.witnesses) {
      if (s.busy || now < s.notBefore) continue;
      const fresh = s.cosignedSize === latest.size && now - s.cosignedAt < this.refreshMs;
      if (fresh) continue;
      s.busy = true;
      const p = this.ask(s, latest.checkpoint, latest.size)
        .catch((e) => this.failed(s, errorMessage(e)))
        .finally(() => {
          s.busy = false;
          this.inflight.delete(p);
        });
      this.inflight.add(p);
    }
  }

  private failed(s: WitnessState, why: string): void {
    if (this.closed) return; // aborted by close(), not the witness's fault
    s.failures++;
    s.notBefore = Date.now() + Math.min(this.maxBackoffMs, this.intervalMs * 2 ** Math.min(s.failures, 10));
    this.ctx.logger.warn('witness did not cosign', {
      witness: s.w.name,
      url: s.w.url,
      error: why,
      failures: s.failures,
    });
  }

  /**
   * One add-checkpoint exchange, retried when a 409 tells us the witness's size. Other frontends of a shared
   * store ask the same witness: its size moves under us, and may pass this frontend's view of the log, which
   * is then refreshed before the witness is taken for ahead of the log.
   */
  private async ask(s: WitnessState, note: string, size: bigint): Promise<void> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const old = s.known !== undefined && s.known <= size ? s.known : 0n;
      const proof = old > 0n && old < size ? await this.ctx.consistencyProof(old, size) : [];
      const r = await s.client.addCheckpoint(old, proof, note, this.closing.signal);
      if (r.status === 200) {
        this.accept(s, note, size, r.text);
        return;
      }
      const theirs = r.size;
      if (theirs > size && this.ctx.refresh) {
        await this.ctx.refresh();
        const latest = this.ctx.latest();
        if (latest.size >= theirs) {
          s.known = theirs;
          note = latest.checkpoint;
          size = latest.size;
          continue;
        }
      }
      if (theirs > size) {
        throw new Error(
          `witness has cosigned size ${theirs} of ${this.ctx.origin}, beyond this log's ${size}: a fork or a rolled-back log`,
        );
      }
      if (theirs === old)
        throw new Error(
          `witness refuses size ${size} from its cosigned size ${theirs} (different root for the same size?)`,
        );
      s.known = theirs;
    }
    throw new Error('witness kept answering 409');
  }

  /** Verifies the witness's signature lines and records its cosignature. */
  private accept(s: WitnessState, note: string, size: bigint, text: string): void {
    const body = parseNote(note).text;
    const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : [];
    let line: string | undefined;
    for (const l of lines) {
      let sig;
      try {
        sig = parseSignatureLine(l);
      } catch {
        continue;
      }
      if (sig.name !== s.w.verifier.name || sig.keyId !== s.w.verifier.keyId) continue; // other keys are ignored
      verifyCosignature(body, sig, s.w.verifier); // throws: a known witness's bad cosignature is a failure
      line = l;
    }
    if (!line) throw new Error(`witness ${s.w.name} answered 200 without a cosignature by its key`);
    s.known = size;
    s.failures = 0;
    s.notBefore = 0;
    s.cosignedSize = size;
    s.cosignedAt = Date.now();
    let c = this.candidates.get(size);
    if (!c) {
      c = { size, note, lines: new Map() };
      this.candidates.set(size, c);
    }
    c.lines.set(s.w.name, line);
    this.evaluate();
  }

  /** Publishes the newest candidate meeting the quorum, then forgets older candidates. */
  private evaluate(): void {
    const sizes = [...this.candidates.keys()].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
    for (const size of sizes) {
      const c = this.candidates.get(size)!;
      if (size < this.publishedSize) break;
      if (!evaluateQuorum(this.policy, new Set(c.lines.keys()))) continue;
      const note = addSignatures(c.note, [...c.lines.values()], { replace: true });
      this.publish(note, size);
      for (const k of sizes) if (k < size) this.candidates.delete(k);
      return;
    }
  }

  private publish(note: string, size: bigint): void {
    if (size < this.publishedSize) return;
    this.published = note;
    this.publishedSize = size;
    if (this.policy.quorum !== 'none')
      this.persisting = this.persisting
        .then(() => this.persist(note))
        .catch((e) => this.ctx.logger.error('cannot store witnessed checkpoint', { error: errorMessage(e) }));
  }

  private async persist(note: string): Promise<void> {
    await writeFileDurably(join(this.ctx.dataDir, STATE_FILE), note);
  }
}
