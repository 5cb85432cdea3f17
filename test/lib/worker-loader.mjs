// Test-only preload (mocha's node-option, so worker threads inherit it through execArgv): on Node 20 the
// TypeScript loader that `--import=tsx` installs covers the main thread only, so a worker thread started from
// sources (a pool picks its `.ts` sibling there) registers the loader itself before its script loads.
import { isMainThread } from 'node:worker_threads';

if (!isMainThread) {
  const { register } = await import('tsx/esm/api');
  register();
}
