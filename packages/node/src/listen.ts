import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

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
  // node:http keeps parsing what arrives into the unread request, which drops it
  socket.destroySoon = () => endLingering(socket, ms);
}

/** Ends `socket` (after `last`), then destroys it once the peer has ended too, or after `ms`. */
function endLingering(socket: Duplex, ms: number, last?: string): void {
  const timer = setTimeout(() => socket.destroy(), ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // closed once both sides are done: the answer written out, and the client's sending ended
  const closeIfDone = () => {
    if (socket.writableFinished && socket.readableEnded) socket.destroy();
  };
  socket.once('end', closeIfDone);
  socket.end(last, closeIfDone);
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

/**
 * An answer about to go out before its request's body was read in full closes lingering (closeLingering);
 * returns whether it does. Precondition: the answer's headers are not sent yet.
 */
export function lingerIfBodyUnread(res: ServerResponse): boolean {
  if (!bodyUnread(res.req)) return false;
  closeLingering(res);
  return true;
}

/** Connections already answered: node's parser may report the same broken request more than once. */
const answered = new WeakSet<Duplex>();

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'the request was not received in time'],
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'the request headers are too large'],
};

/**
 * node:http's 'clientError' handler: a request too slow, or one it could not parse, is answered with a JSON error
 * like every other error (node's own answers have no body): 408 for a request over its time limit, 431 for headers
 * over theirs, 400 for anything else. Answers only while no answer is under way on the connection (node's own
 * check), then closes lingering as closeLingering does. Precondition: `socket` is the connection node names.
 */
export function answerClientError(e: Error & { code?: string }, socket: Duplex, ms = LINGER_MS): void {
  if (answered.has(socket)) return;
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (!socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  answered.add(socket);
  const [status, text, error] = CLIENT_ERRORS[e.code ?? ''] ?? [400, 'Bad Request', 'malformed HTTP request'];
  const body = JSON.stringify({ error });
  // the parser has given up on this connection: what still arrives is read and dropped
  socket.on('data', () => {});
  endLingering(
    socket,
    ms,
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
      `cache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
}
