/** Base of every error @trailmark/proxy throws; `code` is stable for programs, `message` is for people. */
export class ProxyError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * Spool errors. Codes: 'locked' (another live process holds the spool), 'corrupt' (a damaged record that is not
 * the torn tail of the last segment), 'too-large' (record over the size limit), 'closed', 'io'.
 */
export class SpoolError extends ProxyError {}

/** Bad proxy configuration: tokens file, rules file, keys, URLs. */
export class ConfigError extends ProxyError {}
