/**
 * The l2tpd service under systemd as PID 1: a Debian 12 guest (systemd 252 on Debian's own
 * kernel, test/guest/debian.ts), l2tpd installed with the commands of the README's "Install"
 * section (read from it), then what an operator would check: start returns only after
 * readiness; the user and exactly the two capabilities the unit grants; a tap, a bridge and an
 * IP-encapsulation socket carrying pings to the guest kernel's own L2TP under the hardening; the
 * config in /etc/l2tpd; l2tpctl for group l2tpd and nobody else; reload applied on return and
 * failing on a refused file; journal tag and priorities; restart; the watchdog restarting a
 * daemon whose data-plane thread alone is stopped; stop; with only l2tpd.socket enabled and
 * /run/l2tpd made as a boot makes it, a member of group l2tpd starting the daemon, and kill -9
 * answered by Restart=on-failure on the same socket. `systemd-analyze security` is reported.
 *
 * The README's commands split between a build machine and the target. `npm pack` and the
 * `npm install -g` line run here, on the host, with `--prefix` into the guest's root: the install
 * compiles the native addon, which under emulation would take minutes, and host and guest are
 * the same Debian release with the same node. The lines after it (l2tpd-install-service,
 * systemctl) run in the guest, as root, under systemd.
 *
 * One boot of a private copy of the image; each check prints what it saw. Runs alone with
 * `npm test -- test/vm/service-guest.test.ts`.
 */
import t from 'tap';
import type tap from 'tap';
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bootDebianGuest, debianGuestUnavailable, debianRootfs, debianRootfsPath, DebianImage, privateCopy } from '../guest/debian.js';
import type { Guest } from '../guest/guest.js';
import { findGuestKernel, type GuestKernel } from '../guest/kernel.js';
import { hasCommand } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { shortDir } from '../helpers/tmp.js';
import { buildWedge, wedgeUnavailable } from '../helpers/wedge.js';

const built = fs.existsSync(path.join(ROOT, 'dist', 'daemon', 'main.js'));
const skip = debianGuestUnavailable() || wedgeUnavailable() || (!hasCommand('npm') && 'npm is not installed')
  || (!built && 'dist/ not built (npm run build)');

/** debootstrap --include: systemd as PID 1 with udev, and the tools the checks use. */
const PACKAGES = ['systemd', 'dbus', 'udev', 'kmod', 'iproute2', 'iputils-ping', 'procps'];
/** Loaded on demand in the guest (udev, the kernel's request_module, modprobe by ip). */
const MODULES = ['tun', 'bridge', 'veth', 'l2tp_eth', 'l2tp_ip', 'l2tp_netlink'];
/** Nothing in these helps a test guest; under emulation each costs seconds of boot. */
const MASKED = ['apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'e2scrub_reap.service', 'fstrim.timer',
  'serial-getty@ttyS0.service', 'modprobe@drm.service', 'modprobe@efi_pstore.service', 'modprobe@fuse.service',
  'modprobe@loop.service', 'modprobe@dm_mod.service', 'sys-kernel-config.mount', 'systemd-logind.service',
  'systemd-update-utmp.service', 'systemd-update-utmp-runlevel.service', 'systemd-journal-flush.service',
  'systemd-random-seed.service', 'dev-hugepages.mount', 'dev-mqueue.mount', 'sys-kernel-debug.mount', 'sys-kernel-tracing.mount'];

/**
 * The one setting the test changes, in a drop-in as an operator would: under emulation on a
 * loaded 2-vCPU machine one start of the daemon took 40-60 s, at the unit's TimeoutStartSec=60s,
 * and a restart that outlasted it was counted as a failed start and retried.
 */
const EMULATION_DROPIN = '# service-guest.test.ts: starts are slow under emulation.\n[Service]\nTimeoutStartSec=300s\n';

// The whole file: image build (first run: debootstrap + addon compile), two boots, ~25 checks.
t.setTimeout(1800000);

/** `key=value` lines a guest script prints, as a map (later keys win). */
function kv(out: string): Record<string, string> {
  const m: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0 && /^[a-z_0-9]+$/.test(line.slice(0, i))) m[line.slice(0, i)] = line.slice(i + 1);
  }
  return m;
}

