/**
 * PostgreSQL wire protocol v3 framing (protocol chapter "Message Formats"): every message after startup is a
 * type byte, a big-endian int32 length that counts itself, and a body. The proxy forwards frames verbatim and
 * reads only the few fields it records, so this is framing plus a handful of field readers, and builders for
 * the messages the proxy itself sends to clients. Messages it sends upstream come from pg-protocol's serializer.
 */
export const SSL_REQUEST = 80877103;
/** Startup-phase code a client sends to ask for GSSAPI encryption (the proxy declines it). */
export const GSSENC_REQUEST = 80877104;
/** Startup-phase code of a CancelRequest. */
export const CANCEL_REQUEST = 80877102;
/** Startup-phase code of a protocol 3.0 StartupMessage. */
export const PROTOCOL_3 = 196608;
/** Largest frame accepted from a client (PostgreSQL's own limit for most messages is 1 GB). */
export const MAX_FRAME = 256 * 1024 * 1024;

/** One complete protocol message. */
export interface Frame {
  type: number;
  /** The whole message: type byte, length and body. */
  raw: Buffer;
}

/** Accumulates bytes and yields whole frames. `startup` frames have no type byte (the first message). */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;

  /** Adds received bytes to the buffer. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** Bytes buffered and not yet taken as frames. */
  get buffered(): number {
    return this.size;
  }

  private flat(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0];
  }

  /** The next untyped (startup-phase) message, or null until it is complete. Throws on an absurd length. */
  startup(): Buffer | null {
    if (this.size < 4) return null;
    const b = this.flat();
    const len = b.readInt32BE(0);
    if (len < 8 || len > 10_000) throw new Error(`invalid startup packet length ${len}`);
    if (b.length < len) return null;
    this.take(len);
    return b.subarray(0, len);
  }

  /** Every complete typed frame buffered. Throws on a length outside 4..MAX_FRAME. */
  frames(): Frame[] {
    const out: Frame[] = [];
    if (this.size < 5) return out;
    const b = this.flat();
    let pos = 0;
    while (b.length - pos >= 5) {
      const len = b.readInt32BE(pos + 1);
      if (len < 4 || len > MAX_FRAME)
        throw new Error(
          `invalid message length ${len} for message type ${JSON.stringify(String.fromCharCode(b[pos]))}`,
        );
      if (b.length - pos < 1 + len) break;
      out.push({ type: b[pos], raw: b.subarray(pos, pos + 1 + len) });
      pos += 1 + len;
    }
    this.take(pos);
    return out;
  }

  /** Removes and returns every buffered byte (null when empty). */
  drain(): Buffer | null {
    if (this.size === 0) return null;
    const b = this.flat();
    this.chunks = [];
    this.size = 0;
    return b;
  }

  private take(n: number): void {
    if (n === 0) return;
    const b = this.flat();
    this.chunks = n === b.length ? [] : [b.subarray(n)];
    this.size -= n;
  }
}

