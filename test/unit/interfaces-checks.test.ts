/**
 * The checks of src/daemon/interfaces.ts that need no kernel: what a pre-existing `TRUNK.ID`
 * must be (vlanMismatch), which bridge ports are over a session's MTU (portsOverMtu), the
 * session tap's alias with its note of an enslaved VLAN interface, and the reading of real
 * kernel replies that the check relies on. The same checks run live on a kernel with 802.1Q in
 * test/vm/vlan-guest.test.ts.
 */
import t from 'tap';
import { ConfigError } from '../../src/control/errors.js';
import { parseSessionAlias, sessionAlias, SessionInterfaces, vlanMismatch, type SessionLinks } from '../../src/daemon/interfaces.js';
import { parseLinkInfo, type LinkInfo } from '../../src/netlink/index.js';

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

/**
 * RTM_NEWLINK payloads (ifinfomsg + attributes) as Debian's kernel 6.1.0-57-amd64 sent them in a
 * guest, for RTM_GETLINK of each name after `ip link add eth1 type veth peer name p1; ip link add
 * link eth1 name eth1.9 type vlan id 90; ip link add eth1.12 type dummy` (captured once, with the
 * netlink package's socket, so every attribute the kernel adds is there).
 */
const KERNEL_REPLIES = {
  /** `eth1` */
  TRUNK_VETH: [
    '0000010003000000021000000000000009000300657468310000000008000d00e8030000050010000200000005001100',
    '0000000008000400dc050000080032004400000008003300ffff000008001b000000000008001e000000000008003d00',
    '0000000008001f000200000008002800ffff0000080029000000010008003a000000010008003b00f8ff070008003c00',
    'ffff000008002000020000000500210000000000090006006e6f6f7000000000080023000100000008002f0000000000',
    '0800300001000000050027000000000024000e0000000000000000000000000000000000000000000000000000000000',
    '000000000a000100da421ed63c7500000a000200ffffffffffff0000cc00170000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000006400070000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000c002b00',
    '0500020000000000100012000900010076657468000000000800050002000000bc011a008c0002008800010000000000',
    '000000000000000001000000010000000100000001000000000000000100000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '0000000010270000e803000000000000000000000000000000000000010000002c010a00080001000000000014000500',
    'ffff0000e20c00004c9a0000e8030000f00002000000000040000000dc05000001000000010000000100000001000000',
    'ffffffffa00f0000e803000000000000803a090080510100030000005802000010000000000000000100000001000000',
    '0100000060ea000000000000000000000000000000000000000000000000000001000000000000000000000010270000',
    'e80300000100000000000000000000000100000000000000000000000100000000000000000000000000000000000000',
    '80ee360000000000000000000100000000000000000000000000000000000000000000000004000000000000ffff0000',
    'ffffffff01000000000000000000000014000700000000000000000000000000000000000500080000000000',
  ].join(''),
  /** `eth1.9` */
  VLAN_90: [
    '000001000400000002100000000000000b000300657468312e39000008000d00e8030000050010000200000005001100',
    '0000000008000400dc050000080032000000000008003300ffff000008001b000000000008001e000000000008003d00',
    '0000000008001f000100000008002800ffff0000080029000000010008003a000000010008003b00f8ff070008003c00',
    'ffff000008002000010000000500210000000000090006006e6f6f7000000000080023000000000008002f0000000000',
    '0800300000000000050027000000000024000e0000000000000000000000000000000000000000000000000000000000',
    '000000000a000100da421ed63c7500000a000200ffffffffffff0000cc00170000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000006400070000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000c002b00',
    '05000200000000003000120009000100766c616e00000000200002000600050081000000060001005a0000000c000200',
    '01000000ffffffff0800050003000000bc011a008c000200880001000000000000000000000000000100000001000000',
    '010000000100000000000000010000000000000000000000000000000000000000000000000000000000000000000000',
    '00000000000000000000000000000000000000000000000000000000000000000000000010270000e803000000000000',
    '000000000000000000000000010000002c010a00080001000000000014000500ffff00006a0d00003c530000e8030000',
    'f00002000000000040000000dc05000001000000010000000100000001000000ffffffffa00f0000e803000000000000',
    '803a0900805101000300000058020000100000000000000001000000010000000100000060ea00000000000000000000',
    '0000000000000000000000000000000001000000000000000000000010270000e8030000010000000000000000000000',
    '010000000000000000000000010000000000000000000000000000000000000080ee3600000000000000000001000000',
    '00000000000000000000000000000000000000000004000000000000ffff0000ffffffff010000000000000000000000',
    '14000700000000000000000000000000000000000500080000000000',
  ].join(''),
  /** `eth1.12` */
  DUMMY: [
    '000001000500000082000000000000000c000300657468312e31320008000d00e8030000050010000200000005001100',
    '0000000008000400dc0500000800320000000000080033000000000008001b000000000008001e000000000008003d00',
    '0000000008001f000100000008002800ffff0000080029000000010008003a000000010008003b000000010008003c00',
    'ffff000008002000010000000500210001000000090006006e6f6f7000000000080023000000000008002f0000000000',
    '0800300000000000050027000000000024000e0000000000000000000000000000000000000000000000000000000000',
    '000000000a0001002e58ab2346e800000a000200ffffffffffff0000cc00170000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000006400070000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
    '00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000c002b00',
    '0500020000000000100012000a00010064756d6d79000000bc011a008c00020088000100000000000000000000000000',
    '010000000100000001000000010000000000000001000000000000000000000000000000000000000000000000000000',
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000010270000',
    'e803000000000000000000000000000000000000010000002c010a00080001000000000014000500ffff0000b50d0000',
    '207a0000e8030000f00002000000000040000000dc05000001000000010000000100000001000000ffffffffa00f0000',
    'e803000000000000803a0900805101000300000058020000100000000000000001000000010000000100000060ea0000',
    '000000000000000000000000000000000000000000000000ffffffff000000000000000010270000e803000001000000',
    '0000000000000000010000000000000000000000010000000000000000000000000000000000000080ee360000000000',
    '000000000100000000000000000000000000000000000000000000000004000000000000ffff0000ffffffff01000000',
    '000000000000000014000700000000000000000000000000000000000500080000000000',
  ].join(''),
};

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
