/**
 * The guest harness booted for real (test/guest/README.md): Debian's kernel with a busybox
 * initramfs built here, its NIC on a tap in a namespace this test owns, commands over the
 * virtio-serial agent. One boot serves every check.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { bootBusyboxGuest, busyboxGuestUnavailable } from '../guest/busybox.js';
import type { Guest } from '../guest/guest.js';
import { findGuestKernel, type GuestKernel } from '../guest/kernel.js';
import { createNetns, deleteNetns, netnsUnavailable, nsExec, nsRun } from '../helpers/netns.js';

const PROGRAMS = ['/usr/sbin/ip', '/usr/bin/ping'];
const skip = netnsUnavailable() || busyboxGuestUnavailable(PROGRAMS);

t.test('a busybox guest on a tap in our namespace', { skip, timeout: 300000 }, async (t) => {
  const kernel = findGuestKernel() as GuestKernel;
  const ns = createNetns('gh');
  let guest: Guest | undefined;
  t.teardown(async () => { await guest?.close(); deleteNetns(ns); });
  guest = await bootBusyboxGuest({
    name: 'harness', kernel, netns: ns, nics: [{ tap: 'gt0' }], programs: PROGRAMS, modules: ['l2tp_eth'],
    rc: '/usr/sbin/ip addr add 192.0.2.2/24 dev eth0\n/usr/sbin/ip link set eth0 up\n',
  });
  const g = guest;
  t.comment(`booted in ${g.bootMs} ms (${g.accel})`);

  t.equal((await g.ok('uname -r')).trim(), kernel.release, 'the installed kernel runs');
  t.match(await g.ok('cat /proc/modules'), /^l2tp_eth /m, 'requested module loaded with its dependencies');

  const r = await g.run('echo out; echo err >&2; exit 7');
  t.same([r.status, r.stdout, r.stderr], [7, 'out\n', 'err\n'], 'status, stdout and stderr apart');
  t.equal(await g.ok('cat', { input: 'line one\nno newline' }), 'line one\nno newline', 'stdin delivered');
  t.same((await g.run("printf '\\000\\001\\377'")).raw.stdout, Buffer.from([0, 1, 255]), 'binary output byte for byte');

  // 1 MiB of random bytes: the host's digest of what arrived equals the guest's.
  const big = await g.run('head -c 1048576 /dev/urandom >/tmp/big; sha256sum </tmp/big >&2; cat /tmp/big');
  t.equal(big.raw.stdout.length, 1 << 20, 'large output complete');
  t.equal(createHash('sha256').update(big.raw.stdout).digest('hex'), big.stderr.split(' ')[0], 'and intact');

  // Commands run side by side: the first waits (bounded) for a file only the second creates.
  const [waiter, maker] = await Promise.all([
    g.run('i=0; while [ ! -e /tmp/flag ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; [ -e /tmp/flag ] && echo saw-flag'),
    g.run('sleep 0.5; touch /tmp/flag'),
  ]);
  t.equal(waiter.stdout, 'saw-flag\n', 'concurrent commands');
  t.equal(maker.status, 0);

  // A timed-out command's whole process group is killed in the guest.
  await t.rejects(g.run('sleep 300 & echo $! >/tmp/sleeper; wait', { timeoutMs: 1500 }), /timed out/);
  const gone = await g.run('i=0; while kill -0 "$(cat /tmp/sleeper)" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -0 "$(cat /tmp/sleeper)"');
  t.not(gone.status, 0, 'its background child is gone too');

  // The NIC: the tap QEMU created in our namespace reaches the guest's eth0, both ways.
  nsExec(ns, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'gt0']);
  nsExec(ns, 'ip', ['link', 'set', 'gt0', 'up']);
  const ping = await g.run('/usr/bin/ping -c 3 -i 0.2 -W 2 192.0.2.1');
  t.match(ping.stdout, / 3 received/, `guest -> namespace: ${ping.stdout.split('\n').slice(-3).join(' ')}`);
  t.match(nsRun(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', '192.0.2.2']).stdout, / 3 received/, 'namespace -> guest');

  const dir = g.dir;
  await g.close();
  t.notOk(g.running, 'QEMU gone after close');
  t.notOk(fs.existsSync(dir), 'its directory removed');
  guest = undefined;
});
