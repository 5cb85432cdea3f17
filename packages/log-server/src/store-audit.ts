/**
 * Offline audit of a log's data directory (`trailmark audit --data DIR`): every entry bundle and pending
 * entry is decoded and hashed, every stored tile is recomputed (level 0 from the entries, level L from the
 * full tiles of level L-1), the root of the entries is compared with the stored signed checkpoint (whose
 * signature is checked), and the dedup index must name every entry exactly once under its leaf-hash prefix.
 * Unlike the server's start-up check it does not stop at the first problem and does not need a store that
 * starts: it names what is damaged, first problem first.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import {
  errorMessage,
  bytesEqual,
  decodeEntryBundle,
  merkleRoot,
  openCheckpoint,
  parseVkey,
  rootPlan,
  type NoteVerifier,
} from '@trailmark/tlog';
import { LogStateError } from './errors.js';
import {
  afterPrefix,
  BUNDLE,
  bundleKey,
  describeKey,
  HASH_INDEX,
  parseState,
  PENDING,
  pendingKey,
  readU64,
  STATE_KEY,
  TILE,
  tileKey,
} from './layout.js';
import { nodeHasher } from '@trailmark/node';
import { TILE_W } from './tilecache.js';

/** What auditStore found: the signed size and root, how the checkpoint was checked, and any damage. */
export interface StoreAuditReport {
  /** True when nothing is damaged. */
  ok: boolean;
  origin: string;
  vkey: string;
  /** The signed size. */
  size: number;
  /** The signed root, base64. */
  root: string;
  /** Whether the checkpoint was checked against a vkey given by the caller (else against the store's own). */
  keyGiven: boolean;
  entries: number;
  tiles: number;
  indexKeys: number;
  /** What is damaged, in the order found (entries, then tiles, then the root, then the index); at most `maxDamage`. */
  damage: string[];
  /** Damage found beyond those listed. */
  moreDamage: number;
}

/** The key auditStore checks the store against, and how much damage it reports. */
export interface StoreAuditOptions {
  /** The log's vkey: the checkpoint must verify with it and the store must belong to it. */
  vkey?: string;
  /** Most damage lines kept (default 100). */
  maxDamage?: number;
}

/**
 * Audits the log in `dataDir` (or a LevelDB directory given directly). Rejects with LogStateError when the
 * store cannot be read at all or belongs to another key (a usage problem, not damage). Precondition: no
 * server runs on it (LevelDB's lock refuses that); LevelDB rewrites its own bookkeeping files when it opens.
 */
export async function auditStore(dataDir: string, opts: StoreAuditOptions = {}): Promise<StoreAuditReport> {
  const dbDir = existsSync(join(dataDir, 'db', 'CURRENT')) ? join(dataDir, 'db') : dataDir;
  if (!existsSync(join(dbDir, 'CURRENT')))
    throw new LogStateError(
      'no-log',
      `${dataDir} holds no log database (neither ${join(dataDir, 'db')} nor ${dataDir} is a LevelDB)`,
    );
  const db = new Level<Uint8Array, Uint8Array>(dbDir, {
    keyEncoding: 'view',
    valueEncoding: 'view',
    createIfMissing: false,
  });
  try {
    await db.open();
  } catch (e) {
    const cause = (e as { cause?: Error }).cause;
    throw new LogStateError(
      'db-open',
      `cannot open the log database in ${dbDir}: ${cause?.message ?? errorMessage(e)} (a running log holds its lock: audit a copy, or stop it)`,
    );
  }
  try {
    return await audit(db, opts);
  } finally {
    await db.close();
  }
}

type Db = Level<Uint8Array, Uint8Array>;

