/**
 * Trailmark -> Go: writes keys (from `trailmark keygen`), signed notes, signed checkpoints, inclusion and
 * consistency proofs and tlog-proof files made by @trailmark/tlog, for `interop check` (scripts/interop/go).
 *
 *   node --import=tsx scripts/interop/gen-trailmark.ts OUT.json     (after `npx tsc -b`)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import {
  addSignatures, b64decode, b64encode, canonicalJson, consistencyProof, cosignCheckpoint, emptyRoot, formatCheckpoint, formatTlogProof,
  hashLeaf, hashNode, inclusionProof, parsePrivateKey, signCheckpoint, signNote, treeRoot, utf8, verifyNote, formatSignatureLine, parseVkey, type Hash, type NodeId,
} from '@trailmark/tlog';

const out = process.argv[2];
if (!out) {
  console.error('usage: gen-trailmark.ts OUT.json');
  process.exit(2);
}

const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'trailmark-interop-'));

/** `trailmark keygen --name NAME [--witness] --out FILE`: returns the private key and vkey files' contents. */
function keygen(file: string, name: string, witness = false): { skey: string; vkey: string } {
  const path = join(tmp, file);
  const r = spawnSync(process.execPath, [BIN, 'keygen', '--name', name, '--out', path, ...(witness ? ['--witness'] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`trailmark keygen failed (${r.status}): ${r.stderr}`);
  return { skey: readFileSync(path, 'utf8').trim(), vkey: readFileSync(`${path}.pub`, 'utf8').trim() };
}

// Ed25519 group order and little-endian scalar helpers (for the torsion probe below).
const L = 0x1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3edn;
const le = (b: Uint8Array) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
const le32 = (n: bigint) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
const cat = (...a: Uint8Array[]) => Uint8Array.from(a.flatMap((x) => [...x]));

/**
 * An Ed25519 signature by `seed` whose R carries an order-8 torsion point: it satisfies the cofactored
 * verification equation [8][S]B = [8]R + [8][k]A but not the cofactorless [S]B = R + [k]A that Go's
 * crypto/ed25519 checks. Only the key holder can make one.
 */
function torsionSignature(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  const { scalar, pointBytes } = ed.utils.getExtendedPublicKey(seed);
  const T = ed.Point.fromBytes(ed.etc.hexToBytes('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'));
  if (!T.multiplyUnsafe(8n).is0() || T.multiplyUnsafe(4n).is0()) throw new Error('not an order-8 point');
  const r = le(sha512(cat(seed, msg))) % L;
  const R = ed.Point.BASE.multiply(r).add(T).toBytes();
  const k = le(sha512(cat(R, pointBytes, msg))) % L;
  return cat(R, le32((r + k * scalar) % L));
}

try {
  const keys = {
    log: keygen('log.key', 'trailmark.example/interop-log'),
    log2: keygen('log2.key', 'ünïcødé.trailmark.example/λ'),
    witness: keygen('witness.key', 'witness.trailmark.example', true),
  };
  const log = parsePrivateKey(keys.log.skey);
  const log2 = parsePrivateKey(keys.log2.skey);
  const witness = parsePrivateKey(keys.witness.skey);

  const notes = [
    { text: 'hello from trailmark\n', signers: [log] },
    { text: 'Ünïcødé text: λ → ✓, 🦫\nsecond line\n', signers: [log2] },
    { text: 'two signatures\n', signers: [log, log2] },
    { text: 'blank lines inside the text\n\n\n', signers: [log2, log] },
  ].map((n) => ({ text: n.text, signers: n.signers.map((s) => s.name), note: signNote(n.text, n.signers) }));

  // A tree of 300 leaves; perfect-subtree hashes kept level by level for the proof HashSource.
  const SIZE = 300;
  const leafData = Array.from({ length: SIZE }, (_, i) => canonicalJson({ schema: 'trailmark.access/v1', id: `interop-${i}`, n: i }));
  const levels: Hash[][] = [leafData.map(hashLeaf)];
  while (levels[levels.length - 1].length > 1) {
    const below = levels[levels.length - 1];
    const up: Hash[] = [];
    for (let i = 0; i + 1 < below.length; i += 2) up.push(hashNode(below[i], below[i + 1]));
    levels.push(up);
  }
  const source = (nodes: NodeId[]) => nodes.map((n) => levels[n.level][Number(n.index)]);
  const origin = log.name;

  const incl: [number, number][] = [];
  const cons: [number, number][] = [];
  for (let size = 1; size <= 40; size++) {
    for (let i = 0; i < size; i++) incl.push([i, size]);
    for (let m = 1; m <= size; m++) cons.push([m, size]);
  }
  let x = 12345; // small deterministic LCG for the sampled pairs
  const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2147483648), x % n);
  incl.push([0, SIZE], [SIZE - 1, SIZE], [255, 256], [256, 257], [127, 300]);
  cons.push([1, SIZE], [SIZE, SIZE], [256, 257], [255, 300], [128, 256]);
  for (let k = 0; k < 80; k++) {
    const size = 1 + rnd(SIZE);
    incl.push([rnd(size), size]);
    const a = 1 + rnd(SIZE);
    const b = 1 + rnd(SIZE);
    cons.push([Math.min(a, b), Math.max(a, b)]);
  }
  const sizes = new Set<number>([...incl.map((p) => p[1]), ...cons.flat()]);
  const sizeList = [...sizes].sort((a, b) => a - b);
  const roots = new Map<number, Hash>();
  for (const n of sizeList) roots.set(n, await treeRoot(n, source));
  const checkpoints = new Map<number, string>();
  for (const n of sizeList) checkpoints.set(n, signCheckpoint({ origin, size: BigInt(n), root: roots.get(n)!, extensions: [] }, log));

  const inclusion = [];
  for (const [index, size] of incl) inclusion.push({ index, size, proof: (await inclusionProof(index, size, source)).map(b64encode) });
  const consistency = [];
  for (const [m, n] of cons) consistency.push({ old_size: m, new_size: n, proof: (await consistencyProof(m, n, source)).map(b64encode) });

  const body = formatCheckpoint({ origin, size: BigInt(SIZE), root: roots.get(SIZE)!, extensions: [] });
  const cosigned = addSignatures(checkpoints.get(SIZE)!, [cosignCheckpoint(body, witness, 1767225600)]);

  const tlogProofs = [];
  for (const [index, extra] of [[0, undefined], [137, utf8('extra context')], [SIZE - 1, undefined]] as const) {
    const proof = await inclusionProof(index, SIZE, source);
    const checkpoint = index === 137 ? cosigned : checkpoints.get(SIZE)!;
    tlogProofs.push({
      leaf_hash: b64encode(levels[0][index]),
      proof: formatTlogProof({ index, proof, checkpoint, ...(extra ? { extra } : {}) }),
    });
  }

  // Probe: a note signed with a torsion component in R (see torsionSignature).
  const probeText = 'cofactored vs cofactorless Ed25519\n';
  const seed = b64decode(keys.log.skey.slice(-44)).slice(1);
  const probeNote = `${probeText}\n${formatSignatureLine(log.name, log.keyId, torsionSignature(seed, utf8(probeText)))}\n`;
  let probeAccepted: boolean;
  try {
    verifyNote(probeNote, parseVkey(keys.log.vkey));
    probeAccepted = true;
  } catch {
    probeAccepted = false;
  }

  const doc = {
    generator: 'scripts/interop/gen-trailmark.ts (trailmark keygen + @trailmark/tlog)',
    keys,
    notes,
    cosigned_checkpoint: cosigned,
    torsion_probe: { note: probeNote, trailmark_verify_note_accepts: probeAccepted },
    tlog_proofs: tlogProofs,
    tree: {
      origin,
      size: SIZE,
      leaves: leafData.map(b64encode),
      leaf_hashes: levels[0].map(b64encode),
      empty_root: b64encode(emptyRoot()),
      sizes: sizeList.map((n) => ({ size: n, root: b64encode(roots.get(n)!), checkpoint: checkpoints.get(n)! })),
      inclusion,
      consistency,
    },
  };
  writeFileSync(out, JSON.stringify(doc, null, 1) + '\n');
  console.log(
    `wrote ${out}: 3 keys from trailmark keygen, ${notes.length} notes, tree of ${SIZE} with ${sizeList.length} signed checkpoints, ` +
      `${inclusion.length} inclusion and ${consistency.length} consistency proofs, ${tlogProofs.length} tlog-proof files`,
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
