/**
 * The Linux kernel as a live L2TPv3 peer: a busybox guest running Debian's kernel (test/guest/)
 * with its NIC on a tap in a namespace where l2tpd runs. The guest's side of every case is made
 * with iproute2's real `ip l2tp`; both sides' counters and the wire between them are read back.
 *
 *   namespace: l2tpd, tap kt0 192.0.2.1 / 2001:db8::1  ══ underlay ══  guest eth0 192.0.2.2 / 2001:db8::2, ip l2tp
 *   session taps lN 198.51.100.x/30                                    l2tpeth kN 198.51.100.x+1/30
 *
 * Each case has its own tunnel, session IDs, UDP ports and inner /30, so many run side by side.
 * IPv6 is off on the pseudowire interfaces (not on the underlay), so nothing but the test's own
 * traffic crosses them and packet counts can be compared exactly.
 */
import { spawn } from 'node:child_process';
import type tap from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bootBusyboxGuest, busyboxGuestUnavailable } from '../guest/busybox.js';
import type { Guest } from '../guest/guest.js';
import { findGuestKernel, type GuestKernel } from '../guest/kernel.js';
import type { SessionConfig, TunnelConfig } from '../../src/control/model.js';
import { normalizeSession } from '../../src/control/validate.js';
import { createNetns, deleteNetns, hasCommand, netnsUnavailable, nsExec, nsRun, stopProcess } from './netns.js';
import { l2tpctlJson, newDaemon, startDaemon, stopDaemon, type Daemon } from './sites.js';

export const GUEST_IP = '/usr/sbin/ip';
export const GUEST_PING = '/usr/bin/ping';
const PROGRAMS = [GUEST_IP, GUEST_PING, '/usr/bin/iperf3', '/usr/bin/tcpdump'];
const MODULES = ['l2tp_eth', 'l2tp_ip', 'l2tp_ip6', 'l2tp_netlink', 'l2tp_debugfs'];

export const UNDER = { host4: '192.0.2.1', guest4: '192.0.2.2', host6: '2001:db8::1', guest6: '2001:db8::2' };

/** Why a kernel-peer suite cannot run here, or false. */
export function kernelPeerUnavailable(): string | false {
  return netnsUnavailable() || busyboxGuestUnavailable(PROGRAMS)
    || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
    || (!hasCommand('iperf3') && 'iperf3 is not installed')
    || (!hasCommand('tcpdump') && 'tcpdump is not installed')
    || (!hasCommand('tshark') && 'tshark is not installed (Debian package tshark)');
}

export type Seq = 'none' | 'send' | 'recv' | 'both';

/** One pseudowire between l2tpd and the kernel. Cookies are hex; '' for none. */
export interface PeerCase {
  n: number;
  label: string;
  encap: 'udp' | 'ip';
  v6: boolean;
  /** What l2tpd sends (the kernel's peer_cookie) and what the kernel sends (l2tpd's peer_cookie). */
  cookieL2tpd: string;
  cookieKernel: string;
  l2spec: 'default' | 'none';
  seqL2tpd: Seq;
  seqKernel: Seq;
  /** l2tpd's session_id (the kernel sends to it) and the kernel's. */
  sidL2tpd: number;
  sidKernel: number;
  /** IPv4: UDP checksums on both sides (`udp_csum on`). */
  udpCsum?: boolean;
  /** IPv6: zero UDP checksums sent and accepted on both sides. */
  zeroCsum6?: boolean;
  /** Session MTU on both sides (default: each side's own default, which must agree). */
  mtu?: number;
  /** l2tpd's seq_mirror (absent: on, as Linux). */
  seqMirror?: 'on' | 'off';
}

export const tunnelId = (c: PeerCase) => 100 + c.n;
export const portL2tpd = (c: PeerCase) => 20000 + c.n;
export const portKernel = (c: PeerCase) => 21000 + c.n;
export const ifL2tpd = (c: PeerCase) => `l${c.n}`;
export const ifKernel = (c: PeerCase) => `k${c.n}`;

/** The case's inner /30: l2tpd's side gets .1, the kernel's .2 (198.51.100.0/24, then 203.0.113.0/24). */
export function inner(c: PeerCase): { l2tpd: string; kernel: string } {
  if (c.n < 1 || c.n > 127) throw new Error(`case number ${c.n} outside 1..127`);
  const [net, i] = c.n < 64 ? ['198.51.100', c.n] : ['203.0.113', c.n - 64];
  return { l2tpd: `${net}.${i * 4 + 1}`, kernel: `${net}.${i * 4 + 2}` };
}