/** Reads NUL-terminated strings and integers from a message body. */
export class Fields {
  constructor(
    private readonly b: Buffer,
    public pos = 5,
  ) {}
  /** Reads a NUL-terminated UTF-8 string. Precondition: none; throws when the body has no NUL after the position. */
  cstring(): string {
    const end = this.b.indexOf(0, this.pos);
    if (end < 0) throw new Error('unterminated string in message');
    const s = this.b.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  /** Reads a big-endian int16. Precondition: 2 bytes left (else Buffer's RangeError). */
  int16(): number {
    const v = this.b.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  /** Reads a big-endian int32. Precondition: 4 bytes left (else Buffer's RangeError). */
  int32(): number {
    const v = this.b.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  /** Reads `n` raw bytes (a view, not a copy). Precondition: none; throws when fewer than `n` bytes are left. */
  bytes(n: number): Buffer {
    const v = this.b.subarray(this.pos, this.pos + n);
    if (v.length !== n) throw new Error('message shorter than its fields');
    this.pos += n;
    return v;
  }
}

/** Startup parameters (name → value) of a StartupMessage. */
export function startupParams(msg: Buffer): Map<string, string> {
  const f = new Fields(msg, 8);
  const m = new Map<string, string>();
  while (f.pos < msg.length - 1) {
    const k = f.cstring();
    if (k === '') break;
    m.set(k, f.cstring());
  }
  return m;
}

/** Parse: statement name, query text, number of declared parameter types. */
export function readParse(raw: Buffer): { name: string; query: string } {
  const f = new Fields(raw);
  return { name: f.cstring(), query: f.cstring() };
}

/** Bind: portal, statement, and the parameter values (null for SQL NULL), with their formats (0 text, 1 binary). */
export function readBind(raw: Buffer): {
  portal: string;
  statement: string;
  values: (Buffer | null)[];
  formats: number[];
} {
  const f = new Fields(raw);
  const portal = f.cstring();
  const statement = f.cstring();
  const nf = f.int16();
  const fmts: number[] = [];
  for (let i = 0; i < nf; i++) fmts.push(f.int16());
  const np = f.int16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < np; i++) {
    const len = f.int32();
    values.push(len < 0 ? null : f.bytes(len));
  }
  // no formats: all text; one: applies to all; else one per parameter
  const formats = values.map((_, i) => (nf === 0 ? 0 : nf === 1 ? fmts[0] : fmts[i]));
  return { portal, statement, values, formats };
}

/** The first cstring of a message (Query text, Execute portal, Close/Describe kind+name start after a byte). */
export function firstString(raw: Buffer, at = 5): string {
  return new Fields(raw, at).cstring();
}

/** ErrorResponse/NoticeResponse fields by code (S severity, C SQLSTATE, M message, ...). */
export function readError(raw: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  let pos = 5;
  while (pos < raw.length && raw[pos] !== 0) {
    const code = String.fromCharCode(raw[pos]);
    const end = raw.indexOf(0, pos + 1);
    if (end < 0) break;
    m.set(code, raw.toString('utf8', pos + 1, end));
    pos = end + 1;
  }
  return m;
}

function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstr = (s: string) => Buffer.from(s + '\0', 'utf8');
const int32 = (n: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
};

/** ErrorResponse with severity, SQLSTATE and message (what libpq shows as "ERROR:  message"). */
export function errorResponse(severity: 'ERROR' | 'FATAL', sqlstate: string, text: string): Buffer {
  return message(
    'E',
    Buffer.concat([
      cstr('S' + severity),
      cstr('V' + severity),
      cstr('C' + sqlstate),
      cstr('M' + text),
      Buffer.from([0]),
    ]),
  );
}

/** An AuthenticationOk message. */
export function authOk(): Buffer {
  return message('R', int32(0));
}

/** An AuthenticationSASL message offering `mechanisms`. */
export function authSasl(mechanisms: string[]): Buffer {
  return message('R', Buffer.concat([int32(10), ...mechanisms.map(cstr), Buffer.from([0])]));
}

/** An AuthenticationSASLContinue message carrying the server-first message. */
export function authSaslContinue(data: string): Buffer {
  return message('R', Buffer.concat([int32(11), Buffer.from(data, 'utf8')]));
}

/** An AuthenticationSASLFinal message carrying the server-final message. */
export function authSaslFinal(data: string): Buffer {
  return message('R', Buffer.concat([int32(12), Buffer.from(data, 'utf8')]));
}

/** The body of a SASLInitialResponse ('p'): mechanism and client-first message. */
export function readSaslInitial(raw: Buffer): { mechanism: string; data: string } {
  const f = new Fields(raw);
  const mechanism = f.cstring();
  const len = f.int32();
  return { mechanism, data: len < 0 ? '' : f.bytes(len).toString('utf8') };
}

/** rows of a CommandComplete tag: the last number (INSERT oid rows, UPDATE n, SELECT n, COPY n), else null. */
export function tagRows(tag: string): number | null {
  const m = /(\d+)$/.exec(tag);
  return m && /^(INSERT|UPDATE|DELETE|SELECT|MOVE|FETCH|COPY|MERGE)\b/.test(tag) ? Number(m[1]) : null;
}
