/**
 * Interop with the Linux kernel's L2TPv3 data path, live: l2tpd in a namespace, Debian's kernel in
 * a QEMU guest configured with iproute2's real `ip l2tp` as its mirror (test/helpers/kernel-peer.ts).
 *
 * Matrix: udp and ip encapsulation × IPv4 and IPv6 underlay × cookie none / 4 / 8 bytes (another
 * value each way) × l2spec_type none / default / default with `seq both`, session IDs below and
 * at or above 2^31 alternately; then `udp_csum on`, IPv6 zero checksums, cookies of different
 * lengths each way, and a session MTU of 1500 over the 1500-byte underlay (outer fragments both
 * ways) in each encapsulation and family. All cases are configured at once and pinged in parallel.
 *
 * Each case is judged by
 * - traffic both ways: small pings, and a full-size ping with DF set (the MTU really carried);
 * - equal MTUs: l2tpd's session MTU is the kernel's l2tpeth MTU;
 * - counters: the kernel's per-session tx/rx errors are 0 (debugfs; cookie, sequence and window
 *   drops all count there) and l2tpd's session errors and tunnel drop reasons are 0;
 * - the wire, decoded by tshark: every data packet each way carries the receiver's session ID,
 *   the sender's cookie, the sublayer (S bit and consecutive numbers from 0 with `seq both`, S=0
 *   without), version 3 and a zero reserved field over UDP, the checksum the case asks for, an
 *   inner frame of this case's addresses; and the packets captured each way are exactly the
 *   sender's tx_packets and the receiver's rx_packets.
 * Then iperf3 TCP both ways over two sessions (headers-only capture, counters).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { startCapture } from '../helpers/capture.js';
import {
  GUEST_PING, KernelPeerLab, inner, kernelBatch, openLab, kernelPeerUnavailable, l2tpdSession, l2tpdTunnel, portKernel, portL2tpd,
  underlay, ifKernel, type PeerCase,
} from '../helpers/kernel-peer.js';
import { decodeL2tp, type L2tpPacket } from '../helpers/l2tp-wire.js';
import { nsRun, sleep, stopProcess } from '../helpers/netns.js';
import { l2tpctlOk } from '../helpers/sites.js';

const skip = kernelPeerUnavailable();

/** Another cookie per case and direction ('' for none). */
function cookie(bytes: 0 | 4 | 8, n: number, dir: 'l2tpd' | 'kernel'): string {
  if (bytes === 0) return '';
  const base = `${dir === 'l2tpd' ? 'a1' : 'b2'}${n.toString(16).padStart(2, '0')}${dir === 'l2tpd' ? 'f00d' : 'cafe'}`;
  return bytes === 4 ? base : `${base}${dir === 'l2tpd' ? 'deadbeef' : '0badf00d'}`;
}

/** Odd cases use session IDs at or above 2^31 (l2tpd's, and the kernel's near 2^32). */
function ids(n: number): { sidL2tpd: number; sidKernel: number } {
  return n % 2 ? { sidL2tpd: 0x80000000 + 1000 + n, sidKernel: 0xfffff000 + n } : { sidL2tpd: 1000 + n, sidKernel: 2000 + n };
}

