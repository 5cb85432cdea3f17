import { ProxyError } from '@trailmark/recorder';

/** Every code a PgProxyError carries (bad files are the proxy's ConfigError 'users' or 'rules'). */
export type PgProxyErrorCode =
  | 'users' // a SCRAM verifier in the users file is malformed
  | 'protocol' // a client broke the wire protocol
  | 'upstream-auth' // the upstream refused or failed the proxy's login
  | 'upstream'; // the upstream cannot be reached, or broke the protocol

/** pg-proxy errors: ProxyErrors (the CLI treats both alike) with pg-proxy's own codes. */
export class PgProxyError extends ProxyError<PgProxyErrorCode> {}
