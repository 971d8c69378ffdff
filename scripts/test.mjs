#!/usr/bin/env node
// Runs the whole suite with node-tap and ends with one plain line "N passed, N failed, N skipped",
// so a run that tested nothing is visible. Installs (npm ci) and builds (addon, dist/) first if needed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
// A fresh checkout: npm ci installs the pinned dependencies and builds the addon and dist/.
if (!existsSync(`${root}node_modules/.package-lock.json`)) {
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { console.log('0 passed, 1 failed'); process.exit(r.status ?? 1); }
}
if (!existsSync(`${root}native-bindings/build/Release/l2tpd_native.node`)) {
  const r = spawnSync('npx', ['node-gyp', 'rebuild', '--directory', 'native-bindings'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
{
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { console.log('0 passed, 1 failed'); process.exit(1); }
}

const args = ['tap', '--reporter=tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (d) => { process.stdout.write(d); tail = (tail + d.toString()).slice(-20000); });
child.on('close', (code) => {
  // tap's closing summary: "# { total: N, pass: N, fail: N, skip: N, todo: N }"
  const m = [...tail.matchAll(/^# \{ total: (\d+)(.*?)\}$/gm)].pop();
  const get = (k) => Number((m?.[2].match(new RegExp(`${k}: (\\d+)`)) ?? [])[1] ?? 0);
  const passed = get('pass');
  const failed = get('fail') + (m ? 0 : 1);
  const skipped = get('skip') + get('todo');
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
