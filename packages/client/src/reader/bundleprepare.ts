/** The caller's per-bundle step of verifiedBundlesOffThread, and its loading on either thread. */

/**
 * A step of the caller's, run on each bundle where the bundle is read (the reader thread), so that work shares
 * the thread's core instead of the caller's: the function `name` exported by the module at `module` (a file:
 * URL), called with the bundle's entries and leaf index of the first; what it returns (anything structured clone
 * can copy) is the bundle's `prepared`. It must not depend on state outside its arguments.
 */
export interface BundlePrepare {
  module: URL;
  name: string;
}

type PrepareFn = (entries: Uint8Array[], start: bigint) => unknown;

/** The function `p` names. Precondition: `p.module` exports a function `p.name`. */
export async function loadBundlePrepare(p: BundlePrepare): Promise<PrepareFn> {
  const fn = ((await import(p.module.href)) as Record<string, unknown>)[p.name];
  if (typeof fn !== 'function') throw new TypeError(`${p.module.href} exports no function ${p.name}`);
  return fn as PrepareFn;
}
