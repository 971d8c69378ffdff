/**
 * The checks of src/daemon/interfaces.ts that need no kernel: what a pre-existing `TRUNK.ID`
 * must be (vlanMismatch), which bridge ports are over a session's MTU (portsOverMtu), the
 * session tap's alias with its note of an enslaved VLAN interface, what a link dump tells set-up
 * (knownLinks), which sessions a link event concerns (LinkWatch), and the reading of real
 * kernel replies that the check relies on. The same checks run live on a kernel with 802.1Q in
 * test/vm/vlan-guest.test.ts.
 */
import t from 'tap';
import { ConfigError } from '../../src/control/errors.js';
import {
  knownLinks, LinkWatch, parseSessionAlias, sessionAlias, SessionInterfaces, vlanMismatch, type SessionLinks,
} from '../../src/daemon/interfaces.js';
import { parseLinkInfo, type LinkInfo } from '../../src/netlink/index.js';
import { KERNEL_REPLIES } from '../helpers/kernel-replies.js';

const link = (over: Partial<LinkInfo> & { name: string; index: number }): LinkInfo => ({ mtu: 1500, up: true, operstate: 'up', ...over });
const trunk = link({ name: 'eth1', index: 2, kind: 'veth' });
const eth2 = link({ name: 'eth2', index: 3, kind: 'dummy' });
const want = { vlan: 9, dev: 'eth1' };

t.test('vlanMismatch: a pre-existing TRUNK.ID must be that VLAN on that trunk', async (t) => {
  t.equal(vlanMismatch(want, link({ name: 'eth1.9', index: 10, kind: 'vlan', vlanId: 9, link: 2 }), trunk, trunk), undefined, 'VLAN 9 on eth1: used');

  const cases: Array<[string, Partial<LinkInfo>, LinkInfo | undefined, LinkInfo | undefined, string, RegExp]> = [
    ['another VLAN ID', { kind: 'vlan', vlanId: 90, link: 2 }, trunk, trunk, 'vlan', /^vlan 9 dev eth1: eth1\.9 exists and carries VLAN 90, not 9$/],
    ['a dummy', { kind: 'dummy' }, trunk, undefined, 'vlan', /^vlan 9 dev eth1: eth1\.9 exists and is a dummy, not VLAN 9 on eth1$/],
    ['a device without a kind', {}, trunk, undefined, 'vlan', /^vlan 9 dev eth1: eth1\.9 exists and is not a VLAN interface, not VLAN 9 on eth1$/],
    ['a VLAN without its ID in the reply', { kind: 'vlan', link: 2 }, trunk, trunk, 'vlan', /carries VLAN \(unknown\), not 9$/],
    ['VLAN 9 on another trunk', { kind: 'vlan', vlanId: 9, link: 3 }, trunk, eth2, 'dev', /^vlan 9 dev eth1: eth1\.9 exists and is VLAN 9 on eth2, not on eth1$/],
    ['VLAN 9 on an unnamed ifindex', { kind: 'vlan', vlanId: 9, link: 77 }, trunk, undefined, 'dev', /is VLAN 9 on ifindex 77, not on eth1$/],
    ['VLAN 9 on a device in another namespace', { kind: 'vlan', vlanId: 9, link: 2, linkNetnsid: 0 }, trunk, undefined, 'dev', /is VLAN 9 on a device in another network namespace, not on eth1$/],
    ['VLAN 9 while the trunk is missing', { kind: 'vlan', vlanId: 9, link: 3 }, undefined, eth2, 'dev', /is VLAN 9 on eth2, not on eth1$/],
  ];
  for (const [what, over, tr, lower, field, message] of cases) {
    const e = vlanMismatch(want, link({ name: 'eth1.9', index: 10, ...over }), tr, lower);
    t.ok(e instanceof ConfigError, `${what}: refused`);
    t.equal(e?.field, field, `${what}: names ${field}`);
    t.equal(e?.value, field === 'vlan' ? 9 : 'eth1', `${what}: with the value given`);
    t.match(e?.message, message, `${what}: ${e?.message}`);
    t.match(e?.allowed, field === 'vlan' ? /^VLAN 9 on eth1 \(or no interface named eth1\.9\)$/ : /^the trunk eth1\.9 is on/, `${what}: says what is allowed`);
  }
});

