/**
 * In-browser verification of explorer results against the log itself. The explorer is not trusted: the
 * page canonicalizes and hashes each entry itself, fetches the log's checkpoint and tiles straight from the
 * log's URL, checks the checkpoint's signature with the log key (and the witness quorum with a policy),
 * builds the inclusion proof from tiles verified against that checkpoint, and checks it against the
 * checkpoint's root. The proof and the checkpoint make the receipt (a tlog-proof) the page offers for download.
 */
import {
  TILE_HEIGHT,
  TILE_WIDTH,
  VerifiedTileReader,
  canonicalJson,
  formatTlogProof,
  hashLeaf,
  inclusionProof,
  openCheckpoint,
  tilePath,
  verifyInclusion,
  type Hash,
  type HashSource,
  type NoteVerifier,
  type Policy,
  type TileRef,
  errorMessage,
} from '@trailmark/tlog';

export interface Verdict {
  ok: boolean;
  /** What was checked, or what failed. */
  why: string;
  /** The tlog-proof for the entry (when the log holds it). */
  receipt?: string;
}

interface Log {
  text: string;
  size: bigint;
  root: Hash;
  tiles: VerifiedTileReader;
  /** The tree's hashes for inclusion proofs, each node computed once (see proofHashes). */
  hashes: HashSource;
}

/**
 * `tiles.readHashes` with every node computed once and kept. A proof's node inside a tile is the root of a run
 * of that tile's hashes, and tiles.readHashes recomputes it for each proof (up to 255 SHA-256 in JavaScript per
 * tile level per row); rows in one tile share most of those nodes. Here a node that a tile stores is read from
 * the verified tile, and any other node is hashed from its two children, each once. Precondition: every node
 * asked for is a complete subtree of the tree (as tiles.readHashes requires; it checks).
 */
function proofHashes(tiles: VerifiedTileReader): HashSource {
  const memo = new Map<string, Promise<Hash>>();
  const W = BigInt(TILE_WIDTH);
  // a hash a tile stores, read straight from the verified tile (readHashes would split the tile each time)
  const stored = async (level: number, index: bigint): Promise<Hash> => {
    if ((index + 1n) << BigInt(level) > tiles.size) return (await tiles.readHashes([{ level, index }]))[0]; // it throws
    const t = await tiles.tileBytes(level / TILE_HEIGHT, index / W);
    const o = Number(index % W) * 32;
    return t.subarray(o, o + 32);
  };
  const node = (level: number, index: bigint): Promise<Hash> => {
    const k = `${level}/${index}`;
    let p = memo.get(k);
    if (p === undefined) {
      p =
        level % TILE_HEIGHT === 0
          ? stored(level, index)
          : Promise.all([node(level - 1, 2n * index), node(level - 1, 2n * index + 1n)]).then(([l, r]) =>
              tiles.hasher.node(l, r),
            );
      memo.set(k, p);
      // a failed fetch is not remembered: a later row asks again
      p.catch(() => memo.delete(k));
    }
    return p;
  };
  return (nodes) => Promise.all(nodes.map((n) => node(n.level, n.index)));
}

export class PageVerifier {
  private log: Promise<Log> | null = null;

  constructor(
    private readonly logUrl: string,
    readonly key: NoteVerifier,
    private readonly policy?: Policy,
  ) {}

  /** GET from the log; only the checkpoint must be fresh (full tiles are immutable, and cached). */
  private async get(path: string): Promise<Response> {
    return fetch(`${this.logUrl.replace(/\/+$/, '')}/${path}`, path === 'checkpoint' ? { cache: 'no-store' } : {});
  }

  /** Tiles from the log; a partial tile the log no longer serves is cut from the full one. */
  private readonly fetchTile = async (ref: TileRef): Promise<Uint8Array> => {
    let r = await this.get(tilePath(ref));
    if (r.status === 404 && ref.width < TILE_WIDTH && !ref.entries) {
      r = await this.get(tilePath({ ...ref, width: TILE_WIDTH }));
      if (r.ok) return new Uint8Array(await r.arrayBuffer()).subarray(0, ref.width * 32);
    }
    if (!r.ok) throw new Error(`GET ${tilePath(ref)}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  };

  /** The log's latest checkpoint, verified; fetched once, and again when a result lies beyond it. */
  checkpoint(refresh = false): Promise<Log> {
    if (!this.log || refresh) {
      this.log = (async () => {
        const r = await this.get('checkpoint');
        if (!r.ok) throw new Error(`GET checkpoint: HTTP ${r.status}`);
        const text = await r.text();
        const cp = openCheckpoint(text, this.key, this.policy ? { policy: this.policy } : {}).checkpoint;
        const tiles = new VerifiedTileReader(cp.size, cp.root, this.fetchTile);
        return { text, size: cp.size, root: cp.root, tiles, hashes: proofHashes(tiles) };
      })();
      this.log.catch(() => (this.log = null));
    }
    return this.log;
  }

  /** Checks that the log holds `entry` at `index`. Never throws: failures are verdicts. */
  async verify(index: unknown, entry: unknown): Promise<Verdict> {
    try {
      if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0)
        return { ok: false, why: `not a leaf index: ${JSON.stringify(index)}` };
      const leafHash = hashLeaf(canonicalJson(entry));
      let log = await this.checkpoint();
      if (BigInt(index) >= log.size) log = await this.checkpoint(true);
      if (BigInt(index) >= log.size)
        return { ok: false, why: `leaf index ${index} is beyond the log's checkpoint (size ${log.size})` };
      const proof = await inclusionProof(BigInt(index), log.size, log.hashes);
      const receipt = formatTlogProof({ index: BigInt(index), proof, checkpoint: log.text });
      try {
        // the checkpoint in the receipt was verified once (signature, quorum) when it was fetched; each
        // result then costs only its inclusion proof against that root
        verifyInclusion(BigInt(index), log.size, leafHash, proof, log.root);
      } catch (e) {
        return { ok: false, why: `the log does not hold this entry at index ${index}: ${errorMessage(e)}` };
      }
      return {
        ok: true,
        why: `included at index ${index} in the log's checkpoint of size ${log.size}, signed by ${this.key.name}${this.policy ? ' and cosigned by a witness quorum' : ''}`,
        receipt,
      };
    } catch (e) {
      return { ok: false, why: `could not verify: ${errorMessage(e)}` };
    }
  }
}
