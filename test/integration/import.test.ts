/**
 * l2tpctl import against a live l2tpd in a namespace: an ip l2tp script and a networkd
 * .netdev in one import become running tunnels and sessions with their taps, MTU and bridge;
 * an import the daemon refuses half-way leaves the daemon and its config file as they were.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mustLink, netnsUnavailable } from '../helpers/netns.js';
import { Sites } from '../helpers/sites.js';

const skip = netnsUnavailable();

const SCRIPT = `#!/bin/sh
# site A, as it ran with the kernel's L2TP
modprobe l2tp_eth
ip l2tp add tunnel tunnel_id 3000 peer_tunnel_id 4000 \\
           encap udp local 192.0.2.1 remote 192.0.2.2 \\
           udp_sport 5000 udp_dport 6000
ip l2tp add session tunnel_id 3000 session_id 1000 \\
           peer_session_id 2000
ip link set l2tpeth0 up mtu 1400
ip link add br0 type bridge
ip link set l2tpeth0 master br0
ip link set br0 up
`;

const NETDEV = `[NetDev]
Name=l2tp-tun7
Kind=l2tp

[L2TP]
TunnelId=7
PeerTunnelId=8
Local=192.0.2.1
Remote=192.0.2.2
EncapsulationType=ip

[L2TPSession]
Name=l2tp-ses7
SessionId=70
PeerSessionId=80
Layer2SpecificHeader=none
`;

t.test('import applies a script and a .netdev to a live daemon, or nothing at all', { skip }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const d = sites.a;
  await sites.start(d);
  const script = path.join(path.dirname(d.dir), 'site-a.sh');
  const netdev = path.join(path.dirname(d.dir), '10-l2tp.netdev');
  writeFileSync(script, SCRIPT);
  writeFileSync(netdev, NETDEV);

  const r = sites.cli(d, ['import', script, netdev]);
  t.same([r.status, r.stdout], [0, `imported 2 tunnels and 2 sessions into l2tpd at ${d.socket}\n`], r.stderr);
  const sessions = sites.json<Array<{ session_id: number; interface: string; mtu: number; bridge?: string; l2spec_type: string; state?: string }>>(d, ['show', 'session']);
  // Listed as the config file lists them: by tunnel_id, then session_id.
  t.match(sessions, [
    { session_id: 70, interface: 'l2tp-ses7', l2spec_type: 'none' },
    { session_id: 1000, interface: 'l2tpeth0', mtu: 1400, bridge: 'br0' },
  ]);
  const tap0 = mustLink(d.ns, 'l2tpeth0');
  t.same([tap0.mtu, tap0.master, tap0.linkinfo?.info_kind], [1400, 'br0', 'tun'], 'l2tpeth0: MTU 1400, in br0');
  t.equal(mustLink(d.ns, 'br0').linkinfo?.info_kind, 'bridge');
  t.ok(mustLink(d.ns, 'l2tp-ses7'), 'the .netdev session has its tap');
  const saved = readFileSync(d.config, 'utf8');
  const file = JSON.parse(saved) as { tunnels: Array<{ tunnel_id: number; encap: string }>; sessions: Array<{ session_id: number }> };
  t.same([file.tunnels.map((x) => `${x.tunnel_id} ${x.encap}`).sort(), file.sessions.map((x) => x.session_id).sort()],
    [['3000 udp', '7 ip'], [1000, 70]], 'written to the config file');

  // Tunnel 21's local address is not on this host: the daemon refuses it after tunnel 20 was
  // added, and import removes tunnel 20 again.
  const refused = path.join(path.dirname(d.dir), 'more.sh');
  writeFileSync(refused, 'ip l2tp add tunnel tunnel_id 20 peer_tunnel_id 20 local 192.0.2.1 remote 192.0.2.2 udp_sport 5020 udp_dport 5020\n'
    + 'ip l2tp add tunnel tunnel_id 21 peer_tunnel_id 21 local 203.0.113.9 remote 192.0.2.2 udp_sport 5021 udp_dport 5021\n');
  const half = sites.cli(d, ['import', refused]);
  t.equal(half.status, 1, 'refused by the daemon: exit 1');
  t.match(half.stderr, `${refused}:2: tunnel 21: refused by l2tpd`);
  t.match(half.stderr, 'nothing was applied (the 1 added before were removed)');
  t.same(sites.json<Array<{ tunnel_id: number }>>(d, ['show', 'tunnel']).map((x) => x.tunnel_id).sort(), [3000, 7], 'the daemon runs what it ran');
  t.equal(readFileSync(d.config, 'utf8'), saved, 'the config file is as it was');
});
