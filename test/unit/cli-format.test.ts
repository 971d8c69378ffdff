import t from 'tap';
import { formatCounters, formatJson, formatKeyValues, formatSession, formatSessions, formatTunnel, formatTunnels } from '../../src/cli/format.js';
import type { SessionView, TunnelView } from '../../src/control/api.js';

const T4: TunnelView = {
  tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000, udp_csum: 'off',
};

t.test('tunnel like iproute2 print_tunnel', async (t) => {
  t.equal(formatTunnel(T4), [
    'Tunnel 3000, encap UDP',
    '  From 192.0.2.1 to 192.0.2.2',
    '  Peer tunnel 4000',
    '  UDP source / dest ports: 5000/6000',
    '  UDP checksum: disabled',
    '',
  ].join('\n'));
  t.match(formatTunnel({ ...T4, udp_csum: 'on' }), /UDP checksum: enabled\n$/);
  const v6: TunnelView = { tunnel_id: 1, peer_tunnel_id: 2, encap: 'udp', local: '2001:db8::1', remote: '2001:db8::2', udp_sport: 1, udp_dport: 2 };
  t.match(formatTunnel({ ...v6, udp6_csum_tx: 'on', udp6_csum_rx: 'on' }), /From 2001:db8::1 to 2001:db8::2\n[^]*UDP checksum: enabled\n$/);
  t.match(formatTunnel({ ...v6, udp6_csum_tx: 'on', udp6_csum_rx: 'off' }), /UDP checksum: tx\n$/);
  t.match(formatTunnel({ ...v6, udp6_csum_tx: 'off', udp6_csum_rx: 'on' }), /UDP checksum: rx\n$/);
  t.match(formatTunnel({ ...v6, udp6_csum_tx: 'off', udp6_csum_rx: 'off' }), /UDP checksum: disabled\n$/);
  t.equal(formatTunnel({ tunnel_id: 7, peer_tunnel_id: 8, encap: 'ip', local: '192.0.2.1', remote: '192.0.2.2' }),
    'Tunnel 7, encap IP\n  From 192.0.2.1 to 192.0.2.2\n  Peer tunnel 8\n', 'IP encap: no port or checksum lines');
  const extra = formatTunnel({ ...T4, sessions: 2, state: 'down', error: 'EADDRNOTAVAIL', since: '2026-12-01T10:00:00.000Z', stats: { rx_packets: 5, drop_unknown_session: 3 } }, { stats: true });
  t.match(extra, /  sessions: 2\n  state: down since 2026-12-01T10:00:00\.000Z\n  error: EADDRNOTAVAIL\n/, 'why and since when it is down');
  t.match(extra, /RX: +packets\n +5\n/);
  t.match(extra, /drop: +unknown_session\n +3\n/);
  t.notMatch(formatTunnel({ ...T4, stats: { rx_packets: 5 } }), /packets/, 'no counters without -s');
  t.equal(formatTunnels([T4, T4]), formatTunnel(T4) + formatTunnel(T4));
  t.equal(formatTunnels([]), '');
});

const S: SessionView = {
  tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, peer_tunnel_id: 4000, interface: 'l2tpeth0', mtu: 1446,
  l2spec_type: 'default', seq: 'none', offset: 0, peer_offset: 0, reorder_timeout: 0,
};

