/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the server side (checking proxy users against
 * stored verifiers), the client side (logging in upstream) and the verifier format PostgreSQL stores in
 * pg_authid.rolpassword: `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
 * Channel binding is not offered (no -PLUS mechanism), so the GS2 header is always `n,,` or `y,,`.
 * Passwords are used as UTF-8 without SASLprep, as PostgreSQL does for strings that are not valid SASLprep input.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { PgProxyError } from './errors.js';

/** The SASL mechanism name the proxy offers and uses upstream. */
export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const DEFAULT_ITERATIONS = 4096;

/** A SCRAM-SHA-256 password verifier (RFC 5802/7677): what the server keeps instead of the password. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

const hmac = (key: Buffer, text: string | Buffer) => createHmac('sha256', key).update(text).digest();
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

function keysOf(
  password: string,
  salt: Buffer,
  iterations: number,
): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const salted = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** A new verifier for `password` (random 16-byte salt, 4096 iterations, as PostgreSQL makes them). */
export function makeVerifier(
  password: string,
  iterations = DEFAULT_ITERATIONS,
  salt: Buffer = randomBytes(16),
): string {
  const { storedKey, serverKey } = keysOf(password, salt, iterations);
  return `${SCRAM_MECHANISM}$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Parses a stored verifier. Precondition: none; throws PgProxyError('users') saying what is wrong. */
export function parseVerifier(text: string): ScramVerifier {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!m)
    throw new PgProxyError(
      'users',
      'password is not a SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> verifier',
    );
  const v = {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2], 'base64'),
    storedKey: Buffer.from(m[3], 'base64'),
    serverKey: Buffer.from(m[4], 'base64'),
  };
  if (v.iterations < 1 || v.storedKey.length !== 32 || v.serverKey.length !== 32)
    throw new PgProxyError('users', 'SCRAM verifier has a bad iteration count or key length');
  return v;
}

/**
 * A verifier for a user who does not exist, stable per name, so that a probe cannot tell unknown users from
 * wrong passwords by the salt (PostgreSQL's mock authentication does the same).
 */
export function mockVerifier(user: string, secret: Buffer): ScramVerifier {
  const salt = hmac(secret, 'salt\0' + user).subarray(0, 16);
  return { iterations: DEFAULT_ITERATIONS, salt, storedKey: randomBytes(32), serverKey: randomBytes(32) };
}

function attrs(msg: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) m.set(part[0], part.slice(2));
  }
  return m;
}

/** The server side of one exchange: first() answers the client-first message, final() checks the proof. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';

  constructor(private readonly verifier: ScramVerifier) {}

  /** Takes the client-first message; returns the server-first message. Throws PgProxyError('protocol') on a malformed one. */
  first(clientFirst: string): string {
    // gs2 header: "n,," (no binding) or "y,," (client supports binding, server did not offer it); a=authzid unsupported
    const m = /^([ny]),(?:a=[^,]*)?,(.*)$/.exec(clientFirst);
    if (!m) throw new PgProxyError('protocol', 'malformed SCRAM client-first message (channel binding is not offered)');
    this.clientFirstBare = m[2];
    const cnonce = attrs(this.clientFirstBare).get('r');
    if (!cnonce) throw new PgProxyError('protocol', 'SCRAM client-first message has no nonce');
    this.nonce = cnonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.verifier.salt.toString('base64')},i=${this.verifier.iterations}`;
    return this.serverFirst;
  }

  /** Checks the client-final message; returns the server-final message, or null when the proof is wrong. */
  final(clientFinal: string): string | null {
    const i = clientFinal.lastIndexOf(',p=');
    if (i < 0) throw new PgProxyError('protocol', 'SCRAM client-final message has no proof');
    const withoutProof = clientFinal.slice(0, i);
    const a = attrs(withoutProof);
    if (a.get('r') !== this.nonce) throw new PgProxyError('protocol', 'SCRAM nonce does not match');
    if (a.get('c') !== 'biws' && a.get('c') !== 'eSws')
      throw new PgProxyError('protocol', 'SCRAM channel binding data does not match the GS2 header');
    const proof = Buffer.from(clientFinal.slice(i + 3), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const signature = hmac(this.verifier.storedKey, authMessage);
    if (proof.length !== signature.length) return null;
    const clientKey = Buffer.alloc(32);
    for (let k = 0; k < 32; k++) clientKey[k] = proof[k] ^ signature[k];
    if (!timingSafeEqual(sha256(clientKey), this.verifier.storedKey)) return null;
    return `v=${hmac(this.verifier.serverKey, authMessage).toString('base64')}`;
  }
}

/** The client side (the proxy logging in upstream). */
export class ScramClient {
  private readonly cnonce = randomBytes(18).toString('base64');
  private authMessage = '';
  private serverKey: Buffer | null = null;

  constructor(private readonly password: string) {}

  /** The client-first message (no channel binding, user name left to the startup message). */
  first(): string {
    return `n,,n=*,r=${this.cnonce}`;
  }

  /** Takes the server-first message; returns the client-final message. Throws PgProxyError('upstream-auth'). */
  final(serverFirst: string): string {
    const a = attrs(serverFirst);
    const nonce = a.get('r');
    const salt = a.get('s');
    const iterations = Number(a.get('i'));
    if (!nonce || !nonce.startsWith(this.cnonce) || !salt || !(iterations > 0))
      throw new PgProxyError('upstream-auth', 'malformed SCRAM server-first message from the upstream');
    const keys = keysOf(this.password, Buffer.from(salt, 'base64'), iterations);
    const withoutProof = `c=biws,r=${nonce}`;
    this.authMessage = `n=*,r=${this.cnonce},${serverFirst},${withoutProof}`;
    const sig = hmac(keys.storedKey, this.authMessage);
    const proof = Buffer.alloc(32);
    for (let k = 0; k < 32; k++) proof[k] = keys.clientKey[k] ^ sig[k];
    this.serverKey = keys.serverKey;
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server's signature (the upstream proves it knows the verifier). */
  check(serverFinal: string): void {
    const got = Buffer.from(attrs(serverFinal).get('v') ?? '', 'base64');
    if (got.length !== 32 || !timingSafeEqual(got, hmac(this.serverKey!, this.authMessage))) {
      throw new PgProxyError(
        'upstream-auth',
        'the upstream server signature did not verify (not the server that holds the password)',
      );
    }
  }
}
