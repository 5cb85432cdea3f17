/**
 * `--workers N` (contract section 5): N processes (node:cluster) serving one listening address, each with its
 * own spool directory `<spool>/worker-<i>` and so its own stream. The workers accept from the primary's shared
 * socket; the primary restarts a worker that dies (its successor reopens the same spool, and whatever the dead
 * one had spooled is shipped), and serves /healthz and /metrics for all of them. One worker runs in-process on `<spool>` itself, as before.
 *
 * Spools a previous run left behind with another N (`worker-<j>` for j >= N, or `<spool>`'s own records when
 * moving from one worker to several) are adopted: a worker opens them, delivers what they hold, and closes them; one
 * that a process of the previous run still holds is tried again until it is free.
 */
import cluster, { type Worker } from 'node:cluster';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { ConfigError, SpoolError } from './errors.js';
import {
  checkRecorder,
  closeServer,
  openTrail,
  parseListen,
  registryMetrics,
  startAdmin,
  trailHealth,
  type RecorderOptions,
  type RunningRecorder,
  type TrailHealth,
} from './serving.js';
import type { AccessTrail } from '@trailmark/recorder';
import { errorMessage } from '@trailmark/tlog';

/** How to run a recorder daemon on several worker processes, each with its own spool. */
export interface WorkerPoolOptions {
  /** Processes to serve with (default: the number of CPUs). */
  workers?: number;
  /** The daemon's options; `spoolDir` is the root under which each worker has its own. */
  recorder: RecorderOptions;
  /** HOST:PORT the daemon listens on (port 0: the primary picks one for all workers). */
  listen: string;
  /** The command's name, for warnings ("proxy", "forward-auth"). */
  daemon: string;
  /** Starts one worker's daemon on its spool directory, without an admin server; `listen` overrides its address. */
  start(spoolDir: string, listen?: string): Promise<RunningRecorder>;
}

/** A started worker pool, seen from this process (primary, single or worker). */
export interface RunningPool {
  /** 'primary' (several workers), 'single' (one, in this process) or 'worker' (this process is one of them). */
  role: 'primary' | 'single' | 'worker';
  url: string;
  adminUrl: string | null;
  workers: number;
  /** Current worker processes (primary only): index and pid. */
  pids(): { index: number; pid: number }[];
  /** Resolves once this process has stopped serving (a worker: when the primary told it to, or went away). */
  stopped: Promise<void>;
  close(): Promise<void>;
}

/** The spool directory of worker i under the root. */
export function workerSpoolDir(root: string, index: number): string {
  return join(root, `worker-${index}`);
}

/** Default worker count: the CPUs this process may use. */
export function defaultWorkers(): number {
  return availableParallelism();
}

const INDEX_ENV = 'TRAILMARK_WORKER_INDEX';
const LISTEN_ENV = 'TRAILMARK_WORKER_LISTEN';

type Message =
  | { trailmark: 'ready'; url: string }
  | { trailmark: 'failed'; message: string }
  | { trailmark: 'health'; id: number; health?: TrailHealth }
  | { trailmark: 'stop' };

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && typeof (m as { trailmark?: unknown }).trailmark === 'string';
}

/** Spool directories of earlier runs that this worker should deliver. Precondition: root exists or not. */
export function leftoverSpools(root: string, workers: number, index: number | null): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  for (const name of readdirSync(root)) {
    const m = /^worker-(\d+)$/.exec(name);
    if (!m) continue;
    const j = Number(m[1]);
    // single process: every worker directory is a leftover; worker i: those beyond N that fall to it
    if (index === null || (j >= workers && j % workers === index)) out.push(join(root, name));
  }
  // a single-process spool in the root, from before the workers
  if (index === 0 && readdirSync(root).some((n) => n === 'ack' || n.endsWith('.seg'))) out.push(root);
  return out.sort();
}

