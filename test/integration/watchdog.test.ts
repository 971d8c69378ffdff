/**
 * l2tpd speaks systemd's notification protocol itself, without systemd: a stand-in notification
 * socket (test/helpers/notify.ts, an abstract name as systemd may hand out) collects what the
 * daemon sends. EXTEND_TIMEOUT_USEC= while the config is applied, READY=1 only once the control
 * API answers; WATCHDOG=1 keepalives at a third of WATCHDOG_USEC; when only the data-plane
 * thread is stopped (test/helpers/wedge-thread.c, found by its name), the keepalives stop while
 * the control API still answers, and they resume when the thread does; STOPPING=1 on SIGTERM. The same under real systemd: service-guest.test.ts.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createNetns, deleteNetns, netnsUnavailable, sleep, stopProcess, waitUntil } from '../helpers/netns.js';
import { notifyReceiver, notifyReceiverUnavailable } from '../helpers/notify.js';
import { CLI, DAEMON } from '../helpers/sites.js';
import { shortDir } from '../helpers/tmp.js';
import { buildWedge, wedgeUnavailable } from '../helpers/wedge.js';

const skip = netnsUnavailable() || notifyReceiverUnavailable() || wedgeUnavailable();
const WATCHDOG_MS = 1500;

t.test('readiness, watchdog keepalives that stop with the data plane, stopping', { skip }, async (t) => {
  const dir = shortDir(t);
  const wedge = buildWedge(dir);
  const ns = createNetns('wd');
  t.teardown(() => deleteNetns(ns));
  const notifySocket = `@l2tpd-test-wd-${process.pid}`;
  const rx = await notifyReceiver(t, notifySocket, ns);
  const texts = () => rx.messages;
  const keepalives = () => texts().filter((m) => m === 'WATCHDOG=1').length;

  const socket = path.join(dir, 'l2tpd.sock');
  const log: string[] = [];
  const daemon = spawn('ip', ['netns', 'exec', ns, process.execPath, DAEMON, '--config', path.join(dir, 'l2tpd.json'),
    '--socket', socket, '--metrics-listen', 'off'],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notifySocket, WATCHDOG_USEC: String(WATCHDOG_MS * 1000) } });
  daemon.stdout.on('data', (b: Buffer) => log.push(...b.toString().split('\n').filter(Boolean)));
  daemon.stderr.on('data', (b: Buffer) => log.push(...b.toString().split('\n').filter(Boolean)));
  t.teardown(() => stopProcess(daemon));
  const cli = (...words: string[]) => spawnSync('ip', ['netns', 'exec', ns, process.execPath, CLI, '--socket', socket, ...words],
    { encoding: 'utf8', timeout: 20000 });

  const readyAt = () => texts().findIndex((m) => m.startsWith('READY=1'));
  t.ok(await waitUntil(() => readyAt() >= 0 || daemon.exitCode !== null, 30000, 20), `the daemon notified ${log.join('\n')}`);
  t.equal(texts()[0], 'EXTEND_TIMEOUT_USEC=15000000\nSTATUS=applying the configuration', 'first: more start time, and why');
  t.same(texts().slice(1, readyAt()).filter((m) => m !== 'EXTEND_TIMEOUT_USEC=15000000'), [], 'then only that until ready');
  t.equal(texts()[readyAt()], 'READY=1\nSTATUS=running', 'ready, with a status line');
  t.equal(cli('status').status, 0, 'the control API answers once READY=1 has arrived');

  // `ip netns exec` execs the daemon: its PID is the one we spawned.
  const pid = daemon.pid!;
  t.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'l2tpd', 'the main thread is named l2tpd');
  const threads = readdirSync(`/proc/${pid}/task`).map((tid) => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim());
  t.ok(threads.includes('l2tpd-dataplane'), `one thread is named l2tpd-dataplane (${[...new Set(threads)].join(', ')})`);

  t.ok(await waitUntil(() => keepalives() >= 3, 10000, 50), 'WATCHDOG=1 keepalives arrive');

  // Stop the data-plane thread alone.
  const holder = spawn(wedge, [String(pid), 'l2tpd-dataplane', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (holder.exitCode === null) holder.kill('SIGTERM'); });
  let held = '';
  holder.stdout.on('data', (b: Buffer) => { held += b.toString(); });
  holder.stderr.on('data', (b: Buffer) => { held += b.toString(); });
  t.ok(await waitUntil(() => /^wedged \d+/m.test(held) || holder.exitCode !== null, 10000, 20), `the worker thread is stopped: ${held.trim()}`);
  // A probe answered just before the stop may still turn into one keepalive.
  await sleep(WATCHDOG_MS / 2);
  const atWedge = keepalives();
  await sleep(WATCHDOG_MS * 1.5);
  t.equal(keepalives(), atWedge, `no keepalive for ${WATCHDOG_MS * 1.5} ms while the worker is stopped`);
  t.ok(log.some((l) => l.includes('data plane worker is not answering')), 'the daemon logs why');
  t.equal(cli('status').status, 0, 'the control API (main thread) still answers: only the worker is wedged');

  holder.kill('SIGTERM');
  t.ok(await waitUntil(() => keepalives() > atWedge, WATCHDOG_MS * 3, 50), 'keepalives resume once the worker runs again');
  t.ok(log.some((l) => l.includes('answering again')), 'and that is logged');

  t.equal(await stopProcess(daemon, 'SIGTERM', 10000), 0, 'SIGTERM: exit 0');
  t.ok(await waitUntil(() => texts().includes('STOPPING=1'), 3000, 20), 'STOPPING=1 sent on the way out');
});
