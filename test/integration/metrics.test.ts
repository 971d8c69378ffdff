/**
 * /metrics end to end: two daemons with their metrics listeners inside their namespaces, an
 * exact number of frames through one session (ping with static neighbours and IPv6 off, so no
 * ARP/ND/MLD frames cross the pseudowire), then the scraped counters must match exactly, and
 * `l2tpctl show session -s` must print the same numbers.
 */
import t from 'tap';
import { scrapeMetrics, type Samples } from '../helpers/scrape.js';
import { hasCommand, linkAddress, netnsUnavailable, nsExec, nsRun } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand('curl') && 'curl is not installed');

const PORT = 9701;
const PINGS = 20;
// ICMP echo with 56 data bytes: 14 Ethernet + 20 IPv4 + 8 ICMP + 56 = 98-byte frame. The kernel
// counts L2TPv3 header + frame: UDP encap, no cookie, default sublayer = 4+4+4 = 12 bytes.
const FRAME = 98;
const L2TP_HDR = 12;

function scrape(d: Daemon): { text: string; samples: Samples } {
  return scrapeMetrics(d.ns, PORT);
}

function sessionValue(s: Samples, name: string, tid: number, sid: number, ifname: string): number | undefined {
  return s.get(`${name}{tunnel_id="${tid}",session_id="${sid}",interface="${ifname}"}`);
}

/** `show session -s` text: "RX: packets bytes ..." header lines followed by value lines. */
function parseShowStats(text: string): Record<string, number> {
  const lines = text.split('\n');
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < lines.length; i++) {
    const m = /^\s+(RX|TX|drop):\s+(.*)$/.exec(lines[i]);
    if (!m) continue;
    const names = m[2].trim().split(/\s+/);
    const values = lines[i + 1].trim().split(/\s+/).map(Number);
    names.forEach((n, k) => { out[`${m[1].toLowerCase()}_${n}`] = values[k]; });
  }
  return out;
}

