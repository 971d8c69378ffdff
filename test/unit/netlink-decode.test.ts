/**
 * decodeLink (src/netlink/decode.ts), l2tpd's own reading of link messages, against the `netlink`
 * package's full parser as the reference: kernel replies captured from Debian's kernel, and
 * messages built here for what those lack (alias, master, group, netnsid) and for malformed input.
 */
import t from 'tap';
import { ifla, rt } from 'netlink';
import { decodeLink, OPER_STATES } from '../../src/netlink/decode.js';
import { linkPayload, linkInfo } from '../../src/netlink/messages.js';
import type { LinkInfo } from '../../src/netlink/index.js';
import { KERNEL_REPLIES } from '../helpers/kernel-replies.js';

/** The same fields read with the package's parser (what parseLinkInfo did before decodeLink). */
function reference(payload: Buffer): LinkInfo {
  const { data, attrs } = rt.parseLinkMessage(payload);
  const info: LinkInfo = {
    index: data.index ?? 0, name: attrs.ifname ?? '', mtu: attrs.mtu ?? 0, up: data.flags?.up === true,
    operstate: OPER_STATES[attrs.operstate ?? 0] ?? 'unknown',
  };
  if (attrs.master) info.master = attrs.master;
  if (attrs.link?.length === 4) info.link = attrs.link.readUInt32LE(0);
  if (attrs.linkNetnsid !== undefined) info.linkNetnsid = attrs.linkNetnsid;
  if (attrs.group) info.group = attrs.group;
  if (attrs.gsoMaxSegs !== undefined) info.gsoMaxSegs = attrs.gsoMaxSegs;
  if (attrs.linkinfo) {
    const li = ifla.parseInfo(attrs.linkinfo);
    if (li.kind) info.kind = li.kind.replace(/\0+$/, '');
    if (info.kind === 'vlan' && li.data) {
      const id = ifla.parseVlan(li.data).id;
      if (id !== undefined) info.vlanId = id;
    }
  }
  if (attrs.ifalias !== undefined && attrs.ifalias !== '') info.alias = attrs.ifalias;
  return info;
}

t.test('kernel replies: the same LinkInfo as the package\'s parser', async (t) => {
  for (const [name, hex] of Object.entries(KERNEL_REPLIES)) {
    const payload = Buffer.from(hex, 'hex');
    t.same(decodeLink(payload), reference(payload), name);
  }
  t.match(decodeLink(Buffer.from(KERNEL_REPLIES.VLAN_90, 'hex')), { name: 'eth1.9', kind: 'vlan', vlanId: 90, link: 3 });
});

t.test('messages with alias, master, group, netnsid, operstate and flags', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['a marked tap in a bridge, up', linkPayload({ index: 42, flags: { up: true } }, {
      ifname: 'l2tpeth7', mtu: 1446, master: 9, ifalias: 'l2tpd:1/7 enslaved eth1.9', operstate: 6, group: 77, gsoMaxSegs: 64,
      linkinfo: linkInfo('tun'),
    })],
    ['a VLAN on a trunk in another namespace', linkPayload({ index: 5 }, {
      ifname: 'eth1.9', mtu: 1500, link: Buffer.from([3, 0, 0, 0]), linkNetnsid: 2,
      linkinfo: linkInfo('vlan', ifla.formatVlan({ id: 9 })),
    })],
    ['bare: no attributes', linkPayload({ index: 1 }, {})],
    ['an empty alias and master 0 are absent', linkPayload({ index: 3 }, { ifname: 'x', ifalias: '', master: 0, group: 0 })],
  ];
  for (const [what, payload] of cases) t.same(decodeLink(payload), reference(payload), what);
  t.same(decodeLink(cases[0][1]), {
    index: 42, name: 'l2tpeth7', mtu: 1446, up: true, operstate: 'up', master: 9, group: 77, gsoMaxSegs: 64, kind: 'tun',
    alias: 'l2tpd:1/7 enslaved eth1.9',
  }, 'every field');
});

t.test('malformed input: a short message is refused, a broken attribute ends the walk', async (t) => {
  t.throws(() => decodeLink(Buffer.alloc(15)), RangeError, 'shorter than ifinfomsg');
  const good = linkPayload({ index: 8 }, { ifname: 'ok0', mtu: 1400 });
  // An attribute claiming 200 bytes where 8 remain: what came before it stands, nothing throws.
  const broken = Buffer.concat([good, Buffer.from([200, 0, 20, 0, 1, 2, 3, 4])]);
  t.match(decodeLink(broken), { index: 8, name: 'ok0', mtu: 1400 });
  const zeroLength = Buffer.concat([good, Buffer.from([0, 0, 4, 0])]);
  t.match(decodeLink(zeroLength), { index: 8, name: 'ok0' }, 'a zero-length header does not loop');
});
