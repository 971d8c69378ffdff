/**
 * `vlan ID dev TRUNK` live, on a kernel with 802.1Q: l2tpd (this checkout's dist/, the host's
 * node) runs inside a guest booting Debian's kernel (test/guest/hostroot.ts), one daemon per
 * site namespace. Each site has a trunk `eth1` whose far end, in the guest's root namespace,
 * carries tagged frames from host namespaces (one per VLAN and site). l2tpctl runs on this host;
 * its socket reaches each daemon through test/guest/forward.ts, so only the daemons pay for
 * node under emulation.
 *
 *            ha5 ha6 ha7 (VLAN interfaces on ta)       hb5 hb6 hb7 (on tb)
 *                   ta ── eth1 [sa: l2tpd A] ul0 ══ ul0 [sb: l2tpd B] eth1 ── tb
 *
 * VLAN 5: created eth1.5 + brvlan5, default MTU 1446, hosts at 1446. VLAN 6: `mtu 1500` over the
 * 1500-byte underlay, hosts at 1500; with VLAN 5 one tunnel's two sessions on one trunk.
 * VLAN 7: at A a pre-existing eth1.7 (MTU 1500) and bridge br7, hosts at 1500 (the bridge drops
 * their full-size frames: the warning). VLAN 8: at A a pre-existing eth1.8 already in br8.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SocketForward } from '../guest/forward.js';
import type { Guest } from '../guest/guest.js';
import { bootHostRootGuest, checkoutRuntime, hostRootGuestUnavailable } from '../guest/hostroot.js';
import { findGuestKernel, type GuestKernel } from '../guest/kernel.js';
import { isRoot, type IpLink } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { CLI } from '../helpers/sites.js';

const PROGRAMS = ['/usr/sbin/ip', '/usr/bin/ping', '/usr/bin/iperf3', '/usr/bin/tcpdump', process.execPath];
const DAEMON = `${ROOT}/dist/daemon/main.js`;
const skip = (!isRoot && 'needs root (QEMU, and namespaces inside the guest)')
  || hostRootGuestUnavailable()
  || (PROGRAMS.find((p) => !fs.existsSync(p)) && `not installed: ${PROGRAMS.filter((p) => !fs.existsSync(p)).join(', ')}`)
  || (!process.execPath.startsWith('/usr/') && `node at ${process.execPath}: the guest shares only /usr and /etc`)
  || (!fs.existsSync(DAEMON) && 'dist/ is not built (npm run build)');

const run = promisify(execFile);

interface Site { name: 'a' | 'b'; ns: string; dir: string; hostSocket: string; local: string; remote: string; tunnel: number; peer: number }
interface Shown { session_id: number; interface: string; ifindex?: number; mtu: number; bridge?: string; state: string; restored: number; ports_over_mtu?: { interface: string; mtu: number }[] }
interface CliResult { status: number; stdout: string; stderr: string }

/** Hosts: namespace, address, MTU, VLAN; the VLAN interface in each is `t<site>.<vlan>`. */
const HOSTS = {
  a5: { ns: 'ha5', addr: '198.51.100.1', mtu: 1446, vlan: 5 },
  b5: { ns: 'hb5', addr: '198.51.100.2', mtu: 1446, vlan: 5 },
  a6: { ns: 'ha6', addr: '198.51.100.11', mtu: 1500, vlan: 6 },
  b6: { ns: 'hb6', addr: '198.51.100.12', mtu: 1500, vlan: 6 },
  a7: { ns: 'ha7', addr: '203.0.113.1', mtu: 1500, vlan: 7 },
  b7: { ns: 'hb7', addr: '203.0.113.2', mtu: 1500, vlan: 7 },
} as const;
type HostName = keyof typeof HOSTS;

