/**
 * scripts/test.mjs ends every run with the line `N passed, N failed, N skipped`, also when it stops before
 * running a test: a run that tested nothing must not look like a pass to whoever reads the tail.
 * The script runs from a copy in a temp checkout whose `npx` and `npm` are stand-ins that fail.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { shortDir } from '../helpers/tmp.js';

const script = path.join(__dirname, '..', '..', 'scripts', 'test.mjs');

/** A checkout with dependencies installed and addon sources but no built addon. */
function checkout(t: Parameters<typeof shortDir>[0]): { root: string; bin: string } {
  const root = shortDir(t);
  for (const dir of ['scripts', 'node_modules', 'native-bindings/src', 'bin']) fs.mkdirSync(path.join(root, dir), { recursive: true });
  fs.copyFileSync(script, path.join(root, 'scripts/test.mjs'));
  fs.writeFileSync(path.join(root, 'node_modules/.package-lock.json'), '{}');
  fs.writeFileSync(path.join(root, 'native-bindings/binding.gyp'), '{}');
  fs.writeFileSync(path.join(root, 'native-bindings/src/addon.cc'), '');
  const bin = path.join(root, 'bin');
  for (const tool of ['npx', 'npm']) fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >&2\nexit 3\n`, { mode: 0o755 });
  return { root, bin };
}

t.test('a failed addon rebuild still ends with the count line', async (t) => {
  const { root, bin } = checkout(t);
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/test.mjs')], {
    encoding: 'utf8', timeout: 30000, env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
  });
  t.match(r.stderr, /^npx node-gyp rebuild/m, 'the rebuild was tried (the addon is missing)');
  t.equal(r.stdout.trim().split('\n').at(-1), '0 passed, 1 failed, 0 skipped', 'the last line counts the failure');
  t.equal(r.status, 3, 'exits with the rebuild\'s status');
  t.notMatch(r.stderr, /^npm run/m, 'and stops there');
});
