/**
 * The monitor's durable state in LevelDB: its verified view of each log, the witness's last cosigned
 * checkpoint per origin, and evidence. Every write that a promise depends on is synced (fsync) before the
 * call resolves, and evidence is also written as a JSON file under <dir>/evidence/ (fsynced, then renamed).
 */
import { access, mkdtemp, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { errorMessage, type StreamCheckerState } from '@trailmark/tlog';
import type { Evidence, Sighting } from '@trailmark/client';
import { KeyedLock, writeFileDurably } from '@trailmark/node';
import { MonitorError } from './errors.js';

/** The latest checkpoint of a log the monitor verified (signature, and consistency with the one before). */
export interface ViewRecord {
  note: string;
  /** Decimal tree size. */
  size: string;
  /** Base64 root. */
  root: string;
  seen: Sighting;
}

/** The last checkpoint the witness cosigned for an origin. */
export interface WitnessRecord {
  size: string;
  root: string;
  note: string;
  at: string;
}

const VIEW = 'view!';
const WITNESS = 'witness!';
const EVIDENCE = 'evidence!';
const STREAMS = 'streams!';

/** The monitor's stream check of a log: how far it has read, and the checker's state there. */
export interface StreamsRecord {
  /** Decimal count of entries fed to the checker (entries [0, position)). */
  position: string;
  state: StreamCheckerState;
}

/** Durable monitor state; open with MonitorStore.open(), close once. */
export class MonitorStore {
  private readonly evidenceLock = new KeyedLock();

  private constructor(
    private readonly db: Level<string, unknown>,
    /** Directory holding the database and evidence files. */
    readonly dir: string,
    /** The directory is removed on close (no --data): nothing here outlives the run. */
    readonly temporary: boolean,
  ) {}

  /**
   * Opens (creating if needed) the store in `dir`; without `dir`, in a fresh temporary directory removed by
   * close(). Precondition: no other process has `dir` open (LevelDB takes a lock and this throws).
   */
  static async open(dir?: string): Promise<MonitorStore> {
    const temporary = dir === undefined;
    const root = dir ?? (await mkdtemp(join(tmpdir(), 'trailmark-monitor-')));
    await mkdir(join(root, 'evidence'), { recursive: true });
    const db = new Level<string, unknown>(join(root, 'monitor.db'), { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED')
        throw new MonitorError('store-locked', `data directory ${root} is in use by another monitor`, { cause: e });
      throw new MonitorError('store', `cannot open the monitor database in ${root}: ${errorMessage(cause ?? e)}`, {
        cause: e,
      });
    }
    return new MonitorStore(db, root, temporary);
  }

  /** Closes the database, and removes the directory when it was temporary; the store must not be used afterwards. */
  async close(): Promise<void> {
    await this.db.close();
    if (this.temporary) await rm(this.dir, { recursive: true, force: true });
  }

  /** The verified view of `origin`, if any. Precondition: store open. */
  async view(origin: string): Promise<ViewRecord | undefined> {
    return (await this.db.get(VIEW + origin)) as ViewRecord | undefined;
  }

  /** Replaces the view of `origin`, synced. Precondition: the caller verified `rec` extends the previous view. */
  async putView(origin: string, rec: ViewRecord): Promise<void> {
    await this.db.put(VIEW + origin, rec, { sync: true });
  }

  /** Every stored view. */
  async views(): Promise<Map<string, ViewRecord>> {
    const out = new Map<string, ViewRecord>();
    for await (const [k, v] of this.db.iterator({ gte: VIEW, lt: VIEW + '\uffff' }))
      out.set(k.slice(VIEW.length), v as ViewRecord);
    return out;
  }

  /** The witness's last cosigned checkpoint for `origin`. */
  async witness(origin: string): Promise<WitnessRecord | undefined> {
    return (await this.db.get(WITNESS + origin)) as WitnessRecord | undefined;
  }

  /** Records a cosigned checkpoint, synced before resolving. Precondition: the caller holds the origin's witness lock. */
  async putWitness(origin: string, rec: WitnessRecord): Promise<void> {
    await this.db.put(WITNESS + origin, rec, { sync: true });
  }

  /** How far the stream check of `origin` has read, and its state. */
  async streams(origin: string): Promise<StreamsRecord | undefined> {
    return (await this.db.get(STREAMS + origin)) as StreamsRecord | undefined;
  }

  /** Saves the stream check of `origin`, synced. */
  async putStreams(origin: string, rec: StreamsRecord): Promise<void> {
    await this.db.put(STREAMS + origin, rec, { sync: true });
  }

  /** All evidence, in id order. */
  async allEvidence(): Promise<Evidence[]> {
    const out: Evidence[] = [];
    for await (const v of this.db.values({ gte: EVIDENCE, lt: EVIDENCE + '\uffff' })) out.push(v as Evidence);
    return out;
  }

  /**
   * Stores evidence under `id` and as <dir>/evidence/<id>.json, both durable before resolving. Returns false
   * (and writes nothing) when that id is already stored. Precondition: id = idOfEvidence(ev).
   */
  async addEvidence(id: string, ev: Evidence): Promise<boolean> {
    // the same evidence can arrive from several peers at once: check-and-write under one lock per id
    return this.evidenceLock.run(id, async () => {
      if ((await this.db.get(EVIDENCE + id)) !== undefined) return false;
      await writeFileDurably(this.evidencePath(id), JSON.stringify(ev, null, 2) + '\n');
      await this.db.put(EVIDENCE + id, ev, { sync: true });
      return true;
    });
  }

  /** Where the evidence file with this id lives. */
  evidencePath(id: string): string {
    return evidenceFile(this.dir, id);
  }

  /** Whether an operator acknowledged the evidence with this id (see acknowledgeEvidence). */
  async acknowledged(id: string): Promise<boolean> {
    return access(ackFile(this.dir, id)).then(
      () => true,
      () => false,
    );
  }
}

function evidenceFile(dir: string, id: string): string {
  return join(dir, 'evidence', `${id}.json`);
}

function ackFile(dir: string, id: string): string {
  return join(dir, 'evidence', `${id}.ack`);
}

/**
 * Marks evidence in a monitor's data directory as seen by an operator: a file <id>.ack beside <id>.json, which
 * the running monitor reads on /healthz (a file, not an HTTP call, so that only someone with access to the
 * data directory can silence the health check). Without ids, every evidence file there. Returns the ids
 * acknowledged. Precondition: none; throws MonitorError('evidence-id') for an id with no evidence file.
 */
export async function acknowledgeEvidence(dir: string, ids: string[] = []): Promise<string[]> {
  const list = ids.length
    ? ids
    : (await readdir(join(dir, 'evidence')).catch(() => [] as string[]))
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5));
  for (const id of list) {
    if (!/^[A-Za-z0-9_-]+$/.test(id))
      throw new MonitorError('evidence-id', `${JSON.stringify(id)} is not an evidence id`);
    try {
      await access(evidenceFile(dir, id));
    } catch {
      throw new MonitorError('evidence-id', `no evidence ${id} in ${join(dir, 'evidence')}`);
    }
    await writeFileDurably(ackFile(dir, id), `${new Date().toISOString()}\n`);
  }
  return list;
}
