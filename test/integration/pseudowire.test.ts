/**
 * End to end: two l2tpd daemons in namespaces, configured with l2tpctl, carry Ethernet between
 * hosts behind their session interfaces. One daemon pair runs four tunnels at once
 * (udp/ip x IPv4/IPv6 underlay), each with six sessions (cookie none/4/8 x l2spec none/default),
 * and every session is pinged from A to B (the replies cross back B to A); one session per
 * tunnel is also pinged from B to A.
 */
import t from 'tap';
import { hasCommand, netnsUnavailable, nsRun } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep, tunnelWords } from '../helpers/sites.js';

const skip = netnsUnavailable() || (!hasCommand('ping') && 'ping (iputils-ping) is not installed');

interface Tun { id: number; encap: 'udp' | 'ip'; v6: boolean; port: number }
const TUNNELS: Tun[] = [
  { id: 100, encap: 'udp', v6: false, port: 1701 },
  { id: 200, encap: 'udp', v6: true, port: 1702 },
  { id: 300, encap: 'ip', v6: false, port: 0 },
  { id: 400, encap: 'ip', v6: true, port: 0 },
];
const COOKIES = [[], ['cookie', '0badcafe', 'peer_cookie', '0badcafe'], ['cookie', '014d3636deadbeef', 'peer_cookie', '014d3636deadbeef']];
const L2SPEC = ['none', 'default'];

/** The shared `add tunnel` words for one side of a matrix tunnel. */
function tunnelFor(tn: Tun, side: 'a' | 'b'): string[] {
  const [a, b] = tn.v6 ? [UNDERLAY.a6, UNDERLAY.b6] : [UNDERLAY.a4, UNDERLAY.b4];
  return side === 'a' ? tunnelWords(tn.id, tn.encap, a, b, [tn.port, tn.port]) : tunnelWords(tn.id, tn.encap, b, a, [tn.port, tn.port]);
}

t.test('pseudowire matrix: udp/ip x IPv4/IPv6 x cookie 0/4/8 x l2spec none/default', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  for (const tn of TUNNELS) {
    sites.ok(sites.a, tunnelFor(tn, 'a'));
    sites.ok(sites.b, tunnelFor(tn, 'b'));
  }
  const cases: Array<{ label: string; hostA: string; hostB: string; addrA: string; addrB: string }> = [];
  let n = 0;
  for (const tn of TUNNELS) {
    for (const cookie of COOKIES) {
      for (const l2spec of L2SPEC) {
        n++;
        const sid = tn.id + n;
        const bridge = `brs${n}`;
        // Alternate IPv4 and IPv6 inner traffic: 198.51.100.0/24 split per session, 2001:db8:1::/48.
        const inner6 = n % 2 === 0;
        const addrA = inner6 ? `2001:db8:1:${n}::1` : `198.51.100.${n * 4 + 1}`;
        const addrB = inner6 ? `2001:db8:1:${n}::2` : `198.51.100.${n * 4 + 2}`;
        const hostA = sites.host(sites.a, bridge, inner6 ? `${addrA}/64` : `${addrA}/30`);
        const hostB = sites.host(sites.b, bridge, inner6 ? `${addrB}/64` : `${addrB}/30`);
        const common = ['tunnel_id', String(tn.id), 'session_id', String(sid), 'peer_session_id', String(sid),
          'l2spec_type', l2spec, ...cookie, 'bridge', bridge];
        sites.ok(sites.a, ['add', 'session', 'name', `pwa${n}`, ...common]);
        sites.ok(sites.b, ['add', 'session', 'name', `pwb${n}`, ...common]);
        const label = `${tn.encap}/IPv${tn.v6 ? 6 : 4} cookie=${cookie.length ? cookie[1].length / 2 : 0} l2spec=${l2spec} inner IPv${inner6 ? 6 : 4}`;
        cases.push({ label, hostA, hostB, addrA, addrB });
      }
    }
  }
  const shown = sites.json<Array<{ interface: string; mtu: number; state: string }>>(sites.a, ['show', 'session']);
  t.equal(shown.length, 24, 'daemon A runs 24 sessions');
  t.ok(shown.every((s) => s.state === 'up'), 'all sessions up');
  for (const c of cases) {
    const got = sites.ping(c.hostA, c.addrB, 3, 8);
    t.ok(got >= 2, `${c.label}: ping A->B (${got}/3 replies)`);
  }
  // Counters: each session delivered frames both ways.
  const stats = sites.json<Array<{ session_id: number; stats: Record<string, number> }>>(sites.b, ['show', 'session', '-s']);
  t.equal(stats.length, cases.length, 'B shows every session');
  t.ok(stats.every((s) => s.stats.rx_packets > 0 && s.stats.tx_packets > 0), 'every session on B received and sent frames');
  t.ok(stats.every((s) => s.stats.rx_errors === 0), 'no receive errors on good sessions');

  // Ping the other way on one session per tunnel.
  for (const c of cases.filter((_, i) => i % 6 === 0)) {
    t.ok(sites.ping(c.hostB, c.addrA, 3, 8) >= 2, `${c.label}: ping B->A`);
  }
});

t.test('iperf3 TCP through the pseudowire, several sessions in one tunnel', { skip: skip || (!hasCommand('iperf3') && 'iperf3 is not installed') }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  const tn = TUNNELS[0];
  sites.ok(sites.a, tunnelFor(tn, 'a'));
  sites.ok(sites.b, tunnelFor(tn, 'b'));
  const hosts: string[][] = [];
  for (const sid of [11, 12]) {
    const hostA = sites.host(sites.a, `bri${sid}`, `203.0.113.${sid * 4 - 43}/30`);
    const hostB = sites.host(sites.b, `bri${sid}`, `203.0.113.${sid * 4 - 42}/30`);
    for (const d of [sites.a, sites.b]) {
      sites.ok(d, ['add', 'session', 'tunnel_id', '100', 'session_id', String(sid), 'peer_session_id', String(sid), 'bridge', `bri${sid}`]);
    }
    hosts.push([hostA, hostB, `203.0.113.${sid * 4 - 42}`]);
  }
  const [hostA, hostB, addrB] = hosts[1];
  t.ok(sites.ping(hostA, addrB) >= 2, 'second session pings');
  const server = nsRun(hostB, 'sh', ['-c', 'iperf3 -s -D -1 --logfile /dev/null && echo started']);
  t.match(server.stdout, /started/, 'iperf3 server started');
  await sleep(300);
  const client = nsRun(hostA, 'iperf3', ['-c', addrB, '-t', '3', '-J'], 30000);
  t.equal(client.status, 0, `iperf3 client completed ${client.stderr ?? ''}`);
  const result = JSON.parse(client.stdout || '{}');
  const bps = result?.end?.sum_received?.bits_per_second ?? 0;
  t.ok(bps > 1e6, `TCP throughput ${(bps / 1e6).toFixed(0)} Mbit/s through the pseudowire`);
  t.comment(`iperf3 TCP: ${(bps / 1e6).toFixed(1)} Mbit/s`);
  const [a0, , b0] = hosts[0];
  t.ok(sites.ping(a0, b0) >= 2, 'first session still forwards');
});