t.test('portsOverMtu: the bridge and its ports above the session MTU, the session tap left out', async (t) => {
  const links: SessionLinks = { tap: { fd: -1, name: 'l2tpeth0', offload: false }, ifindex: 20, ifname: 'l2tpeth0', bridge: 'br7' };
  const dump = [
    link({ name: 'br7', index: 5, kind: 'bridge', mtu: 1446 }),
    link({ name: 'l2tpeth0', index: 20, kind: 'tun', mtu: 1446, master: 5 }),
    link({ name: 'eth1.7', index: 21, kind: 'vlan', mtu: 1500, master: 5 }),
    link({ name: 'veth1', index: 22, kind: 'veth', mtu: 1400, master: 5 }),
    link({ name: 'eth1.8', index: 23, kind: 'vlan', mtu: 9000, master: 6 }),
  ];
  t.same(SessionInterfaces.portsOverMtu(links, 1446, dump), [{ interface: 'eth1.7', mtu: 1500 }], 'only the port over 1446 in br7');
  t.same(SessionInterfaces.portsOverMtu(links, 1500, dump), [], 'none over 1500');
  t.same(SessionInterfaces.portsOverMtu(links, 1400, dump), [{ interface: 'br7', mtu: 1446 }, { interface: 'eth1.7', mtu: 1500 }],
    'the bridge itself counts (its own frames), the tap does not');
  t.same(SessionInterfaces.portsOverMtu({ ...links, bridge: undefined }, 1000, dump), [], 'no bridge, nothing');
  t.same(SessionInterfaces.portsOverMtu({ ...links, bridge: 'gone' }, 1000, dump), [], 'a bridge not in the dump, nothing');
  t.same(SessionInterfaces.portsOverMtu(links, 1000, [link({ name: 'br7', index: 5, kind: 'veth' })]), [], 'a non-bridge of that name, nothing');
});

t.test('session alias: the tap mark, with the note of an enslaved VLAN interface', async (t) => {
  t.equal(sessionAlias(100, 7), 'l2tpd:100/7');
  t.equal(sessionAlias(100, 7, 'eth1.7'), 'l2tpd:100/7 enslaved eth1.7');
  t.same(parseSessionAlias('l2tpd:100/7'), { tunnel_id: 100, session_id: 7 });
  t.same(parseSessionAlias('l2tpd:100/7 enslaved eth1.7'), { tunnel_id: 100, session_id: 7, enslaved: 'eth1.7' });
  t.same(parseSessionAlias(sessionAlias(4294967295, 4294967295, 'bond0.4094')), { tunnel_id: 4294967295, session_id: 4294967295, enslaved: 'bond0.4094' }, 'round trip');
  for (const other of [undefined, '', 'l2tpd', 'l2tpd:100', 'l2tpd:100/7 ', 'l2tpd:100/7 enslaved', 'l2tpd:100/7 enslaved a b', 'x l2tpd:100/7']) {
    t.equal(parseSessionAlias(other), undefined, `not a session mark: ${JSON.stringify(other)}`);
  }
});

t.test('knownLinks: the marked taps of each session and every link by name, from one dump', async (t) => {
  const known = knownLinks([
    link({ name: 'l2tpeth0', index: 10, kind: 'tun', alias: sessionAlias(1, 5) }),
    link({ name: 'old0', index: 11, kind: 'tun', alias: sessionAlias(1, 5) }),
    link({ name: 'pw7', index: 12, kind: 'tun', alias: sessionAlias(1, 7, 'eth1.9') }),
    link({ name: 'eth1', index: 2, kind: 'veth', alias: 'l2tpd:1/6 but not a mark' }),
    link({ name: 'br0', index: 3, kind: 'bridge', alias: 'l2tpd' }),
  ]);
  t.same(known.tapsOf({ tunnel_id: 1, session_id: 5 }).map((l) => l.name), ['l2tpeth0', 'old0'], 'both taps marked 1/5');
  t.same(known.tapsOf({ tunnel_id: 1, session_id: 6 }), [], 'an alias that is not a mark marks nothing');
  t.same(known.tapsOf({ tunnel_id: 2, session_id: 5 }), [], 'another tunnel\'s session is another session');
  t.same(known.tapsOf({ tunnel_id: 1, session_id: 7 }).map((l) => l.name), ['pw7'], 'a mark with its note of an enslaved VLAN interface');
  t.equal(known.byName?.('br0')?.index, 3, 'by name');
  t.equal(known.byName?.('br9'), undefined);
});

