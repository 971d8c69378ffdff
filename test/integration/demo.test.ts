/**
 * `npm run demo` (scripts/demo.sh) runs end to end: exit 0, the walkthrough commands, pings
 * across, counters and /metrics shown, and nothing left behind.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { hasCommand, netnsUnavailable } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand('curl') && 'curl is not installed');

t.test('scripts/demo.sh', { skip }, async (t) => {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'demo.sh')], { encoding: 'utf8', timeout: 120000, cwd: ROOT });
  const out = r.stdout ?? '';
  t.equal(r.status, 0, `exit 0\n${out.slice(-3000)}\n${r.stderr}`);
  t.match(out, /^\$ l2tpctl add tunnel tunnel_id 1000 peer_tunnel_id 2000 encap udp local 192\.0\.2\.1 remote 192\.0\.2\.2/m, 'prints the l2tpctl commands');
  t.match(out, /^\$ l2tpctl add session name l2tpvlan1000 tunnel_id 1000 session_id 1000 peer_session_id 2000 bridge brvlan1000$/m);
  t.match(out, /5 packets transmitted, 5 received, 0% packet loss/, 'A pings B');
  t.match(out, /3 packets transmitted, 3 received, 0% packet loss/, 'B pings A');
  t.match(out, /^Session 1000 in tunnel 1000$/m, 'show session');
  t.match(out, /^\s+RX: packets bytes/m, 'show session -s counters');
  t.match(out, /^l2tp_session_rx_packets_total\{tunnel_id="1000",session_id="1000",interface="l2tpvlan1000"\} [1-9]\d*$/m, '/metrics excerpt');
  t.match(out, /^l2tp_sessions 1$/m);
  t.match(out, /veth "vlan1000" stands in for the VLAN interface/, 'says the VLAN interface is a stand-in');
  t.match(out, /^  \S+: eth0 198\.51\.100\.1\/24 -> \S+: vlan1000 in bridge brvlan1000$/m, 'hosts on the veth stand-in');
  t.match(out, /^PASS: /m);
  t.match(out, /demo: cleaned up/);
  const pid = /l2demo-a-(\d+)/.exec(out)?.[1];
  t.ok(pid, 'the output names the demo namespaces');
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  t.notMatch(left, new RegExp(`l2demo-\\w+-${pid}\\b`), 'its namespaces are gone');
});
