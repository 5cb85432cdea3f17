/**
 * Parses HOST:PORT ("[::1]:8080" for IPv6; an empty host is `defaultHost`). Returns undefined when malformed,
 * or when the host is empty and no default is given; the caller throws its own configuration error.
 */
export function parseListen(s: string, defaultHost?: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? (m[2] || defaultHost)) : undefined;
  return host !== undefined && port <= 65535 ? { host, port } : undefined;
}
