import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/** A SHA-256 Merkle tree hash: 32 bytes. */
export type Hash = Uint8Array;
/** Size in bytes of a SHA-256 hash, and so of every tree node. */
export const HASH_SIZE = 32;

/**
 * RFC 6962 / RFC 9162 section 2.1 hashing with a pluggable SHA-256, so Node callers can use node:crypto's
 * faster native digest while this package stays free of node: imports.
 */
export interface Hasher {
  sha256(data: Uint8Array): Hash;
  /** SHA-256(0x00 || data). */
  leaf(data: Uint8Array): Hash;
  /** SHA-256(0x01 || left || right). Precondition: both are 32 bytes. */
  node(left: Hash, right: Hash): Hash;
  /** The root of the empty tree: SHA-256 of the empty string. */
  empty(): Hash;
}

/** Builds a Hasher on top of a SHA-256 function. */
export function makeHasher(sha256: (data: Uint8Array) => Uint8Array): Hasher {
  const emptyRootHash = sha256(new Uint8Array(0));
  const nodeBuf = new Uint8Array(1 + 2 * HASH_SIZE);
  nodeBuf[0] = 1;
  return {
    sha256,
    leaf(data) {
      const buf = new Uint8Array(data.length + 1);
      buf.set(data, 1);
      return sha256(buf);
    },
    node(left, right) {
      nodeBuf.set(left, 1);
      nodeBuf.set(right, 1 + HASH_SIZE);
      return sha256(nodeBuf);
    },
    empty() {
      return emptyRootHash.slice();
    },
  };
}

/** The default hasher, on @noble/hashes. */
export const rfc6962: Hasher = makeHasher((d) => nobleSha256(d));

/** SHA-256 of `data` with the default (@noble/hashes) implementation. */
export function sha256(data: Uint8Array): Hash {
  return nobleSha256(data);
}
/** RFC 6962 leaf hash, SHA-256(0x00 || data), with the default hasher. */
export function hashLeaf(data: Uint8Array): Hash {
  return rfc6962.leaf(data);
}
/**
 * RFC 6962 interior node hash, SHA-256(0x01 || left || right), with the default hasher. Precondition: both are 32-byte
 * hashes (not checked).
 */
export function hashNode(left: Hash, right: Hash): Hash {
  return rfc6962.node(left, right);
}
/** The root of the empty tree (SHA-256 of the empty string), a fresh copy each call. */
export function emptyRoot(): Hash {
  return rfc6962.empty();
}

/**
 * The Merkle Tree Hash (RFC 9162 section 2.1.1) of a list of leaf hashes.
 * Precondition: every element is a 32-byte leaf hash. O(n) time, O(log n) extra space.
 */
export function merkleRoot(leafHashes: readonly Hash[], hasher: Hasher = rfc6962): Hash {
  if (leafHashes.length === 0) return hasher.empty();
  // stack of perfect subtree roots with their heights, merged as in a compact range
  const stack: Hash[] = [];
  const heights: number[] = [];
  for (const h of leafHashes) {
    let cur = h;
    let height = 0;
    while (heights.length > 0 && heights[heights.length - 1] === height) {
      cur = hasher.node(stack.pop()!, cur);
      heights.pop();
      height++;
    }
    stack.push(cur);
    heights.push(height);
  }
  let root = stack[stack.length - 1];
  for (let i = stack.length - 2; i >= 0; i--) root = hasher.node(stack[i], root);
  return root;
}
