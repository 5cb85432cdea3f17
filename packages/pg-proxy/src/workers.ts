/**
 * `--workers N`: N processes serving one listening address (node:cluster; the primary owns the socket and the
 * workers accept from it). Each worker has its own spool directory, DIR/worker-<i>, so its own shipper
 * and its own stream of events. A session lives in one worker; a CancelRequest may land in another, which is
 * fine: cancels go straight to the upstream with the backend's own key.
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { ConfigError } from '@trailmark/recorder';
import { startPgProxy, type PgProxyOptions, type RunningPgProxy } from './proxy.js';
import { errorMessage } from '@trailmark/tlog';

/** A started pg-proxy, single or as a primary over worker processes: its address, worker count and close(). */
export interface PgProxyService {
  host: string;
  port: number;
  workers: number;
  /** True in a worker process, whose primary reports for the pool. */
  worker: boolean;
  /** Each worker's stream (one when workers is 1): the stream key's vkey, which auditors pin, and the id. */
  streams: StreamInfo[];
  close(): Promise<void>;
}

/** One proxy stream's key (vkey) and id (contract section 4: the proxy prints the key on start). */
export interface StreamInfo {
  key: string;
  id: string;
}

const WORKER_ENV = 'TRAILMARK_PG_PROXY_WORKER';

type Msg = { listening: { host: string; port: number }; stream: StreamInfo | null } | { failed: string };

/**
 * Starts the proxy with `workers` processes (1: in this process, spool in opts.spoolDir). In a cluster worker
 * (the same program started again by the primary) it starts that worker's proxy. Precondition: for workers > 1
 * the program must reach this call again in each worker with the same options (as the CLI does).
 */
export async function servePgProxy(opts: PgProxyOptions, workers = 1): Promise<PgProxyService> {
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new ConfigError('workers', `--workers must be 1..64, got ${workers}`);
  if (cluster.isWorker && process.env[WORKER_ENV] !== undefined)
    return runWorker(opts, Number(process.env[WORKER_ENV]));
  if (workers === 1) {
    const p = await startPgProxy(opts);
    return { host: p.host, port: p.port, workers: 1, worker: false, streams: streamsOf(p), close: () => p.close() };
  }
  const started: Worker[] = [];
  const stopAll = () =>
    Promise.all(
      started.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.send('shutdown');
            setTimeout(() => w.kill('SIGKILL'), 15_000).unref();
          }),
      ),
    ).then(() => undefined);
  let addr: { host: string; port: number } | null = null;
  const streams: StreamInfo[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      // workers accept from the shared socket themselves: with round-robin a connection handed to a worker
      // that dies before taking it stays open, unanswered, in the primary
      cluster.schedulingPolicy = cluster.SCHED_NONE;
      const w = cluster.fork({ [WORKER_ENV]: String(i) });
      started.push(w);
      // one at a time: the first binds the address (a port 0 is then shared by all), and a bad configuration
      // fails once instead of N times
      const m = await new Promise<Msg>((resolve) => {
        w.once('message', (m: Msg) => resolve(m));
        w.once('exit', (code) => resolve({ failed: `worker ${i} exited (${code}) before listening` }));
      });
      if ('failed' in m) throw new ConfigError('workers', m.failed);
      addr = m.listening;
      if (m.stream) streams.push(m.stream);
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  return { ...addr!, workers, worker: false, streams, close: stopAll };
}

async function runWorker(opts: PgProxyOptions, i: number): Promise<PgProxyService> {
  const warn = opts.warn ?? ((l: string) => process.stderr.write(`trailmark pg-proxy[${i}]: ${l}\n`));
  let p;
  try {
    p = await startPgProxy({
      ...opts,
      warn,
      spoolDir: join(opts.spoolDir, `worker-${i}`),
      checkUpstream: i === 0 && opts.checkUpstream !== false,
    });
  } catch (e) {
    process.send!({ failed: `worker ${i}: ${errorMessage(e)}` } satisfies Msg);
    throw e;
  }
  const streams = streamsOf(p);
  process.send!({ listening: { host: p.host, port: p.port }, stream: streams[0] ?? null } satisfies Msg);
  process.on('message', (m) => {
    if (m === 'shutdown') void p.close().then(() => process.exit(0));
  });
  return { host: p.host, port: p.port, workers: 1, worker: true, streams, close: () => p.close() };
}

function streamsOf(p: RunningPgProxy): StreamInfo[] {
  const s = p.trail.stream;
  return s ? [{ key: s.vkey, id: s.id }] : [];
}
