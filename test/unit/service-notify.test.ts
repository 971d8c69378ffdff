/**
 * The daemon's sd_notify side (src/daemon/service.ts) and the addon calls under it: datagrams
 * really arrive on a path socket and on an abstract (@) one (test/helpers/notify.ts), thread
 * names are set per thread, and the watchdog sends keepalives only while its probe answers.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { native } from '../../src/native/index.js';
import { extendStartTimeout, ServiceNotifier, startWatchdog } from '../../src/daemon/service.js';
import { sleep, waitUntil } from '../helpers/netns.js';
import { notifyReceiver, notifyReceiverUnavailable } from '../helpers/notify.js';
import { ROOT } from '../helpers/paths.js';
import { shortDir } from '../helpers/tmp.js';

interface Logged { level: 'warn' | 'error'; obj: object; msg: string }
function recorder(): { log: { warn(o: object, m: string): void; error(o: object, m: string): void }; lines: Logged[] } {
  const lines: Logged[] = [];
  return { lines, log: { warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }), error: (obj, msg) => lines.push({ level: 'error', obj, msg }) } };
}

t.test('notifySend: one datagram to a path socket and to an abstract one', { skip: notifyReceiverUnavailable() }, async (t) => {
  const dir = shortDir(t);
  const pathSock = path.join(dir, 'notify');
  const abstract = `@l2tpd-test-notify-${process.pid}`;
  const a = await notifyReceiver(t, pathSock);
  const b = await notifyReceiver(t, abstract);
  native.notifySend(pathSock, 'READY=1\nSTATUS=running');
  native.notifySend(abstract, 'WATCHDOG=1');
  t.ok(await waitUntil(() => a.messages.length > 0 && b.messages.length > 0, 5000, 20), 'both arrived');
  t.same(a.messages, ['READY=1\nSTATUS=running'], 'path socket: the message, newlines kept');
  t.same(b.messages, ['WATCHDOG=1'], 'abstract socket: "@" is the leading NUL');
});

t.test('notifySend refuses what sd_notify would not send to', async (t) => {
  const dir = shortDir(t);
  t.throws(() => native.notifySend(path.join(dir, 'missing'), 'READY=1'), { code: 'ENOENT', syscall: 'sendto' }, 'no such socket');
  t.throws(() => native.notifySend('relative/notify', 'READY=1'), { code: 'EAFNOSUPPORT' }, 'neither a path nor @name');
  t.throws(() => native.notifySend(`/${'x'.repeat(120)}`, 'READY=1'), { code: 'ENAMETOOLONG' }, 'longer than sun_path');
  t.throws(() => native.notifySend(42 as unknown as string, 'READY=1'), TypeError);
});

t.test('setThreadName names the calling thread only', async (t) => {
  const comms = () => readdirSync('/proc/self/task').map((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());
  const mainBefore = readFileSync('/proc/self/comm', 'utf8').trim();
  const addon = path.join(ROOT, 'native-bindings', 'build', 'Release', 'l2tpd_native.node');
  const w = new Worker(`
    const { parentPort } = require('node:worker_threads');
    const addon = require(${JSON.stringify(addon)});
    addon.setThreadName('l2tpd-test-nm');
    let tooLong = '';
    try { addon.setThreadName('sixteen-bytes-xx'); } catch (e) { tooLong = e.code; }
    parentPort.postMessage(tooLong);
    setTimeout(() => {}, 60000);
  `, { eval: true });
  t.teardown(() => w.terminate());
  const tooLong = await new Promise<string>((resolve) => w.once('message', resolve));
  t.ok(comms().includes('l2tpd-test-nm'), 'a thread of this process carries the name');
  t.equal(readFileSync('/proc/self/comm', 'utf8').trim(), mainBefore, 'the main thread keeps its own');
  t.equal(tooLong, 'EINVAL', 'a name the kernel would cut (16 bytes) is refused');
});

t.test('ServiceNotifier: silent outside systemd; one datagram per call; failures logged once', async (t) => {
  const sent: Array<[string, string]> = [];
  const { log, lines } = recorder();
  const off = new ServiceNotifier((s, m) => sent.push([s, m]), log, {});
  t.notOk(off.enabled);
  t.equal(off.notify('READY=1'), false, 'no NOTIFY_SOCKET: nothing sent');
  t.equal(off.watchdogMs(), undefined);

  const on = new ServiceNotifier((s, m) => sent.push([s, m]), log, { NOTIFY_SOCKET: '/run/systemd/notify' });
  t.equal(on.notify('READY=1', 'STATUS=running'), true);
  t.same(sent, [['/run/systemd/notify', 'READY=1\nSTATUS=running']]);

  let fail = true;
  const flaky = new ServiceNotifier(() => { if (fail) throw Object.assign(new Error('sendto EAGAIN'), { code: 'EAGAIN' }); }, log, { NOTIFY_SOCKET: '@x' });
  t.equal(flaky.notify('WATCHDOG=1'), false);
  t.equal(flaky.notify('WATCHDOG=1'), false);
  t.same(lines.map((l) => [l.level, l.msg]), [['error', 'cannot notify the service manager']], 'logged once, not per keepalive');
  fail = false;
  t.equal(flaky.notify('WATCHDOG=1'), true);
  t.same(lines.map((l) => l.level), ['error', 'warn'], 'recovery logged');
});

t.test('watchdogMs: WATCHDOG_USEC for this process only', async (t) => {
  const n = (env: NodeJS.ProcessEnv) => new ServiceNotifier(() => undefined, recorder().log, { NOTIFY_SOCKET: '@x', ...env }, 1234).watchdogMs();
  t.equal(n({ WATCHDOG_USEC: '30000000' }), 30000, 'no WATCHDOG_PID: ours');
  t.equal(n({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1234' }), 30000);
  t.equal(n({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '99' }), undefined, 'meant for another process');
  t.equal(n({ WATCHDOG_USEC: 'soon' }), undefined);
  t.equal(n({ WATCHDOG_USEC: '0' }), undefined);
  t.equal(n({}), undefined);
  t.equal(new ServiceNotifier(() => undefined, recorder().log, { WATCHDOG_USEC: '30000000' }).watchdogMs(), undefined, 'no NOTIFY_SOCKET, no watchdog');
});

t.test('startWatchdog: keepalives while the probe answers, none while it does not', async (t) => {
  const sent: string[] = [];
  const { log, lines } = recorder();
  const notifier = new ServiceNotifier((_s, m) => sent.push(m), log, { NOTIFY_SOCKET: '@x' });
  let answering = true;
  let release: (() => void) | undefined;
  let probes = 0;
  const probe = () => {
    probes++;
    if (answering) return Promise.resolve();
    return new Promise<void>((resolve) => { release = resolve; });
  };
  const wd = startWatchdog({ notifier, intervalMs: 150, probe, log });
  t.teardown(() => wd.stop());
  t.ok(await waitUntil(() => sent.length >= 3, 5000, 20), 'keepalives flow while the probe answers');
  t.ok(sent.every((m) => m === 'WATCHDOG=1'));

  answering = false;
  await waitUntil(() => release !== undefined);
  const atWedge = sent.length;
  const probesAtWedge = probes;
  t.ok(await waitUntil(() => lines.some((l) => l.level === 'error'), 5000, 20), 'the silence is logged');
  await sleep(400);
  t.equal(sent.length, atWedge, 'no keepalive while the probe is unanswered');
  t.equal(probes, probesAtWedge, 'and no second probe piles up behind it');
  t.equal(lines.filter((l) => l.level === 'error').length, 1, 'logged once');

  answering = true;
  release!();
  t.ok(await waitUntil(() => sent.length > atWedge + 1, 5000, 20), 'keepalives resume once it answers');
  t.ok(lines.some((l) => l.level === 'warn' && /answering again/.test(l.msg)), 'recovery logged');
});

t.test('extendStartTimeout: EXTEND_TIMEOUT_USEC every period while the start runs, none after', async (t) => {
  const sent: string[] = [];
  const notifier = new ServiceNotifier((_s, m) => sent.push(m), recorder().log, { NOTIFY_SOCKET: '@x' });
  const extending = extendStartTimeout(notifier, 50);
  t.teardown(() => extending.stop());
  t.same(sent, ['EXTEND_TIMEOUT_USEC=150000\nSTATUS=applying the configuration'], 'at once: three periods (µs) granted, and why');
  t.ok(await waitUntil(() => sent.length >= 4, 5000, 10), 'then one every period');
  t.ok(sent.slice(1).every((m) => m === 'EXTEND_TIMEOUT_USEC=150000'), 'each granting three periods again');
  extending.stop();
  const atStop = sent.length;
  await sleep(200);
  t.equal(sent.length, atStop, 'none once the start is over');

  const quiet: string[] = [];
  const outside = extendStartTimeout(new ServiceNotifier((_s, m) => quiet.push(m), recorder().log, {}), 50);
  await sleep(150);
  outside.stop();
  t.same(quiet, [], 'nothing outside systemd');
});