/** A port free on `host` a moment ago. */
function pickPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) =>
      reject(new ConfigError('listen', `cannot listen on ${host}: ${e.code ?? e.message}`)),
    );
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Opens a spool, retrying while a dying predecessor still holds its lock. */
async function withLockRetry<T>(open: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await open();
    } catch (e) {
      if (!(e instanceof SpoolError && e.code === 'locked') || Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Spools an earlier run left, being delivered in the background. */
interface Leftovers {
  stop(): Promise<void>;
  /** A trail's health with the leftovers in it: the depth of the one being delivered, and how many are left. */
  health(h: TrailHealth): TrailHealth;
}

/**
 * Delivers what earlier runs left in `dirs`, one after the other, in the background; stop() ends it. A spool that
 * cannot be taken (a process of the previous run still holds it while it drains, or any other failure) is tried
 * again, with a warning, until it is delivered: giving up would leave its events undelivered until the next restart.
 */
function adopt(dirs: string[], recorder: RecorderOptions, daemon: string): Leftovers {
  let stopping = false;
  let left = dirs.length;
  let current: AccessTrail | null = null;
  let wake: (() => void) | null = null;
  const pause = (ms: number) =>
    new Promise<void>((res) => {
      const t = setTimeout(res, ms);
      wake = () => {
        clearTimeout(t);
        res();
      };
    });
  const r = dirs.length > 0 ? checkRecorder(recorder, daemon) : null;
  const done = (async () => {
    for (const dir of dirs) {
      for (let failures = 0; !stopping;) {
        try {
          current = (await openTrail(r!, { ...recorder, spoolDir: dir }, daemon !== 'forward-auth')).trail;
          while (!stopping && current.spool.depth > 0) await pause(200);
          if (!stopping) {
            r!.warn(`delivered the events left in ${dir}`);
            left--;
          }
          break;
        } catch (e) {
          failures++;
          // a predecessor that is still exiting holds its spool for a moment: say so only once it lasts
          const locked = e instanceof SpoolError && e.code === 'locked';
          if (!locked || failures % 20 === 0)
            r!.warn(`could not deliver the events left in ${dir} yet (will try again): ${errorMessage(e)}`);
          if (!stopping) await pause(locked ? 500 : Math.min(30_000, 500 * 2 ** Math.min(failures, 6)));
        } finally {
          const trail = current;
          current = null;
          await trail?.close().catch((e: unknown) => r!.warn(`could not close ${dir}: ${errorMessage(e)}`));
        }
      }
    }
  })();
  return {
    async stop() {
      stopping = true;
      wake?.();
      await done;
    },
    health(h) {
      // a spool not opened yet (its holder has not let go) has a depth nobody can read: it counts as a spool left
      return { ...h, spool_depth: h.spool_depth + (current?.spool.depth ?? 0), leftover_spools: left };
    },
  };
}

/**
 * Serves with opts.workers processes. Called in the primary it forks the workers (which run the same program,
 * so they call this again and take the worker branch) and resolves once all listen; called in a worker, it
 * starts that worker's daemon. Precondition: the program re-run by node:cluster reaches this call with the same
 * options. Throws ConfigError when the workers cannot start (the first one's reason).
 */
export async function runWorkers(opts: WorkerPoolOptions): Promise<RunningPool> {
  const n = opts.workers ?? defaultWorkers();
  if (!Number.isInteger(n) || n < 1 || n > 256)
    throw new ConfigError('workers', `--workers must be an integer from 1 to 256, got ${n}`);
  const root = opts.recorder.spoolDir;
  if (cluster.isWorker && process.env[INDEX_ENV] !== undefined)
    return runWorker(opts, n, Number(process.env[INDEX_ENV]));
  if (n === 1) return runSingle(opts, root);
  // what can be checked without the workers is, so a bad file or key fails at once instead of in each of them
  checkRecorder(opts.recorder, opts.daemon);
  return runPrimary(opts, n);
}

async function runSingle(opts: WorkerPoolOptions, root: string): Promise<RunningPool> {
  const adminAddr = opts.recorder.adminListen ? parseListen(opts.recorder.adminListen, '--admin-listen') : null;
  const running = await opts.start(root);
  const leftovers = adopt(leftoverSpools(root, 1, null), opts.recorder, opts.daemon);
  let admin: { server: import('node:http').Server; url: string } | null = null;
  try {
    if (adminAddr)
      admin = await startAdmin(
        adminAddr,
        () => leftovers.health(trailHealth(running.trail)),
        registryMetrics(running.registry),
      );
  } catch (e) {
    await leftovers.stop();
    await running.close();
    throw e;
  }
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let closing: Promise<void> | null = null;
  return {
    role: 'single',
    url: running.url,
    adminUrl: admin?.url ?? null,
    workers: 1,
    pids: () => [],
    stopped,
    close() {
      closing ??= (async () => {
        if (admin) await closeServer(admin.server);
        await leftovers.stop();
        await running.close();
        stop();
      })();
      return closing;
    },
  };
}

async function runWorker(opts: WorkerPoolOptions, n: number, index: number): Promise<RunningPool> {
  const send = (m: Message) => {
    if (process.connected) process.send!(m);
  };
  let running: RunningRecorder;
  try {
    running = await withLockRetry(() =>
      opts.start(workerSpoolDir(opts.recorder.spoolDir, index), process.env[LISTEN_ENV]),
    );
  } catch (e) {
    // the primary reports it (once, for all workers); this process has nothing left to do
    if (!process.connected) process.exit(2);
    process.send!({ trailmark: 'failed', message: errorMessage(e) } satisfies Message, () => process.exit(2));
    return new Promise<never>(() => {});
  }
  // the primary's /metrics asks each worker for its registry (prom-client's cluster protocol)
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([running.registry]);
  const leftovers = adopt(leftoverSpools(opts.recorder.spoolDir, n, index), opts.recorder, opts.daemon);
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      await leftovers.stop();
      await running.close();
      stop();
      // the IPC channel would keep this process alive: let go of it, and of anything else after a moment
      cluster.worker?.disconnect();
      setTimeout(() => process.exit(0), 1000).unref();
    })();
    return closing;
  };
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.trailmark === 'health')
      send({ trailmark: 'health', id: m.id, health: leftovers.health(trailHealth(running.trail)) });
    if (m.trailmark === 'stop') void close();
  });
  // Ctrl-C reaches every process of the group: the primary decides, and tells the workers to stop
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => void close());
  send({ trailmark: 'ready', url: running.url });
  return { role: 'worker', url: running.url, adminUrl: null, workers: n, pids: () => [], stopped, close };
}

