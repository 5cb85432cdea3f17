/**
 * Who is calling and what they may do: bearer tokens mapped to identities (--tokens), and an optional rules
 * file mapping roles to allowed methods and path prefixes (--rules).
 */
import { createHash } from 'node:crypto';
import { ConfigError, readJsonFile } from '@trailmark/recorder';

/** An authenticated caller: its id (the event's actor) and roles. */
export interface Identity {
  id: string;
  roles: string[];
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Bearer tokens → identities. Tokens are kept only as SHA-256 digests, so a lookup does not compare secrets
 * byte by byte and a heap dump does not hold them in clear.
 */
export class TokenStore {
  private readonly byDigest = new Map<string, Identity>();

  /**
   * Precondition: `map` is `{"<token>": {"id": "alice", "roles": ["dba"]}}`; throws ConfigError naming the
   * offending entry by position (never by its token).
   */
  constructor(map: unknown, source = 'tokens') {
    if (typeof map !== 'object' || map === null || Array.isArray(map))
      throw new ConfigError('tokens', `${source}: must be a JSON object mapping tokens to identities`);
    let n = 0;
    for (const [token, ident] of Object.entries(map as Record<string, unknown>)) {
      n++;
      const where = `${source}: entry ${n}`;
      if (token.length === 0 || /\s/.test(token))
        throw new ConfigError('tokens', `${where}: a token must be non-empty without spaces`);
      if (typeof ident !== 'object' || ident === null || Array.isArray(ident))
        throw new ConfigError('tokens', `${where}: identity must be an object {"id", "roles"}`);
      const { id, roles } = ident as { id?: unknown; roles?: unknown };
      if (typeof id !== 'string' || id.length === 0)
        throw new ConfigError('tokens', `${where}: "id" must be a non-empty string`);
      if (
        roles !== undefined &&
        (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string' && r.length > 0))
      ) {
        throw new ConfigError('tokens', `${where} (${id}): "roles" must be an array of non-empty strings`);
      }
      this.byDigest.set(digest(token), { id, roles: [...((roles as string[] | undefined) ?? [])] });
    }
    if (n === 0) throw new ConfigError('tokens', `${source}: no tokens defined`);
  }

  /** Reads a tokens JSON file. Precondition: the file exists and is valid (else ConfigError saying why). */
  static fromFile(path: string): TokenStore {
    return new TokenStore(readJsonFile('tokens', path), `tokens file ${path}`);
  }

  /** Number of tokens held. */
  get size(): number {
    return this.byDigest.size;
  }

  /** The identity of a token, or null. Precondition: none. */
  lookup(token: string): Identity | null {
    return this.byDigest.get(digest(token)) ?? null;
  }
}

/** A bearer token from an Authorization header value, or null if absent or not a bearer credential. Precondition: none. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

interface Rule {
  methods: Set<string> | '*';
  paths: string[];
}

/**
 * Role rules: `{"<role>": {"methods": ["GET", ...] | ["*"], "paths": ["/prefix", ...]}, ...}` (a role may also
 * map to an array of such objects). A request is allowed when any of the actor's roles has a rule matching its
 * method and a path prefix. Prefixes match whole segments: "/db" allows "/db" and "/db/x", not "/dbx".
 */
export class Rules {
  private readonly byRole = new Map<string, Rule[]>();

  /** Precondition: the shape above; throws ConfigError naming the role and field that are wrong. */
  constructor(obj: unknown, source = 'rules') {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      throw new ConfigError('rules', `${source}: must be a JSON object mapping roles to rules`);
    for (const [role, spec] of Object.entries(obj as Record<string, unknown>)) {
      const list = Array.isArray(spec) ? spec : [spec];
      const rules: Rule[] = list.map((r, i) => {
        const where = `${source}: role ${JSON.stringify(role)} rule ${i + 1}`;
        if (typeof r !== 'object' || r === null)
          throw new ConfigError('rules', `${where}: must be an object {"methods", "paths"}`);
        const { methods, paths } = r as { methods?: unknown; paths?: unknown };
        if (
          !Array.isArray(methods) ||
          methods.length === 0 ||
          !methods.every((m) => typeof m === 'string' && /^(\*|[A-Za-z]+)$/.test(m))
        ) {
          throw new ConfigError('rules', `${where}: "methods" must be a non-empty array of HTTP methods or "*"`);
        }
        if (
          !Array.isArray(paths) ||
          paths.length === 0 ||
          !paths.every((p) => typeof p === 'string' && p.startsWith('/'))
        ) {
          throw new ConfigError('rules', `${where}: "paths" must be a non-empty array of prefixes starting with "/"`);
        }
        return {
          methods: methods.includes('*') ? '*' : new Set(methods.map((m: string) => m.toUpperCase())),
          paths: paths as string[],
        };
      });
      this.byRole.set(role, rules);
    }
  }

  /** Reads a rules JSON file. Precondition: it exists and is valid (else ConfigError). */
  static fromFile(path: string): Rules {
    return new Rules(readJsonFile('rules', path), `rules file ${path}`);
  }

  /**
   * Which role allows `method` on `path`, or null. Precondition: `path` is already normalized (no dot
   * segments); a path with an encoded slash or backslash never matches, since upstreams disagree on them.
   */
  allows(roles: readonly string[], method: string, path: string): string | null {
    if (/%2f|%5c|\\/i.test(path)) return null;
    for (const role of roles) {
      for (const rule of this.byRole.get(role) ?? []) {
        if (rule.methods !== '*' && !rule.methods.has(method)) continue;
        if (rule.paths.some((p) => prefixMatch(p, path))) return role;
      }
    }
    return null;
  }
}

function prefixMatch(prefix: string, path: string): boolean {
  // `OPTIONS *` asks about the whole server: only a rule for the whole server ("/") covers it
  if (path === '*') return prefix === '/';
  if (prefix.endsWith('/')) return path.startsWith(prefix) || path === prefix.slice(0, -1);
  return path === prefix || path.startsWith(prefix + '/');
}
