/**
 * l2tpctl import: ip l2tp scripts and networkd files become the tunnels and sessions they
 * describe, read with the CLI's grammar; every line that cannot be mapped is a problem naming
 * its file and line.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { planImport, type ImportPlan, type SourceFile } from '../../src/cli/import.js';
import { normalizeSession } from '../../src/control/validate.js';
import { hasCommand } from '../helpers/netns.js';

/**
 * The site-A commands of ip-l2tp(8), EXAMPLES, "Setup L2TP tunnels and sessions" (iproute2,
 * man/man8/ip-l2tp.8), as the page shows them, prompt and continuation lines included.
 */
const SITE_A_COPY = [
  '       site-A:# ip l2tp add tunnel tunnel_id 3000 peer_tunnel_id 4000 \\',
  '\t\t  encap udp local 1.2.3.4 remote 5.6.7.8 \\',
  '\t\t  udp_sport 5000 udp_dport 6000',
  '       site-A:# ip l2tp add session tunnel_id 3000 session_id 1000 \\',
  '\t\t  peer_session_id 2000',
  '',
  '       site-A:# ip link set l2tpeth0 up mtu 1488',
].join('\n');

/** The same lines from the installed man page, when there is one (iproute2 ships it). */
function siteAFromManPage(): string | undefined {
  if (!hasCommand('man')) return undefined;
  const r = spawnSync('sh', ['-c', 'MANWIDTH=200 man ip-l2tp 2>/dev/null | col -b'], { encoding: 'utf8', timeout: 30000 });
  const page = r.stdout ?? '';
  const start = page.indexOf('Setup L2TP tunnels and sessions');
  if (r.status !== 0 || start < 0) return undefined;
  const out: string[] = [];
  let inSiteA = false;
  for (const line of page.slice(start).split('\n').slice(1)) {
    if (/^\s*Notice/.test(line)) break;
    if (/^\s*site-A:#/.test(line)) inSiteA = true;
    else if (/^\s*site-B:#/.test(line)) inSiteA = false;
    if (inSiteA) out.push(line);
    if (!line.trimEnd().endsWith('\\')) inSiteA = false;
  }
  return out.join('\n');
}

const TUNNEL_3000 = {
  tunnel_id: 3000, peer_tunnel_id: 4000, encap: 'udp', local: '1.2.3.4', remote: '5.6.7.8', udp_sport: 5000, udp_dport: 6000, udp_csum: 'off',
};
const SESSION_DEFAULTS = { l2spec_type: 'default', seq: 'none', offset: 0, peer_offset: 0, reorder_timeout: 0 };

const plan = (files: Record<string, string>, existing?: ImportPlan['config']): ImportPlan =>
  planImport(Object.entries(files).map(([name, text]): SourceFile => ({ name, text })), existing);
const problems = (p: ImportPlan) => p.problems.map((x) => `${x.file}:${x.line}: ${x.message}`);

t.test('the site-A example of ip-l2tp(8), verbatim', async (t) => {
  const fromPage = siteAFromManPage();
  if (fromPage === undefined) t.comment('ip-l2tp(8) is not installed here: using the copy of its example');
  else t.equal(fromPage.replace(/\s+/g, ' ').trim(), SITE_A_COPY.replace(/\s+/g, ' ').trim(), 'the copy matches the installed man page');
  const p = plan({ 'site-a.sh': fromPage ?? SITE_A_COPY });
  t.same(problems(p), []);
  t.same(p.config, {
    tunnels: [TUNNEL_3000],
    sessions: [{ tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, name: 'l2tpeth0', ...SESSION_DEFAULTS, mtu: 1488 }],
  }, 'ip link set l2tpeth0 ... mtu 1488 names the session and sets its mtu');
  t.same(p.origins.sessions, [{ file: 'site-a.sh', line: 4, message: 'session 1000 in tunnel 3000' }]);
  const linkLine = (fromPage ?? SITE_A_COPY).split('\n').findIndex((l) => l.includes('ip link set l2tpeth0')) + 1;
  t.match(p.notes, [{ line: 4, message: `session named l2tpeth0 (line ${linkLine} refers to it)` }]);
});

const BRIDGED = `#!/bin/sh
# site A: one pseudowire, bridged
set -e
modprobe l2tp_eth
sudo ip l2tp add tunnel tunnel_id 3000 peer_tunnel_id 4000 \\
    encap udp local 192.0.2.1 remote 192.0.2.2 \\
    udp_sport 5000 udp_dport 6000   # the underlay
ip l2tp add session name "pw0" tunnel_id 3000 session_id 1000 \\
    peer_session_id 2000 cookie 0123abcd l2spec_type none
ip link set dev pw0 up mtu 1446; ip link add br0 type bridge
ip link set pw0 master br0
ip link set br0 up
# ip l2tp add session tunnel_id 3000 session_id 1001 peer_session_id 2001
ip l2tp show tunnel
`;

t.test('a bridged site: comments, continuations, quotes, ; and the ip link lines', async (t) => {
  const p = plan({ 'bridged.sh': BRIDGED });
  t.same(problems(p), []);
  t.same(p.config, {
    tunnels: [{ ...TUNNEL_3000, local: '192.0.2.1', remote: '192.0.2.2' }],
    sessions: [{
      tunnel_id: 3000, session_id: 1000, peer_session_id: 2000, name: 'pw0', cookie: '0123abcd',
      ...SESSION_DEFAULTS, l2spec_type: 'none', mtu: 1446, bridge: 'br0',
    }],
  });
  t.same(p.notes.map((n) => n.line), [4, 13, 14], 'modprobe, the commented-out command and show are noted');
  t.match(p.notes[1].message, /a comment that reads like a command, not imported: ip l2tp add session/);
});

t.test('a VLAN stretched over a session: TRUNK.ID in its bridge is vlan ID dev TRUNK', async (t) => {
  const p = plan({
    'vlan.sh': `ip l2tp add tunnel tunnel_id 1 peer_tunnel_id 1 local 192.0.2.1 remote 192.0.2.2 udp_sport 1701 udp_dport 1701
ip l2tp add session name l2tpvlan5 tunnel_id 1 session_id 5 peer_session_id 5
ip link add link eth1 name eth1.5 type vlan id 5
ip link add brvlan5 type bridge
ip link set l2tpvlan5 master brvlan5
ip link set eth1.5 master brvlan5
ip link set eth1.5 up
ip link set brvlan5 up
l2tpctl --socket /run/l2tpd/l2tpd.sock add session tunnel_id 1 session_id 6 peer_session_id 6 seq both
`,
  });
  t.same(problems(p), []);
  t.match(p.config.sessions, [
    { name: 'l2tpvlan5', session_id: 5, bridge: 'brvlan5', vlan: 5, dev: 'eth1' },
    { session_id: 6, seq: 'both' },
  ]);
});

t.test('what cannot be mapped is named with its file and line, and nothing else is lost', async (t) => {
  const p = plan({
    'site.sh': `ip l2tp add tunnel tunnel_id 3000 peer_tunnel_id 4000 \\
   encap udp local 192.0.2.1 remote 192.0.2.2 \\
   udp_sport 70000 udp_dport 6000
ip l2tp add session tunnel_id 3000 session_id 1000 peer_session_id 2000 bogus 1
ip l2tp add session tunnel_id 3000 session_id 1001 peer_session_id 2001 mtu $MTU
ip link set l2tpeth0 up mtu 1446
ip link set eth0 master br0
ip link set l2tpeth1 txqueuelen 100
ip -n blue l2tp add tunnel tunnel_id 1 peer_tunnel_id 1 local 192.0.2.1 remote 192.0.2.3 encap ip
ip l2tp del tunnel tunnel_id 3000
brctl addbr br0
ip link add br9 type bridge
ip addr add 198.51.100.1/24 dev l2tpeth0
modprobe nf_defrag_ipv4
echo done > /tmp/x
`,
  });
  t.same(problems(p), [
    'site.sh:3: udp_sport 70000: expected an integer 1..65535',
    'site.sh:4: unknown word "bogus" for "add session"; expected one of: name, tunnel_id, session_id, peer_session_id, cookie, peer_cookie, l2spec_type, seq, seq_mirror, offset, peer_offset, reorder_timeout, mtu, bridge, vlan, dev, peer_timeout',
    'site.sh:5: "$": shell expansions are not imported; write literal commands',
    'site.sh:7: eth0 master br0: l2tpd puts only its session interfaces (and a VLAN interface, with vlan ID dev TRUNK) in bridges; keep this line in the host\'s network configuration',
    'site.sh:8: ip link set l2tpeth1 txqueuelen: import maps only up, mtu and master (to the session words mtu and bridge)',
    'site.sh:9: ip -n: l2tpd creates its interfaces in its own network namespace; run l2tpd there instead',
    'site.sh:10: del tunnel tunnel_id 3000: import only adds tunnels and sessions',
    'site.sh:11: "brctl": not an ip l2tp, ip link or l2tpctl command',
    'site.sh:12: bridge br9: no session of this import is in it; l2tpd creates only the bridges its sessions use',
    'site.sh:13: ip addr: only ip l2tp and ip link commands are imported',
    'site.sh:14: modprobe nf_defrag_ipv4: not an L2TP setting; keep it in the host\'s configuration',
    'site.sh:15: ">": shell syntax is not imported; write literal commands',
  ]);
});

t.test('conflicts: within the import, and with what already runs', async (t) => {
  const tunnel = 'ip l2tp add tunnel tunnel_id 3000 peer_tunnel_id 4000 local 192.0.2.1 remote 192.0.2.2 udp_sport 5000 udp_dport 6000\n';
  let p = plan({
    'a.sh': tunnel,
    'b.sh': `# again\n${tunnel}ip l2tp add session tunnel_id 7 session_id 1 peer_session_id 1\n`,
  });
  t.same(problems(p), [
    'b.sh:2: tunnel 3000 already exists',
    'b.sh:3: tunnel 7 does not exist',
  ]);

  // Sessions may go into a tunnel that already runs; a duplicate of a running one is refused.
  const existing = { tunnels: plan({ 'x.sh': tunnel }).config.tunnels, sessions: [normalizeSession({ tunnel_id: 3000, session_id: 1, peer_session_id: 1, name: 'pw1' })] };
  p = plan({ 's.sh': 'ip l2tp add session name pw2 tunnel_id 3000 session_id 2 peer_session_id 2\n' }, existing);
  t.same(problems(p), []);
  t.same(p.config.tunnels, [], 'only what is imported is returned');
  p = plan({ 's.sh': 'ip l2tp add session\\\n name pw1 tunnel_id 3000 session_id 2 peer_session_id 2\n' }, existing);
  t.same(problems(p), ['s.sh:2: interface name pw1 is already used by session 1 in tunnel 3000']);
});

t.test('nothing to import is a problem, not a silent success', async (t) => {
  const p = plan({ 'prompts.txt': '# ip l2tp add tunnel tunnel_id 1 peer_tunnel_id 1 local 192.0.2.1 remote 192.0.2.2 encap ip\n' });
  t.same(problems(p), ['prompts.txt:1: nothing to import: no ip l2tp add, l2tpctl add or [L2TP] tunnel found']);
  t.match(p.notes, [{ line: 1, message: /a comment that reads like a command/ }]);
});

const NETDEV = `# systemd-networkd: tunnel to site B
[NetDev]
Name=l2tp-tun1
Kind=l2tp

[L2TP]
TunnelId=10
PeerTunnelId=11
Local=2001:db8::1@eth1
Remote=2001:db8::2
EncapsulationType=udp
UDPSourcePort=3000
UDPDestinationPort=4000
UDP6ZeroChecksumTx=no

[L2TPSession]
Name=l2tp-ses1
SessionId=15
PeerSessionId=16
Layer2SpecificHeader=none

[L2TPSession]
Name=l2tp-ses2
SessionId=25
PeerSessionId=26
`;

t.test('systemd-networkd: a .netdev with [L2TP] and [L2TPSession], and a .network for the bridge', async (t) => {
  const p = plan({
    '10-l2tp.netdev': NETDEV,
    '20-ses1.network': '[Match]\nName=l2tp-ses1\n\n[Network]\nBridge=br-lan\n\n[Link]\nMTUBytes=1400\n',
  });
  t.same(problems(p), []);
  t.same(p.config, {
    tunnels: [{
      tunnel_id: 10, peer_tunnel_id: 11, encap: 'udp', local: '2001:db8::1', remote: '2001:db8::2', udp_sport: 3000, udp_dport: 4000,
      udp6_csum_tx: 'on', udp6_csum_rx: 'off',
    }],
    sessions: [
      { tunnel_id: 10, session_id: 15, peer_session_id: 16, name: 'l2tp-ses1', ...SESSION_DEFAULTS, l2spec_type: 'none', mtu: 1400, bridge: 'br-lan' },
      { tunnel_id: 10, session_id: 25, peer_session_id: 26, name: 'l2tp-ses2', ...SESSION_DEFAULTS },
    ],
  }, 'UDP6ZeroChecksumTx=no keeps the checksum; networkd\'s default for Rx (zero checksums accepted) is kept');
  t.match(p.notes.map((n) => `${n.line}: ${n.message}`), [
    /^6: no UDP6ZeroChecksumRx=: networkd's default is zero UDP checksums over IPv6, so udp6_csum_rx off/,
    /^9: Local=2001:db8::1@eth1: the interface part \(@eth1\) is not needed/,
  ]);
  // IPv4: UDPChecksum= (and networkd's parser spelling UDPCheckSum=) is udp_csum.
  const v4 = plan({ 'v4.netdev': NETDEV.replace('2001:db8::1@eth1', '192.0.2.1').replace('2001:db8::2', '192.0.2.2').replace('UDP6ZeroChecksumTx=no', 'UDPCheckSum=yes') });
  t.same(problems(v4), []);
  t.match(v4.config.tunnels, [{ local: '192.0.2.1', udp_csum: 'on' }]);
  t.notOk('udp6_csum_rx' in v4.config.tunnels[0], 'no IPv6 checksum words over IPv4');
});

t.test('networkd keys that cannot be mapped are named with their line', async (t) => {
  const p = plan({
    'bad.netdev': `[NetDev]
Name=l2tp-tun2
Kind=l2tp
MTUBytes=1400

[L2TP]
TunnelId=20
PeerTunnelId=21
Local=auto
Remote=192.0.2.9
UDPSourcePort=3000
UDPDestinationPort=4000
UDPChecksum=maybe
Foo=bar

[L2TPSession]
Name=l2tp-ses3
SessionId=0
PeerSessionId=36

[Match]
Host=siteb
`,
    'other.netdev': '[NetDev]\nName=vx0\nKind=vxlan\n',
    'ports.netdev': NETDEV.replace('UDPSourcePort=3000', 'UDPSourcePort=70000'),
    'missing.netdev': NETDEV.replace('TunnelId=10\n', ''),
    'unmatched.network': '[Match]\nName=l2tp-ses9\n\n[Network]\nBridge=br0\nAddress=198.51.100.1/24\n',
  });
  t.same(problems(p), [
    'bad.netdev:4: MTUBytes=: l2tpd tunnels have no interface of their own; set the MTU per session (mtu, or MTUBytes= in the session\'s .network)',
    'bad.netdev:9: Local=auto: l2tpd binds each tunnel to one address; write Local=ADDRESS',
    'bad.netdev:13: UDPChecksum=maybe: expected a boolean (yes or no)',
    'bad.netdev:14: Foo=: not an [L2TP] key l2tpd can map (TunnelId, PeerTunnelId, Remote, Local, EncapsulationType, UDPSourcePort, UDPDestinationPort, UDPChecksum, UDPCheckSum, UDP6ZeroChecksumTx, UDP6CheckSumTx, UDP6ZeroChecksumRx, UDP6CheckSumRx)',
    'bad.netdev:18: SessionId=0: session_id 0: expected an integer 1..4294967295',
    'bad.netdev:21: [Match]: only [NetDev], [L2TP] and [L2TPSession] are imported from a .netdev',
    'other.netdev:3: Kind=vxlan: only Kind=l2tp netdevs are imported',
    'ports.netdev:12: UDPSourcePort=70000: udp_sport 70000: expected an integer 1..65535',
    'missing.netdev:6: TunnelId= is missing: add tunnel: missing required word "tunnel_id" (tunnel_id ID)',
    'unmatched.network:2: Name=l2tp-ses9: no session of this import has this interface name',
    'unmatched.network:6: [Network] Address=: import maps only [Match] Name= (one interface), [Network] Bridge= and [Link] MTUBytes= of a session\'s .network',
  ]);
});