t.test('LinkWatch: which sessions an event concerns, kept as they start, change and stop', async (t) => {
  const tap = (fd: number) => ({ fd, name: '', offload: false });
  const watch = new LinkWatch();
  const bridged: SessionLinks = { tap: tap(3), ifindex: 5, ifname: 'pw5', bridge: 'br0', bridgeIndex: 10, vlanIf: 'eth1.9' };
  const plain: SessionLinks = { tap: tap(4), ifindex: 6, ifname: 'pw6' };
  watch.set('1/5', bridged);
  watch.set('1/6', plain);
  t.same([...watch.concerned({ index: 5, name: 'renamed' })], ['1/5'], 'its tap by ifindex (renamed)');
  t.same([...watch.concerned({ index: 99, name: 'pw6' })], ['1/6'], 'a tap by name (re-created with another ifindex)');
  t.same([...watch.concerned({ index: 10, name: 'br0' })], ['1/5'], 'its bridge');
  t.same([...watch.concerned({ index: 20, name: 'eth1.9' })], ['1/5'], 'its VLAN interface');
  t.same([...watch.concerned({ index: 21, name: 'eth2' })], [], 'anything else: nobody');
  t.equal(watch.bridgeOf({ index: 30, master: 10 }), 'br0', 'a port of a session bridge');
  t.equal(watch.bridgeOf({ index: 10 }), 'br0', 'the bridge itself');
  t.equal(watch.bridgeOf({ index: 31, master: 11 }), undefined, 'a port of another bridge');
  t.same([...watch.named('br0')], ['1/5']);

  watch.set('1/5', { ...bridged, ifindex: 8, bridgeIndex: 12 });
  t.same([...watch.concerned({ index: 5, name: 'x' })], [], 'a repaired session is watched by its new tap only');
  t.same([...watch.concerned({ index: 8, name: 'x' })], ['1/5']);
  t.equal(watch.bridgeOf({ index: 30, master: 10 }), undefined, 'nor by its old bridge');
  t.equal(watch.bridgeOf({ index: 30, master: 12 }), 'br0', 'but by the re-created one');

  watch.delete('1/5');
  watch.delete('1/5');
  t.same([...watch.concerned({ index: 8, name: 'br0' })], [], 'a stopped session concerns no event');
  t.equal(watch.bridgeOf({ index: 30, master: 12 }), undefined);
  t.same([...watch.named('br0')], []);
  t.same([...watch.concerned({ index: 6, name: 'pw6' })], ['1/6'], 'the other session is still watched');
});

t.test('parseLinkInfo on kernel replies: IFLA_LINK, and the VLAN ID from IFLA_INFO_DATA', async (t) => {
  const trunk6 = parseLinkInfo(Buffer.from(KERNEL_REPLIES.TRUNK_VETH, 'hex'));
  const vlan90 = parseLinkInfo(Buffer.from(KERNEL_REPLIES.VLAN_90, 'hex'));
  const dummy = parseLinkInfo(Buffer.from(KERNEL_REPLIES.DUMMY, 'hex'));
  t.match(trunk6, { index: 3, name: 'eth1', kind: 'veth', link: 2, mtu: 1500 }, 'a veth: IFLA_LINK is its peer');
  t.equal(trunk6.vlanId, undefined, 'no VLAN ID on a veth');
  t.match(vlan90, { index: 4, name: 'eth1.9', kind: 'vlan', vlanId: 90, link: 3, mtu: 1500 }, 'eth1.9: VLAN 90 on ifindex 3 (eth1)');
  t.equal(vlan90.linkNetnsid, undefined, 'lower device in the same namespace');
  t.match(dummy, { index: 5, name: 'eth1.12', kind: 'dummy' });
  t.equal(dummy.link, undefined, 'a dummy has no lower device');
  t.equal(dummy.vlanId, undefined);

  // What `vlan 9 dev eth1` and `vlan 12 dev eth1` meet on that kernel.
  t.match(vlanMismatch({ vlan: 9, dev: 'eth1' }, vlan90, trunk6, trunk6), { field: 'vlan', message: 'vlan 9 dev eth1: eth1.9 exists and carries VLAN 90, not 9' });
  t.match(vlanMismatch({ vlan: 12, dev: 'eth1' }, dummy, trunk6, undefined), { field: 'vlan', message: 'vlan 12 dev eth1: eth1.12 exists and is a dummy, not VLAN 12 on eth1' });
  t.equal(vlanMismatch({ vlan: 90, dev: 'eth1' }, { ...vlan90, name: 'eth1.90' }, trunk6, trunk6), undefined, 'VLAN 90 on eth1 is what `vlan 90 dev eth1` wants');
  t.match(vlanMismatch({ vlan: 90, dev: 'p1' }, { ...vlan90, name: 'p1.90' }, { ...trunk6, index: 2, name: 'p1' }, trunk6),
    { field: 'dev', message: 'vlan 90 dev p1: p1.90 exists and is VLAN 90 on eth1, not on p1' });
});
