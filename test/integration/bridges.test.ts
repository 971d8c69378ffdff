/**
 * Session interfaces and bridges (issue 4): a session joined to a bridge with a veth "host port"
 * (standing in for a VLAN interface), on two sites. Covers ownership (what l2tpd created goes on
 * `del session`, a pre-existing bridge stays), restart without flaps (persistent tap keeps its
 * ifindex and bridge membership), restoring after external changes (tap deleted, nomaster),
 * start-up removal of marked leftovers, and `vlan ID dev TRUNK` (refused cleanly on a kernel
 * without 802.1Q; live otherwise).
 */
import t from 'tap';
import { hasCommand, ipLink, netnsUnavailable, nsExec, nsRun, uniqueName, vlanSupported, waitUntil, type IpLink } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable() || (!hasCommand('ping') && 'ping (iputils-ping) is not installed');

interface ShownSession { session_id: number; interface: string; ifindex?: number; mtu: number; bridge?: string; vlan?: number; dev?: string; state: string; restored: number; ports_over_mtu?: { interface: string; mtu: number }[] }

function linkNames(ns: string): string[] {
  return (JSON.parse(nsExec(ns, 'ip', ['-j', 'link', 'show'])) as IpLink[]).map((l) => l.ifname).sort();
}

function tunnel(sites: Sites): void {
  sites.ok(sites.a, ['add', 'tunnel', 'tunnel_id', '100', 'peer_tunnel_id', '100', 'encap', 'udp',
    'local', UNDERLAY.a4, 'remote', UNDERLAY.b4, 'udp_sport', '1701', 'udp_dport', '1701']);
  sites.ok(sites.b, ['add', 'tunnel', 'tunnel_id', '100', 'peer_tunnel_id', '100', 'encap', 'udp',
    'local', UNDERLAY.b4, 'remote', UNDERLAY.a4, 'udp_sport', '1701', 'udp_dport', '1701']);
}

function session(sites: Sites, d: Daemon, sid: number): ShownSession {
  const all = sites.json<ShownSession[]>(d, ['show', 'session']);
  const s = all.find((x) => x.session_id === sid);
  if (!s) throw new Error(`session ${sid} not shown: ${JSON.stringify(all)}`);
  return s;
}

/** Ping until replies come (a restored or re-attached port may need a moment), at most ~20 s. */
async function pingEventually(sites: Sites, from: string, to: string): Promise<number> {
  for (let i = 0; i < 4; i++) {
    const got = sites.ping(from, to, 3, 5);
    if (got >= 2) return got;
  }
  return 0;
}

