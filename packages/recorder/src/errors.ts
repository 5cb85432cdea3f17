import { CodedError } from '@trailmark/tlog';

/** Every code a ProxyError carries. */
export type ProxyErrorCode =
  // the spool (SpoolError)
  | 'locked' // another live process holds the spool
  | 'corrupt' // a damaged record that is not the torn tail of the last segment
  | 'too-large' // a record or event over the size limit
  | 'closed' // the spool or stream was closed
  | 'io' // a spool file cannot be read, written or synced
  | 'ack-order' // an acknowledgement out of the spool's order
  | 'no-sealer' // a spool record needs sealing but no stream key was given
  // strict mode (StrictModeError)
  | 'log-unavailable' // the event cannot be logged now, so the request is refused
  // configuration (ConfigError)
  | 'config' // a proxy option is wrong
  | 'tokens' // the tokens file is malformed
  | 'rules' // the rules file is malformed
  | 'users' // the users file is malformed (pg-proxy)
  | 'target' // the upstream target URL is wrong
  | 'tls' // a TLS certificate or key cannot be read or used (pg-proxy)
  | 'listen' // the listen address is malformed or cannot be bound
  | 'log-key' // the log's vkey is missing or malformed
  | 'log-token' // the log's bearer token file is malformed
  | 'mode' // an unknown recording mode
  | 'stream-key' // the stream key file is missing or malformed
  | 'upstream' // the upstream cannot be reached
  // worker processes
  | 'workers' // a worker count out of range, or workers that cannot start
  | 'worker' // a worker process failed
  | 'health'; // a worker's health check failed

/**
 * Base of every error the recording proxies throw (@trailmark/recorder, @trailmark/proxy, @trailmark/pg-proxy);
 * `code` is stable for programs, `message` is for people. `C` narrows the codes for a package built on the
 * recorder (pg-proxy), whose errors stay ProxyErrors.
 */
export class ProxyError<C extends string = ProxyErrorCode> extends CodedError<C> {}

/** Spool errors: 'locked', 'corrupt', 'too-large', 'closed', 'io', 'ack-order', 'no-sealer'. */
export class SpoolError extends ProxyError {}

/** Bad proxy configuration: tokens file, rules file, keys, URLs. */
export class ConfigError extends ProxyError {}