function buildCases(): PeerCase[] {
  const cases: PeerCase[] = [];
  let n = 0;
  const add = (c: Omit<PeerCase, 'n' | 'sidL2tpd' | 'sidKernel'>) => { n++; cases.push({ ...c, n, ...ids(n) }); };
  for (const encap of ['udp', 'ip'] as const) {
    for (const v6 of [false, true]) {
      for (const bytes of [0, 4, 8] as const) {
        for (const sub of ['none', 'default', 'seq'] as const) {
          const seq = sub === 'seq' ? 'both' : 'none';
          add({
            label: `${encap}/IPv${v6 ? 6 : 4} cookie ${bytes || 'none'} l2spec ${sub === 'none' ? 'none' : 'default'}${seq === 'both' ? ' seq both' : ''}`,
            encap, v6, cookieL2tpd: cookie(bytes, n + 1, 'l2tpd'), cookieKernel: cookie(bytes, n + 1, 'kernel'),
            l2spec: sub === 'none' ? 'none' : 'default', seqL2tpd: seq, seqKernel: seq,
          });
        }
      }
    }
  }
  add({ label: 'udp/IPv4 udp_csum on, cookie 4, seq both', encap: 'udp', v6: false, cookieL2tpd: cookie(4, n + 1, 'l2tpd'),
    cookieKernel: cookie(4, n + 1, 'kernel'), l2spec: 'default', seqL2tpd: 'both', seqKernel: 'both', udpCsum: true });
  add({ label: 'udp/IPv6 zero checksums both ways', encap: 'udp', v6: true, cookieL2tpd: '', cookieKernel: '',
    l2spec: 'default', seqL2tpd: 'none', seqKernel: 'none', zeroCsum6: true });
  add({ label: 'udp/IPv4 cookie 4 from l2tpd, 8 from the kernel', encap: 'udp', v6: false, cookieL2tpd: cookie(4, n + 1, 'l2tpd'),
    cookieKernel: cookie(8, n + 1, 'kernel'), l2spec: 'default', seqL2tpd: 'none', seqKernel: 'none' });
  add({ label: 'ip/IPv6 cookie 8 from l2tpd, none from the kernel, seq both', encap: 'ip', v6: true, cookieL2tpd: cookie(8, n + 1, 'l2tpd'),
    cookieKernel: '', l2spec: 'default', seqL2tpd: 'both', seqKernel: 'both' });
  for (const encap of ['udp', 'ip'] as const) {
    for (const v6 of [false, true]) {
      add({ label: `${encap}/IPv${v6 ? 6 : 4} session MTU 1500 over a 1500-byte underlay${v6 ? ', cookie 8, seq both' : ''}`,
        encap, v6, cookieL2tpd: v6 ? cookie(8, n + 1, 'l2tpd') : '', cookieKernel: v6 ? cookie(8, n + 1, 'kernel') : '',
        l2spec: 'default', seqL2tpd: v6 ? 'both' : 'none', seqKernel: v6 ? 'both' : 'none', mtu: 1500 });
    }
  }
  return cases;
}

/** ping in l2tpd's namespace, without blocking the event loop (all cases at once). */
function hostPing(ns: string, to: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-q', '-W', '3', '-w', '15', ...args, to], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('close', () => resolve(Number((/(\d+) received/.exec(out) ?? [])[1] ?? 0)));
  });
}

/**
 * The pings of a case: 3 small, 2 of the largest IPv4 packet the session MTU takes, DF set. With
 * `-w` ping waits for that many replies (an emulated guest can answer late), sending more if
 * needed, so at least that many must come back.
 */
const SMALL = 3;
const LARGE = 2;
const largeArgs = (mtu: number) => ['-c', String(LARGE), '-i', '0.3', '-M', 'do', '-s', String(mtu - 28)];
const smallArgs = ['-c', String(SMALL), '-i', '0.2'];

