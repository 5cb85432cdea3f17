import { errorMessage, b64decode, type Hash } from '@trailmark/tlog';
import { TransportError } from '@trailmark/node';
import { getJson, getOk, joinUrl, type RequestLimits } from './http.js';

/**
 * What the monitor asks of a log over HTTP (contract section 3): its checkpoint and the proofs that tie two
 * tree sizes together. Proofs are never trusted: the caller verifies them against signed roots.
 */
export class LogProofClient {
  constructor(
    readonly url: string,
    readonly limits: RequestLimits = {},
  ) {}

  /** The log's current checkpoint note (unverified). */
  async checkpoint(): Promise<string> {
    return getOk(joinUrl(this.url, '/checkpoint'), this.limits);
  }

  /** RFC 6962 consistency proof between two sizes. Precondition: first <= second. */
  async consistency(first: bigint, second: bigint): Promise<Hash[]> {
    const url = joinUrl(this.url, `/v1/get-sth-consistency?first=${first}&second=${second}`);
    const j = (await getJson(url, this.limits)) as { consistency?: unknown };
    return hashList(url, j?.consistency, 'consistency');
  }

  /** Leaf hash and inclusion path of leaf `index` in the tree of `size`. Precondition: index < size. */
  async proofByIndex(index: bigint, size: bigint): Promise<{ leafHash: Hash; path: Hash[] }> {
    const url = joinUrl(this.url, `/v1/get-proof-by-index?leaf_index=${index}&tree_size=${size}`);
    const j = (await getJson(url, this.limits)) as { leaf_hash?: unknown; audit_path?: unknown };
    const [leafHash] = hashList(url, [j?.leaf_hash], 'leaf_hash');
    return { leafHash, path: hashList(url, j?.audit_path, 'audit_path') };
  }
}

function hashList(url: string, v: unknown, field: string): Hash[] {
  if (!Array.isArray(v))
    throw new TransportError('bad-json', `GET ${url}: "${field}" is not an array`, url, { status: 200 });
  return v.map((h, i) => {
    let b: Uint8Array;
    try {
      b = b64decode(h as string, `${field}[${i}]`);
    } catch (e) {
      throw new TransportError('bad-json', `GET ${url}: ${errorMessage(e)}`, url, { status: 200, cause: e });
    }
    if (b.length !== 32)
      throw new TransportError('bad-json', `GET ${url}: ${field}[${i}] is ${b.length} bytes, want 32`, url, {
        status: 200,
      });
    return b;
  });
}
