import type { NoteVerifier } from '@trailmark/tlog';

/**
 * A verifier that remembers its last `capacity` answers. The monitor meets the same log signature again and
 * again (every poll, the witness endpoint, gossiped views and evidence), and pure-JS Ed25519 costs
 * milliseconds; verification is deterministic, so a remembered answer is the answer.
 */
export function rememberingVerifier(v: NoteVerifier, capacity = 1024): NoteVerifier {
  const seen = new Map<string, boolean>();
  return {
    name: v.name,
    keyId: v.keyId,
    type: v.type,
    publicKey: v.publicKey,
    verify(msg, sig) {
      const key =
        Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('latin1') +
        Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength).toString('latin1');
      let ok = seen.get(key);
      if (ok === undefined) {
        ok = v.verify(msg, sig);
        if (seen.size >= capacity) seen.delete(seen.keys().next().value as string);
        seen.set(key, ok);
      }
      return ok;
    },
  };
}