/** The guest's topology, as `ip -batch` input per namespace (one exec each, under TCG ~0.5 s). */
function topologyScript(): string {
  const root = [
    ...['sa', 'sb', ...Object.values(HOSTS).map((h) => h.ns)].map((n) => `netns add ${n}`),
    'link add ul0 netns sa type veth peer name ul0 netns sb',
    'link add eth1 netns sa type veth peer name ta',
    'link add eth1 netns sb type veth peer name tb',
    'link add eth2 netns sa type dummy',
    'link set ta up', 'link set tb up',
    ...Object.entries(HOSTS).flatMap(([k, h]) => [
      `link add link t${k[0]} name t${k[0]}.${h.vlan} type vlan id ${h.vlan}`,
      `link set t${k[0]}.${h.vlan} netns ${h.ns}`,
    ]),
  ];
  const perNs: Record<string, string[]> = {
    sa: [
      'link set lo up', 'addr add 192.0.2.1/24 dev ul0', 'link set ul0 up', 'link set eth1 up', 'link set eth2 up',
      // VLAN 7: a VLAN interface and a bridge the operator made, not yet joined.
      'link add link eth1 name eth1.7 type vlan id 7', 'link add br7 type bridge', 'link set eth1.7 up', 'link set br7 up',
      // VLAN 8: already a port of the operator's bridge br8.
      'link add link eth1 name eth1.8 type vlan id 8', 'link add br8 type bridge', 'link set eth1.8 master br8',
      'link set eth1.8 up', 'link set br8 up',
      // Refusals: a port of another bridge; TRUNK.ID of another VLAN ID, of another kind, on another trunk.
      'link add link eth1 name eth1.21 type vlan id 21', 'link add brx type bridge', 'link set eth1.21 master brx',
      'link add link eth1 name eth1.9 type vlan id 90',
      'link add eth1.12 type dummy',
      'link add link eth2 name eth1.13 type vlan id 13',
    ],
    sb: ['link set lo up', 'addr add 192.0.2.2/24 dev ul0', 'link set ul0 up', 'link set eth1 up'],
  };
  for (const [k, h] of Object.entries(HOSTS)) {
    const ifn = `t${k[0]}.${h.vlan}`;
    // addrgenmode none: no IPv6 link-local, so the captures below see only what the test sends.
    perNs[h.ns] = ['link set lo up', `link set ${ifn} addrgenmode none`, `link set ${ifn} mtu ${h.mtu}`,
      `addr add ${h.addr}/24 dev ${ifn}`, `link set ${ifn} up`];
  }
  const batch = (ns: string | undefined, lines: string[]) =>
    `ip ${ns ? `-n ${ns} ` : ''}-b - <<'EOF'\n${lines.join('\n')}\nEOF`;
  return ['set -e', batch(undefined, root), ...Object.entries(perNs).map(([ns, lines]) => batch(ns, lines))].join('\n');
}

/** Start a site's daemon in its namespace and wait until its socket exists (bounded). */
function startScript(s: Site): string {
  return `mkdir -p ${s.dir}
ip netns exec ${s.ns} node ${DAEMON} --config ${s.dir}/l2tpd.json --socket ${s.dir}/l2tpd.sock --metrics-listen off >>${s.dir}/log 2>&1 &
echo $! >${s.dir}/pid
i=0; while [ ! -S ${s.dir}/l2tpd.sock ] && [ $i -lt 900 ]; do kill -0 $(cat ${s.dir}/pid) || exit 1; sleep 0.2; i=$((i+1)); done
[ -S ${s.dir}/l2tpd.sock ]`;
}

/** SIGTERM a site's daemon and wait for it to exit (bounded). */
function stopScript(s: Site): string {
  return `p=$(cat ${s.dir}/pid); kill -TERM $p; i=0; while kill -0 $p 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
! kill -0 $p 2>/dev/null && rm -f ${s.dir}/l2tpd.sock`;
}

/**
 * Pings run side by side; each prints `PING name received`. `df`: payload size with the DF bit
 * (`-M do`), so a frame too large for a hop is lost instead of fragmented by the host.
 */
