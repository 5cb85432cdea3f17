/**
 * The monitor daemon's HTTP face: tlog-witness add-checkpoint (with a witness key), gossip
 * (GET /v1/checkpoints, POST /v1/gossip), GET /v1/evidence, GET /v1/streams, /healthz and /metrics.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { parsePrivateKey, vkeyOf, KEY_TYPE_COSIGNATURE, type NoteSigner } from '@trailmark/tlog';
import { Counter } from 'prom-client';
import { splitHostPort } from '@trailmark/node';
import { MonitorError } from './errors.js';
import { Monitor, type MonitorOptions } from './monitor.js';
import { MonitorStore } from './store.js';
import { MAX_ADD_CHECKPOINT_BODY, Witness } from './witness.js';

/** Most checkpoints accepted in one POST /v1/gossip. */
export const MAX_GOSSIP_CHECKPOINTS = 100;

/** Configuration of a monitor daemon: the Monitor's options plus data directory, witness key and listen address. */
export interface StartMonitorOptions extends Omit<MonitorOptions, 'store'> {
  /** Data directory (LevelDB and evidence files); without it, a temporary one removed on close. */
  dataDir?: string;
  /** Witness private key text (type 0x04): enables POST /add-checkpoint. */
  witnessKey?: string;
  /** "host:port" to listen on (port 0 picks one); omit to run without HTTP. */
  listen?: string;
  /** Start polling and gossip loops (default true). */
  follow?: boolean;
}

/** A started monitor daemon: its Monitor, store, URL and witness vkey, and close() to stop it. */
export interface RunningMonitor {
  monitor: Monitor;
  store: MonitorStore;
  /** Base URL of the HTTP API, when listening. */
  url?: string;
  /** The witness's vkey, when a witness key was given. */
  witnessVkey?: string;
  close(): Promise<void>;
}

/** Splits "host:port" (IPv6 in brackets). Precondition: none; throws MonitorError('config') when malformed. */
export function parseListen(listen: string): { host: string; port: number } {
  const hp = splitHostPort(listen);
  if (!hp) throw new MonitorError('config', `--listen ${JSON.stringify(listen)} is not HOST:PORT`);
  return { host: hp.host ?? '127.0.0.1', port: hp.port };
}

/**
 * Opens the store, starts the monitor (and witness), and listens. Precondition: dataDir not in use by another
 * process. Rejects with a MonitorError or the underlying error when the key, store or address is unusable.
 */
export async function startMonitor(opts: StartMonitorOptions): Promise<RunningMonitor> {
  let signer: NoteSigner | undefined;
  if (opts.witnessKey !== undefined) {
    signer = parsePrivateKey(opts.witnessKey);
    if (signer.type !== KEY_TYPE_COSIGNATURE)
      throw new MonitorError(
        'config',
        `witness key ${signer.name} must be a type 0x04 cosignature key (trailmark keygen --witness)`,
      );
  }
  const listen = opts.listen !== undefined ? parseListen(opts.listen) : undefined;
  const store = await MonitorStore.open(opts.dataDir);
  let monitor: Monitor;
  try {
    monitor = new Monitor({ ...opts, store });
  } catch (e) {
    await store.close();
    throw e;
  }
  const witness = signer ? new Witness({ signer, logs: monitor.logKeys(), store }) : undefined;
  let server: Server | undefined;
  let url: string | undefined;
  if (listen) {
    const app = buildApp(monitor, witness);
    try {
      server = await new Promise<Server>((resolve, reject) => {
        const s = app.listen(listen.port, listen.host, (err?: Error) => (err ? reject(err) : resolve(s)));
        s.once('error', reject);
      });
    } catch (e) {
      await store.close();
      throw e;
    }
    server.keepAliveTimeout = 5000;
    const a = server.address() as AddressInfo;
    url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }
  if (opts.follow !== false) monitor.start();
  let closed: Promise<void> | undefined;
  return {
    monitor,
    store,
    url,
    ...(signer ? { witnessVkey: vkeyOf(signer) } : {}),
    close() {
      closed ??= (async () => {
        if (server) {
          const s = server;
          await new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          });
        }
        await monitor.stop();
        await store.close();
      })();
      return closed;
    },
  };
}

function remote(req: Request): string {
  return req.socket.remoteAddress ?? 'unknown';
}

