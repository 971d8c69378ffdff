/**
 * Loads native-bindings/ (l2tpd_native.node) for the calling thread. The addon is
 * context-aware, so this module can be required in the main thread and in workers at once;
 * each thread gets its own instance (own pool pointer, peer table and poll handles).
 */
import path from 'node:path';
import type { NativeAddon } from './types.js';

export * from './types.js';
export * from './sockopt.js';

// Same path from src/native (ts-node) and dist/native (tsc output).
const addonDir = path.join(__dirname, '..', '..', 'native-bindings');

// node-gyp-build ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;

export const native: NativeAddon = nodeGypBuild(addonDir) as NativeAddon;
