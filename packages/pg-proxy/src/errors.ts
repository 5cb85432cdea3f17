import { ProxyError } from '@trailmark/recorder';

/**
 * pg-proxy errors. Codes: 'users' and 'rules' (bad files), 'protocol' (a client broke the wire protocol),
 * 'upstream-auth' (the upstream refused or failed the proxy's login), 'upstream' (cannot reach it).
 */
export class PgProxyError extends ProxyError {}