t.test('l2tpd against the Linux kernel, live', { skip, timeout: 290000 }, async (t) => {
  const { lab, tmp, started } = await openLab(t, 'interop');
  const cases = buildCases();

  // The kernel's side first: a frame arriving before its session exists is answered with ICMP.
  await lab.guestIp(cases.flatMap(kernelBatch));
  lab.writeConfig(cases);
  await lab.startL2tpd();
  lab.addressL2tpdSide(cases);
  const l2tpd0 = lab.l2tpdSessions();
  const kernelMtu = await lab.kernelMtus();
  const mtuOf = (c: PeerCase) => l2tpd0.get(c.sidL2tpd)!.mtu;
  const kernelMtuOf = (c: PeerCase) => kernelMtu.get(ifKernel(c))!;
  // Full-size pings at the MTU both sides take. With cookies of different lengths each way the
  // defaults differ (each side counts the cookie it sends, as Linux does), and the receiver drops
  // frames beyond its own MTU (l2tpd: rx_oversize; Linux: silently), as between two Linux nodes.
  const pathMtu = (c: PeerCase) => Math.min(mtuOf(c), kernelMtuOf(c));

  t.comment(`${cases.length} cases configured at ${Math.round((Date.now() - started) / 1000)} s`);
  const pcap = path.join(tmp, 'matrix.pcap');
  const cap = await startCapture(lab.ns, pcap, 'kt0');
  const guestScript = cases.map((c) => `( ${GUEST_PING} -q -W 3 -w 15 ${smallArgs.join(' ')} ${inner(c).l2tpd} >/tmp/s${c.n} 2>&1;`
    + ` ${GUEST_PING} -q -W 3 -w 15 ${largeArgs(pathMtu(c)).join(' ')} ${inner(c).l2tpd} >/tmp/l${c.n} 2>&1 ) &`).join('\n')
    + `\nwait\nfor n in ${cases.map((c) => c.n).join(' ')}; do echo "$n $(grep -o '[0-9]* received' /tmp/s$n) $(grep -o '[0-9]* received' /tmp/l$n)"; done\n`;
  const [guestOut, hostResults] = await Promise.all([
    lab.guest.ok(guestScript, { timeoutMs: 90000 }),
    Promise.all(cases.map(async (c) => [await hostPing(lab.ns, inner(c).kernel, smallArgs),
      await hostPing(lab.ns, inner(c).kernel, largeArgs(pathMtu(c)))] as const)),
  ]);
  // Nothing else crosses the pseudowires: wait out the last replies, then stop capturing.
  await sleep(1500);
  await stopProcess(cap.proc, 'SIGINT');
  t.comment(`tcpdump: ${cap.err.join('').trim().split('\n').slice(-3).join('; ')}`);
  const guestPings = new Map(guestOut.trim().split('\n').map((l) => {
    const m = /^(\d+) (\d+) received (\d+) received$/.exec(l.trim());
    return [Number(m?.[1]), [Number(m?.[2] ?? 0), Number(m?.[3] ?? 0)]] as const;
  }));
  t.comment(`traffic done at ${Math.round((Date.now() - started) / 1000)} s`);
  const kernel = await lab.kernelSessions();
  const l2tpd = lab.l2tpdSessions();
  const tunnels = lab.l2tpdTunnels();

  // tshark runs once per (cookie size, sublayer) of a direction, over that group's sessions.
  const groups = new Map<string, { cookieBytes: 0 | 4 | 8; l2spec: 'none' | 'default'; sids: number[]; ports: number[] }>();
  for (const c of cases) {
    for (const [cookieHex, sid] of [[c.cookieL2tpd, c.sidKernel], [c.cookieKernel, c.sidL2tpd]] as const) {
      const cookieBytes = (cookieHex.length / 2) as 0 | 4 | 8;
      const key = `${cookieBytes}/${c.l2spec}`;
      const g = groups.get(key) ?? { cookieBytes, l2spec: c.l2spec, sids: [], ports: [] };
      g.sids.push(sid);
      if (c.encap === 'udp') g.ports.push(portL2tpd(c), portKernel(c));
      groups.set(key, g);
    }
  }
  const packets = new Map<number, L2tpPacket[]>();
  for (const g of groups.values()) {
    for (const p of decodeL2tp(pcap, { cookieBytes: g.cookieBytes, l2spec: g.l2spec, udpPorts: g.ports, filter: `l2tp.sid in {${g.sids.join(', ')}}` })) {
      packets.set(p.sessionId, [...(packets.get(p.sessionId) ?? []), p]);
    }
  }

  t.comment(`wire decoded at ${Math.round((Date.now() - started) / 1000)} s`);
  for (const c of cases) {
    await t.test(`${c.n}: ${c.label}`, async (t) => {
      const [hs, hl] = hostResults[c.n - 1];
      const [gs, gl] = guestPings.get(c.n) ?? [0, 0];
      t.ok(hs >= SMALL && gs >= SMALL, `pings both ways: l2tpd side -> kernel ${hs}/${SMALL}, kernel -> l2tpd side ${gs}/${SMALL}`);
      t.ok(hl >= LARGE && gl >= LARGE, `full-size pings both ways with DF at MTU ${pathMtu(c)}: ${hl}/${LARGE}, ${gl}/${LARGE}`);
      const k = kernel.get(c.sidKernel);
      const s = l2tpd.get(c.sidL2tpd);
      if (!k || !s) { t.fail(`session missing: kernel ${!!k}, l2tpd ${!!s}`); return; }
      // Each side's default counts the header it sends; with cookies of one length each way they agree.
      const cookieDiff = (c.cookieKernel.length - c.cookieL2tpd.length) / 2;
      t.equal(kernelMtuOf(c), s.mtu - (c.mtu ? 0 : cookieDiff),
        cookieDiff && !c.mtu ? `MTUs differ by the cookies' lengths, as each side's own header (l2tpd ${s.mtu})` : `equal MTUs (${s.mtu})`);
      if (c.mtu) t.equal(s.mtu, c.mtu, 'the configured MTU');
      t.same([k.txErrors, k.rxErrors], [0, 0], 'kernel: no tx or rx errors');
      const errors = ['rx_errors', 'tx_errors', 'rx_seq_discards', 'rx_cookie_discards', 'rx_invalid', 'rx_oversize', 'tx_oversize', 'rx_short_frames', 'rx_tap_drops'];
      t.same(errors.filter((e) => s.stats[e] !== 0), [], 'l2tpd: no session errors');
      const ts = tunnels.get(100 + c.n)!.stats;
      t.same(Object.keys(ts).filter((k) => (k.startsWith('drop_') || k.endsWith('errors') || k === 'rx_invalid') && ts[k] !== 0), [],
        'l2tpd: no tunnel drops or errors');
      t.equal(k.sendSeq, c.seqKernel === 'both', `kernel sends numbers: ${k.sendSeq}`);

      judgeDirection(t, c, 'l2tpd', packets.get(c.sidKernel) ?? [], s.stats.tx_packets, k.rxPackets);
      judgeDirection(t, c, 'kernel', packets.get(c.sidL2tpd) ?? [], k.txPackets, s.stats.rx_packets);
    });
  }

  await t.test('iperf3 TCP both ways', async (t) => iperfBothWays(t, lab, tmp, cases.length));
  t.comment(`suite wall time ${Math.round((Date.now() - started) / 1000)} s`);
});

