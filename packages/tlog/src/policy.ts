/**
 * C2SP tlog-policy: known logs, known witnesses, witness groups and the quorum.
 *
 *   log <vkey> [<url>]
 *   witness <name> <vkey> [<url>]
 *   group <name> all|any|<k> <name>...
 *   quorum <name>|none
 *
 * Items are separated by spaces and tabs; blank lines and '#' comment lines are ignored. A group or the
 * quorum may only name witnesses and groups defined on preceding lines.
 */
import { fromUtf8 } from './encoding.js';
import { TlogError, errorMessage } from './errors.js';
import { KEY_TYPE_COSIGNATURE, KEY_TYPE_ED25519, parseVkey, samePublicKey, type NoteVerifier } from './keys.js';

/** Policy errors: code 'policy', message naming the line. */
export class PolicyError extends TlogError {}

/** A log listed in a tlog-policy: its verifier key and optional URL. */
export interface PolicyLog {
  vkey: string;
  verifier: NoteVerifier;
  url?: string;
}

/** A witness defined in a tlog-policy under a policy-local name. */
export interface PolicyWitness {
  name: string;
  vkey: string;
  verifier: NoteVerifier;
  url?: string;
}

/** A tlog-policy group: satisfied when at least k of its members (witnesses or groups) are. */
export interface PolicyGroup {
  name: string;
  /** Threshold: at least k of the members (1 <= k <= members.length). */
  k: number;
  members: string[];
}

/** A parsed tlog-policy: the logs it accepts, its witnesses and groups, and the quorum a checkpoint must meet. */
export interface Policy {
  logs: PolicyLog[];
  /** Witnesses by policy name, in definition order. */
  witnesses: Map<string, PolicyWitness>;
  /** Groups by name, in definition order. */
  groups: Map<string, PolicyGroup>;
  /** The quorum: a witness name, a group name, or 'none'. */
  quorum: string;
}

/** Implementation limits (the spec recommends supporting at least 32 of each). */
export const MAX_POLICY_ITEMS = 1024;

const NONE = 'none';
// allowed octets: tab, newline, 0x20-0x7E, and anything non-ASCII
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f]/;
const DECIMAL_K = /^[1-9][0-9]*$/;