t.test('bridge: traffic, restart without flap, restore after external changes, ownership on del', { skip, timeout: 240000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  tunnel(sites);
  const brA = uniqueName('bra');
  const brB = uniqueName('brb');
  const pwA = uniqueName('pwa');

  // Site A: l2tpd creates the bridge; the host port (veth) is added to it afterwards.
  sites.ok(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '1', 'peer_session_id', '1', 'name', pwA, 'bridge', brA]);
  const hostA = sites.host(sites.a, brA, '198.51.100.1/24');
  // Site B: the bridge exists before the session (not l2tpd's); the session has no name.
  const hostB = sites.host(sites.b, brB, '198.51.100.2/24');
  sites.ok(sites.b, ['add', 'session', 'tunnel_id', '100', 'session_id', '1', 'peer_session_id', '1', 'bridge', brB]);

  const sa = session(sites, sites.a, 1);
  t.match(sa, { interface: pwA, mtu: 1446, bridge: brA, state: 'up', restored: 0 }, 'show session A: interface, default MTU, bridge');
  const sb = session(sites, sites.b, 1);
  t.match(sb.interface, /^l2tpeth\d+$/, `session B without name got ${sb.interface} from the kernel`);
  const tapA = ipLink(sites.a.ns, pwA)!;
  t.equal(tapA.master, brA, 'tap A enslaved to the bridge');
  t.equal(tapA.ifalias, 'l2tpd:100/1', 'tap A marked with its session');
  t.ok(tapA.flags.includes('UP'), 'tap A up');
  const bridgeA = ipLink(sites.a.ns, brA)!;
  t.equal(bridgeA.ifalias, 'l2tpd', 'bridge l2tpd created is marked');
  t.ok(bridgeA.flags.includes('UP'), 'created bridge is up');
  t.equal(bridgeA.linkinfo?.info_kind, 'bridge');
  t.equal(ipLink(sites.b.ns, brB)!.ifalias, undefined, 'pre-existing bridge left unmarked');
  t.equal(ipLink(sites.b.ns, sb.interface)!.master, brB, 'tap B enslaved to the pre-existing bridge');
  t.ok(await pingEventually(sites, hostA, '198.51.100.2') >= 2, 'host A reaches host B across bridges and the pseudowire');

  // Restart both daemons: taps persist with the same ifindex and bridge membership.
  const bIf = sb.interface;
  const bIndex = ipLink(sites.b.ns, bIf)!.ifindex;
  // A leftover marked by l2tpd that the config does not name, and an unmarked bridge: only the former goes.
  const stale = uniqueName('brs');
  const foreign = uniqueName('brf');
  for (const [n, alias] of [[stale, 'l2tpd'], [foreign, '']] as const) {
    nsExec(sites.a.ns, 'ip', ['link', 'add', n, 'type', 'bridge']);
    if (alias) nsExec(sites.a.ns, 'ip', ['link', 'set', n, 'alias', alias]);
  }
  t.equal(await sites.stop(sites.a), 0, 'A stopped on SIGTERM');
  t.equal(await sites.stop(sites.b), 0, 'B stopped on SIGTERM');
  const down = ipLink(sites.a.ns, pwA);
  t.equal(down?.ifindex, tapA.ifindex, 'tap A kept while the daemon is down');
  t.equal(down?.master, brA, 'tap A still in its bridge while the daemon is down');
  await sites.start(sites.a);
  await sites.start(sites.b);
  t.equal(ipLink(sites.a.ns, pwA)?.ifindex, tapA.ifindex, 'A re-attached: same ifindex');
  t.equal(ipLink(sites.a.ns, pwA)?.master, brA, 'A: bridge membership kept');
  t.equal(session(sites, sites.a, 1).ifindex, tapA.ifindex, 'show session reports the ifindex');
  const sb2 = session(sites, sites.b, 1);
  t.equal(sb2.interface, bIf, 'B (no name): same l2tpethN after restart');
  t.equal(ipLink(sites.b.ns, bIf)?.ifindex, bIndex, 'B re-attached: same ifindex');
  t.equal(ipLink(sites.a.ns, stale), undefined, 'marked leftover bridge removed at start');
  t.ok(ipLink(sites.a.ns, foreign), 'unmarked bridge not touched at start');
  t.ok(await pingEventually(sites, hostA, '198.51.100.2') >= 2, 'traffic resumes after restart');

  // Deleted behind l2tpd's back: recreated, re-enslaved, data plane switched to the new tap.
  nsExec(sites.a.ns, 'ip', ['link', 'del', pwA]);
  t.ok(await waitUntil(() => ipLink(sites.a.ns, pwA)?.master === brA), 'deleted tap recreated in its bridge');
  t.ok(await waitUntil(() => session(sites, sites.a, 1).restored >= 1), 'restored counted in show session');
  t.not(ipLink(sites.a.ns, pwA)?.ifindex, tapA.ifindex, 'a new tap (new ifindex)');
  t.ok(await pingEventually(sites, hostA, '198.51.100.2') >= 2, 'traffic resumes after the tap was restored');

  // Removed from the bridge behind l2tpd's back: re-enslaved.
  const before = session(sites, sites.a, 1).restored;
  nsExec(sites.a.ns, 'ip', ['link', 'set', pwA, 'nomaster']);
  t.ok(await waitUntil(() => ipLink(sites.a.ns, pwA)?.master === brA), 're-enslaved after nomaster');
  t.ok(await waitUntil(() => session(sites, sites.a, 1).restored > before), 'counted');
  t.ok(await pingEventually(sites, hostA, '198.51.100.2') >= 2, 'traffic after re-enslaving');

  // del session: the tap and the bridge l2tpd created go; a pre-existing bridge stays.
  sites.ok(sites.a, ['del', 'session', 'tunnel_id', '100', 'session_id', '1']);
  sites.ok(sites.b, ['del', 'session', 'tunnel_id', '100', 'session_id', '1']);
  t.equal(ipLink(sites.a.ns, pwA), undefined, 'A: tap removed on del');
  t.equal(ipLink(sites.a.ns, brA), undefined, 'A: bridge l2tpd created removed on del');
  t.equal(ipLink(sites.b.ns, bIf), undefined, 'B: tap removed on del');
  t.ok(ipLink(sites.b.ns, brB), 'B: pre-existing bridge kept');
  t.ok(ipLink(sites.a.ns, foreign), 'A: unmarked bridge still not touched');
});

