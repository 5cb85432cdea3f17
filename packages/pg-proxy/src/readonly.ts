/**
 * Statements a read-only session may not send (contract section 5b): anything that would lift
 * default_transaction_read_only / transaction_read_only for the session or a transaction. The database enforces
 * read-only itself; this only stops a client from switching it off. It reads the SQL as sent, with comments and
 * literals blanked so they can neither hide nor fake a keyword. A function that calls set_config inside its body
 * is beyond what text can show: use --upstream-read-only (a database role that cannot write) for that.
 */

/** Replaces comments, string literals and quoted identifiers by spaces (keeping dollar-quoted bodies out too). */
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
    } else if (c === "'" || c === '"') {
      i++;
      while (i < sql.length) {
        if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
      out += c === '"' ? ' "" ' : " '' ";
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
