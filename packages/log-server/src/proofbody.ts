/**
 * Bodies of get-proof-by-index answers, the hottest read. Every leaf of one full level-0 tile shares the part
 * of its audit path above that tile (elements 8 onwards), so that part is serialized once per (tree size,
 * tile) and reused; the leaf hash and the 8 siblings inside the tile are encoded straight from the tile.
 * Keys carry the size, so clients asking at different checkpoints (sizes) do not evict each other's paths.
 */
import type { LogReads } from './log-storage.js';
import { Lru, TILE_W } from './tilecache.js';

/** Proof elements that lie inside a leaf's own level-0 tile (one per tile level). */
const IN_TILE = 8;

function b64(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('base64');
}

/** The contract's get-proof-by-index body, written by hand: numbers and base64 need no JSON escaping. */
export function inclusionBody(index: number, leafHash: Uint8Array, proof: readonly Uint8Array[]): string {
  let body = `{"leaf_index":${index},"leaf_hash":"${b64(leafHash)}","audit_path":[`;
  for (let i = 0; i < proof.length; i++) body += (i ? ',"' : '"') + b64(proof[i]) + '"';
  return body + ']}';
}

/** Builds get-proof-by-index bodies, caching the path above each level-0 tile per tree size (see the file comment). */
export class InclusionBodies {
  /** Serialized path above a level-0 tile (`,"h1","h2"...`), keyed by `size/tile`. */
  private readonly above: Lru<string, string>;

  /** `paths`: how many (size, tile) upper paths to keep (~50 bytes per proof element each). */
  constructor(
    private readonly store: LogReads,
    paths = 8192,
  ) {
    this.above = new Lru(paths);
  }

  /**
   * The body for leaf `index` in the tree of `size` when its tile is full and every hash it needs is in
   * memory; undefined otherwise (then build it with inclusionBody). Precondition: index < size <= durable size.
   */
  sync(index: number, size: number): string | undefined {
    const t = Math.floor(index / TILE_W);
    if ((t + 1) * TILE_W > size) return undefined;
    const tile = this.store.leafTileSync(t);
    if (!tile) return undefined;
    const key = `${size}/${t}`;
    let above = this.above.get(key);
    if (above === undefined) {
      const proof = this.store.inclusionProofSync(index, size);
      if (!proof) return undefined;
      above = '';
      for (let i = IN_TILE; i < proof.length; i++) above += ',"' + b64(proof[i]) + '"';
      this.above.set(key, above);
    }
    const p = index - t * TILE_W;
    let body = `{"leaf_index":${index},"leaf_hash":"${tile.nodeB64(0, p)}","audit_path":["${tile.nodeB64(0, p ^ 1)}"`;
    for (let k = 1; k < IN_TILE; k++) body += ',"' + tile.nodeB64(k, (p >> k) ^ 1) + '"';
    return body + above + ']}';
  }
}