t.test('a created bridge shared by two sessions goes only with the last one', { skip, timeout: 120000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  tunnel(sites);
  const br = uniqueName('brx');
  for (const sid of ['1', '2']) {
    sites.ok(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', sid, 'peer_session_id', sid, 'bridge', br, 'mtu', '1400']);
  }
  const s1 = session(sites, sites.a, 1);
  t.equal(s1.mtu, 1400, 'mtu word overrides the default');
  t.equal(ipLink(sites.a.ns, s1.interface)?.mtu, 1400, 'tap MTU set');
  t.equal(ipLink(sites.a.ns, br)?.mtu, 1400, 'created bridge MTU consistent with the session');
  sites.ok(sites.a, ['del', 'session', 'tunnel_id', '100', 'session_id', '1']);
  t.ok(ipLink(sites.a.ns, br), 'bridge kept while session 2 uses it');
  t.equal(ipLink(sites.a.ns, s1.interface), undefined, 'session 1 tap removed');
  sites.ok(sites.a, ['del', 'session', 'tunnel_id', '100', 'session_id', '2']);
  t.equal(ipLink(sites.a.ns, br), undefined, 'bridge removed with the last session naming it');

  // Refused after the bridge was created (the name is taken by an interface l2tpd does not own):
  // the bridge is removed again, the foreign interface untouched.
  const taken = uniqueName('vx');
  nsExec(sites.a.ns, 'ip', ['link', 'add', taken, 'type', 'veth', 'peer', 'name', `${taken}p`]);
  const before = linkNames(sites.a.ns);
  const r = sites.cli(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '3', 'peer_session_id', '3', 'name', taken, 'bridge', br]);
  t.equal(r.status, 1, 'refused');
  t.match(r.stderr, new RegExp(`name ${taken}: interface ${taken} already exists and was not created by l2tpd`), r.stderr.trim());
  t.same(linkNames(sites.a.ns), before, 'bridge created for the refused session removed again');
  t.equal(ipLink(sites.a.ns, taken)?.ifalias, undefined, 'foreign interface not marked');
});

t.test('vlan ID dev TRUNK', { skip, timeout: 120000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const has8021q = vlanSupported();
  await sites.start(sites.a);
  await sites.start(sites.b);
  tunnel(sites);
  const trunk = uniqueName('tr');
  nsExec(sites.a.ns, 'ip', ['link', 'add', trunk, 'type', 'veth', 'peer', 'name', `${trunk}p`]);
  nsExec(sites.a.ns, 'ip', ['link', 'set', trunk, 'up']);

  t.test('refused whole on a kernel without 802.1Q', { skip: has8021q && 'this kernel has 802.1Q; see the live test' }, async (t) => {
    const linksBefore = linkNames(sites.a.ns);
    const r = sites.cli(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '5', 'peer_session_id', '5', 'name', uniqueName('pwv'), 'vlan', '5', 'dev', trunk]);
    t.equal(r.status, 1, 'l2tpctl exit 1 (refused)');
    t.match(r.stderr, /vlan 5 dev \S+: cannot create VLAN interface \S+\.5: EOPNOTSUPP/, `error names the word and the kernel reason: ${r.stderr.trim()}`);
    t.match(r.stderr, /802\.1Q/);
    t.same(linkNames(sites.a.ns), linksBefore, 'no tap, bridge or VLAN interface left behind');
    t.same(sites.json(sites.a, ['show', 'session']), [], 'no session');
    t.same((sites.configFile(sites.a) as { sessions: unknown[] }).sessions, [], 'config file unchanged');
  });

  t.test('a pre-existing TRUNK.ID that is not a VLAN interface is refused, naming vlan', async (t) => {
    // A veth stands in for any other kind (the live guest suite tries a dummy and other VLAN IDs).
    const fake = `${trunk}.9`;
    nsExec(sites.a.ns, 'ip', ['link', 'add', fake, 'type', 'veth', 'peer', 'name', `${trunk}p9`]);
    const linksBefore = linkNames(sites.a.ns);
    const configBefore = sites.configFile(sites.a);
    const r = sites.cli(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '9', 'peer_session_id', '9', 'vlan', '9', 'dev', trunk]);
    t.equal(r.status, 1, 'refused');
    t.match(r.stderr, `vlan 9 dev ${trunk}: ${fake} exists and is a veth, not VLAN 9 on ${trunk}`, r.stderr.trim());
    const api = sites.json<unknown[]>(sites.a, ['show', 'session']);
    t.same(api, [], 'no session');
    t.same(linkNames(sites.a.ns), linksBefore, 'no tap or brvlan9 left behind');
    t.equal(ipLink(sites.a.ns, fake)?.master, undefined, `${fake} not enslaved`);
    t.same(sites.configFile(sites.a), configBefore, 'config file unchanged');
    nsExec(sites.a.ns, 'ip', ['link', 'del', fake]);
  });

  t.test('live: TRUNK.ID and brvlanID hold the session', { skip: !has8021q && 'kernel has no 802.1Q (CONFIG_VLAN_8021Q)' }, async (t) => {
    const pw = uniqueName('pwv');
    sites.ok(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '5', 'peer_session_id', '5', 'name', pw, 'vlan', '5', 'dev', trunk]);
    t.match(session(sites, sites.a, 5), { bridge: 'brvlan5', vlan: 5, dev: trunk });
    t.equal(ipLink(sites.a.ns, `${trunk}.5`)?.master, 'brvlan5', 'VLAN interface in the per-VLAN bridge');
    t.equal(ipLink(sites.a.ns, pw)?.master, 'brvlan5', 'session interface in the per-VLAN bridge');
    sites.ok(sites.a, ['del', 'session', 'tunnel_id', '100', 'session_id', '5']);
    t.equal(ipLink(sites.a.ns, `${trunk}.5`), undefined, 'created VLAN interface removed');
    t.equal(ipLink(sites.a.ns, 'brvlan5'), undefined, 'created bridge removed');
    t.ok(ipLink(sites.a.ns, trunk), 'trunk kept');
  });
});

