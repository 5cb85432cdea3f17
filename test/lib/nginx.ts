/**
 * A private nginx for tests and benchmarks: Debian's `nginx` package (installed with apt when missing and running
 * as root, else a clear failure naming the package), started in the foreground with its own prefix, config, pid
 * file and logs in a temporary directory, on ports the caller picked. Never the system service.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { freePort, onFreePort } from './util.js';

const NGINX = '/usr/sbin/nginx';
const POLICY = '/usr/sbin/policy-rc.d';
let installed: string | null = null;

/**
 * The nginx binary, installing Debian's package first when it is missing and we are root. Installing must not
 * start the system service: a policy-rc.d that refuses every start is in place during the install (Debian's
 * documented switch for maintainer scripts), and removed after if it was ours.
 * Precondition: none; throws naming the package when it cannot be had.
 */
export function ensureNginx(): string {
  if (installed) return installed;
  if (!existsSync(NGINX)) {
    if (process.getuid?.() !== 0)
      throw new Error(
        `nginx is not installed (${NGINX} missing): install the Debian package "nginx" (apt-get install nginx), or run the tests as root to have them install it`,
      );
    const ours = !existsSync(POLICY);
    if (ours) writeFileSync(POLICY, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    try {
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'nginx']]) {
        const r = spawnSync('apt-get', args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
        if (r.status !== 0)
          throw new Error(
            `apt-get ${args.join(' ')} failed installing the Debian package "nginx": ${r.stderr?.toString().slice(-500)}`,
          );
      }
    } finally {
      if (ours) unlinkSync(POLICY);
    }
    if (!existsSync(NGINX)) throw new Error(`the Debian package "nginx" was installed but ${NGINX} is missing`);
  }
  installed = NGINX;
  return NGINX;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export interface RunningNginx {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** The master process. */
  pid: number;
  /** The prefix directory (config, pid, logs). */
  dir: string;
  /** The access log so far. */
  accessLog(): string;
  close(): Promise<void>;
}

/**
 * Starts nginx with `httpConfig` (the inside of the `http {}` block; it must listen on 127.0.0.1:`port`) and its
 * own main configuration: foreground, pid file, error and access logs and temporary paths all in a fresh
 * temporary directory. Resolves once it accepts connections. Precondition: `port` is free.
 */
export async function startNginx(
  httpConfig: string,
  port: number,
  opts: { workers?: number | 'auto' } = {},
): Promise<RunningNginx> {
  const bin = ensureNginx();
  const dir = await mkdtemp(join(tmpdir(), 'trailmark-nginx-'));
  // workers run as www-data when we are root: they must be able to reach their temporary paths
  chmodSync(dir, 0o755);
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(dir, 'tmp', d), { recursive: true, mode: 0o755 });
  const conf = `${process.getuid?.() === 0 ? 'user www-data;\n' : ''}worker_processes ${opts.workers ?? 1};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${httpConfig}
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const test = spawnSync(bin, ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (test.status !== 0) throw new Error(`nginx rejects the configuration: ${test.stderr.toString()}\n${conf}`);
  const proc: ChildProcess = spawn(bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      const err = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start on port ${port}: ${stderr}${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: proc.pid!,
    dir,
    accessLog: () => (existsSync(join(dir, 'access.log')) ? readFileSync(join(dir, 'access.log'), 'utf8') : ''),
    async close() {
      // SIGQUIT: graceful shutdown of master and workers; SIGKILL if it lingers
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGQUIT');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The nginx configuration docs/gateways.md shows (the fenced block after the `tested: nginx` marker), with its
 * example addresses replaced: so the test runs exactly what the documentation tells people to use.
 * Precondition: the marker and the three example addresses are in the document.
 */
export function documentedNginxConfig(
  doc: string,
  ports: { listen: number; forwardAuth: number; upstream: number },
): string {
  const m = /<!-- tested: nginx -->\s*```nginx\n([\s\S]*?)```/.exec(doc);
  if (!m) throw new Error('docs/gateways.md has no nginx block after <!-- tested: nginx -->');
  const swap: [string, number][] = [
    ['127.0.0.1:8082', ports.forwardAuth],
    ['127.0.0.1:9000', ports.upstream],
    ['listen 80', ports.listen],
  ];
  let conf = m[1];
  for (const [from, to] of swap) {
    if (!conf.includes(from)) throw new Error(`the documented nginx configuration no longer contains ${from}`);
    conf = conf.split(from).join(from.startsWith('listen') ? `listen 127.0.0.1:${to}` : `127.0.0.1:${to}`);
  }
  return conf;
}
