/**
 * The log's side of one C2SP tlog-witness v1.0.0 `add-checkpoint` exchange: what `trailmark serve --policy`
 * sends to each witness. Deciding what to send and what a 409 means for the log is the caller's business;
 * this only speaks the protocol.
 */
import { formatAddCheckpoint, type Hash } from '@trailmark/tlog';
import { TransportError } from '@trailmark/node';
import { httpRequest, joinUrl } from './http.js';

/** Largest add-checkpoint answer read: a few signature lines; a hostile witness cannot make us buffer more. */
const MAX_WITNESS_ANSWER = 1 << 20;

/** A witness's useful answers: its cosignature lines (200), or the size it last cosigned for this log (409). */
export type AddCheckpointResult = { status: 200; text: string } | { status: 409; size: bigint };

/** A client of one witness. Precondition: `url` is the witness's absolute http(s) base URL. */
export class WitnessClient {
  /** The add-checkpoint endpoint. */
  readonly endpoint: string;

  constructor(
    url: string,
    /** Deadline of one request. */
    private readonly timeoutMs = 10_000,
  ) {
    this.endpoint = joinUrl(url, '/add-checkpoint');
  }

  /**
   * Asks the witness to cosign `note`, proving it consistent with `oldSize` (the size the witness last
   * cosigned, as the caller believes). Precondition: proof is the consistency proof oldSize -> the note's
   * size (empty when oldSize is 0 or equal). Throws TransportError for no answer, a malformed 409, or any
   * other status.
   */
  async addCheckpoint(
    oldSize: bigint,
    proof: readonly Hash[],
    note: string,
    signal?: AbortSignal,
  ): Promise<AddCheckpointResult> {
    const body = formatAddCheckpoint({ oldSize, proof, note });
    const url = this.endpoint;
    const res = await httpRequest(url, {
      method: 'POST',
      body,
      timeoutMs: this.timeoutMs,
      maxBytes: MAX_WITNESS_ANSWER,
      ...(signal ? { signal } : {}),
    });
    if (res.status === 200) return { status: 200, text: res.text };
    if (res.status === 409 && res.contentType.startsWith('text/x.tlog.size')) {
      const m = /^(0|[1-9][0-9]*)\n$/.exec(res.text);
      if (!m)
        throw new TransportError('http-status', `409 from ${url} with a malformed size body`, url, { status: 409 });
      return { status: 409, size: BigInt(m[1]) };
    }
    throw new TransportError(
      'http-status',
      `POST ${url}: status ${res.status}: ${res.text.trim().slice(0, 200)}`,
      url,
      {
        status: res.status,
      },
    );
  }
}