export function underlay(c: PeerCase): { l2tpd: string; kernel: string } {
  return c.v6 ? { l2tpd: UNDER.host6, kernel: UNDER.guest6 } : { l2tpd: UNDER.host4, kernel: UNDER.guest4 };
}

export function l2tpdTunnel(c: PeerCase): TunnelConfig {
  const u = underlay(c);
  return {
    tunnel_id: tunnelId(c), peer_tunnel_id: tunnelId(c), encap: c.encap, local: u.l2tpd, remote: u.kernel,
    ...(c.encap === 'udp' ? { udp_sport: portL2tpd(c), udp_dport: portKernel(c) } : {}),
    ...(c.udpCsum ? { udp_csum: 'on' as const } : {}),
    ...(c.zeroCsum6 ? { udp6_csum_tx: 'off' as const, udp6_csum_rx: 'off' as const } : {}),
  };
}

export function l2tpdSession(c: PeerCase): SessionConfig {
  return normalizeSession({
    tunnel_id: tunnelId(c), session_id: c.sidL2tpd, peer_session_id: c.sidKernel, name: ifL2tpd(c),
    l2spec_type: c.l2spec, seq: c.seqL2tpd,
    ...(c.cookieL2tpd ? { cookie: c.cookieL2tpd } : {}),
    ...(c.cookieKernel ? { peer_cookie: c.cookieKernel } : {}),
    ...(c.mtu ? { mtu: c.mtu } : {}),
    ...(c.seqMirror ? { seq_mirror: c.seqMirror } : {}),
  });
}

/** The kernel's side as `ip -batch` lines: tunnel, session, MTU, up, address. */
export function kernelBatch(c: PeerCase): string[] {
  const u = underlay(c);
  const tunnel = [`l2tp add tunnel tunnel_id ${tunnelId(c)} peer_tunnel_id ${tunnelId(c)} encap ${c.encap} local ${u.kernel} remote ${u.l2tpd}`];
  if (c.encap === 'udp') tunnel.push(`udp_sport ${portKernel(c)} udp_dport ${portL2tpd(c)}`);
  if (c.udpCsum) tunnel.push('udp_csum on');
  if (c.zeroCsum6) tunnel.push('udp6_csum_tx off udp6_csum_rx off');
  const session = [`l2tp add session name ${ifKernel(c)} tunnel_id ${tunnelId(c)} session_id ${c.sidKernel} peer_session_id ${c.sidL2tpd}`,
    `l2spec_type ${c.l2spec} seq ${c.seqKernel}`];
  if (c.cookieKernel) session.push(`cookie ${c.cookieKernel}`);
  if (c.cookieL2tpd) session.push(`peer_cookie ${c.cookieL2tpd}`);
  return [tunnel.join(' '), session.join(' '), ...kernelLinkBatch(c)];
}

export function kernelLinkBatch(c: PeerCase): string[] {
  return [`link set ${ifKernel(c)}${c.mtu ? ` mtu ${c.mtu}` : ''} up`, `addr add ${inner(c).kernel}/30 dev ${ifKernel(c)}`];
}

/** A kernel session as /sys/kernel/debug/l2tp/tunnels shows it. */
export interface KernelSession {
  tunnelId: number;
  sessionId: number;
  peerSessionId: number;
  recvSeq: boolean;
  sendSeq: boolean;
  nr: number;
  ns: number;
  txPackets: number; txBytes: number; txErrors: number;
  rxPackets: number; rxBytes: number; rxErrors: number;
  ifname: string;
}

/**
 * Parse l2tp_debugfs's listing (net/l2tp/l2tp_debugfs.c): per session a "SESSION id, peer id"
 * line, "config mtu/mru/R|-/S|-/..." and "nr/ns tx-pkts/bytes/errs rx-pkts/bytes/errs" lines.
 */
