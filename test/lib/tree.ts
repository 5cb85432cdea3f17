/**
 * Test helper: an in-memory RFC 6962 tree of made-up leaves, signed with a given log key, to feed the witness
 * and the evidence checker inputs a real log would produce (and inputs a lying one would).
 */
import {
  consistencyProof,
  hashLeaf,
  inclusionProof,
  merkleRoot,
  signCheckpoint,
  utf8,
  type Hash,
  type NodeId,
  type NoteSigner,
} from '@trailmark/tlog';

export class TestTree {
  readonly leaves: Hash[];
  constructor(
    readonly signer: NoteSigner,
    n: number,
    readonly tag = 'a',
  ) {
    this.leaves = Array.from({ length: n }, (_, i) => hashLeaf(utf8(`{"leaf":"${tag}${i}"}`)));
  }

  root(size: number): Hash {
    return merkleRoot(this.leaves.slice(0, size));
  }

  /** The log-signed checkpoint note of the first `size` leaves. */
  checkpoint(size: number): string {
    return signCheckpoint(
      { origin: this.signer.name, size: BigInt(size), root: this.root(size), extensions: [] },
      this.signer,
    );
  }

  private source = (nodes: NodeId[]) =>
    nodes.map((n) =>
      merkleRoot(this.leaves.slice(Number(n.index << BigInt(n.level)), Number((n.index + 1n) << BigInt(n.level)))),
    );

  async consistency(m: number, n: number): Promise<Hash[]> {
    return consistencyProof(m, n, this.source);
  }

  async inclusion(i: number, n: number): Promise<Hash[]> {
    return inclusionProof(i, n, this.source);
  }
}
