// The errors of the recording proxies live with the code they share, in @trailmark/recorder; this package's
// modules and its users keep importing them from here.
export { ConfigError, ProxyError, SpoolError } from '@trailmark/recorder';
