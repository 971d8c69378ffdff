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

/** Runs the checkout's copy of the script with the stand-ins first on PATH. */
function runScript(root: string, bin: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [path.join(root, 'scripts/test.mjs')], {
    encoding: 'utf8', timeout: 30000, env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH ?? ''}` },
  });
}

t.test('a failed addon rebuild still ends with the count line', async (t) => {
  const { root, bin } = checkout(t);
  const r = runScript(root, bin);
  t.match(r.stderr, /^npx node-gyp rebuild/m, 'the rebuild was tried (the addon is missing)');
  t.equal(r.stdout.trim().split('\n').at(-1), '0 passed, 1 failed, 0 skipped', 'the last line counts the failure');
  t.equal(r.status, 3, 'exits with the rebuild\'s status');
  t.notMatch(r.stderr, /^npm run/m, 'and stops there');
});

/**
 * A checkout that gets as far as running tap: addon built, `npm run build` passes, one host and one
 * guest suite. The stand-in `npx tap` logs where it ran and with what, prints a passing summary and
 * exits with $TAP_STANDIN_EXIT when it runs in the directory named by $TAP_STANDIN_FAIL_IN.
 */
function builtCheckout(t: Parameters<typeof shortDir>[0]): { root: string; bin: string; log: string } {
  const { root, bin } = checkout(t);
  fs.mkdirSync(path.join(root, 'native-bindings/build/Release'), { recursive: true });
  fs.writeFileSync(path.join(root, 'native-bindings/build/Release/l2tpd_native.node'), '');
  fs.mkdirSync(path.join(root, 'test/vm'), { recursive: true });
  fs.writeFileSync(path.join(root, 'test/vm/guest.test.ts'), '');
  const log = path.join(root, 'tap.log');
  fs.writeFileSync(path.join(bin, 'npm'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  fs.writeFileSync(path.join(bin, 'npx'), [
    '#!/bin/sh',
    `echo "$PWD $*" >> ${log}`,
    'echo "# { total: 2, pass: 2 }"',
    '[ "$PWD" = "$TAP_STANDIN_FAIL_IN" ] && exit "$TAP_STANDIN_EXIT"',
    'exit 0',
  ].join('\n') + '\n', { mode: 0o755 });
  return { root, bin, log };
}

t.test('the guest suites run as their own tap project in test/vm, without coverage', async (t) => {
  const { root, bin, log } = builtCheckout(t);
  const r = runScript(root, bin);
  const runs = fs.readFileSync(log, 'utf8').trim().split('\n').sort();
  t.same(runs, [`${root} tap --reporter=tap`, `${path.join(root, 'test/vm')} tap --reporter=tap guest.test.ts`].sort(),
    'the host run in the root, the guest run in test/vm, each with its own .tap/');
  t.equal(r.stdout.trim().split('\n').at(-1), '4 passed, 0 failed, 0 skipped', 'both runs counted');
  t.equal(r.status, 0);
  // The real test/vm/.taprc is what makes that directory a project apart from the root's coverage.
  const taprc = fs.readFileSync(path.join(__dirname, '..', 'vm', '.taprc'), 'utf8');
  t.match(taprc, /^disable-coverage: true$/m, 'test/vm/.taprc turns coverage off');
});

t.test('a tap run that exits non-zero with every test passed is counted as a failure', async (t) => {
  const { root, bin } = builtCheckout(t);
  const r = runScript(root, bin, { TAP_STANDIN_FAIL_IN: path.join(root, 'test/vm'), TAP_STANDIN_EXIT: '1' });
  t.match(r.stderr, /exited 1 although no test failed/, 'says why');
  t.equal(r.stdout.trim().split('\n').at(-1), '4 passed, 1 failed, 0 skipped', 'the last line agrees with the exit status');
  t.equal(r.status, 1);
});
