import type { Command } from 'commander';
import { registerProxy } from './proxy.js';
import { registerSpool } from './spool.js';
import { registerForwardAuth } from './forward-auth.js';
import { registerPgPassword, registerPgProxy } from './pg-proxy.js';
import { registerServe } from './serve.js';
import { registerKeygen } from './keygen.js';
import { registerVerify } from './verify.js';
import { registerCheckpoint } from './checkpoint.js';
import { registerProve } from './prove.js';
import { registerAudit } from './audit.js';
import { registerEntries } from './entries.js';
import { registerMonitor, registerMonitorAck } from './monitor.js';
import { registerVerifyEvidence } from './verify-evidence.js';
import { registerExplorer } from './explorer.js';
import { registerSearch } from './search.js';

/**
 * Each command lives in its own module under commands/ and registers itself here.
 * Commands only parse arguments and call into the packages.
 */
export function registerCommands(program: Command): void {
  registerKeygen(program);
  registerVerify(program);
  registerCheckpoint(program);
  registerProve(program);
  registerAudit(program);
  registerEntries(program);
  registerMonitor(program);
  registerMonitorAck(program);
  registerVerifyEvidence(program);
  registerProxy(program);
  registerSpool(program);
  registerForwardAuth(program);
  registerPgProxy(program);
  registerPgPassword(program);
  registerServe(program);
  registerExplorer(program);
  registerSearch(program);
}