interface PingSpec { name: string; from: HostName; to: string; count?: number; size?: number }
function pingScript(pings: PingSpec[]): string {
  return [
    'pings=',
    ...pings.map((p) => `( ip netns exec ${HOSTS[p.from].ns} ping -n -q -c ${p.count ?? 4} -i 0.2 -W 2 ${p.size ? `-M do -s ${p.size}` : ''} ${p.to} >/tmp/ping-${p.name} 2>&1; echo "PING ${p.name} $(sed -n 's/.* \\([0-9]*\\) received.*/\\1/p' /tmp/ping-${p.name})" ) & pings="$pings $!"`),
    // Only the pings: a script's other background jobs (captures) are still running.
    'wait $pings',
  ].join('\n');
}
function received(out: string): Record<string, number> {
  const r: Record<string, number> = {};
  for (const m of out.matchAll(/^PING (\S+) (\d*)$/gm)) r[m[1]] = Number(m[2] || 0);
  return r;
}

/**
 * Two daemons, their data-plane workers and the relay start at once, each a node under TCG:
 * with two vCPUs (still one QEMU) they start side by side.
 */
const GUEST_CPUS = 2;

/** The whole file, boot included (about 4-6 min under TCG on a busy 2-vCPU machine). */
const SUITE_TIMEOUT_MS = 900000;
if (!skip) {
  // Longer than the runner's per-file timeout: tap's runner takes a new one from this comment.
  t.setTimeout(SUITE_TIMEOUT_MS);
  t.comment(`timeout=${SUITE_TIMEOUT_MS}`);
}

