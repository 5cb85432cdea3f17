/**
 * @trailmark/tlog micro-benchmark: leaf hashes/s, appends/s, inclusion proof verifications/s and note
 * verifications/s, each beside the raw SHA-256 rate measured in the same run.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CompactRange,
  generateKey,
  inclusionProof,
  makeHasher,
  parsePrivateKey,
  parseVkey,
  rfc6962,
  signCheckpoint,
  verifyInclusion,
  verifyNote,
  type Hash,
  type NodeId,
} from '@trailmark/tlog';
import { median, row, sha256Rates } from './lib/ceilings.js';

const quick = process.env.BENCH_QUICK === '1';
const MS = quick ? 150 : 500;
const RUNS = quick ? 1 : 3;
const nodeHasher = makeHasher((d) => createHash('sha256').update(d).digest());

function rate(fn: (i: number) => void, ms = MS): number {
  const t0 = performance.now();
  const end = t0 + ms;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) fn(n + i);
    n += 100;
  }
  return n / ((performance.now() - t0) / 1000);
}

const leaf = randomBytes(301);
const figures: Record<string, number[]> = {};
const add = (k: string, v: number) => (figures[k] ??= []).push(v);

// a 65,536-leaf tree with every perfect subtree stored, for proofs
const SIZE = 1 << 16;
const store = new Map<string, Hash>();
const cr = new CompactRange(0n, [], nodeHasher);
for (let i = 0; i < SIZE; i++)
  cr.append(nodeHasher.leaf(randomBytes(32)), (id, h) => store.set(`${id.level}/${id.index}`, h));
const root = cr.root();
const source = (nodes: NodeId[]) => nodes.map((n) => store.get(`${n.level}/${n.index}`)!);
const proofs: { i: number; leaf: Hash; proof: Hash[] }[] = [];
for (let k = 0; k < 256; k++) {
  const i = Math.floor(Math.random() * SIZE);
  proofs.push({ i, leaf: store.get(`0/${i}`)!, proof: await inclusionProof(i, SIZE, source, nodeHasher) });
}

const { privateKey, vkey } = generateKey('bench.example/log');
const signer = parsePrivateKey(privateKey);
const verifier = parseVkey(vkey);
const note = signCheckpoint({ origin: 'bench.example/log', size: BigInt(SIZE), root, extensions: [] }, signer);

for (let r = 0; r < RUNS; r++) {
  const raw = sha256Rates(MS);
  add('raw node', raw.node);
  add('raw noble', raw.noble);
  add(
    'leaf node',
    rate(() => nodeHasher.leaf(leaf)),
  );
  add(
    'leaf noble',
    rate(() => rfc6962.leaf(leaf)),
  );
  const c = new CompactRange(0n, [], nodeHasher);
  const h = nodeHasher.leaf(leaf);
  add(
    'append',
    rate(() => c.append(h)),
  );
  add(
    'verify',
    rate((i) => {
      const p = proofs[i & 255];
      verifyInclusion(p.i, SIZE, p.leaf, p.proof, root, nodeHasher);
    }),
  );
  add(
    'note',
    rate(() => verifyNote(note, verifier), MS * 2),
  );
}

const m = (k: string) => median(figures[k]);
console.log(`tlog micro-benchmark (median of ${RUNS}; 301-byte leaves; proofs in a ${SIZE}-leaf tree)`);
console.log(row('leaf hashes/s (node:crypto hasher)', m('leaf node'), '/s', 'raw SHA-256 node:crypto', m('raw node')));
console.log(
  row(
    'leaf hashes/s (default @noble/hashes hasher)',
    m('leaf noble'),
    '/s',
    'raw SHA-256 @noble/hashes',
    m('raw noble'),
  ),
);
console.log(
  row('CompactRange appends/s (node:crypto hasher)', m('append'), '/s', 'raw SHA-256 node:crypto', m('raw node')),
);
console.log(
  row('inclusion proof verifications/s (16 hashes)', m('verify'), '/s', 'raw SHA-256 node:crypto', m('raw node')),
);
console.log(
  row('checkpoint note verifications/s (Ed25519)', m('note'), '/s', 'raw SHA-256 node:crypto', m('raw node')),
);
