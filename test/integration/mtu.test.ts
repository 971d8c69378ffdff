/**
 * MTU live (README "Wire behaviour", docs/protocol.md "MTU"): frames larger than the path MTU
 * are carried by outer fragmentation; a jumbo underlay gives a jumbo default session MTU
 * (underlay − overhead, as the kernel computes it) and carries jumbo frames; a frame larger than
 * a session accepts is counted (rx_oversize / tx_oversize), never delivered cut.
 */
import t from 'tap';
import { hasCommand, netnsUnavailable, nsExec, nsRun } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep } from '../helpers/sites.js';
import { diff, sessionStats } from '../helpers/inject.js';

const skip = netnsUnavailable() || (!hasCommand('ping') && 'ping (iputils-ping) is not installed');

function udpTunnel(sites: Sites): void {
  for (const [d, local, remote] of [[sites.a, UNDERLAY.a4, UNDERLAY.b4], [sites.b, UNDERLAY.b4, UNDERLAY.a4]] as const) {
    sites.ok(d, ['add', 'tunnel', 'tunnel_id', '100', 'peer_tunnel_id', '100', 'encap', 'udp', 'local', local, 'remote', remote, 'udp_sport', '1701', 'udp_dport', '1701']);
  }
}

/** Sites.host leaves the site side of the host veth at 1500; raise every port of a bridge (and so the bridge). */
function bridgeMtu(ns: string, bridge: string, mtu: number): void {
  const ports = JSON.parse(nsExec(ns, 'ip', ['-j', 'link', 'show', 'master', bridge])) as Array<{ ifname: string }>;
  for (const p of ports) nsExec(ns, 'ip', ['link', 'set', p.ifname, 'mtu', String(mtu)]);
}

/** ping with DF set; returns received count (and, in `lastSent`, how many requests went out). */
let lastSent = 0;
function pingDf(ns: string, to: string, size: number, count = 3): number {
  // Without replies, -w keeps sending until the deadline: keep it short and count what was sent.
  const r = nsRun(ns, 'ping', ['-c', String(count), '-i', '0.2', '-w', '4', '-q', '-M', 'do', '-s', String(size), to], 15000);
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout ?? '');
  lastSent = m ? Number(m[1]) : 0;
  return m ? Number(m[2]) : 0;
}

t.test('session mtu 1500 over a 1500 underlay: full-size frames carried by outer fragmentation', { skip, timeout: 300000 }, async (t) => {
  const sites = new Sites(1500);
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  udpTunnel(sites);
  for (const d of [sites.a, sites.b]) {
    sites.ok(d, ['add', 'session', 'tunnel_id', '100', 'session_id', '21', 'peer_session_id', '21', 'mtu', '1500', 'bridge', 'brm1']);
  }
  sites.hostMtu = 1500;
  const hA = sites.host(sites.a, 'brm1', '198.51.100.1/30');
  sites.host(sites.b, 'brm1', '198.51.100.2/30');
  const shown = sites.json<Array<{ session_id: number; mtu: number }>>(sites.a, ['show', 'session']);
  t.equal(shown.find((s) => s.session_id === 21)?.mtu, 1500, 'show session: mtu 1500');
  const before = sessionStats(sites, sites.b).get(21)!;
  t.equal(pingDf(hA, '198.51.100.2', 1472), 3, 'ping -s 1472 -M do: 3/3 (1514-byte frames in 1554-byte outer packets, fragmented)');
  const d = diff(sessionStats(sites, sites.b).get(21)!, before);
  t.ok(d.rx_bytes >= 3 * (1514 + 8), `B received full-size frames (${d.rx_bytes} L2TP bytes in ${d.rx_packets} packets)`);
  t.equal(d.rx_errors, 0, 'no receive errors');
  t.equal(pingDf(hA, '198.51.100.2', 1473), 0, 'ping -s 1473 -M do does not fit the host MTU (sanity)');
});