/** The express app serving a monitor (and witness). Precondition: monitor constructed over an open store. */
export function buildApp(monitor: Monitor, witness?: Witness): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const requests = new Counter({
    name: 'trailmark_witness_requests_total',
    help: 'add-checkpoint requests by HTTP status',
    labelNames: ['status'],
    registers: [monitor.registry],
  });

  if (witness) {
    app.post('/add-checkpoint', express.raw({ type: () => true, limit: MAX_ADD_CHECKPOINT_BODY }), async (req, res) => {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(body);
      } catch {
        requests.inc({ status: '400' });
        res.status(400).type('text/plain').send('request body is not valid UTF-8\n');
        return;
      }
      const a = await witness.addCheckpoint(text);
      requests.inc({ status: String(a.status) });
      res.statusCode = a.status;
      res.setHeader('content-type', a.contentType);
      res.end(a.body);
      // a checkpoint the log signed is worth checking against the view, whatever we answered
      if (a.checkpoint) {
        const from = `add-checkpoint from ${remote(req)}`;
        void monitor.observe(a.checkpoint.note, from).catch(() => undefined);
      }
    });
  }

  app.get('/v1/checkpoints', async (_req, res) => {
    res.json(await monitor.latestCheckpoints());
  });

  app.post('/v1/gossip', express.json({ limit: '4mb', type: () => true }), async (req, res) => {
    const b = req.body as { checkpoints?: unknown };
    if (
      typeof b !== 'object' ||
      b === null ||
      !Array.isArray(b.checkpoints) ||
      b.checkpoints.some((c) => typeof c !== 'string')
    ) {
      res.status(400).json({ error: 'body must be {"checkpoints": [note text, ...]}' });
      return;
    }
    if (b.checkpoints.length > MAX_GOSSIP_CHECKPOINTS) {
      res.status(413).json({ error: `at most ${MAX_GOSSIP_CHECKPOINTS} checkpoints per request` });
      return;
    }
    const evidence = (b as { evidence?: unknown }).evidence;
    if (evidence !== undefined && (!Array.isArray(evidence) || evidence.length > MAX_GOSSIP_CHECKPOINTS)) {
      res.status(400).json({
        error: `"evidence", when present, must be an array of at most ${MAX_GOSSIP_CHECKPOINTS} evidence objects`,
      });
      return;
    }
    const from = `gossip from ${remote(req)}`;
    const results = [];
    for (const note of b.checkpoints as string[]) {
      const o = await monitor.observe(note, from);
      results.push({ status: o.status, message: o.message });
    }
    const evidenceResults = [];
    for (const ev of (evidence as unknown[] | undefined) ?? []) {
      const o = await monitor.importEvidence(ev, from);
      evidenceResults.push({ status: o.status, message: o.message });
    }
    res.json(evidence === undefined ? { results } : { results, evidence: evidenceResults });
  });

  app.get('/v1/evidence', async (_req, res) => {
    res.json(await monitor.allEvidence());
  });

  // each proxy stream in the followed logs, with its completeness state and whether it has gone silent
  app.get('/v1/streams', async (_req, res) => {
    res.json(await monitor.streams());
  });

  // unhealthy while it holds evidence nobody has acknowledged: a probe must not say "ok" over a caught log
  app.get('/healthz', async (_req, res) => {
    const unacknowledged = await monitor.unacknowledgedEvidence();
    if (unacknowledged.length === 0) {
      res.json({ ok: true });
      return;
    }
    res.status(503).json({
      ok: false,
      error: `holding ${unacknowledged.length} piece(s) of unacknowledged evidence of misbehaviour (GET /v1/evidence)`,
      unacknowledged_evidence: unacknowledged,
      acknowledge: 'trailmark monitor-ack --data DIR [ID ...]',
    });
  });

  app.get('/metrics', async (_req, res) => {
    res.set('content-type', monitor.registry.contentType).send(await monitor.registry.metrics());
  });

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });

  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    void _next;
    const status = typeof err.status === 'number' && err.status >= 400 && err.status < 500 ? err.status : 500;
    const message =
      status === 413
        ? 'request body too large'
        : status === 400
          ? `malformed request: ${err.message}`
          : status === 500
            ? 'internal error'
            : err.message;
    if (status === 500) monitor.logger.error('internal error', { error: err, stack: err.stack });
    res.status(status).json({ error: message });
  });
  return app;
}