t.test('a bridge port over the session MTU: warned in the log and in show, again when it changes', { skip, timeout: 120000 }, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  await sites.start(sites.a);
  await sites.start(sites.b);
  tunnel(sites);
  const br = uniqueName('brm');
  sites.host(sites.a, br, '198.51.100.1/24');
  const port = (JSON.parse(nsExec(sites.a.ns, 'ip', ['-j', 'link', 'show', 'master', br])) as IpLink[])[0].ifname;
  t.equal(ipLink(sites.a.ns, port)?.mtu, 1500, `host port ${port} at the usual 1500`);
  sites.ok(sites.a, ['add', 'session', 'tunnel_id', '100', 'session_id', '3', 'peer_session_id', '3', 'bridge', br]);
  const warned = () => sites.a.log.filter((l) => l.includes('"ports_over_mtu"') && l.includes(`"interface":"${port}","mtu":`));
  t.match(session(sites, sites.a, 3), { mtu: 1446, ports_over_mtu: [{ interface: port, mtu: 1500 }] }, 'show session -j lists the port');
  t.match(sites.ok(sites.a, ['show', 'session', 'tunnel_id', '100', 'session_id', '3']),
    `  warning: bridge ${br} drops frames over 1446 bytes from ${port} (mtu 1500)\n`, 'show session prints it');
  // The daemon's output is read while the event loop runs (l2tpctl above is spawned synchronously).
  t.ok(await waitUntil(() => warned().length > 0), 'warned in the log');
  t.equal(warned().length, 1, 'once');
  t.match(JSON.parse(warned()[0]), { level: 40, tunnel_id: 100, session_id: 3, bridge: br, mtu: 1446, msg: `bridge ${br} drops frames over 1446 bytes from ${port} (mtu 1500): they never reach the session` });

  nsExec(sites.a.ns, 'ip', ['link', 'set', port, 'mtu', '1446']);
  t.ok(await waitUntil(() => session(sites, sites.a, 3).ports_over_mtu === undefined), 'port lowered to 1446: no longer listed');
  t.notMatch(sites.ok(sites.a, ['show', 'session']), /warning/, 'nor printed');
  nsExec(sites.a.ns, 'ip', ['link', 'set', port, 'mtu', '9000']);
  t.ok(await waitUntil(() => warned().length === 2), 'raised to 9000: warned again, from the link event');
  t.match(warned()[1], `"ports_over_mtu":[{"interface":"${port}","mtu":9000}]`);
});
