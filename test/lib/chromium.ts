/**
 * Headless Chromium for the page tests: Debian's `chromium` driven by playwright-core. On a machine without
 * it, a root process installs it with apt (once); anyone else gets an error naming the package. Each launch
 * gets a fresh profile directory, removed on close, and flags that keep the browser off the network except
 * for the loopback pages a test opens.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let installed = false;

/** Makes sure /usr/bin/chromium exists: installs Debian's `chromium` as root, else throws naming it. */
export function ensureChromium(): void {
  if (installed || existsSync(CHROMIUM)) {
    installed = true;
    return;
  }
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${CHROMIUM} is missing: install the Debian package "chromium" (apt-get install chromium), or run the tests as root to install it`,
    );
  }
  execFileSync('apt-get', ['update'], { stdio: 'ignore' });
  execFileSync('apt-get', ['install', '-y', 'chromium'], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed "chromium" but ${CHROMIUM} is still missing`);
  installed = true;
}

export interface Chromium {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A fresh headless Chromium (its own --user-data-dir). Precondition: none; installs chromium when needed. */
export async function launchChromium(
  opts: { acceptDownloads?: boolean; viewport?: { width: number; height: number } } = {},
): Promise<Chromium> {
  ensureChromium();
  const profile = await mkdtemp(join(tmpdir(), 'trailmark-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      acceptDownloads: opts.acceptDownloads ?? true,
      viewport: opts.viewport ?? { width: 1280, height: 900 },
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
