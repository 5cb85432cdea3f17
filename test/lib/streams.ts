/**
 * Writes proxy stream events as contract section 4 describes them (seq, prev = the log's leaf hash of the
 * event before, a start event with the stream key, signed heartbeat and end events), for tests that submit
 * them straight to a log: a real stream key, and ways to drop, duplicate, mislink or forge one.
 */
import {
  ACCESS_SCHEMA,
  b64encode,
  canonicalJson,
  generateKey,
  hashLeaf,
  parsePrivateKey,
  streamSignatureMessage,
  type NoteSigner,
} from '@trailmark/tlog';

export type StreamEvent = Record<string, unknown> & { stream: { id: string; seq: number; prev: string | null } };

export class StreamWriter {
  readonly vkey: string;
  private readonly signer: NoteSigner;
  seq = 0;
  prev: string | null = null;

  constructor(
    readonly id: string,
    readonly proxy = 'proxy-a',
    /** The event times (default: now), so tests can write a stream that went silent long ago. */
    public clock: () => Date = () => new Date(),
  ) {
    const k = generateKey(`stream-${id}`);
    this.signer = parsePrivateKey(k.privateKey);
    this.vkey = k.vkey;
  }

  /** The next event of the stream (and the stream moves on: its leaf hash becomes the next prev). */
  next(stage: string, fields: Record<string, unknown> = {}): StreamEvent {
    const ev = this.build(stage, fields, this.seq, this.prev, this.signer);
    this.seq++;
    this.prev = leafHashOf(ev);
    return ev;
  }

  /** An event at any position, signed with any key, without moving the stream on. */
  build(
    stage: string,
    fields: Record<string, unknown>,
    seq: number,
    prev: string | null,
    signer: NoteSigner = this.signer,
  ): StreamEvent {
    const stream = { id: this.id, seq, prev };
    const ev: StreamEvent = {
      schema: ACCESS_SCHEMA,
      stage,
      id: `${this.id}-${seq}-${stage}`,
      time: this.clock().toISOString(),
      proxy: this.proxy,
      stream,
      ...fields,
    };
    if (stage === 'start') ev.stream_key = this.vkey;
    if (stage === 'heartbeat' || stage === 'end') ev.signature = b64encode(signer.sign(streamSignatureMessage(stream)));
    return ev;
  }

  /** A signer of another key: what a forger without the stream key has. */
  static forger(): NoteSigner {
    return parsePrivateKey(generateKey('forger').privateKey);
  }
}

/** The leaf hash the log computes for an event (base64). */
export function leafHashOf(ev: object): string {
  return b64encode(hashLeaf(canonicalJson(ev)));
}

/** A request and its response in one stream. */
export function exchange(w: StreamWriter, requestId: string): StreamEvent[] {
  return [
    w.next('request', { request_id: requestId }),
    w.next('response', { request_id: requestId, outcome: { status: 200 } }),
  ];
}