t.test('per-session counters on /metrics match the frames sent, exactly', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  // No IPv6 on anything created from here on (taps, bridges, host veths): no ND/MLD frames.
  for (const d of [sites.a, sites.b]) nsExec(d.ns, 'sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
  const started = Date.now() / 1000;
  await sites.start(sites.a, ['--metrics-listen', `127.0.0.1:${PORT}`]);
  await sites.start(sites.b, ['--metrics-listen', `127.0.0.1:${PORT}`]);
  for (const [d, local, remote] of [[sites.a, UNDERLAY.a4, UNDERLAY.b4], [sites.b, UNDERLAY.b4, UNDERLAY.a4]] as const) {
    sites.ok(d, ['add', 'tunnel', 'tunnel_id', '100', 'peer_tunnel_id', '100', 'encap', 'udp', 'local', local,
      'remote', remote, 'udp_sport', '1701', 'udp_dport', '1701']);
    sites.ok(d, ['add', 'session', 'name', 'pwm1', 'tunnel_id', '100', 'session_id', '1', 'peer_session_id', '1', 'bridge', 'brm1']);
    sites.ok(d, ['add', 'session', 'name', 'pwm2', 'tunnel_id', '100', 'session_id', '2', 'peer_session_id', '2', 'bridge', 'brm2']);
  }
  const hosts: string[] = [];
  for (const [d, addr] of [[sites.a, '198.51.100.1/30'], [sites.b, '198.51.100.2/30']] as const) {
    const h = sites.ns('hm');
    nsExec(h, 'sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
    nsExec(h, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    hosts.push(h);
    // Like Sites.host, but IPv6 is off before eth0 exists.
    nsExec(d.ns, 'ip', ['link', 'add', 'eth0', 'netns', h, 'type', 'veth', 'peer', 'name', `hm${hosts.length}`]);
    nsExec(d.ns, 'ip', ['link', 'set', `hm${hosts.length}`, 'master', 'brm1', 'up']);
    nsExec(h, 'ip', ['addr', 'add', addr, 'dev', 'eth0']);
    nsExec(h, 'ip', ['link', 'set', 'eth0', 'mtu', '1400', 'up']);
  }
  const [hostA, hostB] = hosts;
  nsExec(hostA, 'ip', ['neigh', 'replace', '198.51.100.2', 'lladdr', linkAddress(hostB, 'eth0'), 'dev', 'eth0', 'nud', 'permanent']);
  nsExec(hostB, 'ip', ['neigh', 'replace', '198.51.100.1', 'lladdr', linkAddress(hostA, 'eth0'), 'dev', 'eth0', 'nud', 'permanent']);
  // Let the kernel's own chatter on new links (unsolicited IGMP reports come up to ~1 s apart,
  // twice) pass before the baseline, so the window holds only the pings.
  await sleep(3000);

  const before = { a: scrape(sites.a).samples, b: scrape(sites.b).samples };
  const r = nsRun(hostA, 'ping', ['-c', String(PINGS), '-i', '0.05', '-w', '20', '-q', '198.51.100.2'], 30000);
  t.match(r.stdout, new RegExp(`${PINGS} packets transmitted, ${PINGS} received`), `ping ${PINGS}/${PINGS}`);
  await sleep(300);
  const after = { a: scrape(sites.a), b: scrape(sites.b) };
  const scrapedAt = Date.now() / 1000;

  const bytes = PINGS * (L2TP_HDR + FRAME);
  for (const [side, d] of [['a', sites.a], ['b', sites.b]] as const) {
    const s = after[side].samples;
    const v = (name: string, sid = 1) => sessionValue(s, name, 100, sid, sid === 1 ? 'pwm1' : 'pwm2');
    const delta = (name: string, sid = 1) => (v(name, sid) ?? NaN) - (sessionValue(before[side], name, 100, sid, sid === 1 ? 'pwm1' : 'pwm2') ?? NaN);
    // Counted from a baseline taken after set-up: interfaces coming up may send a frame or two
    // (seen: two 54-byte frames per session) before the test's traffic starts.
    t.comment(`${side}: baseline before the pings rx=${sessionValue(before[side], 'l2tp_session_rx_packets_total', 100, 1, 'pwm1')} tx=${sessionValue(before[side], 'l2tp_session_tx_packets_total', 100, 1, 'pwm1')}`);
    t.equal(delta('l2tp_session_rx_packets_total'), PINGS, `${side}: rx_packets_total +${PINGS}`);
    t.equal(delta('l2tp_session_tx_packets_total'), PINGS, `${side}: tx_packets_total +${PINGS}`);
    t.equal(delta('l2tp_session_rx_bytes_total'), bytes, `${side}: rx_bytes_total +${PINGS} x (${L2TP_HDR} + ${FRAME})`);
    t.equal(delta('l2tp_session_tx_bytes_total'), bytes, `${side}: tx_bytes_total +${PINGS} x (${L2TP_HDR} + ${FRAME})`);
    t.equal(delta('l2tp_session_rx_packets_total', 2), 0, `${side}: idle session 2 has its own series, unchanged`);
    for (const name of ['rx_errors', 'tx_errors', 'rx_seq_discards', 'rx_oos_packets', 'rx_cookie_discards']) {
      t.equal(v(`l2tp_session_${name}_total`), 0, `${side}: l2tp_session_${name}_total present and 0`);
    }
    const lastRx = v('l2tp_session_last_rx_timestamp_seconds') ?? 0;
    t.ok(lastRx >= started && lastRx <= scrapedAt, `${side}: last_rx_timestamp_seconds ${lastRx} within the test`);
    t.equal(s.get('l2tp_tunnels'), 1, `${side}: l2tp_tunnels 1`);
    t.equal(s.get('l2tp_sessions'), 2, `${side}: l2tp_sessions 2`);
    t.equal((s.get('l2tp_tunnel_rx_packets_total{tunnel_id="100"}') ?? NaN) - (before[side].get('l2tp_tunnel_rx_packets_total{tunnel_id="100"}') ?? NaN), PINGS, `${side}: tunnel rx_packets +${PINGS}`);
    const drops = 'l2tp_tunnel_rx_drops_total{tunnel_id="100",reason="unknown_session"}';
    t.ok(s.has(drops), `${side}: tunnel drop reasons present`);
    t.equal(s.get(drops), before[side].get(drops), `${side}: no drops during the pings`);
    t.match(after[side].text, /^l2tpd_build_info\{version="0\.1\.0",node="v[\d.]+"\} 1$/m, `${side}: l2tpd_build_info`);
    for (const p of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds']) {
      t.ok(s.has(p), `${side}: ${p}`);
    }
    t.match(after[side].text, /^# TYPE l2tp_session_rx_packets_total counter$/m);
    t.match(after[side].text, /^# TYPE l2tp_sessions gauge$/m);

    // l2tpctl prints the same numbers.
    const js = sites.json<Array<{ session_id: number; stats: Record<string, number> }>>(d, ['show', 'session', 'tunnel_id', '100', 'session_id', '1', '-s']);
    const same = {
      rx_packets: v('l2tp_session_rx_packets_total'), tx_packets: v('l2tp_session_tx_packets_total'),
      rx_bytes: v('l2tp_session_rx_bytes_total'), tx_bytes: v('l2tp_session_tx_bytes_total'),
    };
    t.match(js[0].stats, same, `${side}: show session -s -j prints the scraped numbers`);
    t.equal(js[0].stats.last_rx_ms / 1000, lastRx, `${side}: same last rx time`);
    const text = parseShowStats(sites.ok(d, ['show', 'session', 'tunnel_id', '100', 'session_id', '1', '-s']));
    t.match(text, same, `${side}: show session -s text prints the scraped numbers`);
  }

  // Deleting a session drops its series (no stale labels).
  sites.ok(sites.a, ['del', 'session', 'tunnel_id', '100', 'session_id', '2']);
  const gone = scrape(sites.a).samples;
  t.equal(gone.get('l2tp_sessions'), 1, 'l2tp_sessions 1 after del');
  t.notOk(sessionValue(gone, 'l2tp_session_rx_packets_total', 100, 2, 'pwm2') !== undefined, 'deleted session has no series');
  const notFound = nsRun(sites.a.ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${PORT}/other`]);
  t.equal(notFound.stdout, '404', 'other paths: 404');
});