/** Every packet `sender` sent in case `c`, as tshark decoded it. */
function judgeDirection(t: tap.Test, c: PeerCase, sender: 'l2tpd' | 'kernel', pkts: L2tpPacket[], sent: number, received: number): void {
  const fromL2tpd = sender === 'l2tpd';
  const u = underlay(c);
  const dir = fromL2tpd ? 'l2tpd -> kernel' : 'kernel -> l2tpd';
  const src = fromL2tpd ? u.l2tpd : u.kernel;
  const expectCookie = fromL2tpd ? c.cookieL2tpd : c.cookieKernel;
  const seq = (fromL2tpd ? c.seqL2tpd : c.seqKernel) === 'both';
  const innerAddrs = [inner(c).l2tpd, inner(c).kernel];
  t.equal(pkts.length, sent, `${dir}: captured ${pkts.length} packets = sender's tx_packets`);
  t.equal(received, sent, `${dir}: receiver's rx_packets = sender's tx_packets`);
  const bad: string[] = [];
  pkts.forEach((p, i) => {
    const why: string[] = [];
    if (p.src !== src) why.push(`outer source ${p.src}`);
    if (c.encap === 'udp') {
      if (!p.udp || p.udp.sport !== (fromL2tpd ? portL2tpd(c) : portKernel(c))) why.push(`UDP source port ${p.udp?.sport}`);
      if (p.version !== 3 || p.reserved !== 0) why.push(`version ${p.version} reserved ${p.reserved}`);
      const zero = c.v6 ? !!c.zeroCsum6 : !c.udpCsum;
      if (zero ? p.udp?.checksum !== 0 : !(p.udp?.checksum !== 0 && p.udp?.checksumGood)) why.push(`UDP checksum ${p.udp?.checksum} (good: ${p.udp?.checksumGood})`);
    } else if (p.udp) why.push('UDP in an ip-encap case');
    if (p.cookie !== expectCookie) why.push(`cookie ${p.cookie || 'none'}`);
    if (c.l2spec === 'none') {
      if (p.l2spec) why.push('a sublayer with l2spec_type none');
    } else if (!p.l2spec) why.push('no sublayer');
    else if (seq ? !(p.l2spec.s && p.l2spec.seq === i) : (p.l2spec.s || p.l2spec.seq !== 0)) why.push(`sublayer S=${p.l2spec.s} seq ${p.l2spec.seq} at packet ${i}`);
    if (p.innerType !== 0x0800 && p.innerType !== 0x0806) why.push(`inner ethertype 0x${p.innerType.toString(16)}`);
    else if (!innerAddrs.includes(p.innerSrc) || !innerAddrs.includes(p.innerDst)) why.push(`inner ${p.innerSrc} -> ${p.innerDst}`);
    if (why.length) bad.push(`frame ${p.frame}: ${why.join(', ')}`);
  });
  t.same(bad.slice(0, 5), [], `${dir}: every packet carries what the receiver expects${bad.length > 5 ? ` (${bad.length} bad)` : ''}`);
  if (c.mtu) t.ok(pkts.some((p) => p.fragments >= 2), `${dir}: full-size frames went out as outer fragments`);
}


