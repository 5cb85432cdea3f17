// fs-native-extensions ships prebuilt binaries but no types; only the locking calls are used.
declare module 'fs-native-extensions' {
  /** Takes an exclusive (or shared) lock on the whole file without waiting; false when another holder has it. */
  export function tryLock(fd: number, opts?: { shared?: boolean }): boolean;
  /** Releases the lock tryLock took on `fd`. */
  export function unlock(fd: number): void;
}
