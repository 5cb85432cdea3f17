/**
 * A client that goes on sending a request body while the server refuses it: the case where a server that
 * closes at once resets the connection and the client never reads the answer.
 */
import { connect } from 'node:net';

/**
 * POSTs to `url` (http://host:port/path) with the given extra header lines (each ending in \r\n, framing
 * included: content-length or transfer-encoding: chunked). Sends 64 KiB chunks every 5 ms for 300 ms without
 * reading, then reads. Resolves with what it read and, unless the server answered and closed cleanly within
 * 5 s, the error.
 */
export function sendWhileRefused(url: string, headers: string): Promise<{ answer: string; error?: string }> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    let answer = '';
    s.on('data', (d) => (answer += d.toString()));
    s.on('end', () => {
      s.end();
      resolve({ answer });
    });
    s.on('error', (e) => resolve({ answer, error: e.message }));
    setTimeout(() => {
      s.destroy();
      resolve({ answer, error: 'the server did not close within 5 s' });
    }, 5000).unref();
    s.write(`POST ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/json\r\n${headers}\r\n`);
    // not reading while sending: a reset in this time discards the answer from the receive buffer
    s.pause();
    const spaces = Buffer.alloc(64 * 1024, 0x20);
    const chunk = /chunked/i.test(headers)
      ? Buffer.concat([Buffer.from('10000\r\n'), spaces, Buffer.from('\r\n')])
      : spaces;
    const sending = setInterval(() => s.writable && s.write(chunk), 5);
    setTimeout(() => {
      clearInterval(sending);
      s.resume();
    }, 300);
  });
}
