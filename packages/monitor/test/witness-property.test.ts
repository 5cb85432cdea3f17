/**
 * Property: whatever mix of honest and forked add-checkpoint requests arrives, concurrently and in any order,
 * the witness never cosigns two checkpoints that disagree (two roots for one size, or a tree that does not
 * extend a smaller cosigned one), and its record only grows. Real LevelDB, the Witness class without HTTP.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  formatAddCheckpoint,
  parseAddCheckpoint,
  bytesEqual,
  generateKey,
  KEY_TYPE_COSIGNATURE,
  parseNote,
  parsePrivateKey,
  parseVkey,
} from '@trailmark/tlog';
import { MonitorStore, Witness } from '../src/index.js';
import { TestTree } from '../../../test/lib/tree.js';

const seed = (n: number) => new Uint8Array(32).fill(n);
const logKey = generateKey('prop.example/log', 1, seed(21));
const signer = parsePrivateKey(logKey.privateKey);
const witnessSigner = parsePrivateKey(generateKey('prop.example/w', KEY_TYPE_COSIGNATURE, seed(22)).privateKey);
const N = 24;
const honest = new TestTree(signer, N, 'h');
// a fork sharing the first 6 leaves, then diverging
const fork = new TestTree(signer, N, 'f');
for (let i = 0; i < 6; i++) fork.leaves[i] = honest.leaves[i];

interface Req {
  forked: boolean;
  old: number;
  size: number;
}

async function body(r: Req): Promise<string> {
  const t = r.forked ? fork : honest;
  const proof = r.old > 0 && r.old < r.size ? await t.consistency(r.old, r.size) : [];
  return formatAddCheckpoint({ oldSize: BigInt(r.old), proof, note: t.checkpoint(r.size) });
}

describe('witness property: never cosigns a split view', function () {
  this.timeout(60_000);

  it('holds for random concurrent batches of honest and forked requests', async () => {
    // old: the witness's current size (read just before the batch, so concurrent requests race for it) or random
    const req = fc.record({
      forked: fc.boolean(),
      oldIsCurrent: fc.boolean(),
      old: fc.integer({ min: 0, max: N - 1 }),
      size: fc.integer({ min: 1, max: N - 1 }),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(req, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }),
        async (batches) => {
          const store = await MonitorStore.open();
          try {
            const w = new Witness({
              signer: witnessSigner,
              logs: new Map([[signer.name, parseVkey(logKey.vkey)]]),
              store,
              now: () => 1_700_000_000,
            });
            const cosigned: { size: number; root: Uint8Array }[] = [];
            let last = 0n;
            for (const gen of batches) {
              const current = Number((await store.witness(signer.name))?.size ?? 0);
              const batch: Req[] = gen.map((g) => ({
                forked: g.forked,
                size: g.size,
                old: g.oldIsCurrent ? Math.min(current, g.size) : Math.min(g.old, g.size),
              }));
              const answers = await Promise.all(
                batch.map(async (r) => ({ r, a: await w.addCheckpoint(await body(r)) })),
              );
              for (const { r, a } of answers) {
                if (a.status === 200) {
                  const req = parseAddCheckpoint(await body(r));
                  if (typeof req === 'string') throw new Error(req);
                  cosigned.push({ size: r.size, root: (r.forked ? fork : honest).root(r.size) });
                  accepted++;
                  expect(parseNote(req.note).text).to.contain(`\n${r.size}\n`);
                } else {
                  expect([400, 409, 422]).to.include(a.status);
                }
              }
              const rec = await store.witness(signer.name);
              const now = rec ? BigInt(rec.size) : 0n;
              expect(now >= last, 'the record never shrinks').to.equal(true);
              last = now;
            }
            // every pair of cosigned checkpoints is consistent: the smaller is the prefix of the larger
            for (const a of cosigned) {
              for (const b of cosigned) {
                if (a.size > b.size) continue;
                const prefixOfB = bytesEqual(b.root, honest.root(b.size)) ? honest.root(a.size) : fork.root(a.size);
                expect(bytesEqual(a.root, prefixOfB), `cosigned ${a.size} and ${b.size} disagree`).to.equal(true);
              }
            }
          } finally {
            await store.close();
          }
        },
      ),
      { numRuns: 40 },
    );
    expect(accepted, 'the property saw cosignatures at all').to.be.above(20);
  });
});