t.test('jumbo underlay: default session MTU 8946 and 8000-byte pings; oversize frames counted, not cut', { skip, timeout: 300000 }, async (t) => {
  const sites = new Sites(9000);
  t.teardown(() => sites.close());
  const { a, b } = sites;
  await sites.start(a);
  await sites.start(b);
  udpTunnel(sites);
  for (const d of [a, b]) sites.ok(d, ['add', 'session', 'tunnel_id', '100', 'session_id', '31', 'peer_session_id', '31', 'bridge', 'brj1']);
  // Session 32: A takes the default (jumbo) MTU, B only accepts 1500.
  sites.ok(a, ['add', 'session', 'tunnel_id', '100', 'session_id', '32', 'peer_session_id', '32', 'bridge', 'brj2']);
  sites.ok(b, ['add', 'session', 'tunnel_id', '100', 'session_id', '32', 'peer_session_id', '32', 'mtu', '1500', 'bridge', 'brj2']);
  // Session 33: no bridge, for a frame written straight into an over-sized tap.
  sites.ok(a, ['add', 'session', 'name', 'l2tpbig0', 'tunnel_id', '100', 'session_id', '33', 'peer_session_id', '33', 'mtu', '1500']);
  sites.ok(b, ['add', 'session', 'tunnel_id', '100', 'session_id', '33', 'peer_session_id', '33', 'mtu', '1500']);

  const shown = sites.json<Array<{ session_id: number; mtu: number }>>(a, ['show', 'session']);
  // 9000 - 20 (IPv4) - 8 (UDP) - 8 (L2TPv3 UDP header) - 4 (default L2SS) - 14 (Ethernet) = 8946.
  t.equal(shown.find((s) => s.session_id === 31)?.mtu, 8946, 'default session MTU over a 9000 underlay is 8946');
  sites.hostMtu = 8946;
  const hA = sites.host(a, 'brj1', '198.51.100.1/30');
  sites.host(b, 'brj1', '198.51.100.2/30');
  bridgeMtu(a.ns, 'brj1', 8946);
  bridgeMtu(b.ns, 'brj1', 8946);
  const before31 = sessionStats(sites, b).get(31)!;
  t.equal(pingDf(hA, '198.51.100.2', 8000), 3, 'ping -s 8000 -M do: 3/3 through the jumbo session');
  t.equal(pingDf(hA, '198.51.100.2', 8918), 3, 'ping -s 8918 -M do (8946-byte IP packets, a full session MTU): 3/3');
  const d31 = diff(sessionStats(sites, b).get(31)!, before31);
  t.ok(d31.rx_bytes >= 3 * 8042, `B received jumbo frames (${d31.rx_bytes} bytes in ${d31.rx_packets} packets)`);
  t.equal(d31.rx_errors, 0, 'no receive errors on the jumbo session');

  // A sends 3042-byte frames; B's session accepts MTU 1500 + 18: counted as rx_oversize, not cut.
  const hA2 = sites.host(a, 'brj2', '198.51.100.5/30');
  sites.hostMtu = 1500;
  const hB2 = sites.host(b, 'brj2', '198.51.100.6/30');
  bridgeMtu(a.ns, 'brj2', 8946);
  t.ok(sites.ping(hA2, '198.51.100.6') >= 2, 'session 32 carries small frames');
  const before32 = sessionStats(sites, b).get(32)!;
  const capture = nsRun(hB2, 'sh', ['-c', 'cat /sys/class/net/eth0/statistics/rx_bytes']);
  t.equal(pingDf(hA2, '198.51.100.6', 3000), 0, 'ping -s 3000 to a host behind an MTU 1500 session gets no reply');
  await sleep(300);
  const d32 = diff(sessionStats(sites, b).get(32)!, before32);
  const sent32 = lastSent;
  t.ok(sent32 >= 3, `A's host sent ${sent32} 3042-byte frames`);
  t.equal(d32.rx_oversize, sent32, `B counted every one as rx_oversize (${d32.rx_oversize})`);
  t.equal(d32.rx_errors, sent32, 'and as receive errors');
  t.ok(d32.rx_bytes < 1500, `no big frame delivered, cut or whole (${d32.rx_packets} small frames, ${d32.rx_bytes} bytes)`);
  const after = nsRun(hB2, 'sh', ['-c', 'cat /sys/class/net/eth0/statistics/rx_bytes']);
  t.ok(Number(after.stdout) - Number(capture.stdout) < 1500, `the host behind B got no part of them (${Number(after.stdout) - Number(capture.stdout)} bytes of small frames)`);

  // Transmit side: a 3042-byte frame written into A's tap (MTU raised by hand past the session's 1500).
  nsExec(a.ns, 'ip', ['link', 'set', 'l2tpbig0', 'mtu', '9000', 'up']);
  nsExec(a.ns, 'ip', ['addr', 'add', '203.0.113.1/24', 'dev', 'l2tpbig0']);
  nsExec(a.ns, 'ip', ['neigh', 'replace', '203.0.113.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'l2tpbig0']);
  const beforeA = sessionStats(sites, a).get(33)!;
  const beforeB = sessionStats(sites, b).get(33)!;
  pingDf(a.ns, '203.0.113.2', 3000);
  const sent33 = lastSent;
  await sleep(300);
  const dA = diff(sessionStats(sites, a).get(33)!, beforeA);
  const dB = diff(sessionStats(sites, b).get(33)!, beforeB);
  t.ok(sent33 >= 3, `ping wrote ${sent33} 3042-byte frames into the tap`);
  t.equal(dA.tx_oversize, sent33, `A counted every one as tx_oversize (${dA.tx_oversize})`);
  t.ok(dA.tx_bytes < 1500, `A sent none of them, cut or whole (${dA.tx_packets} small frames, ${dA.tx_bytes} bytes)`);
  t.ok(dB.rx_bytes < 1500 && dB.rx_errors === 0, 'B received no part of them on that session');
  t.equal(a.proc?.exitCode ?? null, null, 'daemon A still running');
});