/**
 * The README's install commands (the sh block of its "Install" section), split where they change
 * machines: the lines before `npm install -g` build the package in a checkout, `npm install -g`
 * and what follows run on the target.
 */
function readmeInstall(): { build: string[]; install: string; target: string[] } {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.search(/^## Install\b/m));
  const block = /```sh\n([^]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README.md: no sh block in the "Install" section');
  const lines = block.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const at = lines.findIndex((l) => /^npm install -g /.test(l));
  if (at < 0 || !lines.slice(0, at).some((l) => /\bnpm pack\b/.test(l))) {
    throw new Error(`README.md's install block is not "npm pack" then "npm install -g": ${lines.join(' / ')}`);
  }
  return { build: lines.slice(0, at), install: lines[at], target: lines.slice(at + 1) };
}

/**
 * The build side of the README here: `npm pack`. `npm ci` is not run: this checkout is installed
 * and dist/ is fresh (npm test built it), so `npm pack` skips `prepare` too, as package.test.ts
 * does.
 */
function pack(tmp: string): { tarball: string; sha: string } {
  const r = spawnSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', tmp], { cwd: ROOT, encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0) throw new Error(`npm pack: ${r.stderr}`);
  const tarball = path.join(tmp, r.stdout.trim().split('\n').pop()!);
  return { tarball, sha: createHash('sha256').update(fs.readFileSync(tarball)).digest('hex') };
}

/**
 * The README's `npm install -g` line as written, run where the tarball is, with `prefix` (the
 * guest's /usr, or a staging copy of it) as its prefix. JOBS: node-gyp compiles the addon's
 * files in parallel.
 */
function npmInstall(install: string, tmp: string, prefix: string): { cmd: string; args: string[]; opts: SpawnOptions } {
  const line = install.replace(/^npm install -g /, `npm install -g --prefix ${prefix} --prefer-offline --no-audit --no-fund `);
  return { cmd: 'sh', args: ['-c', line], opts: { cwd: tmp, env: { ...process.env, PWD: tmp, JOBS: 'max' } } };
}

