/**
 * Hostile and broken input, live (docs/architecture.md "Bad input"): while good sessions carry a bounded
 * ping, daemon B's sockets are flooded from site A's namespace with malformed packets over UDP
 * (IPv4 and IPv6) and over IP encapsulation (IPv4), crafted outside the daemon (node:dgram and
 * the raw-socket package). Every reason's counter must rise by exactly what was sent, the daemon
 * must stay up and the good sessions must keep forwarding.
 *
 * UDP sockets check the source (address and port) before parsing, so the pre-session reasons are
 * sent to an extra tunnel on B whose peer is the crafter itself (192.0.2.1:1799 / [2001:db8::1]:1799).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { hasCommand, netnsUnavailable, nsExec } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep } from '../helpers/sites.js';
import {
  craft, diff, frameHex, ipData, l2ssHex, metricDrops, rawSocketUnavailable, sessionStats, tunnelStats, udpData, type CraftJob, type Counters,
} from '../helpers/inject.js';

const skip = netnsUnavailable() || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand('curl') && 'curl is needed to read /metrics') || rawSocketUnavailable();

const N = 200;
const METRICS_PORT = 9731;
const CRAFTER_PORT = 1799;
const GOOD_COOKIE = '0badcafe';
const CRAFT_COOKIE = 'c0ffee01';
const IP_COOKIE = '014d3636deadbeef';

/** Run a bounded ping in the background; resolves with [transmitted, received]. */
function pingAsync(ns: string, to: string, count: number, intervalS: number, deadline: number): Promise<[number, number]> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-c', String(count), '-i', String(intervalS), '-w', String(deadline), '-q', to],
      { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('exit', () => {
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
      resolve(m ? [Number(m[1]), Number(m[2])] : [0, 0]);
    });
  });
}

/** Wait until a counter snapshot stops changing (the daemon has drained its sockets). */
async function settle<T>(read: () => T): Promise<T> {
  let prev = JSON.stringify(read());
  for (let i = 0; i < 30; i++) {
    await sleep(400);
    const cur = read();
    const s = JSON.stringify(cur);
    if (s === prev) return cur;
    prev = s;
  }
  return read();
}

