/**
 * The package graph (docs/architecture.md): tlog (pure) <- node <- client <- recorder <- daemons <- cli.
 * Reads every packages/*\/package.json and the static imports of every source file, and fails when a package
 * imports above its layer, a daemon imports another daemon, tlog imports anything node-side, or one of the
 * CLI's read commands (or a module it imports) loads a daemon. A dynamic import() is not a static edge: it
 * loads the package only on the path that runs it (audit --data loads the log server's store audit so).
 */
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = join(ROOT, 'packages');

const DAEMONS = ['log-server', 'proxy', 'pg-proxy', 'monitor', 'explorer'];
/** What each package may import of @trailmark/* (the cli may import every package). */
const ALLOWED: Record<string, string[]> = {
  tlog: [],
  node: ['tlog'],
  client: ['tlog', 'node'],
  recorder: ['tlog', 'node', 'client'],
  ...Object.fromEntries(DAEMONS.map((d) => [d, ['tlog', 'node', 'client', 'recorder']])),
};
const READ_COMMANDS = ['prove', 'audit', 'entries', 'checkpoint', 'verify', 'streams', 'verify-evidence', 'search'];
const NODE_BUILTINS = new Set(builtinModules);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Static import and export-from specifiers of a TypeScript file (not import(); type-only ones unless valuesOnly). */
function staticImports(text: string, valuesOnly = false): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/g;
  for (let m; (m = re.exec(text));) if (!(valuesOnly && m[1])) out.push(m[2]);
  return out;
}

/** The @trailmark package a specifier names, if any ('@trailmark/client' -> 'client'). */
const trailmark = (spec: string) => /^@trailmark\/([^/]+)/.exec(spec)?.[1];

const packageDirs = readdirSync(PACKAGES).filter((d) => {
  try {
    statSync(join(PACKAGES, d, 'package.json'));
    return true;
  } catch {
    return false;
  }
});

describe('layering: tlog <- node <- client <- recorder <- daemons <- cli', () => {
  it('finds the imports it checks (the scanner is not blind)', () => {
    expect(
      staticImports("import {\n  a,\n  b,\n} from '@trailmark/client';\nimport type { X } from 'y';\n"),
    ).to.deep.equal(['@trailmark/client', 'y']);
    expect(staticImports("export * from './a.js';\nconst m = await import('@trailmark/log-server');\n")).to.deep.equal([
      './a.js',
    ]);
    expect(staticImports("import type { A } from 'a';\nimport { b } from 'b';\n", true)).to.deep.equal(['b']);
    const monitor = sources(join(PACKAGES, 'monitor', 'src')).flatMap((f) => staticImports(readFileSync(f, 'utf8')));
    expect(monitor).to.include('@trailmark/client');
  });

  it('knows every package', () => {
    for (const d of packageDirs) expect(d === 'cli' || d in ALLOWED, `packages/${d} has no layer`).to.equal(true);
  });

  for (const d of packageDirs.filter((p) => p !== 'cli')) {
    it(`${d} imports only its lower layers, in package.json and in src`, () => {
      const allowed = new Set(ALLOWED[d] ?? []);
      const pkg = JSON.parse(readFileSync(join(PACKAGES, d, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
      };
      for (const dep of Object.keys(pkg.dependencies ?? {})) {
        const t = trailmark(dep);
        if (t) expect(allowed.has(t), `packages/${d}/package.json depends on ${dep}`).to.equal(true);
      }
      for (const f of sources(join(PACKAGES, d, 'src'))) {
        for (const spec of staticImports(readFileSync(f, 'utf8'))) {
          const t = trailmark(spec);
          const where = `${f.slice(ROOT.length + 1)} imports ${spec}`;
          if (t) expect(allowed.has(t), where).to.equal(true);
          if (d === 'tlog') {
            // pure: no node: modules, no bare node builtins
            expect(spec.startsWith('node:') || NODE_BUILTINS.has(spec.split('/')[0]), where).to.equal(false);
          }
        }
      }
    });
  }

  it("the CLI's read commands, and every module they import, load no daemon", () => {
    const dir = join(PACKAGES, 'cli', 'src', 'commands');
    const seen = new Set<string>();
    const visit = (file: string, from: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const spec of staticImports(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')), from);
        const t = trailmark(spec);
        if (t) expect(DAEMONS, `${from}: ${file.slice(ROOT.length + 1)} imports ${spec}`).to.not.include(t);
      }
    };
    for (const c of READ_COMMANDS) {
      seen.clear();
      visit(join(dir, `${c}.ts`), `trailmark ${c}`);
    }
  });

  it('the CLI loads a daemon only when its command runs (no module of the CLI imports one statically)', () => {
    for (const f of sources(join(PACKAGES, 'cli', 'src'))) {
      for (const spec of staticImports(readFileSync(f, 'utf8'), true)) {
        const t = trailmark(spec);
        if (t) expect(DAEMONS, `${f.slice(ROOT.length + 1)} imports ${spec}`).to.not.include(t);
      }
    }
  });
});