/** npmInstall() without blocking, so that it overlaps with debootstrap. */
function npmInstallAsync(install: string, tmp: string, prefix: string): Promise<void> {
  const { cmd, args, opts } = npmInstall(install, tmp, prefix);
  fs.mkdirSync(path.join(prefix, 'lib/node_modules'), { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600000 });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${args[1]}: exited ${code}: ${err}`))));
  });
}

/**
 * The README's `npm install -g` into the guest's root (see the header), as an image step keyed by
 * the package and node. `staged`: a prefix it was already installed into (while debootstrap ran),
 * copied in as it is; otherwise the install runs here.
 */
function installStep(image: DebianImage, tmp: string, install: string, packed: { sha: string }, staged?: string): DebianImage {
  return image.step('npm-install-g', `${packed.sha}:${process.version}:${install}`, (root) => {
    const usr = path.join(root, 'usr');
    if (staged) {
      const r = spawnSync('cp', ['-a', `${staged}/.`, `${usr}/`], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`cp -a ${staged}/. ${usr}/: ${r.stderr}`);
      return;
    }
    fs.mkdirSync(path.join(usr, 'lib/node_modules'), { recursive: true });
    const { cmd, args, opts } = npmInstall(install, tmp, usr);
    const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', timeout: 600000 });
    if (r.status !== 0) throw new Error(`${args[1]}: ${r.stderr}${r.stdout}`);
  });
}

/** Shell functions every guest script starts with. */
const PRELUDE = [
  'mainpid() { systemctl show -p MainPID --value l2tpd; }',
  '# The session IDs l2tpctl shows, sorted, on one line.',
  'sessions() { l2tpctl -j show session 2>/dev/null | grep -o \'"session_id": *[0-9]*\' | grep -o \'[0-9]*$\' | sort -n | xargs; }',
  'pings() { ping -c 3 -i 0.3 -W 2 203.0.113.2 | grep -o \'[0-9]* received\'; }',
  '# A new main process, ready (Type=notify: active means READY=1 arrived).',
  'restarted() { [ "$(mainpid)" != "$1" ] && [ "$(mainpid)" != 0 ] && [ "$(systemctl is-active l2tpd)" = active ]; }',
  '# wait_for SECONDS LABEL COMMAND...: until COMMAND succeeds or SECONDS pass; prints LABEL_ok, LABEL_s.',
  'wait_for() {',
  '  limit=$1; label=$2; shift 2; t0=$(date +%s.%N); end=$(( $(date +%s) + limit )); ok=0',
  '  while :; do if "$@"; then ok=1; break; fi; [ "$(date +%s)" -ge "$end" ] && break; sleep 0.2; done',
  '  echo "${label}_ok=$ok"; echo "${label}_s=$(echo "$(date +%s.%N) $t0" | awk \'{printf "%.1f", $1 - $2}\')"',
  '}',
  '',
].join('\n');

/**
 * Reload: a second session in the file; `systemctl reload` must have applied it when it returns
 * (its interface exists), must fail for a file the daemon refuses and leave the state as it was.
 */
const RELOAD = `cp /etc/l2tpd/l2tpd.json /root/good.json
sed 's/"sessions": \\[/"sessions": [{"tunnel_id": 10, "session_id": 3, "peer_session_id": 4, "name": "pw1"},/' /root/good.json >/root/two.json
# As an operator replaces it: readable by the daemon (0640 l2tpd), swapped in whole.
put() { install -o l2tpd -g l2tpd -m 0640 "$1" /etc/l2tpd/l2tpd.json.new && mv /etc/l2tpd/l2tpd.json.new /etc/l2tpd/l2tpd.json; }
pw1() { cat /sys/class/net/pw1/mtu 2>/dev/null || echo missing; }
put /root/two.json
systemctl reload l2tpd 2>/tmp/good.err; echo "good_rc=$?"; echo "good_err=$(head -1 /tmp/good.err)"
echo "good_pw1=$(pw1)"
sed 's/"session_id": 3,/"session_id": 3, "mtu": 99999,/' /root/two.json >/root/bad.json; put /root/bad.json
systemctl reload l2tpd 2>/tmp/bad.err; echo "bad_rc=$?"; echo "bad_err=$(head -1 /tmp/bad.err)"
echo "bad_active=$(systemctl is-active l2tpd)"
echo "bad_pw1=$(pw1)"
put /root/good.json
systemctl reload l2tpd 2>/tmp/restore.err; echo "restore_rc=$?"; echo "restore_err=$(head -1 /tmp/restore.err)"
echo "restore_pw1=$(pw1)"
echo "journal_tail=$(journalctl -b -u l2tpd -n 6 -o cat --no-pager | tr '\\n' '|')"`;

/** Tries of the first l2tpctl on a socket nobody serves yet (each waits up to l2tpctl's 30 s). */
const ACTIVATION_TRIES = 5;

/**
 * The first l2tpctl on a socket nobody serves yet starts the daemon. Under emulation that start
 * can take longer than l2tpctl waits for an answer (30 s), so a call may time out and is tried
 * again (at most ACTIVATION_TRIES); it must never be refused (EACCES, ECONNREFUSED: no retry),
 * and one must be answered: a daemon that never answers fails.
 */
const FIRST_CALL = `tries=0
while :; do
  tries=$((tries + 1))
  runuser -u op -- l2tpctl status >/tmp/first.out 2>&1; first_rc=$?
  first_err=$(grep -m1 cannot /tmp/first.out)
  [ "$first_rc" = 0 ] && break
  case "$first_err" in *ETIMEDOUT*) [ "$tries" -lt ${ACTIVATION_TRIES} ] || break ;; *) break ;; esac
