/**
 * Interop with an independent userspace peer: l2tpd on site A, a guestless QEMU
 * `-netdev l2tpv3` forwarder on site B (tap <-> hub <-> l2tpv3, docs/protocol.md "QEMU"), its tap
 * bridged with a host namespace. Hosts on both sides ping each other through the pseudowire.
 *
 * Matrix: UDP and IP encapsulation, IPv4 and IPv6 underlays, cookies of 0/4/8 bytes, QEMU's
 * `counter=on` against l2tpd's `l2spec_type default` and no counter against `l2spec_type none`.
 * QEMU quirks handled here (docs/protocol.md "QEMU"):
 * - a 32-bit QEMU cookie is the low 32 bits of the value given (txcookie=0x1122334455667788
 *   without cookie64 puts 55667788 on the wire);
 * - `cookie64=off` still selects a 64-bit cookie (the option's presence is what counts);
 * - `counter=on` is a plain counter starting at 1 with no S bit, not RFC sequencing: l2tpd reads
 *   it as an unsequenced default sublayer; QEMU skips l2tpd's sublayer without checking it, so
 *   l2tpd may even send sequence numbers (`seq send`; with `seq_mirror off`, or QEMU's unnumbered
 *   frames would switch them off, as they would a Linux session's);
 * - raw IPv4 receive in QEMU assumes a 20-byte IP header: the kernel builds l2tpd's outer header
 *   without options, so QEMU finds the session ID where it expects it;
 * - QEMU prints "hub 0 with no nics" at start-up (harmless; it does not count l2tpv3 as a nic).
 * One QEMU process per case, cases run one after another, QEMU killed by PID afterwards.
 */
import t from 'tap';
import { hasCommand, netnsUnavailable, nsExec } from '../helpers/netns.js';
import { QEMU, startQemuPeer, type QemuPeer } from '../helpers/qemu-peer.js';
import { Sites, UNDERLAY, sleep, tunnelWords } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand(QEMU) && `${QEMU} is not installed (Debian package qemu-system-x86)`);

interface Case {
  label: string;
  encap: 'udp' | 'ip';
  v6: boolean;
  /** l2tpd session words beyond ids/bridge. */
  l2tpd: string[];
  /** QEMU -netdev l2tpv3 options beyond src/dst/udp/ports/sessions. */
  qemu: string[];
  /** Expect the pseudowire to carry traffic (false: a deliberate mismatch l2tpd must count). */
  works: boolean;
}

const CASES: Case[] = [
  { label: 'udp/IPv4, no cookie, l2spec none vs no counter', encap: 'udp', v6: false,
    l2tpd: ['l2spec_type', 'none'], qemu: [], works: true },
  { label: 'udp/IPv4, 4-byte cookies (QEMU low 32 bits), l2spec default vs counter=on', encap: 'udp', v6: false,
    l2tpd: ['l2spec_type', 'default', 'cookie', 'a1b2c3d4', 'peer_cookie', '55667788'],
    qemu: ['txcookie=0x1122334455667788', 'rxcookie=0xa1b2c3d4', 'counter=on'], works: true },
  { label: 'udp/IPv6, 8-byte cookies (cookie64=on), l2spec default + seq send seq_mirror off vs counter=on', encap: 'udp', v6: true,
    l2tpd: ['l2spec_type', 'default', 'seq', 'send', 'seq_mirror', 'off', 'cookie', '014d3636deadbeef', 'peer_cookie', '0102030405060708'],
    qemu: ['txcookie=0x0102030405060708', 'rxcookie=0x014d3636deadbeef', 'cookie64=on', 'counter=on'], works: true },
  { label: 'ip/IPv4, 8-byte cookies (cookie64=off still 64-bit), l2spec default vs counter=on', encap: 'ip', v6: false,
    l2tpd: ['l2spec_type', 'default', 'cookie', 'cafef00d12345678', 'peer_cookie', '8877665544332211'],
    qemu: ['txcookie=0x8877665544332211', 'rxcookie=0xcafef00d12345678', 'cookie64=off', 'counter=on'], works: true },
  { label: 'ip/IPv4, 4-byte cookies, l2spec none vs no counter', encap: 'ip', v6: false,
    l2tpd: ['l2spec_type', 'none', 'cookie', '0badcafe', 'peer_cookie', 'deadbeef'],
    qemu: ['txcookie=0xdeadbeef', 'rxcookie=0x0badcafe'], works: true },
  { label: 'ip/IPv6, 4-byte cookies, l2spec default vs counter=on', encap: 'ip', v6: true,
    l2tpd: ['l2spec_type', 'default', 'cookie', '11223344', 'peer_cookie', '55667788'],
    qemu: ['txcookie=0x55667788', 'rxcookie=0x11223344', 'counter=on'], works: true },
  { label: 'ip/IPv6, no cookie, l2spec none vs no counter', encap: 'ip', v6: true,
    l2tpd: ['l2spec_type', 'none'], qemu: [], works: true },
  // Negative control: QEMU sends a cookie l2tpd does not expect. Nothing may pass, and l2tpd
  // must count the drops as cookie discards (proves the cookie is really checked).
  { label: 'udp/IPv4, wrong peer cookie (negative control)', encap: 'udp', v6: false,
    l2tpd: ['l2spec_type', 'none', 'cookie', '0badcafe', 'peer_cookie', '0badcafe'],
    qemu: ['txcookie=0x0badcaff', 'rxcookie=0x0badcafe'], works: false },
];