export function parseDebugfs(text: string): Map<number, KernelSession> {
  const out = new Map<number, KernelSession>();
  let tunnel = 0;
  let cur: KernelSession | undefined;
  for (const line of text.split('\n')) {
    let m = /^TUNNEL (\d+),? peer (\d+)/.exec(line);
    if (m) { tunnel = Number(m[1]); cur = undefined; continue; }
    m = /^\s+SESSION (\d+), peer (\d+)/.exec(line);
    if (m) {
      cur = { tunnelId: tunnel, sessionId: Number(m[1]), peerSessionId: Number(m[2]), recvSeq: false, sendSeq: false,
        nr: 0, ns: 0, txPackets: 0, txBytes: 0, txErrors: 0, rxPackets: 0, rxBytes: 0, rxErrors: 0, ifname: '' };
      out.set(cur.sessionId, cur);
      continue;
    }
    if (!cur) continue;
    m = /^\s+config \d+\/\d+\/([R-])\/([S-])\//.exec(line);
    if (m) { cur.recvSeq = m[1] === 'R'; cur.sendSeq = m[2] === 'S'; continue; }
    m = /^\s+(\d+)\/(\d+) tx (\d+)\/(\d+)\/(\d+) rx (\d+)\/(\d+)\/(\d+)/.exec(line);
    if (m) {
      [cur.nr, cur.ns, cur.txPackets, cur.txBytes, cur.txErrors, cur.rxPackets, cur.rxBytes, cur.rxErrors] = m.slice(1, 9).map(Number);
      continue;
    }
    m = /^\s+interface (\S+)/.exec(line);
    if (m) cur.ifname = m[1];
  }
  return out;
}

/** A session as l2tpd's API shows it (the fields the suites read). */
export interface L2tpdSessionView {
  tunnel_id: number; session_id: number; interface: string; mtu: number; state: string; restored: number;
  /** Whether l2tpd sends sequence numbers right now (the peer's S bit can switch it). */
  tx_seq?: 'on' | 'off';
  stats: Record<string, number>;
}
export interface L2tpdTunnelView { tunnel_id: number; state: string; stats: Record<string, number> }

/**
 * A lab for test `t`, closed at its teardown, with a temp dir for captures (kept with
 * L2TPD_KEEP_PCAP=1); says which kernel booted and how long it took.
 */
export async function openLab(t: tap.Test, name: string): Promise<{ lab: KernelPeerLab; tmp: string; started: number }> {
  const started = Date.now();
  const lab = await KernelPeerLab.open(name);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `l2tpd-k${name}-`));
  t.teardown(async () => {
    await lab.close();
    if (!process.env.L2TPD_KEEP_PCAP) fs.rmSync(tmp, { recursive: true, force: true });
  });
  t.comment(`guest kernel ${lab.kernel.release}, booted in ${lab.guest.bootMs} ms (${lab.guest.accel})`);
  return { lab, tmp, started };
}

/** The lab: a namespace with l2tpd and the guest's tap, and the guest. */
export class KernelPeerLab {
  readonly daemon: Daemon;
  private readonly tmp: string;

  private constructor(readonly ns: string, readonly guest: Guest, readonly kernel: GuestKernel, tmp: string) {
    this.tmp = tmp;
    this.daemon = newDaemon(ns, path.join(tmp, 'l2tpd'));
    fs.mkdirSync(this.daemon.dir, { recursive: true });
  }

  static async open(name: string): Promise<KernelPeerLab> {
    const kernel = findGuestKernel() as GuestKernel;
    const ns = createNetns('kp');
    let guest: Guest | undefined;
    try {
      guest = await bootBusyboxGuest({
        name, kernel, netns: ns, nics: [{ tap: 'kt0', offload: false }], programs: PROGRAMS, modules: MODULES, hostname: 'kernel-peer',
        rc: [
          `${GUEST_IP} link set eth0 up`,
          `${GUEST_IP} addr add ${UNDER.guest4}/24 dev eth0`,
          `${GUEST_IP} -6 addr add ${UNDER.guest6}/64 dev eth0 nodad`,
          // Interfaces made from now on (the l2tpeth ones) carry no IPv6 chatter.
          'sysctl -qw net.ipv6.conf.default.disable_ipv6=1',
        ].join('\n'),
      });
      nsExec(ns, 'ip', ['addr', 'add', `${UNDER.host4}/24`, 'dev', 'kt0']);
      nsExec(ns, 'ip', ['-6', 'addr', 'add', `${UNDER.host6}/64`, 'dev', 'kt0', 'nodad']);
      nsExec(ns, 'ip', ['link', 'set', 'kt0', 'up']);
      nsExec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
      return new KernelPeerLab(ns, guest, kernel, fs.mkdtempSync(path.join(os.tmpdir(), 'l2tpd-kp-')));
    } catch (e) {
      await guest?.close();
      deleteNetns(ns);
      throw e;
    }
  }