done
echo "first_rc=$first_rc"; echo "first_err=$first_err"; echo "first_tries=$tries"`;

function activated(t: tap.Test, kv: Record<string, string>, who: string): void {
  t.equal(kv.first_rc, '0', `${who} reaches the socket, and is answered once the daemon is up `
    + `(call ${kv.first_tries} of at most ${ACTIVATION_TRIES}${kv.first_err ? `; before: ${kv.first_err}` : ''})`);
}

/** The journal of the running boot for one tag, one JSON object per line. */
const journal = (tag: string) => `journalctl -b -o json --no-pager -t ${tag}`;

interface JournalEntry { MESSAGE: string; PRIORITY: string; SYSLOG_IDENTIFIER?: string }
function entries(out: string): JournalEntry[] {
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as JournalEntry)
    .map((e) => ({ ...e, MESSAGE: Array.isArray(e.MESSAGE) ? Buffer.from(e.MESSAGE as unknown as number[]).toString() : e.MESSAGE }));
}

t.test('l2tpd under systemd as PID 1, installed as the README says', { skip }, async (t) => {
  const started = Date.now();
  const lap = (what: string) => t.comment(`${what}: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const kernel = findGuestKernel() as GuestKernel;
  const tmp = shortDir(t);
  const steps = readmeInstall();
  const packed = pack(tmp);
  // A cold cache: debootstrap takes minutes, mostly waiting on the mirror and dpkg; the install
  // (which compiles the addon) runs meanwhile, into a staging prefix copied into the image.
  const rootfsSpec = { include: PACKAGES };
  const staged = fs.existsSync(debianRootfsPath(rootfsSpec)) ? undefined : path.join(tmp, 'staged-usr');
  const [rootfs] = await Promise.all([
    debianRootfs(rootfsSpec).then((file) => { lap('rootfs'); return file; }),
    staged && npmInstallAsync(steps.install, tmp, staged).then(() => lap('npm install -g (staged)')),
  ]);
  const image = installStep(new DebianImage(rootfs, kernel).modules(MODULES).program(process.execPath).mask(MASKED)
    .text('/etc/systemd/system/l2tpd.service.d/emulation.conf', EMULATION_DROPIN), tmp, steps.install, packed, staged).build();
  lap('image');
  const disk = privateCopy(image, tmp);
  const wedge = fs.readFileSync(buildWedge(tmp));

  let guest: Guest | undefined;
  t.teardown(async () => { await guest?.close(); });
  const boot = async (label: string) => {
    guest = await bootDebianGuest({ name: 'systemd', kernel, disk, cpus: 2 });
    t.comment(`${label}: agent up ${(guest.bootMs / 1000).toFixed(1)} s after QEMU started (${guest.accel})`);
    const state = (await guest.run('systemctl is-system-running --wait', { timeoutMs: 180000 })).stdout.trim();
    lap(`${label}: system ${state}`);
    // Where a boot's time goes, for whoever makes it faster.
    t.comment((await guest.run('systemd-analyze time; systemd-analyze blame --no-pager | head -8')).stdout.trim());
    return guest;
  };
  const sh = async (g: Guest, script: string, timeoutMs = 300000) => {
    const r = await g.run(`${PRELUDE}${script}`, { timeoutMs });
    return { ...r, kv: kv(r.stdout) };
  };

  const g = await boot('boot');
  const versions = kv(await g.ok('echo "systemd=$(systemctl --version | head -1)"; echo "kernel=$(uname -r)"'));
  t.match(versions.systemd, /^systemd 252 /, `systemd as PID 1: ${versions.systemd}`);
  t.equal(versions.kernel, kernel.release, `Debian's kernel ${versions.kernel}`);

  // ---------------------------------------------------------------- install: the target's steps
  // The README's lines after npm install -g, in order; the last one starts the service.
  for (const line of steps.target.slice(0, -1)) {
    const r = await g.run(`${line} 2>&1`, { timeoutMs: 300000 });
    t.equal(r.status, 0, `${line}:\n${r.stdout}`);
  }
  const startLine = steps.target[steps.target.length - 1];
  t.match(startLine, /^systemctl (enable --now|start) l2tpd$/, `the README ends with starting the service: ${startLine}`);
  const start = await sh(g, `${startLine} 2>&1; echo "rc=$?"
l2tpctl status >/dev/null 2>&1; echo "status_rc=$?"
echo "status_text=$(systemctl show -p StatusText --value l2tpd)"
systemctl show -p ActiveState -p Type -p NotifyAccess -p WatchdogUSec -p User l2tpd | tr A-Z a-z`);
  lap('installed and started');
  t.equal(start.kv.rc, '0', `${startLine} ${start.stdout}`);
  t.equal(start.kv.activestate, 'active');
  t.equal(start.kv.status_rc, '0', 'the control API answers as soon as systemctl start returns: start waited for readiness');
  t.equal(start.kv.status_text, 'running', 'STATUS=running (sent with READY=1) was in by then');
  t.same([start.kv.type, start.kv.notifyaccess], ['notify', 'main'], 'Type=notify, NotifyAccess=main: READY=1 came from the main process');

  // ---------------------------------------------------------------- identity and capabilities
  const id = await sh(g, `pid=$(mainpid)
grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$pid/status | sed 's/:\\s*/=/; s/\\s\\+/ /g' | tr A-Z a-z
echo "l2tpd_uid=$(id -u l2tpd)"; echo "l2tpd_gid=$(id -g l2tpd)"
echo "comm=$(cat /proc/$pid/comm)"
echo "threads=$(cat /proc/$pid/task/*/comm | sort -u | tr '\\n' ' ')"`);
  const uid = id.kv.l2tpd_uid.trim();
  t.equal(id.kv.uid, `${uid} ${uid} ${uid} ${uid}`, `runs as user l2tpd (uid ${uid}), real, effective, saved and fs`);
  t.equal(id.kv.gid.split(' ')[0], id.kv.l2tpd_gid, 'and group l2tpd');
  // CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
  for (const set of ['capprm', 'capeff', 'capbnd', 'capamb']) t.equal(id.kv[set], '0000000000003000', `${set}: exactly CAP_NET_ADMIN and CAP_NET_RAW`);
  t.equal(id.kv.nonewprivs, '1', 'NoNewPrivileges');
  t.equal(id.kv.seccomp, '2', 'a seccomp filter (SystemCallFilter=)');
  t.equal(id.kv.comm, 'l2tpd', 'the process is named l2tpd (ps, top)');
  t.match(id.kv.threads, /\bl2tpd-dataplane\b/, `its data-plane thread is named: ${id.kv.threads}`);

  // ---------------------------------------------------------------- the data path under the hardening
  // The guest kernel's own L2TP (ip l2tp) in a namespace is the peer, over a veth, with IP
  // encapsulation: l2tpd needs CAP_NET_RAW for the raw protocol-115 socket, CAP_NET_ADMIN and
  // /dev/net/tun (DeviceAllow=) for the tap, rtnetlink for the bridge.
  const dataPath = await sh(g, `set -u
ip netns add peer
ip link add ul0 type veth peer name ul1 netns peer
ip addr add 192.0.2.1/24 dev ul0; ip link set ul0 up
ip -n peer link set lo up; ip -n peer addr add 192.0.2.2/24 dev ul1; ip -n peer link set ul1 up
ip -n peer l2tp add tunnel tunnel_id 20 peer_tunnel_id 10 encap ip local 192.0.2.2 remote 192.0.2.1
ip -n peer l2tp add session name l2tpeth0 tunnel_id 20 session_id 2 peer_session_id 1
ip -n peer addr add 203.0.113.2/24 dev l2tpeth0; ip -n peer link set l2tpeth0 up
l2tpctl add tunnel tunnel_id 10 peer_tunnel_id 20 encap ip local 192.0.2.1 remote 192.0.2.2; echo "tunnel_rc=$?"
l2tpctl add session name pw0 tunnel_id 10 session_id 1 peer_session_id 2 bridge br0; echo "session_rc=$?"
ip addr add 203.0.113.1/24 dev br0; ip link set br0 up
echo "tap=$(ip -d link show pw0 | grep -o 'tun type tap')"
echo "master=$(ip -o link show pw0 | grep -o 'master [^ ]*')"
echo "bridge=$(ip -d link show br0 | grep -o '^ *bridge ' | tr -d ' ')"
echo "tun_module=$(grep -c '^tun ' /proc/modules)"
echo "ping=$(pings)"
echo "ifindex=$(cat /sys/class/net/pw0/ifindex)"
echo "conf_owner=$(stat -c '%U:%G %a' /etc/l2tpd)"
echo "file_owner=$(stat -c '%U:%G' /etc/l2tpd/l2tpd.json)"
echo "file_sessions=$(grep -c '"session_id": 1' /etc/l2tpd/l2tpd.json)"`);
  lap('data path');
  t.same([dataPath.kv.tunnel_rc, dataPath.kv.session_rc], ['0', '0'], `l2tpctl add tunnel (encap ip) and session (bridge br0) ${dataPath.stderr}`);
  t.equal(dataPath.kv.tap, 'tun type tap', 'pw0 is a tap');
  t.equal(dataPath.kv.master, 'master br0', 'enslaved to br0');
  t.equal(dataPath.kv.bridge, 'bridge', 'br0 was created, a bridge');
  t.equal(dataPath.kv.tun_module, '1', 'the tun module was loaded on demand');
  t.equal(dataPath.kv.ping, '3 received', 'pings cross the pseudowire to the guest kernel\'s L2TP and back');
  t.equal(dataPath.kv.conf_owner, 'l2tpd:l2tpd 750', '/etc/l2tpd: l2tpd:l2tpd 0750');
  t.equal(dataPath.kv.file_owner, 'l2tpd:l2tpd', 'the config file was rewritten by the daemon (as l2tpd)');
  t.equal(dataPath.kv.file_sessions, '1', 'and holds the session');

  // ---------------------------------------------------------------- who may use l2tpctl
  // Root's l2tpctl calls are every other check's.
  const accessRun = sh(g, `useradd --create-home --groups l2tpd op; useradd --create-home outsider
runuser -u op -- l2tpctl status >/dev/null 2>&1; echo "op_rc=$?"
runuser -u outsider -- l2tpctl status >/tmp/outsider.err 2>&1; echo "outsider_rc=$?"; echo "outsider_err=$(head -1 /tmp/outsider.err)"
echo "socket=$(stat -c '%U:%G %a' /run/l2tpd/l2tpd.sock)"`);
  // Runs alongside the reload below (the guest has two CPUs; neither touches what the other reads).
  const reloadRun = sh(g, RELOAD);
  const [access, reload] = await Promise.all([accessRun, reloadRun]);
  t.equal(access.kv.op_rc, '0', 'a member of group l2tpd may use l2tpctl');
  t.equal(access.kv.outsider_rc, '1', 'anyone else is refused');
  t.match(access.kv.outsider_err, /EACCES|permission denied/i, `with the reason: ${access.kv.outsider_err}`);
  t.equal(access.kv.socket, 'l2tpd:l2tpd 660', 'the socket the daemon made: 0660, group l2tpd');

  // ---------------------------------------------------------------- reload (RELOAD, run above)
  lap('reload');
  t.equal(reload.kv.good_rc, '0', `systemctl reload of a good file exits 0 ${reload.kv.good_err}`);
  t.match(reload.kv.good_pw1, /^\d+$/, `and the new session's interface exists the moment it returns (pw1, MTU ${reload.kv.good_pw1})`);
  t.not(reload.kv.bad_rc, '0', `a refused file fails systemctl reload (${reload.kv.bad_err})`);
  t.equal(reload.kv.bad_active, 'active', 'the daemon keeps running');
  t.equal(reload.kv.bad_pw1, reload.kv.good_pw1, 'with its state unchanged (pw1 still there, its MTU as before)');
  t.same([reload.kv.restore_rc, reload.kv.restore_pw1], ['0', 'missing'],
    `the original file reloads, session 3 gone ${reload.kv.restore_err} ${reload.kv.journal_tail}`);

  // ---------------------------------------------------------------- journal: tag and priorities
  // A warning to look for: the session interface deleted behind the daemon's back is restored.
  await g.ok(`${PRELUDE}ip link del pw0; wait_for 60 restored ip link show pw0`, { timeoutMs: 120000 });
  const tagged = entries(await g.ok(journal('l2tpd')));
  const find = (text: string) => tagged.find((e) => e.MESSAGE.includes(text));
  t.ok(tagged.length > 0, `journalctl -t l2tpd finds the daemon's lines (${tagged.length})`);
  t.equal(find('"msg":"l2tpd ready"')?.PRIORITY, '6', 'ready: info (6)');
  t.equal(find('restored:')?.PRIORITY, '4', 'an interface restored: warning (4)');
  t.equal(find('configuration reload refused')?.PRIORITY, '3', 'a refused reload: error (3)');
  t.match(find('configuration reload refused')?.MESSAGE, /mtu/, 'naming the field');
  t.same(entries(await g.ok(journal('node'))).filter((e) => e.MESSAGE.includes('"msg"')), [], 'none tagged node');

  // ---------------------------------------------------------------- restart
  const restart = await sh(g, `old=$(mainpid); systemctl restart l2tpd; echo "rc=$?"; new=$(mainpid)
[ "$old" != "$new" ] && echo "new_pid=1"
echo "master=$(ip -o link show pw0 | grep -o 'master [^ ]*')"
echo "ping=$(pings)"
echo "journal=$(journalctl -b -u l2tpd -n 12 -o short-monotonic --no-pager | cut -c1-220 | tr '\n' '|')"`);
  lap('restart');
  t.equal(restart.kv.rc, '0', `systemctl restart ${restart.kv.rc === '0' ? '' : restart.kv.journal}`);
  t.equal(restart.kv.new_pid, '1', 'a new main process');
  t.equal(restart.kv.master, 'master br0', 'the session interface is still in br0');
  t.equal(restart.kv.ping, '3 received', 'and forwards again');

  // ---------------------------------------------------------------- watchdog: a wedged data plane
  // Only the data-plane thread is stopped (ptrace, by its name); the main thread runs on, and
  // withholds the keepalives. watchdog.test.ts shows the same without systemd, keepalive by keepalive.
  await g.ok('cat >/run/wedge-thread && chmod 0755 /run/wedge-thread', { input: wedge });
  // Slow under emulation and independent of the rest: runs while the guest waits for the watchdog.
  const securityRun = g.run('systemd-analyze security --no-pager l2tpd.service | tail -1', { timeoutMs: 600000 });
  const wedged = await sh(g, `old=$(mainpid)
/run/wedge-thread "$old" l2tpd-dataplane 300 >/run/wedge.out 2>&1 &
wait_for 30 stopped grep -q wedged /run/wedge.out
echo "wedge_out=$(head -1 /run/wedge.out)"
wait_for 240 back restarted "$old"
echo "nrestarts=$(systemctl show -p NRestarts --value l2tpd)"
echo "journal=$(journalctl -b -u l2tpd -n 12 -o short-monotonic --no-pager | cut -c1-220 | tr '\n' '|')"
echo "timeout_logged=$(journalctl -b -u l2tpd --no-pager | grep -c 'Watchdog timeout')"
echo "withheld_logged=$(journalctl -b -t l2tpd -o cat --no-pager | grep -c 'data plane worker is not answering')"
echo "ping=$(pings)"`);
  lap('watchdog');
  t.equal(wedged.kv.stopped_ok, '1', `the data-plane thread is stopped (${wedged.kv.wedge_out})`);
  t.equal(wedged.kv.back_ok, '1', `systemd's watchdog killed and restarted l2tpd: active again after ${wedged.kv.back_s} s (WatchdogSec=30s)`);
  // One restart is enough; under a heavily loaded emulator a start can outlast TimeoutStartSec=
  // and take another (the journal says so).
  t.ok(Number(wedged.kv.nrestarts) >= 1, `NRestarts=${wedged.kv.nrestarts}${wedged.kv.nrestarts === '1' ? '' : ` ${wedged.kv.journal}`}`);
  t.not(wedged.kv.timeout_logged, '0', 'systemd logged the watchdog timeout');
  t.not(wedged.kv.withheld_logged, '0', 'the daemon logged why its keepalives stopped');
  t.equal(wedged.kv.ping, '3 received', 'forwarding again');

  // ---------------------------------------------------------------- systemd-analyze security
  const security = (await securityRun).stdout;
  const exposure = /Overall exposure level for l2tpd\.service: ([\d.]+) (\S+)/.exec(security);
  t.ok(exposure, `systemd-analyze security: ${security.trim()}`);
  t.ok(Number(exposure?.[1]) < 3, `exposure ${exposure?.[1]} ${exposure?.[2]} stays below 3`);

  // ---------------------------------------------------------------- stop, then socket activation
  const stop = await sh(g, `systemctl stop l2tpd; echo "rc=$?"
echo "state=$(systemctl is-active l2tpd)"
echo "result=$(systemctl show -p Result --value l2tpd)"; echo "exit=$(systemctl show -p ExecMainStatus --value l2tpd)"
echo "stopped_logged=$(journalctl -b -t l2tpd -o cat --no-pager | grep -c '"msg":"stopped"')"`);
  lap('stop');
  t.equal(stop.kv.rc, '0', 'systemctl stop');
  t.same([stop.kv.state, stop.kv.result, stop.kv.exit], ['inactive', 'success', '0'], 'stopped cleanly: inactive, success, exit 0');
  t.not(stop.kv.stopped_logged, '0', 'the daemon logged "stopped"');

  // Only the socket enabled, as l2tpd.socket's comment suggests, then what a boot does for it, in
  // a boot's order, instead of a second boot (a boot costs minutes under emulation): /run is
  // empty, systemd-tmpfiles --boot applies the tmpfiles.d entries (systemd-tmpfiles-setup.service,
  // before sysinit.target; --prefix keeps it to /run/l2tpd), then sockets.target starts the
  // socket, which creates its directory if nothing did.
  const activation = await sh(g, `systemctl disable --now l2tpd.service l2tpd.socket 2>&1; systemctl enable l2tpd.socket 2>&1
rm -rf /run/l2tpd
systemd-tmpfiles --create --boot --prefix=/run/l2tpd; echo "tmpfiles_rc=$?"
systemctl start l2tpd.socket; echo "socket_rc=$?"
echo "service=$(systemctl is-active l2tpd.service)"; echo "socket=$(systemctl is-active l2tpd.socket)"
echo "enabled=$(systemctl is-enabled l2tpd.service) $(systemctl is-enabled l2tpd.socket)"
echo "dir=$(stat -c '%U:%G %a' /run/l2tpd)"; echo "sock=$(stat -c '%U:%G %a' /run/l2tpd/l2tpd.sock)"
${FIRST_CALL}
wait_for 120 up systemctl is-active --quiet l2tpd.service
runuser -u op -- l2tpctl status >/tmp/op.out 2>&1; echo "op_rc=$?"; echo "op_err=$(head -1 /tmp/op.out)"
echo "op_tunnels=$(grep -c '^tunnels: 1$' /tmp/op.out)"; echo "op_sessions=$(grep -c '^sessions: 1$' /tmp/op.out)"
l2tpctl status >/dev/null 2>&1; echo "root_rc=$?"
runuser -u outsider -- l2tpctl status >/dev/null 2>&1; echo "outsider_rc=$?"`, 300000 + ACTIVATION_TRIES * 30000);
  lap('socket activation');
  t.same([activation.kv.tmpfiles_rc, activation.kv.socket_rc], ['0', '0'], 'systemd-tmpfiles --boot, then l2tpd.socket started');
  t.same([activation.kv.service, activation.kv.socket], ['inactive', 'active'], 'l2tpd.socket listening, the daemon not running');
  t.equal(activation.kv.enabled, 'disabled enabled', 'only the socket enabled');
  t.equal(activation.kv.dir, 'l2tpd:l2tpd 750', '/run/l2tpd made by tmpfiles.d at boot, owned by l2tpd');
  t.equal(activation.kv.sock, 'root:l2tpd 660', 'the socket: root:l2tpd 0660');
  activated(t, activation.kv, 'a member of group l2tpd');
  t.equal(activation.kv.up_ok, '1', `and that started the daemon (active ${activation.kv.up_s} s after the call was answered)`);
  t.equal(activation.kv.op_rc, '0', `which answers the member ${activation.kv.op_err}`);
  t.same([activation.kv.op_tunnels, activation.kv.op_sessions], ['1', '1'], 'with the tunnel and session of its config');
  t.equal(activation.kv.root_rc, '0', 'and root');
  t.equal(activation.kv.outsider_rc, '1', 'others are still refused');

  // Restart=on-failure, with the socket held by systemd across the crash.
  const killed = await sh(g, `ino=$(stat -c %i /run/l2tpd/l2tpd.sock); old=$(mainpid)
echo "nrestarts_before=$(systemctl show -p NRestarts --value l2tpd)"; kill -9 "$old"
wait_for 180 back restarted "$old"
echo "nrestarts=$(systemctl show -p NRestarts --value l2tpd)"
[ "$(stat -c %i /run/l2tpd/l2tpd.sock)" = "$ino" ] && echo "same_socket=1"
runuser -u op -- l2tpctl status >/dev/null 2>&1; echo "op_rc=$?"`);
  lap('kill -9');
  t.equal(killed.kv.back_ok, '1', `kill -9: systemd restarted l2tpd, active again after ${killed.kv.back_s} s`);
  t.equal(Number(killed.kv.nrestarts), Number(killed.kv.nrestarts_before) + 1, `NRestarts ${killed.kv.nrestarts_before} → ${killed.kv.nrestarts}`);
  t.equal(killed.kv.same_socket, '1', 'the control socket is the same one (systemd holds it)');
  t.equal(killed.kv.op_rc, '0', 'and answers the group member');

  await g.close();
  guest = undefined;
  lap('done');
});
