/**
 * RFC 6962 section 3.5 signed tree heads: a TLS DigitallySigned (hash 8 "intrinsic", signature 7 ed25519,
 * uint16 length, signature) over TreeHeadSignature (version v1 = 0, signature_type tree_hash = 1,
 * uint64 timestamp, uint64 tree_size, 32-byte root).
 */
import type { NoteSigner } from '@trailmark/tlog';

/** The TreeHeadSignature bytes. Precondition: timestamp and size are uint64, root is 32 bytes. */
export function treeHeadSignatureInput(timestampMs: bigint, size: bigint, root: Uint8Array): Buffer {
  const b = Buffer.alloc(2 + 8 + 8 + 32);
  b[0] = 0;
  b[1] = 1;
  b.writeBigUInt64BE(timestampMs, 2);
  b.writeBigUInt64BE(size, 10);
  Buffer.from(root.buffer, root.byteOffset, root.byteLength).copy(b, 18);
  return b;
}

/** Signs a tree head; returns the DigitallySigned structure. Precondition: an Ed25519 signer. */
export function signTreeHead(signer: NoteSigner, timestampMs: bigint, size: bigint, root: Uint8Array): Buffer {
  const sig = signer.sign(treeHeadSignatureInput(timestampMs, size, root));
  const out = Buffer.alloc(4 + sig.length);
  out[0] = 8;
  out[1] = 7;
  out.writeUInt16BE(sig.length, 2);
  Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).copy(out, 4);
  return out;
}
