/**
 * C2SP tlog-witness v1.0.0 add-checkpoint, cosigning with tlog-cosignature v1.0.1 (Ed25519, type 0x04).
 *
 * For each origin the witness keeps the last checkpoint it cosigned (size and root), synced to disk before it
 * answers. Checking the old size and recording the new checkpoint happen under one per-origin lock, so two
 * concurrent requests can never roll the record back or get two roots cosigned for one size.
 */
import {
  errorMessage,
  b64decode,
  b64encode,
  bytesEqual,
  cosignCheckpoint,
  emptyRoot,
  openCheckpoint,
  parseAddCheckpoint,
  parseNote,
  verifyConsistency,
  type Checkpoint,
  type NoteSigner,
  type NoteVerifier,
} from '@trailmark/tlog';
import { KeyedLock } from '@trailmark/node';
import type { MonitorStore } from './store.js';

/** Largest request body accepted: a 1 MiB note plus the proof. */
export const MAX_ADD_CHECKPOINT_BODY = (1 << 20) + 8192;

/** The witness's answer: HTTP status, content type and body, as the spec requires. */
export interface WitnessAnswer {
  status: 200 | 400 | 403 | 404 | 409 | 422 | 500;
  contentType: string;
  body: string;
  /** Why (for logs and metrics); not sent for 200/409. */
  reason: string;
  /** The verified checkpoint, when the signature checked out (also for 409/422: it may be evidence). */
  checkpoint?: { note: string; cp: Checkpoint };
}

function answer(status: WitnessAnswer['status'], reason: string, extra: Partial<WitnessAnswer> = {}): WitnessAnswer {
  return { status, contentType: 'text/plain; charset=utf-8', body: reason + '\n', reason, ...extra };
}

/** What a Witness cosigns with, which logs it accepts checkpoints of, and where it keeps their sizes. */
export interface WitnessOptions {
  /** Type 0x04 cosignature key. */
  signer: NoteSigner;
  /** Trusted log keys by origin (the key's name is the origin). */
  logs: ReadonlyMap<string, NoteVerifier>;
  store: MonitorStore;
  /** Clock for cosignature timestamps, POSIX seconds. */
  now?: () => number;
}

/** A tlog-witness for the logs in `opts.logs`. Precondition: one Witness per store (the lock is per instance). */
export class Witness {
  private readonly lock = new KeyedLock();
  private readonly now: () => number;

  constructor(private readonly opts: WitnessOptions) {
    this.now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  }

  /** The witness's key name. */
  get name(): string {
    return this.opts.signer.name;
  }

  /** Handles one add-checkpoint body. Precondition: none; every outcome is a WitnessAnswer (never throws for bad input). */
  async addCheckpoint(body: string): Promise<WitnessAnswer> {
    const req = parseAddCheckpoint(body);
    if (typeof req === 'string') return answer(400, `malformed add-checkpoint request: ${req}`);
    let text: string;
    let origin: string;
    try {
      text = parseNote(req.note).text;
      origin = text.split('\n')[0];
    } catch (e) {
      return answer(400, `malformed checkpoint: ${errorMessage(e)}`);
    }
    const verifier = this.opts.logs.get(origin);
    if (!verifier) return answer(404, `unknown log origin ${JSON.stringify(origin)}`);
    let cp: Checkpoint;
    try {
      cp = openCheckpoint(req.note, verifier).checkpoint;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'bad-signature' || code === 'no-log-signature')
        return answer(403, `no valid signature by a trusted key for ${origin}`);
      return answer(400, `malformed checkpoint: ${errorMessage(e)}`);
    }
    const checkpoint = { note: req.note, cp };
    if (req.oldSize > cp.size)
      return answer(400, `old size ${req.oldSize} is greater than the checkpoint size ${cp.size}`, { checkpoint });
    return this.lock.run(origin, async () => {
      const rec = await this.opts.store.witness(origin);
      const lastSize = rec ? BigInt(rec.size) : 0n;
      const lastRoot = rec ? b64decode(rec.root) : emptyRoot();
      if (req.oldSize !== lastSize) {
        return {
          status: 409,
          contentType: 'text/x.tlog.size',
          body: `${lastSize}\n`,
          reason: `old size ${req.oldSize} is not the last cosigned size ${lastSize}`,
          checkpoint,
        };
      }
      if (req.oldSize === cp.size) {
        if (!bytesEqual(lastRoot, cp.root)) {
          return {
            status: 409,
            contentType: 'text/x.tlog.size',
            body: `${lastSize}\n`,
            reason: `root differs from the cosigned root for size ${lastSize}`,
            checkpoint,
          };
        }
        if (req.proof.length !== 0)
          return answer(422, `consistency proof between equal sizes must be empty`, { checkpoint });
      } else {
        try {
          verifyConsistency(req.oldSize, cp.size, req.proof, lastRoot, cp.root);
        } catch (e) {
          return answer(422, `consistency proof does not verify: ${errorMessage(e)}`, { checkpoint });
        }
      }
      const line = cosignCheckpoint(text, this.opts.signer, this.now());
      // durable before the cosignature leaves: a restarted witness must never cosign a rolled-back tree
      await this.opts.store.putWitness(origin, {
        size: cp.size.toString(),
        root: b64encode(cp.root),
        note: req.note,
        at: new Date().toISOString(),
      });
      return {
        status: 200,
        contentType: 'text/plain; charset=utf-8',
        body: line + '\n',
        reason: 'cosigned',
        checkpoint,
      };
    });
  }
}
