/**
 * The proxy's own login to the upstream PostgreSQL (credential injection: clients never hold this password).
 * Supports the methods a server may ask for: trust, cleartext, MD5 and SCRAM-SHA-256 (with the server's
 * signature checked). Messages to the server come from pg-protocol's serializer.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { PgProxyError } from './errors.js';
import { ScramClient, SCRAM_MECHANISM } from './scram.js';
import { CANCEL_REQUEST, FrameReader, readError } from './wire.js';
import { errorMessage } from '@trailmark/tlog';

/** Where and as whom the proxy logs in upstream. */
export interface UpstreamTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** Parses postgres://USER[:PASSWORD]@HOST[:PORT]/DB. Precondition: none; throws PgProxyError('upstream'). */
export function parseUpstream(url: string, what = '--upstream'): UpstreamTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PgProxyError('upstream', `${what} ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    throw new PgProxyError('upstream', `${what} must be a postgres:// URL, got ${u.protocol}`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!u.username || !u.hostname || !database)
    throw new PgProxyError('upstream', `${what} must name a user, a host and a database: postgres://USER@HOST:PORT/DB`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database,
  };
}

/** postgres://HOST:PORT/DB: the upstream as events name it, without credentials. */
export function targetUrl(t: UpstreamTarget, database: string): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `postgres://${host}:${t.port}/${encodeURIComponent(database)}`;
}

/** An upstream connection that has logged in, with the frames the server sent after AuthenticationOk. */
export interface UpstreamSession {
  socket: net.Socket;
  /** Holds whatever the server sent after AuthenticationOk (ParameterStatus, BackendKeyData, ReadyForQuery). */
  reader: FrameReader;
}

/**
 * Connects and logs in as t.user to `database` with `params` (startup parameters besides user and database).
 * Resolves once the server said AuthenticationOk. Throws PgProxyError('upstream') when unreachable,
 * ('upstream-auth') when the login fails, with the server's message.
 */
export function loginUpstream(
  t: UpstreamTarget,
  database: string,
  params: Record<string, string>,
  timeoutMs = 10_000,
): Promise<UpstreamSession> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: t.host, port: t.port });
    socket.setNoDelay(true);
    const reader = new FrameReader();
    let scram: ScramClient | null = null;
    let done = false;
    const fail = (e: PgProxyError) => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(e);
    };
    socket.setTimeout(timeoutMs, () =>
      fail(
        new PgProxyError('upstream', `upstream ${t.host}:${t.port} did not complete the login within ${timeoutMs} ms`),
      ),
    );
    socket.once('error', (e: NodeJS.ErrnoException) =>
      fail(new PgProxyError('upstream', `upstream ${t.host}:${t.port} is unreachable: ${e.code ?? e.message}`)),
    );
    socket.once('close', () =>
      fail(new PgProxyError('upstream', `upstream ${t.host}:${t.port} closed the connection during login`)),
    );
    socket.once('connect', () => socket.write(serialize.startup({ ...params, user: t.user, database })));
    const onData = (chunk: Buffer) => {
      reader.push(chunk);
      let frames;
      try {
        frames = reader.frames();
      } catch (e) {
        return fail(
          new PgProxyError('upstream', `upstream sent a malformed message: ${errorMessage(e)}`, { cause: e }),
        );
      }
      for (let i = 0; i < frames.length; i++) {
        const { type, raw } = frames[i];
        if (type === 0x45 /* E */) {
          const f = readError(raw);
          return fail(
            new PgProxyError(
              'upstream-auth',
              `upstream refused the proxy's login as ${JSON.stringify(t.user)}: ${f.get('C') ?? ''} ${f.get('M') ?? ''}`,
            ),
          );
        }
        if (type !== 0x52 /* R */) continue;
        const code = raw.readInt32BE(5);
        try {
          if (code === 0) {
            done = true;
            socket.setTimeout(0);
            // paused until the session takes over: a flowing socket with no data listener would drop bytes
            socket.pause();
            socket.removeListener('data', onData);
            socket.removeAllListeners('error');
            socket.removeAllListeners('close');
            // frames after AuthenticationOk belong to the session: hand them back unread
            const r = new FrameReader();
            for (const f of frames.slice(i + 1)) r.push(f.raw);
            const tail = reader.drain();
            if (tail) r.push(tail);
            resolve({ socket, reader: r });
            return;
          } else if (code === 3) socket.write(serialize.password(t.password));
          else if (code === 5) {
            const inner = createHash('md5')
              .update(t.password + t.user)
              .digest('hex');
            socket.write(
              serialize.password('md5' + createHash('md5').update(inner).update(raw.subarray(9, 13)).digest('hex')),
            );
          } else if (code === 10) {
            if (!raw.subarray(9).toString('utf8').split('\0').includes(SCRAM_MECHANISM))
              throw new PgProxyError('upstream-auth', 'upstream offers no SCRAM-SHA-256');
            scram = new ScramClient(t.password);
            socket.write(serialize.sendSASLInitialResponseMessage(SCRAM_MECHANISM, scram.first()));
          } else if (code === 11 && scram)
            socket.write(serialize.sendSCRAMClientFinalMessage(scram.final(raw.subarray(9).toString('utf8'))));
          else if (code === 12 && scram) scram.check(raw.subarray(9).toString('utf8'));
          else
            throw new PgProxyError('upstream-auth', `upstream asks for an unsupported authentication method (${code})`);
        } catch (e) {
          return fail(e instanceof PgProxyError ? e : new PgProxyError('upstream-auth', errorMessage(e), { cause: e }));
        }
      }
    };
    socket.on('data', onData);
  });
}

/** Sends a CancelRequest for backend (pid, secret) to the upstream; resolves when sent (or failed: best effort). */
export function cancelUpstream(t: { host: string; port: number }, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: t.host, port: t.port });
    const msg = Buffer.alloc(16);
    msg.writeInt32BE(16, 0);
    msg.writeInt32BE(CANCEL_REQUEST, 4);
    msg.writeInt32BE(pid, 8);
    msg.writeInt32BE(secret, 12);
    s.once('connect', () => s.end(msg));
    s.once('error', () => resolve());
    s.once('close', () => resolve());
    s.setTimeout(5000, () => s.destroy());
  });
}
