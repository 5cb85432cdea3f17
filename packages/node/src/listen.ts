import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Splits "HOST:PORT" ("[::1]:8080" for IPv6; an empty host is allowed, ":8080"). Returns undefined when the
 * value is malformed or the port is over 65535, so each daemon throws its own configuration error and picks
 * its own default host. Precondition: none.
 */
export function splitHostPort(listen: string): { host: string | undefined; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || undefined), port };
}

/** How long a connection closed after an early answer goes on reading what the client still sends. */
export const LINGER_MS = 5000;

/**
 * Closes the connection after this answer, lingering (RFC 9112 section 9.6): once the answer is written the
 * server ends its side, then reads and drops what the client still sends until the client ends too or `ms`
 * pass. For answers sent before the request body was read in full (413, 503, 401): closing at once resets a
 * client that is still sending, and on Linux the reset discards the answer before the client has read it.
 * Node has no option for this, so the socket's `destroySoon`, which node:http calls after a closing answer,
 * is replaced on this one socket. Precondition: the answer's headers are not sent yet.
 */
export function closeLingering(res: ServerResponse, ms = LINGER_MS): void {
  res.setHeader('connection', 'close');
  const socket = res.socket;
  if (!socket) return;
  socket.destroySoon = function lingering(this: Socket) {
    // node:http keeps parsing what arrives into the unread request, which drops it
    const timer = setTimeout(() => this.destroy(), ms);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    // closed once both sides are done: the answer written out, and the client's sending ended
    const closeIfDone = () => {
      if (this.writableFinished && this.readableEnded) this.destroy();
    };
    this.once('end', closeIfDone);
    this.end(closeIfDone);
  };
}

/**
 * True when the request announced a body that has not been received in full yet. (`complete` alone is false
 * for every request while its handler first runs, bodiless or not.) Precondition: none.
 */
export function bodyUnread(req: IncomingMessage): boolean {
  const h = req.headers;
  return (
    !req.complete && ((h['content-length'] !== undefined && h['content-length'] !== '0') || 'transfer-encoding' in h)
  );
}
