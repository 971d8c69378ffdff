import t from 'tap';
import { UsageError, parseCommand } from '../../src/cli/words.js';

const w = (s: string): string[] => s.split(/\s+/).filter(Boolean);

function usage(tt: tap.Test, words: string, re: RegExp, word?: string): void {
  try {
    parseCommand(w(words));
    tt.fail(`expected UsageError for: ${words}`);
  } catch (err) {
    tt.ok(err instanceof UsageError, `UsageError for: ${words}`);
    tt.match((err as Error).message, re, (err as Error).message);
    if (word !== undefined) tt.equal((err as UsageError).word, word, `names word ${word}`);
  }
}

t.test('add tunnel: every word', async (t) => {
  t.same(parseCommand(w('add tunnel tunnel_id 3000 peer_tunnel_id 4000 encap udp local 192.0.2.1 remote 192.0.2.2 udp_sport 5000 udp_dport 6000 udp_csum on')), {
    object: 'tunnel', command: 'add',
    params: { tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', local: '192.0.2.1', remote: '192.0.2.2', udp_sport: 5000, udp_dport: 6000, udp_csum: 'on' },
  });
  t.same(parseCommand(w('add tunnel remote 2001:db8::2 local 2001:db8::1 tunnel_id 1 peer_tunnel_id 2 udp_sport 1 udp_dport 65535 udp6_csum_tx off udp6_csum_rx on')).params, {
    tunnel_id: 1, peer_tunnel_id: 2, encap: 'udp', local: '2001:db8::1', remote: '2001:db8::2', udp_sport: 1, udp_dport: 65535,
    udp6_csum_tx: 'off', udp6_csum_rx: 'on',
  }, 'ip l2tp order (remote first) works too');
  t.same(parseCommand(w('add tunnel tid 7 ptid 8 encap ip local 192.0.2.1 remote 192.0.2.2')).params, {
    tunnel_id: 7, peer_tunnel_id: 8, encap: 'ip', local: '192.0.2.1', remote: '192.0.2.2',
  }, 'tid/ptid aliases, encap ip needs no ports');
  t.same(parseCommand(w('tunnel add tunnel_id 7 peer_tunnel_id 8 encap ip local 192.0.2.1 remote 192.0.2.2')).command, 'add', 'OBJECT COMMAND order');
  t.same(parseCommand(w('a tunnel tunnel_id 7 peer_tunnel_id 8 encap ip local 192.0.2.1 remote 192.0.2.2')).command, 'add', 'prefix of add');
});

t.test('add session: every word', async (t) => {
  t.same(parseCommand(w('add session name pw0 tunnel_id 3000 session_id 1000 peer_session_id 2000 cookie 0123ABCD peer_cookie 0011223344556677 l2spec_type default seq both offset 8 peer_offset 4 reorder_timeout 100 mtu 9000 bridge br0 vlan 1000 dev eth1')), {
    object: 'session', command: 'add',
    params: {
      tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, name: 'pw0', cookie: '0123abcd', peer_cookie: '0011223344556677',
      l2spec_type: 'default', seq: 'both', offset: 8, peer_offset: 4, reorder_timeout: 100, mtu: 9000, bridge: 'br0', vlan: 1000, dev: 'eth1',
    },
  });
  t.throws(() => parseCommand(w('add session tunnel_id 1 session_id 2 peer_session_id 3 l2spec_type none seq both')),
    { name: 'UsageError', message: /^seq both: expected none when l2spec_type is none/ }, 'seq needs the default sublayer: usage error');
  t.same(parseCommand(w('session add tid 1 sid 2 psid 3')).params, {
    tunnel_id: 1, session_id: 2, peer_session_id: 3, l2spec_type: 'default', seq: 'none', offset: 0, peer_offset: 0, reorder_timeout: 0,
  }, 'aliases and defaults');
});

t.test('del, show, reload, status, help', async (t) => {
  t.same(parseCommand(w('del tunnel tunnel_id 3000')), { object: 'tunnel', command: 'del', params: { tunnel_id: 3000 } });
  t.same(parseCommand(w('delete session tunnel_id 3000 session_id 1000')), { object: 'session', command: 'del', params: { tunnel_id: 3000, session_id: 1000 } });
  t.same(parseCommand(w('d session sid 1 tid 2')).params, { tunnel_id: 2, session_id: 1 });
  t.same(parseCommand(w('show tunnel')), { object: 'tunnel', command: 'show', params: { stats: false } });
  t.same(parseCommand(w('show tunnel tunnel_id 3000')).params, { tunnel_id: 3000, stats: false });
  t.same(parseCommand(w('list tunnel -s')).params, { stats: true });
  t.same(parseCommand(w('show session')), { object: 'session', command: 'show', params: { stats: false } });
  t.same(parseCommand(w('show session tunnel_id 3000 session_id 1000 -s')).params, { tunnel_id: 3000, session_id: 1000, stats: true });
  t.same(parseCommand(w('lst session session_id 5 -statistics')).params, { session_id: 5, stats: true });
  t.same(parseCommand(w('sh session -stats tunnel_id 1')).params, { tunnel_id: 1, stats: true });
  t.same(parseCommand(['reload']), { object: 'daemon', command: 'reload', params: {} });
  t.same(parseCommand(['status']), { object: 'daemon', command: 'status', params: {} });
  t.same(parseCommand(['help']).command, 'help');
});

t.test('usage errors name the word and what it accepts', async (t) => {
  usage(t, '', /missing command; expected add, del, show, reload, status or import/);
  usage(t, 'frobnicate tunnel', /unknown command "frobnicate"; expected add, del, show, reload, status or import/, 'frobnicate');
  usage(t, 'add', /add: missing object; expected tunnel or session/);
  usage(t, 'add tunnels', /unknown object "tunnels" for "add"; expected tunnel or session/, 'tunnels');
  usage(t, 'tunnel', /tunnel: missing command; expected add, del or show/);
  usage(t, 'tunnel frob', /unknown command "frob" for "tunnel"/, 'frob');
  usage(t, 'reload now', /unexpected word "now": "reload" takes no words/, 'now');
  usage(t, 'add tunnel tunnl_id 3', /^unknown word "tunnl_id" for "add tunnel"; expected one of: tunnel_id, peer_tunnel_id, encap, local, remote, udp_sport, udp_dport, udp_csum, udp6_csum_tx, udp6_csum_rx, ttl, tos, hello_interval, hello_retries$/, 'tunnl_id');
  usage(t, 'add tunnel tunnel_id', /^tunnel_id: missing value; expected tunnel_id ID$/, 'tunnel_id');
  usage(t, 'add tunnel tunnel_id 1 tunnel_id 2', /tunnel_id: given twice/, 'tunnel_id');
  usage(t, 'add tunnel tunnel_id 0 peer_tunnel_id 4000', /^tunnel_id 0: expected an integer 1\.\.4294967295$/, 'tunnel_id');
  usage(t, 'add tunnel tunnel_id 3000', /^add tunnel: missing required word "peer_tunnel_id" \(peer_tunnel_id ID\)$/, 'peer_tunnel_id');
  usage(t, 'add tunnel tunnel_id 3000 peer_tunnel_id 4000 remote 192.0.2.2', /missing required word "local" \(local ADDR\)/, 'local');
  usage(t, 'add tunnel tunnel_id 3000 peer_tunnel_id 4000 local 192.0.2.1', /missing required word "remote"/, 'remote');
  usage(t, 'add tunnel tunnel_id 3000 peer_tunnel_id 4000 local 192.0.2.1 remote 192.0.2.2',
    /^add tunnel: missing required word "udp_sport" \(udp_sport PORT; required with encap udp\)$/, 'udp_sport');
  usage(t, 'add tunnel tunnel_id 3000 peer_tunnel_id 4000 local 192.0.2.1 remote 192.0.2.2 udp_sport 1',
    /missing required word "udp_dport"/, 'udp_dport');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 encap gre local 192.0.2.1 remote 192.0.2.2', /^encap gre: expected ip or udp$/, 'encap');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.300 remote 192.0.2.2 udp_sport 1 udp_dport 2', /^local 192\.0\.2\.300: expected an IPv4 or IPv6 address$/, 'local');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.1 remote 2001:db8::1 udp_sport 1 udp_dport 2', /remote 2001:db8::1: expected an IPv4 address/, 'remote');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.1 remote 192.0.2.2 udp_sport 70000 udp_dport 2', /^udp_sport 70000: expected an integer 1\.\.65535$/, 'udp_sport');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.1 remote 192.0.2.2 udp_sport 1 udp_dport 2 udp_csum yes', /^udp_csum yes: expected on or off$/, 'udp_csum');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.1 remote 192.0.2.2 udp_sport 1 udp_dport 2 udp6_csum_tx off', /only applies to UDP over IPv6/, 'udp6_csum_tx');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 encap ip local 192.0.2.1 remote 192.0.2.2 udp_sport 1', /only applies to encap udp/, 'udp_sport');
  usage(t, 'add session tunnel_id 1 session_id 2', /^add session: missing required word "peer_session_id" \(peer_session_id ID\)$/, 'peer_session_id');
  usage(t, 'add session tunnel_id 1 peer_session_id 2', /missing required word "session_id"/, 'session_id');
  usage(t, 'add session session_id 1 peer_session_id 2', /missing required word "tunnel_id"/, 'tunnel_id');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 cookie abc', /^cookie abc: expected 8 or 16 hex digits$/, 'cookie');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 peer_cookie 0123456789', /peer_cookie 0123456789: expected 8 or 16 hex digits/, 'peer_cookie');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 l2spec_type cisco', /^l2spec_type cisco: expected none or default$/, 'l2spec_type');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 seq yes', /^seq yes: expected none or send or recv or both$/, 'seq');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 seq_mirror maybe', /^seq_mirror maybe: expected on or off$/, 'seq_mirror');
  t.equal((parseCommand(w('add session tunnel_id 1 session_id 2 peer_session_id 3 seq send seq_mirror off')).params as { seq_mirror?: string }).seq_mirror,
    'off', 'seq_mirror parsed');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 offset 300', /^offset 300: expected an integer 0\.\.256$/, 'offset');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 peer_offset x', /^peer_offset x: expected an integer 0\.\.256$/, 'peer_offset');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 reorder_timeout 99999', /reorder_timeout 99999: expected an integer 0\.\.60000/, 'reorder_timeout');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 mtu 20000', /^mtu 20000: expected an integer 68\.\.16000$/, 'mtu');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 name this-name-is-too-long', /name this-name-is-too-long: expected an interface name of 1\.\.15 bytes/, 'name');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 bridge a/b', /bridge a\/b: expected an interface name/, 'bridge');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 name pw\u001b[31m', /^name "pw\\u001b\[31m": contains a control character/, 'name');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local 192.0.2.1 remote 192.0.2.1 udp_sport 1 udp_dport 2', /^remote 192\.0\.2\.1: same as local/, 'remote');
  usage(t, 'add tunnel tunnel_id 3 peer_tunnel_id 4 local ::ffff:192.0.2.1 remote 2001:db8::2 udp_sport 1 udp_dport 2', /^local ::ffff:192\.0\.2\.1: an IPv4-mapped/, 'local');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 vlan 5000 dev eth1', /^vlan 5000: expected an integer 1\.\.4094$/, 'vlan');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 vlan 5', /dev: missing; vlan 5 needs dev TRUNK/, 'dev');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 dev eth1', /vlan: missing; dev eth1 needs vlan/, 'vlan');
  usage(t, 'add session tunnel_id 1 session_id 2 peer_session_id 3 udp_sport 5', /unknown word "udp_sport" for "add session"/, 'udp_sport');
  usage(t, 'del tunnel', /^del tunnel: missing required word "tunnel_id" \(tunnel_id ID\)$/, 'tunnel_id');
  usage(t, 'del tunnel tunnel_id x', /^tunnel_id x: expected an integer 1\.\.4294967295$/, 'tunnel_id');
  usage(t, 'del session tunnel_id 1', /del session: missing required word "session_id"/, 'session_id');
  usage(t, 'del tunnel tunnel_id 1 -s', /unknown word "-s" for "del tunnel"; expected one of: tunnel_id$/, '-s');
  usage(t, 'show tunnel session_id 1', /unknown word "session_id" for "show tunnel"; expected one of: tunnel_id, -s/, 'session_id');
  usage(t, 'show session tunnel_id 0', /^tunnel_id 0: expected/, 'tunnel_id');
  usage(t, 'show session session_id', /session_id: missing value; expected session_id ID/, 'session_id');
});
