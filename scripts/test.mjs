#!/usr/bin/env node
// Runs the whole suite with node-tap and ends with one plain line "N passed, N failed, N skipped",
// so a run that tested nothing is visible. Installs (npm ci) and builds (addon, dist/) first if needed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const vmDir = `${root}test/vm`;
// A fresh checkout: npm ci installs the pinned dependencies and builds the addon and dist/.
if (!existsSync(`${root}node_modules/.package-lock.json`)) {
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { printCount({ passed: 0, failed: 1, skipped: 0 }); process.exit(r.status ?? 1); }
}
// The addon is rebuilt when it is missing or older than a source (a checkout that moved on).
const addon = `${root}native-bindings/build/Release/l2tpd_native.node`;
const addonSources = [`${root}native-bindings/binding.gyp`, ...readdirSync(`${root}native-bindings/src`).map((f) => `${root}native-bindings/src/${f}`)];
if (!existsSync(addon) || addonSources.some((f) => statSync(f).mtimeMs > statSync(addon).mtimeMs)) {
  const r = spawnSync('npx', ['node-gyp', 'rebuild', '--directory', 'native-bindings'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { printCount({ passed: 0, failed: 1, skipped: 0 }); process.exit(r.status ?? 1); }
}
{
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { printCount({ passed: 0, failed: 1, skipped: 0 }); process.exit(1); }
}

// Suites that boot a QEMU guest (test/vm/) spend their time waiting on an emulated CPU, so they
// run in a second tap process beside the host suites instead of after them: on two vCPUs that
// saves their whole wall time. They run one at a time and without coverage (they drive the daemon
// inside the guest); their output is held back and printed after the host suites'. They run from
// test/vm, which its .taprc makes a tap project of its own: two runs sharing one .tap/ would each
// judge the other's coverage, half-written, against the thresholds.
const extra = process.argv.slice(2);
const vmFiles = extra.length === 0 ? listVmSuites() : [];
const vm = vmFiles.length > 0 ? runTap(vmFiles, { hold: true, cwd: vmDir }) : null;
// package.json's tap.include names the host suites only (test/unit, test/integration).
const host = runTap(extra, { hold: false, cwd: root });
const runs = [await host.done, ...(vm ? [await vm.done] : [])];
if (vm) process.stdout.write(`# --- VM suites (ran beside the host suites, in test/vm): ${vmFiles.join(' ')}\n${vm.held()}`);

const total = { passed: 0, failed: 0, skipped: 0 };
for (const r of runs) for (const k of Object.keys(total)) total[k] += r.counts[k];
printCount(total);
process.exit(runs.every((r) => r.code === 0) && total.failed === 0 ? 0 : 1);

/** The last line of every run, also one that stopped before testing anything. */
function printCount({ passed, failed, skipped }) {
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
}

function listVmSuites() {
  if (!existsSync(vmDir)) return [];
  return readdirSync(vmDir).filter((f) => f.endsWith('.test.ts')).sort();
}

function runTap(tapArgs, { hold, cwd }) {
  const child = spawn('npx', ['tap', '--reporter=tap', ...tapArgs], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  let tail = '';
  let out = '';
  child.stdout.on('data', (d) => {
    if (hold) out += d.toString();
    else process.stdout.write(d);
    tail = (tail + d.toString()).slice(-20000);
  });
  const done = new Promise((resolve) => {
    child.on('close', (code) => {
      // tap's closing summary: "# { total: N, pass: N, fail: N, skip: N, todo: N }"
      const m = [...tail.matchAll(/^# \{ total: (\d+)(.*?)\}$/gm)].pop();
      const get = (k) => Number((m?.[2].match(new RegExp(`${k}: (\\d+)`)) ?? [])[1] ?? 0);
      // A run that printed no summary, or failed with no failing test (coverage under the
      // thresholds, a crash in tap itself), counts as one failure, so the last line agrees with
      // the exit status.
      const unexplained = !m || (code !== 0 && get('fail') === 0);
      if (unexplained) process.stderr.write(`tap in ${cwd} exited ${code} ${m ? 'although no test failed' : 'without its summary'}\n`);
      resolve({ code: code ?? 1, counts: { passed: get('pass'), failed: get('fail') + (unexplained ? 1 : 0), skipped: get('skip') + get('todo') } });
    });
  });
  return { done, held: () => out };
}