/** The words of `add tunnel` / `add session` for a case, as an operator would type them. */
function words(obj: object): string[] {
  return Object.entries(obj).flatMap(([k, v]) => [k, String(v)]);
}

/**
 * TCP both ways, 8 MB each (iperf3 client in l2tpd's namespace, server in the guest, then `-R`) over a UDP/IPv4
 * session and an IP/IPv6 one with cookies and `seq both`, added with l2tpctl while l2tpd runs. The
 * capture keeps headers only (fast TCP would otherwise fill the disk): every captured packet is
 * judged as in the matrix; counters must show no errors.
 */
async function iperfBothWays(t: tap.Test, lab: KernelPeerLab, tmp: string, after: number): Promise<void> {
  const base = after + 1;
  const cases: PeerCase[] = [
    { n: base, label: 'iperf udp/IPv4', encap: 'udp', v6: false, cookieL2tpd: '', cookieKernel: '', l2spec: 'default',
      seqL2tpd: 'none', seqKernel: 'none', ...ids(base) },
    { n: base + 1, label: 'iperf ip/IPv6 cookies, seq both', encap: 'ip', v6: true, cookieL2tpd: cookie(8, base + 1, 'l2tpd'),
      cookieKernel: cookie(4, base + 1, 'kernel'), l2spec: 'default', seqL2tpd: 'both', seqKernel: 'both', ...ids(base + 1) },
  ];
  await lab.guestIp(cases.flatMap(kernelBatch));
  for (const c of cases) {
    l2tpctlOk(lab.daemon, ['add', 'tunnel', ...words(l2tpdTunnel(c))]);
    l2tpctlOk(lab.daemon, ['add', 'session', ...words(l2tpdSession(c))]);
  }
  lab.addressL2tpdSide(cases);
  // One one-off server per run (ports 5201, 5202): a server reused right after a test can refuse
  // or reset the next one while it tidies up.
  await lab.guest.ok(cases.flatMap((c) => [5201, 5202].map((port) =>
    `/usr/bin/iperf3 -s -1 -D -p ${port} -B ${inner(c).kernel} --pidfile /tmp/iperf${c.n}-${port}.pid`)).join('\n'));
  const pcap = path.join(tmp, 'iperf.pcap');
  const cap = await startCapture(lab.ns, pcap, 'kt0', 200);
  const results: { c: PeerCase; dir: string; bps: number; error?: string }[] = [];
  for (const c of cases) {
    for (const reverse of [false, true]) {
      let bps = 0;
      let error: string | undefined;
      // A server that has just daemonised may not listen yet: a few bounded retries.
      for (let attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0) await sleep(1000);
        const r = nsRun(lab.ns, 'iperf3', ['-c', inner(c).kernel, '-p', reverse ? '5202' : '5201', '-n', '8M', '-J', ...(reverse ? ['-R'] : [])], 60000);
        try {
          const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
          bps = j.end?.sum_received?.bits_per_second ?? 0;
          error = j.error;
        } catch { error = `${r.stderr}${r.stdout}`.slice(0, 300); }
        if (!error || !/refused/.test(error)) break;
      }
      results.push({ c, dir: reverse ? 'kernel -> l2tpd' : 'l2tpd -> kernel', bps, error });
    }
  }
  await sleep(1000);
  const stopped = await stopProcess(cap.proc, 'SIGINT');
  const dropped = Number((/(\d+) packets dropped by kernel/.exec(cap.err.join('')) ?? [])[1] ?? -1);
  // One-off servers exit after their test; any left (a failed run) are stopped.
  await lab.guest.run(cases.flatMap((c) => [5201, 5202].map((port) => `kill "$(cat /tmp/iperf${c.n}-${port}.pid)" 2>/dev/null`)).join('\n'));
  const kernel = await lab.kernelSessions();
  const l2tpd = lab.l2tpdSessions();
  for (const r of results) {
    t.ok(r.bps > 0 && !r.error, `${r.c.label}, ${r.dir}: ${(r.bps / 1e6).toFixed(0)} Mbit/s${r.error ? ` (${r.error})` : ''}`);
  }
  for (const c of cases) {
    const k = kernel.get(c.sidKernel)!;
    const s = l2tpd.get(c.sidL2tpd)!;
    t.same([k.txErrors, k.rxErrors], [0, 0], `${c.label}: kernel: no tx or rx errors (${k.rxPackets} received, ${k.txPackets} sent)`);
    t.same(['rx_errors', 'tx_errors', 'rx_seq_discards', 'rx_cookie_discards', 'rx_oversize', 'tx_oversize'].filter((e) => s.stats[e] !== 0), [],
      `${c.label}: l2tpd: no session errors (${s.stats.rx_packets} received, ${s.stats.tx_packets} sent)`);
    for (const [cookieHex, sid, fromL2tpd] of [[c.cookieL2tpd, c.sidKernel, true], [c.cookieKernel, c.sidL2tpd, false]] as const) {
      const pkts = decodeL2tp(pcap, { cookieBytes: (cookieHex.length / 2) as 0 | 4 | 8, l2spec: c.l2spec,
        udpPorts: c.encap === 'udp' ? [portL2tpd(c), portKernel(c)] : [], filter: `l2tp.sid == ${sid}` });
      const sent = fromL2tpd ? s.stats.tx_packets : k.txPackets;
      const bad = pkts.filter((p) => p.cookie !== cookieHex || !p.l2spec || p.l2spec.s !== (c.seqL2tpd === 'both')
        || ![0x0800, 0x0806].includes(p.innerType));
      const dir = fromL2tpd ? 'l2tpd -> kernel' : 'kernel -> l2tpd';
      t.same(bad.slice(0, 3).map((p) => p.frame), [], `${c.label}, ${dir}: all ${pkts.length} captured packets carry session, cookie, sublayer and a frame`);
      // tcpdump may not keep up with TCP under emulation; the count is exact only if it lost nothing.
      if (stopped !== null && dropped === 0) t.equal(pkts.length, sent, `${c.label}, ${dir}: captured every packet sent (${sent})`);
      else t.comment(`${c.label}, ${dir}: tcpdump dropped ${dropped} packets; captured ${pkts.length} of ${sent}`);
    }
  }
}