async function runPrimary(opts: WorkerPoolOptions, n: number): Promise<RunningPool> {
  const adminAddr = opts.recorder.adminListen ? parseListen(opts.recorder.adminListen, '--admin-listen') : null;
  const warn = opts.recorder.warn ?? ((l: string) => process.stderr.write(`trailmark ${opts.daemon}: ${l}\n`));
  const slots: (Worker | null)[] = new Array(n).fill(null);
  let closing = false;
  // every worker (and every successor of one) listens on the same HOST:PORT, so they share the primary's one
  // listening socket; port 0 is resolved here once, or a successor would get a port of its own
  const addr = parseListen(opts.listen);
  const port = addr.port === 0 ? await pickPort(addr.host) : addr.port;
  const listenAt = `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`;
  let crashes = 0;
  let resolveStarted!: (url: string) => void;
  let rejectStarted!: (e: Error) => void;
  const started = new Promise<string>((res, rej) => {
    resolveStarted = res;
    rejectStarted = rej;
  });
  let ready = 0;
  const healthWaiters = new Map<number, (h: TrailHealth) => void>();
  let healthSeq = 0;

  // workers accept from the shared socket themselves: with round-robin the primary accepts and hands each
  // connection over, and one handed to a worker that dies before taking it stays open, unanswered, forever
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const fork = (index: number) => {
    const w = cluster.fork({ [INDEX_ENV]: String(index), [LISTEN_ENV]: listenAt });
    slots[index] = w;
    // a send to a worker that is exiting fails with EPIPE; its 'exit' tells the rest
    w.on('error', () => {});
    let up = false;
    w.on('message', (m: unknown) => {
      if (!isMessage(m)) return;
      if (m.trailmark === 'ready') {
        up = true;
        crashes = 0;
        if (++ready === n) resolveStarted(m.url);
      } else if (m.trailmark === 'failed') {
        rejectStarted(new ConfigError('worker', m.message));
      } else if (m.trailmark === 'health' && m.health) {
        healthWaiters.get(m.id)?.(m.health);
      }
    });
    w.on('exit', (code, signal) => {
      if (slots[index] === w) slots[index] = null;
      if (closing) return;
      if (ready < n && !up) {
        rejectStarted(
          new ConfigError('worker', `worker ${index} exited (${signal ?? `code ${code}`}) before it listened`),
        );
        return;
      }
      // its successor reopens the same spool: what the dead one had spooled is delivered from there
      crashes++;
      const delay = Math.min(5000, 100 * 2 ** Math.min(crashes - 1, 6));
      warn(`worker ${index} (pid ${w.process.pid}) exited (${signal ?? `code ${code}`}); restarting it in ${delay} ms`);
      setTimeout(() => {
        if (!closing) fork(index);
      }, delay).unref();
    });
  };

  const stopAll = async () => {
    closing = true;
    const live = slots.filter((w): w is Worker => w !== null && !w.isDead());
    await Promise.all(
      live.map(
        (w) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => w.process.kill('SIGKILL'), 10_000);
            w.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            if (w.isConnected()) w.send({ trailmark: 'stop' } satisfies Message);
            else w.process.kill('SIGTERM');
          }),
      ),
    );
  };

  for (let i = 0; i < n; i++) fork(i);
  let url: string;
  try {
    url = await started;
  } catch (e) {
    await stopAll();
    throw e;
  }

  const health = async () => {
    const answers = await Promise.all(
      slots.map((w, index) => {
        if (!w || !w.isConnected()) return Promise.resolve({ index, pid: w?.process.pid ?? null, health: null });
        const id = ++healthSeq;
        return new Promise<{ index: number; pid: number | null; health: TrailHealth | null }>((resolve) => {
          const t = setTimeout(() => {
            healthWaiters.delete(id);
            resolve({ index, pid: w.process.pid ?? null, health: null });
          }, 2000);
          healthWaiters.set(id, (h) => {
            clearTimeout(t);
            healthWaiters.delete(id);
            resolve({ index, pid: w.process.pid ?? null, health: h });
          });
          w.send({ trailmark: 'health', id } satisfies Message);
        });
      }),
    );
    const hs = answers.map((a) => a.health).filter((h): h is TrailHealth => h !== null);
    const sum = (k: 'spool_depth' | 'leftover_spools' | 'delivered' | 'failed_deliveries' | 'receipt_failures') =>
      hs.reduce((a, h) => a + h[k], 0);
    return {
      ok: hs.length === n,
      mode: opts.recorder.mode ?? 'spool',
      spool_depth: sum('spool_depth'),
      leftover_spools: sum('leftover_spools'),
      oldest_undelivered_age_seconds: Math.max(0, ...hs.map((h) => h.oldest_undelivered_age_seconds)),
      delivered: sum('delivered'),
      failed_deliveries: sum('failed_deliveries'),
      receipt_failures: sum('receipt_failures'),
      last_error: hs.find((h) => h.last_error !== null)?.last_error ?? null,
      workers: answers.map((a) => ({ index: a.index, pid: a.pid, ...(a.health ?? { ok: false }) })),
    };
  };
  const aggregator = new AggregatorRegistry();
  let admin: { server: import('node:http').Server; url: string } | null = null;
  try {
    if (adminAddr)
      admin = await startAdmin(adminAddr, health, async () => ({
        contentType: aggregator.contentType,
        text: await aggregator.clusterMetrics(),
      }));
  } catch (e) {
    await stopAll();
    throw e;
  }
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let closingP: Promise<void> | null = null;
  return {
    role: 'primary',
    url,
    adminUrl: admin?.url ?? null,
    workers: n,
    pids: () => slots.flatMap((w, index) => (w && w.process.pid !== undefined ? [{ index, pid: w.process.pid }] : [])),
    stopped,
    close() {
      closingP ??= (async () => {
        if (admin) await closeServer(admin.server);
        await stopAll();
        stop();
      })();
      return closingP;
    },
  };
}
