/**
 * The native addon's calls that src/netlink uses, loaded on first use rather than imported:
 * importing src/netlink must not need the built addon (the pure message tests run without it).
 */
import type { NativeAddon } from '../native/types.js';

let addon: NativeAddon | null | undefined;

/** The addon's `name`, bound; undefined when the addon cannot be loaded or predates it. */
export function addonCall<K extends keyof NativeAddon>(name: K): NativeAddon[K] | undefined {
  if (addon === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = (require('../native/index.js') as typeof import('../native/index.js')).native;
    } catch {
      addon = null;
    }
  }
  const fn = addon?.[name];
  return typeof fn === 'function' ? (fn.bind(addon) as NativeAddon[K]) : undefined;
}