async function audit(db: Db, opts: StoreAuditOptions): Promise<StoreAuditReport> {
  const max = opts.maxDamage ?? 100;
  const damage: string[] = [];
  let more = 0;
  const bad = (s: string) => (damage.length < max ? damage.push(s) : more++);

  // the state and its signed checkpoint
  const raw = await db.get(STATE_KEY);
  if (raw === undefined)
    throw new LogStateError(
      'no-state',
      'the database holds no log state: not a Trailmark log (or its state key was lost)',
    );
  const st = parseState(raw);
  let verifier: NoteVerifier;
  try {
    verifier = parseVkey(opts.vkey ?? st.vkey);
  } catch (e) {
    throw new LogStateError('key', `${opts.vkey ? 'the given' : "the store's"} vkey: ${errorMessage(e)}`, { cause: e });
  }
  if (opts.vkey !== undefined && (st.vkey !== opts.vkey.trim() || st.origin !== verifier.name)) {
    throw new LogStateError(
      'key-mismatch',
      `this store belongs to log ${st.vkey}, not to the given key ${opts.vkey.trim()}`,
      { expected: opts.vkey.trim(), found: st.vkey },
    );
  }
  let size: number;
  let signedRoot: Uint8Array;
  try {
    const cp = openCheckpoint(st.checkpoint, verifier).checkpoint;
    size = Number(cp.size);
    signedRoot = cp.root;
  } catch (e) {
    // an unverifiable checkpoint is damage, but the entries can still be checked against the stored size
    bad(`the log state: its signed checkpoint does not verify: ${errorMessage(e)}`);
    size = Number(st.size);
    signedRoot = new Uint8Array(32);
  }
  if (String(size) !== st.size) bad(`the log state: size ${st.size} differs from its checkpoint's size ${size}`);

  const report = (extra: Partial<StoreAuditReport>): StoreAuditReport => ({
    ok: damage.length === 0,
    origin: st.origin,
    vkey: st.vkey,
    size,
    root: Buffer.from(signedRoot).toString('base64'),
    keyGiven: opts.vkey !== undefined,
    entries: 0,
    tiles: 0,
    indexKeys: 0,
    damage,
    moreDamage: more,
    ...extra,
  });

  let where = 'the start';
  try {
    // level 0 from the entries: full bundles, then the pending entries of the partial one
    const leaves = Buffer.alloc(size * 32);
    const have = new Uint8Array(size);
    const fullBundles = Math.floor(size / TILE_W);
    let expect = 0;
    for await (const [k, v] of db.iterator({ gte: bundleKey(0), lt: afterPrefix(BUNDLE) })) {
      where = describeKey(k);
      if (k.length !== 9) {
        bad(`${where}: not a key this log writes`);
        continue;
      }
      const n = readU64(k, 1);
      for (; expect < Math.min(n, fullBundles); expect++)
        bad(`entry bundle ${expect} is missing (entries ${expect * TILE_W}..${expect * TILE_W + TILE_W - 1})`);
      expect = n + 1;
      if (n >= fullBundles) {
        bad(`entry bundle ${n} lies beyond the signed size ${size}`);
        continue;
      }
      let entries: Uint8Array[];
      try {
        entries = decodeEntryBundle(v);
      } catch (e) {
        bad(`entry bundle ${n} cannot be decoded: ${errorMessage(e)}`);
        continue;
      }
      if (entries.length !== TILE_W) {
        bad(`entry bundle ${n} holds ${entries.length} entries, not ${TILE_W}`);
        continue;
      }
      entries.forEach((e, i) => {
        Buffer.from(nodeHasher.leaf(e)).copy(leaves, (n * TILE_W + i) * 32);
        have[n * TILE_W + i] = 1;
      });
    }
    for (; expect < fullBundles; expect++)
      bad(`entry bundle ${expect} is missing (entries ${expect * TILE_W}..${expect * TILE_W + TILE_W - 1})`);
    for await (const [k, v] of db.iterator({ gte: pendingKey(0), lt: afterPrefix(PENDING) })) {
      where = describeKey(k);
      const i = k.length === 9 ? readU64(k, 1) : -1;
      if (i < fullBundles * TILE_W || i >= size) {
        bad(
          `${where} should not exist at size ${size}${i >= size ? ' (beyond the signed size)' : ' (its bundle is full)'}`,
        );
        continue;
      }
      Buffer.from(nodeHasher.leaf(v)).copy(leaves, i * 32);
      have[i] = 1;
    }
    let entries = 0;
    for (let i = 0; i < size; i++) {
      if (have[i]) entries++;
      else if (i >= fullBundles * TILE_W) bad(`pending entry ${i} is missing`);
    }
    const leaf = (i: number) => leaves.subarray(i * 32, i * 32 + 32);

    // tiles: level 0 against the entries, level L against the roots of the stored full tiles of level L-1
    const stored = new Map<string, Buffer>();
    for await (const [k, v] of db.iterator({ gte: tileKey(0, 0), lt: afterPrefix(TILE) })) {
      where = describeKey(k);
      if (k.length !== 10) bad(`${where}: not a key this log writes`);
      else stored.set(`${k[1]}/${readU64(k, 2)}`, Buffer.from(v));
    }
    let tiles = 0;
    const seen = new Set<string>();
    const damagedTiles = new Set<string>();
    for (let level = 0, n = size; n > 0; level++, n = Math.floor(n / TILE_W)) {
      const full = Math.floor(n / TILE_W);
      const width = n % TILE_W;
      const count = full + (width > 0 && level > 0 ? 1 : 0);
      for (let t = 0; t < count; t++) {
        const id = `${level}/${t}`;
        const w = t < full ? TILE_W : width;
        const data = stored.get(id);
        seen.add(id);
        if (!data) {
          bad(`tile ${id} is missing`);
          continue;
        }
        tiles++;
        if (data.length !== w * 32) {
          bad(`tile ${id} holds ${data.length / 32} hashes, the signed size needs ${w}`);
          damagedTiles.add(id);
          continue;
        }
        for (let j = 0; j < w; j++) {
          const got = data.subarray(j * 32, j * 32 + 32);
          if (level === 0) {
            const i = t * TILE_W + j;
            if (!have[i] || bytesEqual(leaf(i), got)) continue;
            // which side is wrong: a tile that still agrees with the level above is right, so the entry is not
            const above = stored.get(`1/${Math.floor(t / TILE_W)}`);
            const parent =
              above && w === TILE_W ? above.subarray((t % TILE_W) * 32, (t % TILE_W) * 32 + 32) : undefined;
            const tileAgrees = parent !== undefined && bytesEqual(merkleRoot(split(data), nodeHasher), parent);
            if (tileAgrees)
              bad(
                `entry ${i} (entry bundle ${t}) is damaged: its leaf hash is not the one in tile 0/${t}, which agrees with the tree above it`,
              );
            else {
              bad(`tile 0/${t} is damaged: hash ${j} is not the leaf hash of entry ${i}`);
              damagedTiles.add(id);
            }
            break;
          }
          const below = stored.get(`${level - 1}/${t * TILE_W + j}`);
          if (!below || damagedTiles.has(`${level - 1}/${t * TILE_W + j}`)) continue;
          if (!bytesEqual(merkleRoot(split(below), nodeHasher), got)) {
            bad(`tile ${id} is damaged: hash ${j} is not the root of tile ${level - 1}/${t * TILE_W + j}`);
            damagedTiles.add(id);
            break;
          }
        }
      }
    }
    for (const id of stored.keys()) if (!seen.has(id)) bad(`tile ${id} should not exist at size ${size}`);

    // the root of the entries against the signed checkpoint, and the stored compact range
    if (entries === size) {
      const hashes: Uint8Array[] = [];
      for (let i = 0; i < size; i++) hashes.push(leaf(i));
      const root = merkleRoot(hashes, nodeHasher);
      if (!bytesEqual(root, signedRoot) && damage.length === 0) {
        bad(
          `the log state: the entries give root ${Buffer.from(root).toString('base64')} for size ${size}, but the signed checkpoint says ${Buffer.from(signedRoot).toString('base64')}`,
        );
      }
      const plan = rootPlan(BigInt(size));
      const compact = plan.nodes.map((nd) =>
        merkleRoot(hashes.slice(Number(nd.index) * 2 ** nd.level, (Number(nd.index) + 1) * 2 ** nd.level), nodeHasher),
      );
      if (compact.length !== st.compactHashes.length || compact.some((h, i) => !bytesEqual(h, st.compactHashes[i]))) {
        if (damage.length === 0) bad('the log state: its compact range differs from the stored entries');
      }
    }

    // the dedup index: every entry exactly once, under its own leaf-hash prefix
    const indexed = new Uint8Array(size);
    let indexKeys = 0;
    for await (const [k, v] of db.iterator({ gte: Buffer.from([HASH_INDEX]), lt: afterPrefix(HASH_INDEX) })) {
      where = describeKey(k);
      indexKeys++;
      if (k.length !== 9 || v.length === 0 || v.length % 8 !== 0) {
        bad(`${where} is malformed`);
        continue;
      }
      for (let o = 0; o < v.length; o += 8) {
        const i = readU64(v, o);
        if (i >= size) bad(`${where} names entry ${i}, beyond the signed size`);
        else if (indexed[i]) bad(`${where} names entry ${i} a second time`);
        else {
          indexed[i] = 1;
          if (have[i] && !bytesEqual(leaf(i).subarray(0, 8), k.subarray(1)))
            bad(`${where} names entry ${i}, whose leaf hash starts ${leaf(i).subarray(0, 8).toString('hex')}`);
        }
      }
    }
    for (let i = 0; i < size; i++) if (!indexed[i]) bad(`entry ${i} has no hash index key (dedup would not find it)`);
    return report({ entries, tiles, indexKeys });
  } catch (e) {
    // LevelDB itself could not read on (a damaged table file)
    bad(`the database cannot be read after ${where}: ${errorMessage(e)}`);
    return report({});
  }
}

function split(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += 32) out.push(data.subarray(o, o + 32));
  return out;
}
