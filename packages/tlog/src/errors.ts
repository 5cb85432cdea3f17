/** Base of every error @trailmark/tlog throws; `code` is stable for programs, `message` is for people. */
export class TlogError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A Merkle proof did not verify, or its inputs were out of range. */
export class ProofError extends TlogError {}