interface SessionStats { session_id: number; stats: Record<string, number> }

t.test('interop with QEMU -netdev l2tpv3', { skip }, async (t) => {
  const sites = new Sites();
  const qemus: QemuPeer[] = [];
  t.teardown(async () => {
    for (const q of qemus) await q.stop();
    await sites.close();
  });
  await sites.start(sites.a);

  let n = 0;
  for (const c of CASES) {
    n++;
    const id = 500 + n;
    const sid = 0x1000 + n;
    const port = 17000 + n;
    const [local, remote] = c.v6 ? [UNDERLAY.a6, UNDERLAY.b6] : [UNDERLAY.a4, UNDERLAY.b4];
    sites.ok(sites.a, tunnelWords(id, c.encap, local, remote, [port, port + 100]));
    const bridge = `brq${n}`;
    // Inner traffic 198.51.100.0/24, one /30 per case.
    const addrA = `198.51.100.${n * 4 + 1}`;
    const addrB = `198.51.100.${n * 4 + 2}`;
    const hostA = sites.host(sites.a, bridge, `${addrA}/30`);
    sites.ok(sites.a, ['add', 'session', 'name', `pwq${n}`, 'tunnel_id', String(id), 'session_id', String(sid),
      'peer_session_id', String(sid + 0x100), ...c.l2tpd, 'bridge', bridge]);

    // Site B: QEMU, its tap in a bridge with the host's veth.
    const hostB = sites.host(sites.b, bridge, `${addrB}/30`);
    const tap = `tq${n}`;
    let peer: QemuPeer;
    try {
      // QEMU's txsession is l2tpd's session_id; l2tpd's peer_session_id is QEMU's rxsession.
      peer = await startQemuPeer(sites.b.ns, {
        tap, local: remote, remote: local, udp: c.encap === 'udp', srcport: port + 100, dstport: port,
        txsession: sid, rxsession: sid + 0x100, extra: [...c.qemu, ...(c.v6 ? ['ipv6=on'] : [])],
      });
    } catch (err) {
      t.fail(`${c.label}: ${(err as Error).message}`);
      continue;
    }
    qemus.push(peer);
    const q = peer.proc;
    const qlog = peer.log;
    nsExec(sites.b.ns, 'ip', ['link', 'set', tap, 'master', bridge, 'up']);

    const before = sites.json<SessionStats[]>(sites.a, ['show', 'session', 'tunnel_id', String(id), '-s'])[0];
    if (c.works) {
      const ab = sites.ping(hostA, addrB, 3, 8);
      t.ok(ab >= 2, `${c.label}: ping l2tpd side -> QEMU side (${ab}/3)`);
      const ba = sites.ping(hostB, addrA, 3, 8);
      t.ok(ba >= 2, `${c.label}: ping QEMU side -> l2tpd side (${ba}/3)`);
      const s = sites.json<SessionStats[]>(sites.a, ['show', 'session', 'tunnel_id', String(id), '-s'])[0];
      t.ok(s.stats.rx_packets >= 4 && s.stats.tx_packets >= 4,
        `${c.label}: l2tpd session counted rx ${s.stats.rx_packets} tx ${s.stats.tx_packets}`);
      t.equal(s.stats.rx_errors, 0, `${c.label}: no receive errors on l2tpd`);
      t.equal(s.stats.rx_cookie_discards, 0, `${c.label}: no cookie discards`);
    } else {
      const got = sites.ping(hostB, addrA, 3, 3);
      t.equal(got, 0, `${c.label}: no reply through a mismatched cookie`);
      const s = sites.json<SessionStats[]>(sites.a, ['show', 'session', 'tunnel_id', String(id), '-s'])[0];
      t.ok(s.stats.rx_cookie_discards > before.stats.rx_cookie_discards,
        `${c.label}: l2tpd counted cookie discards (${s.stats.rx_cookie_discards})`);
      t.equal(s.stats.rx_packets, 0, `${c.label}: nothing delivered`);
    }
    t.equal(q.exitCode, null, `${c.label}: QEMU still running`);
    await peer.stop();
    if (!c.works || t.passing() === false) t.comment(`QEMU output: ${qlog.join('').trim()}`);
  }
});