t.test('vlan ID dev TRUNK live: l2tpd in a guest with 802.1Q', { skip, timeout: SUITE_TIMEOUT_MS }, async (t) => {
  const started = Date.now();
  const lap = (what: string) => t.comment(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const kernel = findGuestKernel() as GuestKernel;
  const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2t-vg-'));
  let guest: Guest | undefined;
  let fwd: SocketForward | undefined;
  t.teardown(async () => { fwd?.close(); await guest?.close(); fs.rmSync(hostDir, { recursive: true, force: true }); });

  guest = await bootHostRootGuest({
    // The checkout's runtime in the guest's RAM, not over 9p: only /usr and /etc are shared.
    name: 'vlan', kernel, copyIn: checkoutRuntime(ROOT), ports: ['l2tpd.fwd'],
    modules: ['8021q', 'bridge', 'tun', 'veth', 'dummy'], memoryMb: 1536, bootTimeoutMs: 240000, cpus: GUEST_CPUS,
  });
  const g = guest;
  lap(`guest up (${g.accel}, ${g.bootMs} ms from QEMU start)`);
  const sites: Record<'a' | 'b', Site> = {
    a: { name: 'a', ns: 'sa', dir: '/run/l2tpd-a', hostSocket: path.join(hostDir, 'a.sock'), local: '192.0.2.1', remote: '192.0.2.2', tunnel: 100, peer: 200 },
    b: { name: 'b', ns: 'sb', dir: '/run/l2tpd-b', hostSocket: path.join(hostDir, 'b.sock'), local: '192.0.2.2', remote: '192.0.2.1', tunnel: 200, peer: 100 },
  };
  const { a, b } = sites;

  const cli = async (s: Site, words: string[]): Promise<CliResult> => {
    try {
      const r = await run(process.execPath, [CLI, '--socket', s.hostSocket, ...words], { encoding: 'utf8', timeout: 60000 });
      return { status: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { status: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
    }
  };
  const ok = async (s: Site, words: string[]): Promise<string> => {
    const r = await cli(s, words);
    if (r.status !== 0) throw new Error(`l2tpctl ${words.join(' ')} at ${s.name} -> ${r.status}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const sessions = async (s: Site): Promise<Shown[]> => JSON.parse(await ok(s, ['-j', 'show', 'session'])) as Shown[];
  const session = async (s: Site, sid: number): Promise<Shown> => {
    const found = (await sessions(s)).find((x) => x.session_id === sid);
    if (!found) throw new Error(`session ${sid} not shown at ${s.name}`);
    return found;
  };
  /** `ip -d -j link` of the namespaces, by name, and each site's config file, in one script. */
  const snapshot = async (...nss: string[]): Promise<{ links: Record<string, Map<string, IpLink>>; config: Record<string, string> }> => {
    const out = await g.ok([...nss.map((n) => `echo "@@ns ${n}"; ip -n ${n} -d -j link show`),
      ...Object.values(sites).map((s) => `echo "@@config ${s.ns}"; cat ${s.dir}/l2tpd.json 2>/dev/null; echo`)].join('\n'));
    const links: Record<string, Map<string, IpLink>> = {};
    const config: Record<string, string> = {};
    for (const part of out.split('@@').slice(1)) {
      const [head, ...rest] = part.split('\n');
      const [kind, ns] = head.split(' ');
      if (kind === 'ns') links[ns] = new Map((JSON.parse(rest.join('\n')) as IpLink[]).map((l) => [l.ifname, l]));
      else config[ns] = rest.join('\n').trim();
    }
    return { links, config };
  };
  const log = async (s: Site): Promise<string> => g.ok(`cat ${s.dir}/log`);

  // Topology, the relay and both daemons: the daemons start while the relay does.
  const relay = SocketForward.start(g, 'l2tpd.fwd', 240000);
  await g.ok(topologyScript(), { timeoutMs: 120000 });
  lap('topology');
  // The operator's own interfaces as l2tpd will find them, to compare with after `del session`.
  const found = (await snapshot('sa')).links.sa;
  /** What "as found" means for a pre-existing interface: its bridge, MTU, admin state and alias. */
  const asFound = (l: IpLink | undefined) => l && { master: l.master, mtu: l.mtu, up: l.flags.includes('UP'), ifalias: l.ifalias };
  await Promise.all([a, b].map((s) => g.ok(startScript(s), { timeoutMs: 300000 })));
  fwd = await relay;
  for (const s of [a, b]) await fwd.listen(s.hostSocket, `${s.dir}/l2tpd.sock`);
  lap('daemons and relay up');
  const release = (await g.ok('uname -r; uname -v')).trim().split('\n');
  t.comment(`guest kernel ${release.join(' ')}`);

  // One tunnel per site; its sessions carry VLANs 5 and 6 (hybrid trunk), 7 and, at A, 8.
  await Promise.all([a, b].map(async (s) => {
    await ok(s, ['add', 'tunnel', 'tunnel_id', String(s.tunnel), 'peer_tunnel_id', String(s.peer), 'encap', 'udp',
      'local', s.local, 'remote', s.remote, 'udp_sport', '1701', 'udp_dport', '1701']);
    const add = (sid: number, extra: string[]) => ok(s, ['add', 'session', 'tunnel_id', String(s.tunnel), 'session_id', String(sid), 'peer_session_id', String(sid), ...extra]);
    // Side by side: the daemon applies them one at a time, the l2tpctl starts overlap.
    await Promise.all([
      add(5, ['vlan', '5', 'dev', 'eth1']),
      add(6, ['vlan', '6', 'dev', 'eth1', 'mtu', '1500']),
      add(7, s === a ? ['bridge', 'br7', 'vlan', '7', 'dev', 'eth1'] : ['vlan', '7', 'dev', 'eth1']),
      ...(s === a ? [add(8, ['bridge', 'br8', 'vlan', '8', 'dev', 'eth1'])] : []),
    ]);
  }));
  lap('sessions added');

  const shownA = new Map((await sessions(a)).map((x) => [x.session_id, x]));
  const shownB = new Map((await sessions(b)).map((x) => [x.session_id, x]));
  const snap1 = await snapshot('sa', 'sb');

  await t.test('per-VLAN bridge: eth1.5 and brvlan5 created, enslaved, up, with the documented MTUs', async (t) => {
    for (const [s, shown] of [[a, shownA], [b, shownB]] as const) {
      const links = snap1.links[s.ns];
      const tap = links.get(shown.get(5)!.interface);
      const vlan = links.get('eth1.5');
      const br = links.get('brvlan5');
      t.match(shown.get(5), { mtu: 1446, bridge: 'brvlan5', vlan: 5, dev: 'eth1', state: 'up' }, `${s.name}: show session`);
      t.match(vlan, { mtu: 1446, master: 'brvlan5', ifalias: 'l2tpd', link: 'eth1', linkinfo: { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 5 } } },
        `${s.name}: eth1.5 is 802.1Q VLAN 5 on eth1, MTU min(session, trunk), marked, in brvlan5`);
      t.ok(vlan?.flags.includes('UP'), `${s.name}: eth1.5 up`);
      t.match(br, { mtu: 1446, ifalias: 'l2tpd', linkinfo: { info_kind: 'bridge' } }, `${s.name}: brvlan5 created with the session MTU`);
      t.ok(br?.flags.includes('UP'), `${s.name}: brvlan5 up`);
      t.match(tap, { mtu: 1446, master: 'brvlan5', ifalias: `l2tpd:${s.tunnel}/5` }, `${s.name}: session tap in brvlan5`);
      t.ok(tap?.flags.includes('UP'), `${s.name}: tap up`);
      t.notOk(shown.get(5)!.ports_over_mtu, `${s.name}: no port of brvlan5 over the session MTU`);
    }
  });

  await t.test('hosts on each VLAN reach each other; VLANs 5 and 6 of one trunk stay apart', async (t) => {
    // Captures at the VLAN 5 and 6 hosts of B while A's hosts ping across and across VLANs.
    const caps = ['hb5', 'hb6'].map((n) => `ip netns exec ${n} tcpdump -n -l -i tb.${n.slice(2)} 'arp or icmp' >/tmp/cap-${n} 2>/tmp/cap-${n}.err & echo $! >/tmp/cap-${n}.pid`);
    const out = await g.ok([
      ...caps,
      'i=0; while ! { grep -q listening /tmp/cap-hb5.err && grep -q listening /tmp/cap-hb6.err; } && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done',
      pingScript([
        { name: 'a5-b5', from: 'a5', to: HOSTS.b5.addr }, { name: 'a6-b6', from: 'a6', to: HOSTS.b6.addr },
        { name: 'a7-b7', from: 'a7', to: HOSTS.b7.addr },
        { name: 'a5-b6', from: 'a5', to: HOSTS.b6.addr, count: 3 }, { name: 'a6-b5', from: 'a6', to: HOSTS.b5.addr, count: 3 },
      ]),
      // Stopped before B's hosts send: their own ARP requests name the other VLAN's addresses.
      'kill $(cat /tmp/cap-hb5.pid) $(cat /tmp/cap-hb6.pid); sleep 0.5',
      pingScript([
        { name: 'b5-a5', from: 'b5', to: HOSTS.a5.addr }, { name: 'b6-a6', from: 'b6', to: HOSTS.a6.addr },
        { name: 'b5-a6', from: 'b5', to: HOSTS.a6.addr, count: 3 }, { name: 'b6-a5', from: 'b6', to: HOSTS.a5.addr, count: 3 },
      ]),
      'echo "@@hb5"; cat /tmp/cap-hb5; echo "@@hb6"; cat /tmp/cap-hb6',
    ].join('\n'), { timeoutMs: 180000 });
    const got = received(out);
    for (const p of ['a5-b5', 'b5-a5', 'a6-b6', 'b6-a6', 'a7-b7']) t.ok(got[p] >= 2, `${p}: ${got[p]} of 4 echoed`);
    for (const p of ['a5-b6', 'a6-b5', 'b5-a6', 'b6-a5']) t.equal(got[p], 0, `${p}: across VLANs, nothing echoed`);
    const [, capB5, capB6] = out.split(/^@@hb[56]$/m);
    const from = (cap: string, addr: string) => cap.split('\n').filter((l) => new RegExp(`${addr.replace(/\./g, '\\.')}[ ,:]`).test(l)).length;
    t.ok(from(capB6, HOSTS.a6.addr) > 0, `VLAN 6 host at B saw VLAN 6 traffic from A (${from(capB6, HOSTS.a6.addr)} lines)`);
    t.equal(from(capB6, HOSTS.a5.addr), 0, 'VLAN 6 host at B saw nothing of the VLAN 5 host at A (5 -> 6 isolated)');
    t.ok(from(capB5, HOSTS.a5.addr) > 0, `VLAN 5 host at B saw VLAN 5 traffic from A (${from(capB5, HOSTS.a5.addr)} lines)`);
    t.equal(from(capB5, HOSTS.a6.addr), 0, 'VLAN 5 host at B saw nothing of the VLAN 6 host at A (6 -> 5 isolated)');
  });

  await t.test('session MTU 1500 over a 1500-byte underlay; full-size frames into a 1446 session are lost, and said so', async (t) => {
    const out = await g.ok(pingScript([
      { name: 'a6-b6-1500', from: 'a6', to: HOSTS.b6.addr, size: 1472 }, { name: 'b6-a6-1500', from: 'b6', to: HOSTS.a6.addr, size: 1472 },
      { name: 'a7-b7-1500', from: 'a7', to: HOSTS.b7.addr, size: 1472, count: 3 }, { name: 'a7-b7-1446', from: 'a7', to: HOSTS.b7.addr, size: 1418 },
    ]), { timeoutMs: 120000 });
    const got = received(out);
    t.match(shownA.get(6), { mtu: 1500, bridge: 'brvlan6' });
    t.equal(snap1.links.sa.get('eth1.6')?.mtu, 1500, 'eth1.6 at 1500');
    t.ok(got['a6-b6-1500'] >= 2 && got['b6-a6-1500'] >= 2, `1500-byte packets, DF set, both ways on VLAN 6 (outer packets fragmented): ${got['a6-b6-1500']}, ${got['b6-a6-1500']} of 4`);
    t.ok(got['a7-b7-1446'] >= 2, `VLAN 7 (session 1446): 1446-byte packets pass (${got['a7-b7-1446']} of 4)`);
    t.equal(got['a7-b7-1500'], 0, 'VLAN 7 (session 1446): every 1500-byte packet from a host at MTU 1500 is dropped by the bridge');
    // Where it happens, it is said: show, and the log.
    t.same(shownA.get(7)?.ports_over_mtu, [{ interface: 'eth1.7', mtu: 1500 }], 'show session -j names the port over the MTU');
    const text = await ok(a, ['show', 'session', 'tunnel_id', '100', 'session_id', '7']);
    t.match(text, /^ {2}warning: bridge br7 drops frames over 1446 bytes from eth1\.7 \(mtu 1500\)$/m, 'show session prints the warning');
    t.match(await log(a), /"level":40,.*"ports_over_mtu":\[\{"interface":"eth1\.7","mtu":1500\}\].*bridge br7 drops frames over 1446 bytes from eth1\.7 \(mtu 1500\)/, 'logged as a warning');
  });

  await t.test('pre-existing eth1.7 and br7, eth1.8 in br8: used as they are', async (t) => {
    const l = snap1.links.sa;
    t.match(l.get('eth1.7'), { master: 'br7', mtu: 1500 }, 'eth1.7 enslaved to br7, its MTU untouched');
    t.equal(l.get('eth1.7')?.ifalias, undefined, 'eth1.7 not marked as l2tpd\'s');
    t.equal(l.get('br7')?.ifalias, undefined, 'br7 not marked as l2tpd\'s');
    t.equal(l.get(shownA.get(7)!.interface)?.ifalias, 'l2tpd:100/7 enslaved eth1.7', 'the tap notes that l2tpd enslaved eth1.7');
    t.match(l.get(shownA.get(8)!.interface), { master: 'br8', ifalias: 'l2tpd:100/8' }, 'session 8 in br8, nothing noted (eth1.8 was already there)');
    t.equal(l.get('brvlan7'), undefined, 'no brvlan7 when bridge names one');
    t.match(snap1.links.sb.get('eth1.7'), { master: 'brvlan7', ifalias: 'l2tpd', mtu: 1446 }, 'B: eth1.7 created');
  });

  await t.test('refused: a missing trunk, another bridge\'s port, and TRUNK.ID that is not that VLAN on that trunk', async (t) => {
    const before = await snapshot('sa');
    const add = (sid: number, extra: string[]) => cli(a, ['add', 'session', 'tunnel_id', '100', 'session_id', String(sid), 'peer_session_id', String(sid), ...extra]);
    const [missing, port, otherId, dummy, otherTrunk] = await Promise.all([
      add(20, ['vlan', '20', 'dev', 'nosuch0']),
      add(21, ['vlan', '21', 'dev', 'eth1']),
      add(9, ['vlan', '9', 'dev', 'eth1']),
      add(12, ['vlan', '12', 'dev', 'eth1']),
      add(13, ['vlan', '13', 'dev', 'eth1']),
    ]);
    t.match(missing, { status: 1, stderr: /dev nosuch0: expected an existing trunk interface \(no interface nosuch0 on this host\)/ }, `missing trunk: ${missing.stderr.trim()}`);
    t.match(port, { status: 1, stderr: /vlan 21 dev eth1: eth1\.21 is already a port of brx, not of bridge brvlan21/ }, `another bridge's port: ${port.stderr.trim()}`);
    t.match(otherId, { status: 1, stderr: /vlan 9 dev eth1: eth1\.9 exists and carries VLAN 90, not 9/ }, `eth1.9 carrying VLAN 90: ${otherId.stderr.trim()}`);
    t.match(dummy, { status: 1, stderr: /vlan 12 dev eth1: eth1\.12 exists and is a dummy, not VLAN 12 on eth1/ }, `a dummy named eth1.12: ${dummy.stderr.trim()}`);
    t.match(otherTrunk, { status: 1, stderr: /vlan 13 dev eth1: eth1\.13 exists and is VLAN 13 on eth2, not on eth1/ }, `VLAN 13 on eth2 named eth1.13: ${otherTrunk.stderr.trim()}`);
    const after = await snapshot('sa');
    const view = (m: Map<string, IpLink>) => [...m.values()].map((l) => `${l.ifname} ${l.master ?? '-'} ${l.mtu} ${l.ifalias ?? '-'}`).sort();
    t.same(view(after.links.sa), view(before.links.sa), 'no link created, enslaved or changed at A');
    t.equal(after.config.sa, before.config.sa, 'config file unchanged');
    t.same((await sessions(a)).map((x) => x.session_id).sort(), [5, 6, 7, 8], 'no session added');
  });

  await t.test('iperf3 TCP across VLAN 5', async (t) => {
    const out = await g.ok(`ip netns exec ha5 iperf3 -s -1 >/tmp/iperf-s.log 2>&1 &
# iperf3 -J exits 0 even when it cannot connect: retry while the server is not listening yet.
for i in 1 2 3 4 5 6 7 8 9 10; do ip netns exec hb5 iperf3 -c ${HOSTS.a5.addr} -t 5 -J >/tmp/iperf-c.json 2>&1; grep -q 'Connection refused' /tmp/iperf-c.json || break; sleep 1; done
cat /tmp/iperf-c.json`, { timeoutMs: 180000 });
    const r = JSON.parse(out) as { end?: { sum_received?: { bytes: number; bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
    t.notOk(r.error, `iperf3: ${r.error ?? 'no error'}`);
    t.ok((r.end?.sum_received?.bytes ?? 0) > 0, `TCP data arrived: ${r.end?.sum_received?.bytes} bytes`);
    t.comment(`iperf3 TCP hb5 -> ha5 over VLAN 5: ${((r.end?.sum_received?.bits_per_second ?? 0) / 1e6).toFixed(1)} Mbit/s (emulated, not a performance figure), ${r.end?.sum_sent?.retransmits ?? '?'} retransmits`);
  });
  lap('traffic');

  await t.test('l2tpd restarted: bridge membership kept, the same taps re-attached', async (t) => {
    const before = snap1.links.sa;
    await g.ok(stopScript(a), { timeoutMs: 60000 });
    const down = await snapshot('sa');
    for (const sid of [5, 6, 7, 8]) {
      const ifn = shownA.get(sid)!.interface;
      t.equal(down.links.sa.get(ifn)?.master, before.get(ifn)?.master, `while down: ${ifn} still in ${before.get(ifn)?.master}`);
    }
    t.equal(down.links.sa.get('eth1.5')?.master, 'brvlan5', 'while down: eth1.5 still in brvlan5');
    await g.ok(startScript(a), { timeoutMs: 300000 });
    lap('A restarted');
    const again = new Map((await sessions(a)).map((x) => [x.session_id, x]));
    const up = await snapshot('sa');
    for (const sid of [5, 6, 7, 8]) {
      const ifn = shownA.get(sid)!.interface;
      t.equal(again.get(sid)?.interface, ifn, `session ${sid}: same interface ${ifn}`);
      t.equal(up.links.sa.get(ifn)?.ifindex, before.get(ifn)?.ifindex, `session ${sid}: same ifindex (re-attached, not recreated)`);
      t.equal(up.links.sa.get(ifn)?.master, before.get(ifn)?.master, `session ${sid}: still in ${before.get(ifn)?.master}`);
    }
    t.equal(up.links.sa.get('eth1.5')?.ifindex, before.get('eth1.5')?.ifindex, 'eth1.5 kept');
    t.equal(up.links.sa.get(shownA.get(7)!.interface)?.ifalias, 'l2tpd:100/7 enslaved eth1.7', 'the note on eth1.7 survives the restart');
    const got = received(await g.ok(pingScript([{ name: 'a5-b5', from: 'a5', to: HOSTS.b5.addr, count: 6 }]), { timeoutMs: 60000 }));
    t.ok(got['a5-b5'] >= 2, `VLAN 5 traffic after the restart: ${got['a5-b5']} of 6`);
  });

  await t.test('eth1.5 deleted behind l2tpd\'s back: restored', async (t) => {
    const restored = (await session(a, 5)).restored;
    const out = await g.ok(`ip -n sa link del eth1.5
i=0; while ! ip -n sa -d -j link show eth1.5 2>/dev/null | grep -q '"master":"brvlan5"' && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
ip -n sa -d -j link show eth1.5`, { timeoutMs: 120000 });
    const v = (JSON.parse(out) as IpLink[])[0];
    t.match(v, { master: 'brvlan5', ifalias: 'l2tpd', mtu: 1446, link: 'eth1', linkinfo: { info_kind: 'vlan', info_data: { id: 5 } } }, 'recreated as VLAN 5 on eth1, marked, MTU 1446, in brvlan5');
    t.ok(v.flags.includes('UP'), 'and up');
    t.ok((await session(a, 5)).restored > restored, 'counted in restored');
    const got = received(await g.ok(pingScript([{ name: 'b5-a5', from: 'b5', to: HOSTS.a5.addr, count: 6 }]), { timeoutMs: 60000 }));
    t.ok(got['b5-a5'] >= 2, `VLAN 5 traffic after the repair: ${got['b5-a5']} of 6`);
  });

  await t.test('del session: what l2tpd created goes; pre-existing interfaces are left as they were found', async (t) => {
    for (const sid of [5, 7, 8]) await ok(a, ['del', 'session', 'tunnel_id', '100', 'session_id', String(sid)]);
    const l = (await snapshot('sa')).links.sa;
    t.equal(l.get(shownA.get(5)!.interface), undefined, 'session 5 tap removed');
    t.equal(l.get('eth1.5'), undefined, 'eth1.5 (created) removed');
    t.equal(l.get('brvlan5'), undefined, 'brvlan5 (created) removed');
    t.equal(l.get(shownA.get(7)!.interface), undefined, 'session 7 tap removed');
    t.ok(l.get('br7'), 'br7 kept');
    t.ok(l.get('eth1.7'), 'eth1.7 kept');
    t.equal(l.get('eth1.7')?.master, undefined, 'eth1.7 released from br7: not a port when l2tpd found it');
    t.match(l.get('eth1.7'), { mtu: 1500 }, 'eth1.7 MTU as found');
    t.ok(l.get('eth1.7')?.flags.includes('UP'), 'eth1.7 still up');
    t.equal(l.get('eth1.8')?.master, 'br8', 'eth1.8 still in br8: it was there before the session');
    for (const name of ['eth1.7', 'br7', 'eth1.8', 'br8']) {
      t.same(asFound(l.get(name)), asFound(found.get(name)), `${name} exactly as found: ${JSON.stringify(asFound(found.get(name)))}`);
    }
    t.ok(l.get('eth1.6') && l.get('brvlan6'), 'VLAN 6 (still configured) untouched');
    t.match(await log(a), /released pre-existing VLAN interface from the bridge l2tpd had put it in/, 'the release is logged');
  });
  lap('done');
});