t.test('malformed floods over UDP and IP are counted by reason while good sessions forward', { skip, timeout: 600000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const { a, b } = sites;
  // A second address on the sender's side for foreign-source packets.
  nsExec(a.ns, 'ip', ['addr', 'add', '192.0.2.3/24', 'dev', 'ul0']);
  await sites.start(a);
  await sites.start(b, ['--metrics-listen', `127.0.0.1:${METRICS_PORT}`]);

  // Good tunnels between the daemons: UDP 100 and IP 300, one session each with hosts behind it.
  for (const [d, local, remote] of [[a, UNDERLAY.a4, UNDERLAY.b4], [b, UNDERLAY.b4, UNDERLAY.a4]] as const) {
    sites.ok(d, ['add', 'tunnel', 'tunnel_id', '100', 'peer_tunnel_id', '100', 'encap', 'udp', 'local', local, 'remote', remote, 'udp_sport', '1701', 'udp_dport', '1701']);
    sites.ok(d, ['add', 'tunnel', 'tunnel_id', '300', 'peer_tunnel_id', '300', 'encap', 'ip', 'local', local, 'remote', remote]);
    sites.ok(d, ['add', 'session', 'tunnel_id', '100', 'session_id', '101', 'peer_session_id', '101', 'l2spec_type', 'default',
      'cookie', GOOD_COOKIE, 'peer_cookie', GOOD_COOKIE, 'bridge', 'brg1']);
    sites.ok(d, ['add', 'session', 'tunnel_id', '300', 'session_id', '301', 'peer_session_id', '301', 'l2spec_type', 'default',
      'cookie', IP_COOKIE, 'peer_cookie', IP_COOKIE, 'bridge', 'brg3']);
  }
  const hA1 = sites.host(a, 'brg1', '198.51.100.1/30');
  sites.host(b, 'brg1', '198.51.100.2/30');
  const hA3 = sites.host(a, 'brg3', '198.51.100.5/30');
  sites.host(b, 'brg3', '198.51.100.6/30');
  // Tunnels on B whose peer is the crafter: UDP/IPv4 150 and UDP/IPv6 160.
  sites.ok(b, ['add', 'tunnel', 'tunnel_id', '150', 'peer_tunnel_id', '150', 'encap', 'udp', 'local', UNDERLAY.b4, 'remote', UNDERLAY.a4,
    'udp_sport', '1750', 'udp_dport', String(CRAFTER_PORT)]);
  sites.ok(b, ['add', 'tunnel', 'tunnel_id', '160', 'peer_tunnel_id', '160', 'encap', 'udp', 'local', UNDERLAY.b6, 'remote', UNDERLAY.a6,
    'udp_sport', '1760', 'udp_dport', String(CRAFTER_PORT)]);
  for (const [tid, sid] of [[150, 151], [160, 161]]) {
    sites.ok(b, ['add', 'session', 'tunnel_id', String(tid), 'session_id', String(sid), 'peer_session_id', String(sid),
      'l2spec_type', 'default', 'cookie', CRAFT_COOKIE, 'peer_cookie', CRAFT_COOKIE]);
  }
  t.ok(sites.ping(hA1, '198.51.100.2') >= 2, 'UDP session 101 forwards before the flood');
  t.ok(sites.ping(hA3, '198.51.100.6') >= 2, 'IP session 301 forwards before the flood');

  const frame = frameHex(1);
  const good = (sid: number) => udpData(sid, CRAFT_COOKIE, l2ssHex(null), frame);
  type Expect = { label: string; job: CraftJob; where: 'tunnel' | 'session' | 'host'; id: number; counter: string; also?: string[] };
  const u4 = (extra: Partial<CraftJob>): CraftJob => ({ proto: 'udp4', from: UNDERLAY.a4, fromPort: CRAFTER_PORT, to: UNDERLAY.b4, toPort: 1750, count: N, ...extra });
  const u6 = (extra: Partial<CraftJob>): CraftJob => ({ proto: 'udp6', from: UNDERLAY.a6, fromPort: CRAFTER_PORT, to: UNDERLAY.b6, toPort: 1760, count: N, ...extra });
  const ip4 = (extra: Partial<CraftJob>): CraftJob => ({ proto: 'ip4', to: UNDERLAY.b4, count: N, ...extra });
  const cases: Expect[] = [];
  for (const [fam, mk, tid, sid] of [['UDP/IPv4', u4, 150, 151], ['UDP/IPv6', u6, 160, 161]] as const) {
    cases.push(
      { label: `${fam} short (2 bytes)`, job: mk({ hex: '0003' }), where: 'tunnel', id: tid, counter: 'drop_short_packet' },
      { label: `${fam} wrong version (2)`, job: mk({ hex: good(sid).replace(/^0003/, '0002') }), where: 'tunnel', id: tid, counter: 'drop_bad_version', also: ['rx_invalid'] },
      // Control messages: the tunnel runs no Hello, so a valid one is dropped as before; a malformed
      // one or one for another connection ID is counted as such (docs/liveness.md).
      { label: `${fam} control ZLB`, job: mk({ hex: `c803000c${tid.toString(16).padStart(8, '0')}00000000` }), where: 'tunnel', id: tid, counter: 'drop_control' },
      { label: `${fam} control, AVP of length 0`, job: mk({ hex: `c8030014${'00'.repeat(16)}` }), where: 'tunnel', id: tid, counter: 'drop_control_malformed' },
      { label: `${fam} HELLO for connection ID 999`, job: mk({ hex: 'c8030014000003e7000000008008000000000006' }), where: 'tunnel', id: tid, counter: 'drop_control_connection_id' },
      { label: `${fam} unknown session`, job: mk({ hex: good(sid + 1000) }), where: 'tunnel', id: tid, counter: 'drop_unknown_session' },
      { label: `${fam} oversize (20000 bytes, fragmented)`, job: mk({ hex: good(sid), size: 20000 }), where: 'tunnel', id: tid, counter: 'drop_oversize' },
      { label: `${fam} foreign source port`, job: mk({ fromPort: CRAFTER_PORT + 1, hex: good(sid) }), where: 'tunnel', id: tid, counter: 'drop_foreign_source' },
      { label: `${fam} wrong cookie`, job: mk({ hex: udpData(sid, 'deadbeef', l2ssHex(null), frame) }), where: 'session', id: sid, counter: 'rx_cookie_discards', also: ['rx_errors'] },
      { label: `${fam} truncated (header ends inside the cookie)`, job: mk({ hex: udpData(sid, '', '', 'c0ff') }), where: 'session', id: sid, counter: 'rx_invalid', also: ['rx_errors'] },
      { label: `${fam} frame shorter than Ethernet`, job: mk({ hex: udpData(sid, CRAFT_COOKIE, l2ssHex(null), '0102030405') }), where: 'session', id: sid, counter: 'rx_short_frames', also: ['rx_errors'] },
      { label: `${fam} frame larger than the session MTU`, job: mk({ hex: udpData(sid, CRAFT_COOKIE, l2ssHex(null), frameHex(2, 4000)) }), where: 'session', id: sid, counter: 'rx_oversize', also: ['rx_errors'] },
    );
  }
  cases.push(
    { label: 'UDP/IPv4 foreign address 192.0.2.3', job: u4({ from: '192.0.2.3', hex: good(151) }), where: 'tunnel', id: 150, counter: 'drop_foreign_source' },
    { label: 'UDP/IPv4 foreign port on the good tunnel\'s socket', job: u4({ fromPort: CRAFTER_PORT + 2, toPort: 1701, hex: udpData(101, GOOD_COOKIE, l2ssHex(null), frame) }),
      where: 'tunnel', id: 100, counter: 'drop_foreign_source' },
    { label: 'IP short (2 bytes)', job: ip4({ hex: '0001' }), where: 'host', id: 0, counter: 'short_packet' },
    { label: 'IP control ZLB for tunnel 300', job: ip4({ hex: '00000000c803000c0000012c00000000' }), where: 'tunnel', id: 300, counter: 'drop_control' },
    { label: 'IP control, AVP of length 0, from tunnel 300\'s remote', job: ip4({ hex: `00000000c8030014${'00'.repeat(16)}` }), where: 'tunnel', id: 300,
      counter: 'drop_control_malformed' },
    { label: 'IP HELLO for connection ID 999 from 192.0.2.3', job: ip4({ hdrSrc: '192.0.2.3', hex: '00000000c8030014000003e7000000008008000000000006' }),
      where: 'host', id: 0, counter: 'control_connection_id' },
    { label: 'IP unknown session', job: ip4({ hex: ipData(999, IP_COOKIE, l2ssHex(null), frame) }), where: 'host', id: 0, counter: 'unknown_session' },
    { label: 'IP oversize (20000 bytes, fragmented)', job: ip4({ hex: ipData(301, IP_COOKIE, l2ssHex(null), frame), size: 20000 }), where: 'host', id: 0, counter: 'oversize' },
    { label: 'IP foreign address 192.0.2.3', job: ip4({ hdrSrc: '192.0.2.3', hex: ipData(301, IP_COOKIE, l2ssHex(null), frame) }), where: 'tunnel', id: 300, counter: 'drop_foreign_source' },
    { label: 'IP wrong cookie', job: ip4({ hex: ipData(301, '014d3636deadbeee', l2ssHex(null), frame) }), where: 'session', id: 301, counter: 'rx_cookie_discards', also: ['rx_errors'] },
    { label: 'IP truncated (header ends inside the cookie)', job: ip4({ hex: ipData(301, '014d3636', '', '') }), where: 'session', id: 301, counter: 'rx_invalid', also: ['rx_errors'] },
  );

  const snapshot = () => ({ tunnels: tunnelStats(sites, b), sessions: sessionStats(sites, b), host: metricDrops(b.ns, METRICS_PORT) });
  const before = await settle(snapshot);
  t.ok(before.host.size > 0, 'metrics expose the host row of raw IP drops');

  // Bounded pings through both good sessions while the flood runs.
  const pings = [pingAsync(hA1, '198.51.100.2', 80, 0.1, 40), pingAsync(hA3, '198.51.100.6', 80, 0.1, 40)];
  await sleep(300);
  const t0 = Date.now();
  const result = craft(a.ns, cases.map((c) => c.job), 300000);
  const floodMs = Date.now() - t0;
  const [[tx1, rx1], [tx3, rx3]] = await Promise.all(pings);
  t.comment(`flood: ${cases.length} kinds x ${N} packets in ${floodMs} ms; ping UDP session ${rx1}/${tx1}, IP session ${rx3}/${tx3}`);
  const after = await settle(snapshot);

  t.equal(b.proc?.exitCode ?? null, null, 'daemon B is still running');
  t.equal(sites.cli(b, ['show', 'tunnel']).status, 0, 'daemon B still answers its API');
  t.ok(tx1 >= 70 && rx1 >= tx1 - 2, `UDP session keeps forwarding during the flood (${rx1}/${tx1})`);
  t.ok(tx3 >= 70 && rx3 >= tx3 - 2, `IP session keeps forwarding during the flood (${rx3}/${tx3})`);

  // Every kind was sent in full, and each reason moved by exactly that much.
  const expected = new Map<string, number>();
  const key = (c: Expect, counter: string) => `${c.where}/${c.id}/${counter}`;
  cases.forEach((c, i) => {
    t.equal(result.sent[i], N, `${c.label}: crafter sent ${N} (${result.errors[i] ?? 'no error'})`);
    for (const counter of [c.counter, ...(c.also ?? [])]) expected.set(key(c, counter), (expected.get(key(c, counter)) ?? 0) + result.sent[i]);
  });
  const read = (snap: typeof before, where: string, id: number, counter: string): number => {
    if (where === 'host') return snap.host.get(`/${counter}`) ?? NaN;
    const row: Counters | undefined = where === 'tunnel' ? snap.tunnels.get(id) : snap.sessions.get(id);
    return row?.[counter] ?? NaN;
  };
  for (const c of cases) {
    const got = read(after, c.where, c.id, c.counter) - read(before, c.where, c.id, c.counter);
    t.equal(got, expected.get(key(c, c.counter)), `${c.label}: ${c.where}${c.where === 'host' ? '' : ` ${c.id}`} ${c.counter} +${got}`);
  }
  for (const [k, v] of expected) {
    const [where, id, counter] = k.split('/');
    if (cases.some((c) => key(c, c.counter) === k)) continue;
    const got = read(after, where, Number(id), counter) - read(before, where, Number(id), counter);
    t.equal(got, v, `${where} ${id} ${counter} +${got} (sum of the kinds that count it)`);
  }
  // Nothing crafted reached a tap, and nothing was counted under a reason it was not sent for.
  for (const sid of [151, 161]) {
    t.equal(diff(after.sessions.get(sid)!, before.sessions.get(sid)).rx_packets, 0, `session ${sid} delivered nothing`);
  }
  for (const tid of [150, 160]) {
    const d = diff(after.tunnels.get(tid)!, before.tunnels.get(tid));
    t.equal(d.rx_packets, 0, `tunnel ${tid} delivered nothing`);
    t.equal(d.drop_socket_error, 0, `tunnel ${tid}: no socket errors`);
  }
  const s101 = diff(after.sessions.get(101)!, before.sessions.get(101));
  const s301 = diff(after.sessions.get(301)!, before.sessions.get(301));
  t.equal(s101.rx_errors, 0, 'good UDP session: no receive errors');
  t.equal(s301.rx_errors - 2 * N, 0, 'good IP session: receive errors are exactly the crafted ones');
  t.ok(s101.rx_packets >= 70 && s301.rx_packets >= 70, `good sessions delivered (${s101.rx_packets}, ${s301.rx_packets})`);
  t.ok(sites.ping(hA1, '198.51.100.2') >= 2 && sites.ping(hA3, '198.51.100.6') >= 2, 'both good sessions forward after the flood');
});
