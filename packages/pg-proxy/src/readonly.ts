/**
 * Statements a read-only session may not send (contract section 5b): anything that would lift
 * default_transaction_read_only / transaction_read_only for the session or a transaction. The database enforces
 * read-only itself; this only stops a client from switching it off. It reads the SQL as sent, with comments and
 * literals blanked so they can neither hide nor fake a keyword, and a quoted identifier read as the word it names.
 * A function that calls set_config inside its body is beyond what text can show: use --upstream-read-only (a
 * database role that cannot write) for that.
 */

/**
 * Replaces comments and string literals by spaces, and a quoted identifier by the plain word it names (else by
 * spaces); dollar-quoted bodies stay visible (they may be SQL).
 */
export function blankLiterals(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const n = sql[i + 1];
    if (c === '-' && n === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
      out += ' ';
    } else if (c === '/' && n === '*') {
      // block comments nest in PostgreSQL
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
      out += ' ';
    } else if (c === '"') {
      const id = quotedIdentifier(sql, i);
      i = id.end;
      out += id.name === null ? ' "" ' : ` ${id.name} `;
    } else if (c === "'") {
      i++;
      while (i < sql.length) {
        if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
      out += " '' ";
    } else if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        // the body of a DO block or function is SQL too: keep it visible to the checks
        out += ' ' + blankLiterals(sql.slice(i + m[0].length, end < 0 ? sql.length : end)) + ' ';
        i = end < 0 ? sql.length : end + m[0].length;
      } else {
        out += c;
        i++;
      }
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * The quoted identifier starting at sql[start] (a `"`), and where the text after it (and after its UESCAPE
 * clause) starts. `name` is the identifier when it is one plain word, which a check must see as the bare word
 * it names (`"set_config"` is set_config; `U&"..."` escapes decoded), else null (blanked: nothing to fake).
 */
function quotedIdentifier(sql: string, start: number): { name: string | null; end: number } {
  let i = start + 1;
  let raw = '';
  while (i < sql.length) {
    if (sql[i] === '"' && sql[i + 1] === '"') {
      raw += '"';
      i += 2;
    } else if (sql[i] === '"') break;
    else raw += sql[i++];
  }
  i++;
  let name: string | null = raw;
  if (/u&$/i.test(sql.slice(Math.max(0, start - 2), start))) {
    const clause = /^\s*uescape\s*'([^'])'/i.exec(sql.slice(i, i + 64));
    if (clause) i += clause[0].length;
    name = decodeUnicodeEscapes(raw, clause ? clause[1] : '\\');
  }
  return { name: name !== null && /^[\p{L}\p{N}_$]+$/u.test(name) ? name : null, end: i };
}

/** Decodes a U&"..." body's escapes (esc+4 hex, esc++6 hex, esc+esc); null when one is malformed. */
function decodeUnicodeEscapes(body: string, esc: string): string | null {
  let out = '';
  for (let i = 0; i < body.length;) {
    if (body[i] !== esc) {
      out += body[i++];
      continue;
    }
    if (body[i + 1] === esc) {
      out += esc;
      i += 2;
      continue;
    }
    const m = /^\+([0-9A-Fa-f]{6})|^([0-9A-Fa-f]{4})/.exec(body.slice(i + 1, i + 8));
    if (!m) return null;
    const cp = parseInt(m[1] ?? m[2], 16);
    if (cp > 0x10ffff) return null;
    out += String.fromCodePoint(cp);
    i += 1 + m[0].length;
  }
  return out;
}

const LIFTS: [RegExp, string][] = [
  [/\bread\s+write\b/i, 'READ WRITE'],
  [/\b(set|reset)\b[^;]*\b(default_)?transaction_read_only\b/i, 'a change of (default_)transaction_read_only'],
  [/\bsession\s+characteristics\b/i, 'SET SESSION CHARACTERISTICS'],
  [/\bset_config\s*\(/i, 'set_config()'],
  [/\breset\s+all\b/i, 'RESET ALL'],
  [/\bset\s+(session\s+)?role\b|\bset\s+session\s+authorization\b/i, 'a change of role'],
];

/** Why `sql` would lift read-only, or null when it would not. */
export function liftsReadOnly(sql: string): string | null {
  const text = blankLiterals(sql);
  for (const [re, what] of LIFTS) if (re.test(text)) return what;
  return null;
}
