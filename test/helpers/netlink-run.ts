/**
 * Run a TypeScript child (test/helpers/netlink-child.ts) inside a network namespace.
 *
 * Node has no setns, so code that must run in a namespace runs in a child:
 *   TS_NODE_PROJECT=<tmp>/tsconfig.json TS_NODE_TRANSPILE_ONLY=1 \
 *     ip netns exec NS node --import=file://<repo>/node_modules/@isaacs/ts-node-temp-fork-for-pr-2009/import.mjs CHILD.ts ARGS
 * where <tmp>/tsconfig.json is
 *   {"extends": "<repo>/tsconfig.json", "ts-node": {"experimentalResolver": true, "transpileOnly": true}}.
 * - experimentalResolver is what maps src's `./x.js` imports onto `./x.ts` for CommonJS; without
 *   it any `.js`-suffixed relative import of a .ts file fails with MODULE_NOT_FOUND. The repo
 *   tsconfig.json now sets it too (its "ts-node" section, which tap reads); the temp config
 *   predates that and repeats it. TS_NODE_PROJECT is still needed: ts-node looks for a tsconfig
 *   from the working directory, not from the script, so a child started elsewhere finds none.
 * - `--import …/import.mjs`, not `-r …/register`: under tap, @tapjs/processinfo injects an ESM
 *   `--import` hook into every spawned node's NODE_OPTIONS; once any ESM hook is registered Node
 *   loads the main script through the ESM loader, and `-r register` (CJS only) then fails with
 *   ERR_UNKNOWN_FILE_EXTENSION ".ts". The ESM entry works with and without processinfo.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { ROOT } from './paths';
import type { ChildOp, ChildResult } from './netlink-child';

/** The repository root: paths.ts ROOT, under the name forwarder-alloc.test.ts imports. */
export const REPO = ROOT;
export const TS_NODE_IMPORT = join(REPO, 'node_modules', '@isaacs', 'ts-node-temp-fork-for-pr-2009', 'import.mjs');
export const CHILD = join(REPO, 'test', 'helpers', 'netlink-child.ts');
/** The built native addon (npm install builds it). */
export const ADDON = join(REPO, 'native-bindings', 'build', 'Release', 'l2tpd_native.node');

let tsconfigDir: string | undefined;

/** A temp tsconfig extending the repo's, with ts-node's experimentalResolver on. */
export function childTsconfig(): string {
  if (!tsconfigDir) {
    tsconfigDir = mkdtempSync(join(tmpdir(), 'l2tpd-tsnode-'));
    writeFileSync(join(tsconfigDir, 'tsconfig.json'), JSON.stringify({
      extends: join(REPO, 'tsconfig.json'),
      'ts-node': { experimentalResolver: true, transpileOnly: true },
    }));
    const dir = tsconfigDir;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return join(tsconfigDir, 'tsconfig.json');
}

/** Reason the TS child loader is unusable, or false. */
export function childLoaderUnavailable(): string | false {
  return existsSync(TS_NODE_IMPORT) ? false : `ts-node fork not installed at ${TS_NODE_IMPORT}`;
}

/** Environment for a TS child: ours, minus tap's loaders/coverage hooks. */
export function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('TS_NODE_') || k.startsWith('_TAPJS')) continue;
    env[k] = v;
  }
  env.TS_NODE_PROJECT = childTsconfig();
  env.TS_NODE_TRANSPILE_ONLY = '1';
  return env;
}

/** argv (after `node`) to run a .ts script with the loader. */
export function tsNodeArgs(script: string, args: string[] = []): string[] {
  return [`--import=${pathToFileURL(TS_NODE_IMPORT).href}`, script, ...args];
}

export interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  results: ChildResult[];
  closed: boolean;
}

/** Run netlink-child.ts with `ops` in namespace `ns` (or the current one when ns is null). */
export function runChild(ns: string | null, ops: ChildOp[], timeoutMs = 30000): ChildRun {
  const nodeArgs = tsNodeArgs(CHILD, [JSON.stringify(ops)]);
  const [cmd, argv] = ns === null
    ? [process.execPath, nodeArgs]
    : ['ip', ['netns', 'exec', ns, process.execPath, ...nodeArgs]];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: childEnv(), timeout: timeoutMs });
  let parsed: { results: ChildResult[]; closed: boolean } = { results: [], closed: false };
  const line = r.stdout?.trim().split('\n').pop();
  if (line) { try { parsed = JSON.parse(line) as typeof parsed; } catch { /* reported via stdout */ } }
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ...parsed };
}
