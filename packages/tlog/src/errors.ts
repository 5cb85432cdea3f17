/**
 * Every code an error of @trailmark/tlog carries. Programs branch on `code`; `message` is for people.
 * A code names what failed, never where: the same check in two places has one code.
 */
export type TlogErrorCode =
  // encodings
  | 'base64' // text is not canonical base64
  | 'hex' // text is not lowercase hex of the right length
  | 'utf8' // bytes are not valid UTF-8
  | 'json' // text is not the strict JSON this library accepts (I-JSON, RFC 8785 input)
  | 'hash-length' // a hash is not 32 bytes
  | 'range' // a size, index or count is outside what it may be (negative, past uint64, past the tree)
  | 'internal' // an invariant of this library broke: a bug, never bad input
  // Merkle proofs (ProofError)
  | 'index-out-of-range' // a leaf or tree index is not below the tree size
  | 'size-order' // a consistency proof's sizes are not 0 < old <= new
  | 'proof-length' // a proof has the wrong number of hashes for its sizes
  | 'plan-mismatch' // a proof's hashes do not fit the plan computed for its sizes
  | 'root-mismatch' // a proof recomputes another root than the one it is checked against
  | 'compact-range' // a compact range is malformed or does not join
  | 'root-missing' // a consistency proof from a power-of-two size lacks the first root
  // tiles and entry bundles (TlogError, TileVerifyError)
  | 'tile' // a tile coordinate or width is invalid
  | 'tile-path' // a tile path does not parse
  | 'tile-missing' // the log does not serve a tile a tree view needs (TileMissingError; per-leaf proofs are the fallback)
  | 'entry-bundle' // an entry bundle does not parse
  | 'entry-size' // an entry is larger than a bundle may carry
  | 'tile-size' // a tile has the wrong byte length for its width
  | 'tile-mismatch' // a full tile does not hash to its parent's hash
  | 'right-edge' // the partial tiles do not recompute the checkpoint's root
  | 'bundle-malformed' // an entry bundle fetched for a verified tile does not parse
  | 'bundle-size' // an entry bundle holds the wrong number of entries
  | 'entry-mismatch' // an entry's leaf hash differs from the one the verified tile holds
  | 'empty-root' // a checkpoint of size 0 does not carry the empty tree's root
  | 'not-in-tree' // an index asked of a verified tree is not below its size
  // keys (KeyError)
  | 'key-name' // a key name breaks the signed-note rules
  | 'key-format' // key text does not parse
  | 'key-type' // a signature type this library does not support
  | 'key-length' // a key has the wrong byte length
  | 'key-id' // a key id does not match the key it names
  | 'timestamp' // a cosignature timestamp is out of range
  // signed notes (NoteError)
  | 'malformed-note' // text breaks the signed-note syntax or character rules
  | 'note-too-large' // a note is over the size limit
  | 'too-many-signatures' // a note carries more signature lines than allowed
  | 'bad-signature' // a known key's signature does not verify
  | 'no-verified-signature' // no known key signed the note
  | 'sign' // signing input is invalid
  // checkpoints (CheckpointError)
  | 'malformed-checkpoint' // the note body is not a checkpoint
  | 'origin-mismatch' // the checkpoint's origin is not the log key's name
  | 'no-log-signature' // the log key did not sign the checkpoint
  | 'bad-cosignature' // a known witness's cosignature does not verify
  | 'quorum' // the policy's witness quorum is not met
  | 'log-not-in-policy' // the policy names no such log
  | 'policy' // a policy file does not parse
  // cosignatures (CosignatureError)
  | 'cosign' // bad input to cosigning
  | 'key-mismatch' // a cosignature line is from another key, or the key is not a cosignature key
  | 'future' // a cosignature's timestamp is later than allowed
  // tlog-proof files (TlogProofError)
  | 'malformed-proof' // a tlog-proof file does not parse
  | 'inclusion' // a tlog-proof's inclusion proof does not verify
  // streams (StreamError)
  | 'stream-malformed'; // a stream link or entry is not what the stream format requires

/**
 * What an error may carry beside its message: the error it wraps (`cause`, as in the ES2022 Error option) and,
 * for a mismatch, what was expected and what was found, as text a program can compare or print.
 */
export interface ErrorDetails {
  cause?: unknown;
  expected?: string;
  found?: string;
}

/**
 * An error with a typed `code` for programs, a `message` for people, the error it wraps as `cause`, and for a
 * mismatch what was expected and what was found. Each package's error base extends it with its own code union,
 * so `instanceof` still tells the packages apart.
 */
export class CodedError<C extends string> extends Error {
  /** For a mismatch: what the check required. */
  readonly expected?: string;
  /** For a mismatch: what it got instead. */
  readonly found?: string;
  constructor(
    readonly code: C,
    message: string,
    details: ErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    if (details.expected !== undefined) this.expected = details.expected;
    if (details.found !== undefined) this.found = details.found;
  }
}

/** Base of every error @trailmark/tlog throws; `code` is stable for programs, `message` is for people. */
export class TlogError extends CodedError<TlogErrorCode> {}

/** A Merkle proof did not verify, or its inputs were out of range. */
export class ProofError extends TlogError {}

/**
 * The message of anything thrown: an Error's message, else the value as text. Use it where a caught value is
 * reported, instead of asserting it is an Error (a rejected promise may carry anything).
 */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string') {
    return (e as { message: string }).message;
  }
  return String(e);
}

/** The string `code` of anything thrown (an Error subclass or a Node system error), or undefined. */
export function errorCode(e: unknown): string | undefined {
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}
