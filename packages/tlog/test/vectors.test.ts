import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { b64decode, verifyConsistency, verifyInclusion } from '../src/index.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), 'vectors', 'rfc6962');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.json') ? [p] : [];
  });
}

const bytes = (s: string | null) => (s ? b64decode(s) : new Uint8Array(0));
const list = (a: string[] | null) => (a ?? []).map(bytes);

describe('RFC 6962 vectors (transparency-dev/merkle testdata)', () => {
  const inclusion = walk(join(root, 'inclusion'));
  const consistency = walk(join(root, 'consistency'));

  it('has the vectors', () => {
    expect(inclusion.length).to.be.greaterThan(50);
    expect(consistency.length).to.be.greaterThan(50);
  });

  describe('inclusion', () => {
    for (const file of inclusion) {
      const v = JSON.parse(readFileSync(file, 'utf8'));
      it(`${relative(root, file)}: ${v.wantErr ? 'rejects' : 'accepts'}`, () => {
        const run = () =>
          verifyInclusion(BigInt(v.leafIdx), BigInt(v.treeSize), bytes(v.leafHash), list(v.proof), bytes(v.root));
        if (v.wantErr) expect(run).to.throw();
        else expect(run).not.to.throw();
      });
    }
  });

  describe('consistency', () => {
    for (const file of consistency) {
      const v = JSON.parse(readFileSync(file, 'utf8'));
      it(`${relative(root, file)}: ${v.wantErr ? 'rejects' : 'accepts'}`, () => {
        const run = () =>
          verifyConsistency(BigInt(v.size1), BigInt(v.size2), list(v.proof), bytes(v.root1), bytes(v.root2));
        if (v.wantErr) expect(run).to.throw();
        else expect(run).not.to.throw();
      });
    }
  });
});