/** Parses a policy file (string or bytes; bytes must be UTF-8). Throws PolicyError naming the line. */
export function parsePolicy(input: string | Uint8Array): Policy {
  let text: string;
  if (input instanceof Uint8Array) {
    try {
      text = fromUtf8(input, 'policy');
    } catch {
      throw new PolicyError('policy', 'policy: not valid UTF-8');
    }
  } else text = input;
  if (typeof text !== 'string') throw new PolicyError('policy', 'policy must be text');
  const policy: Policy = { logs: [], witnesses: new Map(), groups: new Map(), quorum: '' };
  let quorumLine = 0;
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const n = i + 1;
    const fail = (msg: string, cause?: unknown): never => {
      throw new PolicyError('policy', `policy line ${n}: ${msg}`, { cause });
    };
    if (FORBIDDEN.test(raw)) fail('control character (only tab and newline are allowed)');
    const trimmed = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const f = trimmed.split(/[ \t]+/);
    const defined = (name: string) => policy.witnesses.has(name) || policy.groups.has(name);
    const checkNewName = (name: string) => {
      if (name === NONE) fail(`the name "none" is reserved`);
      if (defined(name)) fail(`name ${JSON.stringify(name)} is already defined`);
    };
    const key = (vkey: string, type: number, what: string): NoteVerifier => {
      let v: NoteVerifier;
      try {
        v = parseVkey(vkey);
      } catch (e) {
        return fail(`${what} key: ${errorMessage(e)}`, e);
      }
      if (v.type !== type) fail(`${what} key must have signature type 0x0${type}, got 0x0${v.type}`);
      return v;
    };
    switch (f[0]) {
      case 'log': {
        if (f.length < 2 || f.length > 3) fail('want "log <vkey> [<url>]"');
        const verifier = key(f[1], KEY_TYPE_ED25519, 'log');
        if (policy.logs.some((l) => samePublicKey(l.verifier, verifier))) fail('duplicate log key');
        if (policy.logs.length >= MAX_POLICY_ITEMS) fail('too many logs');
        policy.logs.push({ vkey: f[1], verifier, ...(f[2] !== undefined ? { url: f[2] } : {}) });
        break;
      }
      case 'witness': {
        if (f.length < 3 || f.length > 4) fail('want "witness <name> <vkey> [<url>]"');
        checkNewName(f[1]);
        const verifier = key(f[2], KEY_TYPE_COSIGNATURE, 'witness');
        for (const w of policy.witnesses.values())
          if (samePublicKey(w.verifier, verifier)) fail(`duplicate witness key (same as ${w.name})`);
        if (policy.witnesses.size >= MAX_POLICY_ITEMS) fail('too many witnesses');
        policy.witnesses.set(f[1], { name: f[1], vkey: f[2], verifier, ...(f[3] !== undefined ? { url: f[3] } : {}) });
        break;
      }
      case 'group': {
        if (f.length < 4) fail('want "group <name> all|any|<k> <name>..."');
        checkNewName(f[1]);
        const members = f.slice(3);
        const seen = new Set<string>();
        for (const m of members) {
          if (m === NONE) fail('"none" cannot be a group member');
          if (!defined(m)) fail(`group member ${JSON.stringify(m)} is not defined on a preceding line`);
          if (seen.has(m)) fail(`group member ${JSON.stringify(m)} listed twice`);
          seen.add(m);
        }
        let k: number;
        if (f[2] === 'all') k = members.length;
        else if (f[2] === 'any') k = 1;
        else if (DECIMAL_K.test(f[2]) && f[2].length <= 6) k = Number(f[2]);
        else return fail(`group threshold ${JSON.stringify(f[2])} is not "all", "any" or a decimal number`);
        if (k < 1 || k > members.length) fail(`group threshold ${k} is not between 1 and ${members.length}`);
        if (policy.groups.size >= MAX_POLICY_ITEMS) fail('too many groups');
        policy.groups.set(f[1], { name: f[1], k, members });
        break;
      }
      case 'quorum': {
        if (f.length !== 2) fail('want "quorum <name>"');
        if (quorumLine) fail(`second quorum line (first on line ${quorumLine})`);
        if (f[1] !== NONE && !defined(f[1])) fail(`quorum ${JSON.stringify(f[1])} is not defined on a preceding line`);
        policy.quorum = f[1];
        quorumLine = n;
        break;
      }
      default:
        fail(`unknown keyword ${JSON.stringify(f[0])}`);
    }
  });
  if (!quorumLine) throw new PolicyError('policy', 'policy has no quorum line');
  return policy;
}

/**
 * Whether the witnesses named in `cosignedBy` (policy witness names whose cosignatures verified) satisfy the
 * policy's quorum. Groups are evaluated recursively: a group is satisfied when at least k members are.
 */
export function evaluateQuorum(policy: Policy, cosignedBy: ReadonlySet<string>): boolean {
  if (policy.quorum === NONE) return true;
  const memo = new Map<string, boolean>();
  const satisfied = (name: string): boolean => {
    const m = memo.get(name);
    if (m !== undefined) return m;
    let r = false;
    const g = policy.groups.get(name);
    if (g) {
      let count = 0;
      for (const member of g.members) if (satisfied(member)) count++;
      r = count >= g.k;
    } else if (policy.witnesses.has(name)) {
      r = cosignedBy.has(name);
    }
    memo.set(name, r);
    return r;
  };
  return satisfied(policy.quorum);
}

/** Whether the policy accepts this log key: true when it lists no logs, else the key must be listed. */
export function policyHasLog(policy: Policy, log: NoteVerifier): boolean {
  if (policy.logs.length === 0) return true;
  return policy.logs.some(
    (l) => l.verifier.name === log.name && l.verifier.keyId === log.keyId && samePublicKey(l.verifier, log),
  );
}

/** Formats a policy back to text (one item per line). */
export function formatPolicy(policy: Policy): string {
  const out: string[] = [];
  for (const l of policy.logs) out.push(['log', l.vkey, ...(l.url ? [l.url] : [])].join(' '));
  for (const w of policy.witnesses.values()) out.push(['witness', w.name, w.vkey, ...(w.url ? [w.url] : [])].join(' '));
  for (const g of policy.groups.values()) {
    const k = g.k === g.members.length ? 'all' : g.k === 1 ? 'any' : String(g.k);
    out.push(['group', g.name, k, ...g.members].join(' '));
  }
  out.push(`quorum ${policy.quorum}`);
  return out.join('\n') + '\n';
}