t.test('session like iproute2 print_session, plus l2tpd lines', async (t) => {
  t.equal(formatSession(S), [
    'Session 1000 in tunnel 3000',
    '  Peer session 2000, tunnel 4000',
    '  interface name: l2tpeth0',
    '  offset 0, peer offset 0',
    '  reorder timeout: 0',
    '  l2spec_type: default',
    '  mtu: 1446',
    '',
  ].join('\n'));
  const full = formatSession({
    ...S, cookie: '0123abcd', peer_cookie: '0011223344556677', seq: 'both', reorder_timeout: 100, offset: 8, peer_offset: 4,
    l2spec_type: 'none', bridge: 'brvlan1000', vlan: 1000, dev: 'eth1', state: 'up',
  });
  t.equal(full, [
    'Session 1000 in tunnel 3000',
    '  Peer session 2000, tunnel 4000',
    '  interface name: l2tpeth0',
    '  offset 8, peer offset 4',
    '  cookie 0123abcd',
    '  peer cookie 0011223344556677',
    '  reorder timeout: 100',
    '  sequence numbering: send recv',
    '  l2spec_type: none',
    '  mtu: 1446',
    '  bridge: brvlan1000',
    '  vlan: 1000, dev eth1',
    '  state: up',
    '',
  ].join('\n'));
  const over = formatSession({ ...S, bridge: 'br7', vlan: 7, dev: 'eth1', ports_over_mtu: [{ interface: 'eth1.7', mtu: 1500 }, { interface: 'veth3', mtu: 9000 }], state: 'up' });
  t.match(over, /  vlan: 7, dev eth1\n  warning: bridge br7 drops frames over 1446 bytes from eth1\.7 \(mtu 1500\), veth3 \(mtu 9000\)\n  state: up\n/,
    'ports over the MTU: a warning line after vlan');
  t.notMatch(formatSession({ ...S, bridge: 'br7', ports_over_mtu: [] }), /warning/, 'no line when no port is over');
  t.match(formatSession({ ...S, seq: 'send' }), /sequence numbering: send\n/);
  t.match(formatSession({ ...S, seq: 'recv' }), /sequence numbering: recv\n/);
  // Sending now, as the peer's S bit may have switched it (running sessions, default sublayer).
  t.match(formatSession({ ...S, seq: 'both', tx_seq: 'on' }), /\n {2}sequence numbering: send recv\n {2}tx sequencing: on\n {2}l2spec_type/);
  t.match(formatSession({ ...S, tx_seq: 'off' }), /\n {2}tx sequencing: off\n/);
  t.match(formatSession({ ...S, seq: 'recv', tx_seq: 'on' }), /\n {2}tx sequencing: on \(the peer's numbered frames turned it on\)\n/);
  t.match(formatSession({ ...S, seq: 'send', tx_seq: 'off' }), /\n {2}tx sequencing: off \(the peer's unnumbered frames turned it off\)\n/);
  t.match(formatSession({ ...S, seq: 'send', seq_mirror: 'off', tx_seq: 'on' }), /\n {2}tx sequencing: on \(seq_mirror off: the peer's S bit is not followed\)\n/);
  const { peer_tunnel_id: _p, ...noPeer } = S;
  t.match(formatSession(noPeer as SessionView), /Peer session 2000, tunnel \?\n/);
  t.equal(formatSessions([S, S]), formatSession(S) + formatSession(S));
});

t.test('show never prints a raw control character', async (t) => {
  const hostile = { ...S, interface: 'pw\u001b[2J', bridge: 'b\u0000r', dev: 'eth\u009b1', vlan: 5, state: 'down', error: 'bad \u0007bell' };
  const text = formatSession(hostile);
  t.notOk(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(text), 'no control character but the line ends');
  t.match(text, /interface name: pw\\u001b\[2J\n/, 'escape shown as \\u001b');
  t.match(text, /bridge: b\\u0000r\n/);
  t.match(text, /vlan: 5, dev eth\\u009b1\n/);
  t.match(text, /error: bad \\u0007bell\n/);
  t.notOk(/[\u007f-\u009f]/.test(formatJson(hostile)), 'JSON output: DEL and C1 escaped too');
  t.same(JSON.parse(formatJson(hostile)), hostile, 'and it is still the same JSON');
  t.notOk(/\u001b/.test(formatKeyValues({ failures: { 'session 1/1': 'x\u001b]0;title\u0007' } })), 'status output escaped');
});

t.test('session counters with -s, ip -s link style', async (t) => {
  const stats = {
    rx_packets: 10, rx_bytes: 12345, tx_packets: 7, tx_bytes: 900, rx_errors: 1, tx_errors: 0, rx_seq_discards: 0,
    rx_oos_packets: 0, rx_cookie_discards: 1, rx_invalid: 0, tx_oversize: 2, rx_short_frames: 0, last_rx_ms: 0, rx_tap_drops: 0,
  };
  const out = formatSession({ ...S, stats }, { stats: true });
  const lines = out.split('\n');
  const rx = lines.findIndex((l) => l.trimStart().startsWith('RX:'));
  t.ok(rx > 0);
  t.equal(lines[rx], '    RX: packets bytes errors seq_discards oos_packets cookie_discards invalid short_frames tap_drops');
  t.equal(lines[rx + 1], '             10 12345      1            0           0               1       0            0         0');
  t.equal(lines[rx + 2], '    TX: packets bytes errors oversize');
  t.equal(lines[rx + 3], '              7   900      0        2');
  t.equal(lines[rx + 4], '    last rx: never');
  t.match(formatCounters({ last_rx_ms: Date.UTC(2024, 0, 2, 3, 4, 5) }, []), ['    last rx: 2024-01-02T03:04:05.000Z']);
  t.same(formatCounters({ weird: 1 }, []), ['    other: weird', '               1'], 'unknown counters still shown');
  t.notMatch(formatSession({ ...S, stats }), /RX:/, 'no counters without -s');
});

t.test('key/value and JSON output', async (t) => {
  t.equal(formatKeyValues({ tunnels: 2, failures: { a: 'b' } }), 'tunnels: 2\nfailures: {"a":"b"}\n');
  t.equal(formatKeyValues({}), '');
  t.equal(formatJson([S]), `${JSON.stringify([S], null, 2)}\n`);
});