  /** `ip -batch` in the guest (one exec for many commands); throws with the failing line. */
  async guestIp(lines: string[]): Promise<void> {
    await this.guest.ok(`${GUEST_IP} -batch -`, { input: `${lines.join('\n')}\n`, timeoutMs: 60000 });
  }

  /** `ip -batch` in l2tpd's namespace. */
  hostIp(lines: string[]): void {
    nsExec(this.ns, 'ip', ['-batch', '-'], { input: `${lines.join('\n')}\n` });
  }

  /** Write l2tpd's config file with these cases (l2tpd must be stopped, or reload after). */
  writeConfig(cases: PeerCase[]): void {
    fs.writeFileSync(this.daemon.config, JSON.stringify({ tunnels: cases.map(l2tpdTunnel), sessions: cases.map(l2tpdSession) }, null, 2));
  }

  startL2tpd(extra: string[] = []): Promise<void> { return startDaemon(this.daemon, extra); }
  stopL2tpd(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> { return stopDaemon(this.daemon, signal); }

  /** The addresses on l2tpd's session taps (kept across l2tpd restarts: the taps persist). */
  addressL2tpdSide(cases: PeerCase[]): void {
    this.hostIp(cases.map((c) => `addr add ${inner(c).l2tpd}/30 dev ${ifL2tpd(c)}`));
  }

  async kernelSessions(): Promise<Map<number, KernelSession>> {
    return parseDebugfs(await this.guest.ok('cat /sys/kernel/debug/l2tp/tunnels'));
  }

  /** Kernel MTUs of the cases' l2tpeth interfaces, by interface name. */
  async kernelMtus(): Promise<Map<string, number>> {
    const links = JSON.parse(await this.guest.ok(`${GUEST_IP} -j link show`)) as { ifname: string; mtu: number }[];
    return new Map(links.map((l) => [l.ifname, l.mtu]));
  }

  l2tpdSessions(): Map<number, L2tpdSessionView> {
    const list = l2tpctlJson<L2tpdSessionView[]>(this.daemon, ['show', 'session', '-s']);
    return new Map(list.map((s) => [s.session_id, s]));
  }

  l2tpdTunnels(): Map<number, L2tpdTunnelView> {
    const list = l2tpctlJson<L2tpdTunnelView[]>(this.daemon, ['show', 'tunnel', '-s']);
    return new Map(list.map((t) => [t.tunnel_id, t]));
  }

  /** ping from l2tpd's namespace; received count. */
  hostPing(to: string, args: string[] = [], count = 3, deadline = 8): number {
    const r = nsRun(this.ns, 'ping', ['-c', String(count), '-i', '0.2', '-W', '2', '-w', String(deadline), '-q', ...args, to], (deadline + 5) * 1000);
    return Number((/(\d+) received/.exec(r.stdout ?? '') ?? [])[1] ?? 0);
  }

  async close(): Promise<void> {
    await this.stopL2tpd().catch(() => undefined);
    await this.guest.close();
    deleteNetns(this.ns);
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/**
 * Continuous pings both ways (every 100 ms) over the cases' pseudowires until `stop()`, bounded by
 * `maxSeconds` in any case. Host pings are killed by PID, guest ones by the PIDs they wrote.
 */
export async function streamPings(lab: KernelPeerLab, cases: PeerCase[], maxSeconds = 60): Promise<{ stop: () => Promise<void> }> {
  const host = cases.map((c) => spawn('ip', ['netns', 'exec', lab.ns, 'ping', '-q', '-i', '0.1', '-w', String(maxSeconds), inner(c).kernel],
    { stdio: 'ignore' }));
  const tag = `stream${streamCount++}`;
  await lab.guest.ok(cases.map((c) => `${GUEST_PING} -q -i 0.1 -w ${maxSeconds} ${inner(c).l2tpd} >/dev/null 2>&1 & echo $! >>/tmp/${tag}.pids`).join('\n'));
  return {
    stop: async () => {
      for (const p of host) await stopProcess(p, 'SIGINT', 2000);
      await lab.guest.run(`kill $(cat /tmp/${tag}.pids) 2>/dev/null; rm -f /tmp/${tag}.pids`);
    },
  };
}
let streamCount = 0;
