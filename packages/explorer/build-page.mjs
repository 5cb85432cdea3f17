// Bundles the explorer's page (page/app.ts, uPlot, @trailmark/tlog) into dist/page with esbuild. Run by the
// repository's `prepare` (so `npm ci` produces it) and by this package's build; nothing is built at run time.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = here('./dist/page/');
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: here('./page/app.ts') },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  // PAGE_NO_MINIFY=1: readable function names in a browser CPU profile
  minify: !process.env.PAGE_NO_MINIFY,
  legalComments: 'eof',
  outdir: out,
  // the page verifies with the same library as the CLI, bundled from its source (no dependency on build order)
  // and its filter names from the client's own list (a module with no imports)
  alias: {
    '@trailmark/tlog': here('../tlog/src/index.ts'),
    '@trailmark/client/explorer/params': here('../client/src/explorer/params.ts'),
  },
  logLevel: 'warning',
});
await copyFile(here('./page/index.html'), out + 'index.html');
