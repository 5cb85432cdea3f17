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
