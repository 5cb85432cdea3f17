/**
 * The users file (`--users`: proxy users, their SCRAM verifiers and roles) and the rules file (`--rules`: the
 * databases each role may use and whether it may write), contract section 5b.
 */
import { ConfigError, readJsonFile } from '@trailmark/recorder';
import { parseVerifier, type ScramVerifier } from './scram.js';
import { errorMessage } from '@trailmark/tlog';

/** A proxy user: name, SCRAM-SHA-256 verifier and roles. */
export interface PgUser {
  name: string;
  verifier: ScramVerifier;
  roles: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Proxy users by name. */
export class PgUsers {
  private readonly users = new Map<string, PgUser>();

  /** Precondition: none; throws ConfigError('users') naming the entry that is wrong. */
  constructor(data: unknown, where = 'users') {
    if (!isObject(data))
      throw new ConfigError('users', `${where} must be a JSON object {"<user>": {"password", "roles"}}`);
    for (const [name, v] of Object.entries(data)) {
      if (!isObject(v) || typeof v.password !== 'string')
        throw new ConfigError('users', `${where}: user ${JSON.stringify(name)} needs a "password" verifier string`);
      if (v.roles !== undefined && !isStrings(v.roles))
        throw new ConfigError('users', `${where}: roles of ${JSON.stringify(name)} must be an array of strings`);
      let verifier: ScramVerifier;
      try {
        verifier = parseVerifier(v.password);
      } catch (e) {
        throw new ConfigError(
          'users',
          `${where}: user ${JSON.stringify(name)}: ${errorMessage(e)} (make one with trailmark pg-password)`,
          { cause: e },
        );
      }
      this.users.set(name, { name, verifier, roles: v.roles ?? [] });
    }
  }

  /**
   * Reads the users JSON file at `path`. Precondition: none; throws ConfigError('users') when it cannot be read, is not
   * JSON or has a wrong entry.
   */
  static fromFile(path: string): PgUsers {
    return new PgUsers(readJsonFile('users', path), `users file ${path}`);
  }

  /** The user called `name`, or null. */
  get(name: string): PgUser | null {
    return this.users.get(name) ?? null;
  }
}

/** One role's rule: the databases it opens (`*` for any) and whether sessions there are read-only. */
export interface PgRule {
  databases: string[];
  read_only: boolean;
}

/** What a session may do, from the first of the user's roles that allows the database. */
export interface Grant {
  /** The role that granted it, or null without rules. */
  role: string | null;
  readOnly: boolean;
}

/**
 * Which databases each role may open, and read-only or not. Precondition (constructor): none; throws
 * ConfigError('rules') naming the entry that is wrong.
 */
export class PgRules {
  private readonly rules = new Map<string, PgRule>();

  constructor(data: unknown, where = 'rules') {
    if (!isObject(data))
      throw new ConfigError(
        'rules',
        `${where} must be a JSON object {"<role>": {"databases": [...], "read_only": bool}}`,
      );
    for (const [role, v] of Object.entries(data)) {
      if (!isObject(v) || !isStrings(v.databases))
        throw new ConfigError('rules', `${where}: role ${JSON.stringify(role)} needs "databases": an array of names`);
      if (v.read_only !== undefined && typeof v.read_only !== 'boolean')
        throw new ConfigError('rules', `${where}: "read_only" of ${JSON.stringify(role)} must be true or false`);
      this.rules.set(role, { databases: v.databases, read_only: v.read_only === true });
    }
  }

  /**
   * Reads the rules JSON file at `path`. Precondition: none; throws ConfigError('rules') when it cannot be read, is not
   * JSON or has a wrong entry.
   */
  static fromFile(path: string): PgRules {
    return new PgRules(readJsonFile('rules', path), `rules file ${path}`);
  }

  /**
   * The grant for roles on database, or null when no role allows it. A role allowing writes wins over a
   * read-only one, so adding a role never takes a right away. `*` in databases matches any database.
   */
  grant(roles: readonly string[], database: string): Grant | null {
    let best: Grant | null = null;
    for (const role of roles) {
      const r = this.rules.get(role);
      if (!r || !(r.databases.includes(database) || r.databases.includes('*'))) continue;
      if (!best || (best.readOnly && !r.read_only)) best = { role, readOnly: r.read_only };
    }
    return best;
  }
}
