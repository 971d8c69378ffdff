/**
 * src/netlink against a real kernel, inside throwaway network namespaces. Rtnl runs in a child
 * (`ip netns exec NS node --import=<ts-node fork>/import.mjs test/helpers/netlink-child.ts OPS`), see
 * test/helpers/netlink-run.ts. Relative imports here are extensionless; `./x.js` would work as
 * well, since tsconfig.json turns on ts-node's experimentalResolver (which maps `./x.js` to
 * `./x.ts`) for tap too.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createNetns, deleteNetns, hasCommand, ipLink, netnsUnavailable, uniqueName } from '../helpers/netns';
import { childLoaderUnavailable, runChild, type ChildRun } from '../helpers/netlink-run';
import type { ChildOp, ChildResult } from '../helpers/netlink-child';
import { decodeLinkMessage, semantic, straceSendBuffers } from '../helpers/netlink-wire';

const RTM_NEWLINK = 16;
const NLM_F_REQUEST = 0x1, NLM_F_ACK = 0x4, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
const IFLA_IFNAME = 3, IFLA_LINK = 5, IFLA_LINKINFO = 18, IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, IFLA_VLAN_ID = 1;

function ip(ns: string, ...args: string[]): string {
  return execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' });
}

/** Run ops in the namespace; fail the test with stderr if the child itself broke. */
function child(tt: Test, ns: string | null, ops: ChildOp[]): ChildResult[] {
  const r: ChildRun = runChild(ns, ops);
  tt.equal(r.status, 0, 'child exited cleanly (sockets closed, no crash)', { stderr: r.stderr, signal: r.signal });
  tt.equal(r.results.length, ops.length, 'child reported every op', { stdout: r.stdout, stderr: r.stderr });
  tt.ok(r.closed, 'Rtnl reports closed');
  return r.results;
}

function value<T>(r: ChildResult | undefined): T {
  if (!r || !r.ok) throw new Error(`op failed: ${JSON.stringify(r)}`);
  return r.value as T;
}

const loaderSkip = childLoaderUnavailable();

t.test('pure: vlanRequest framing and error wrapping (no namespace)', { skip: loaderSkip }, async (tt) => {
  const res = child(tt, null, [
    { op: 'vlanRequest', args: [7, 5, 'eth1.5'] },
    { op: 'vlanRequest', args: [7, 5, 'eth1.5'] },
    { op: 'wrapError', args: [{ message: 'Request rejected: EEXIST' }, 'create bridge br0'] },
    { op: 'wrapError', args: ['Request rejected: -95', 'create vlan eth1.5 on eth1'] },
    { op: 'vlanRequest', args: [7, 4095, 'eth1.4095'] },
    { op: 'vlanRequest', args: [7, 5, 'much-too-long-name.5'] },
  ]);
  const hex = value<string>(res[0]);
  tt.equal(hex, value<string>(res[1]), 'deterministic');
  const buf = Buffer.from(hex, 'hex');
  tt.equal(buf.length % 4, 0, 'nlmsg_len is NLMSG_ALIGNed');
  const m = decodeLinkMessage(buf);
  tt.equal(m.len, buf.length);
  tt.equal(m.seq, 1, 'fixed seq');
  tt.equal(m.pid, 0, 'fixed pid');
  tt.equal(m.type, RTM_NEWLINK);
  tt.equal(m.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE);
  tt.match(value(res[2]), { isNetlinkError: true, code: 'EEXIST', errno: 17, op: 'create bridge br0', message: /^create bridge br0: EEXIST/ });
  tt.match(value(res[3]), { isNetlinkError: true, code: 'EOPNOTSUPP', errno: 95 });
  tt.match(res[4], { ok: false, error: { name: 'RangeError', message: /VLAN ID 4095/ } });
  tt.match(res[5], { ok: false, error: { name: 'RangeError', message: /interface name/ } });
});

const nsSkip = loaderSkip || netnsUnavailable();

t.test('in a namespace', { skip: nsSkip }, async (t) => {
  const ns = createNetns('nlt');
  t.teardown(() => deleteNetns(ns));

  t.test('bridge: create, EEXIST, absent lookup, delete', async (tt) => {
    const br = uniqueName('br');
    const alias = 'l2tpd test bridge';
    const res = child(tt, ns, [
      { op: 'createBridge', args: [br, { mtu: 1400, alias }] },
      { op: 'createBridge', args: [br, {}] },
      { op: 'linkByName', args: ['nlabsent0'] },
      { op: 'listLinks' },
    ]);
    const created = value<{ index: number; name: string; mtu: number; up: boolean; kind: string; alias: string }>(res[0]);
    tt.match(created, { name: br, mtu: 1400, up: true, kind: 'bridge', alias });
    tt.match(res[1], { ok: false, error: { isNetlinkError: true, code: 'EEXIST', errno: 17, op: `create bridge ${br}`, message: new RegExp(`^create bridge ${br}: EEXIST`) } });
    tt.equal(value(res[2]), null, 'linkByName(absent) → undefined (sent by the child as null)');
    const names = value<{ name: string; index: number }[]>(res[3]).map((l) => l.name);
    tt.ok(names.includes('lo') && names.includes(br), 'listLinks has lo and the bridge');

    const l = ipLink(ns, br);
    tt.ok(l, 'ip sees the bridge');
    tt.equal(l?.linkinfo?.info_kind, 'bridge');
    tt.equal(l?.linkinfo?.info_data?.stp_state, 0, 'stp off');
    tt.ok(l?.flags.includes('UP'), 'admin up');
    tt.equal(l?.mtu, 1400);
    tt.equal(l?.ifalias, alias);
    tt.equal(l?.ifindex, created.index);

    const del = child(tt, ns, [
      { op: 'deleteLink', args: [br] },
      { op: 'linkByName', args: [br] },
      { op: 'deleteLink', args: [br] },
    ]);
    tt.ok(del[0]?.ok, 'delete ok');
    tt.equal(value(del[1]), null, 'gone');
    tt.match(del[2], { ok: false, error: { code: 'ENODEV', errno: 19, message: new RegExp(`^delete link ${br}: ENODEV`) } });
    tt.equal(ipLink(ns, br), undefined, 'ip agrees it is gone');
  });

  t.test('setLink: up/mtu/master/alias on a veth and a tap, then nomaster', async (tt) => {
    const br = uniqueName('br'), va = uniqueName('va'), vb = uniqueName('vb'), tap = uniqueName('tp');
    ip(ns, 'link', 'add', va, 'type', 'veth', 'peer', 'name', vb);
    ip(ns, 'tuntap', 'add', tap, 'mode', 'tap');
    const tapIndex = ipLink(ns, tap)?.ifindex ?? 0;
    tt.ok(tapIndex > 0);

    const made = child(tt, ns, [{ op: 'createBridge', args: [br, {}] }]);
    const brIndex = value<{ index: number }>(made[0]).index;
    const res = child(tt, ns, [
      { op: 'setLink', args: [va, { up: true, mtu: 1400, master: brIndex }] },
      { op: 'setLink', args: [tapIndex, { up: true, mtu: 1300, master: brIndex, alias: 'session tap' }] },
      { op: 'linkByName', args: [va] },
      { op: 'linkByIndex', args: [tapIndex] },
      { op: 'setLink', args: ['nlabsent0', { up: true }] },
    ]);
    tt.ok(res[0]?.ok && res[1]?.ok, 'both setLink calls ok', { res });
    tt.match(value(res[2]), { name: va, up: true, mtu: 1400, master: brIndex, kind: 'veth' });
    tt.match(value(res[3]), { name: tap, index: tapIndex, up: true, mtu: 1300, master: brIndex, kind: 'tun', alias: 'session tap' });
    tt.match(res[4], { ok: false, error: { code: 'ENODEV', message: /^set link nlabsent0 up: ENODEV/ } });
    for (const [dev, mtu] of [[va, 1400], [tap, 1300]] as const) {
      const l = ipLink(ns, dev);
      tt.equal(l?.master, br, `${dev} enslaved to ${br}`);
      tt.equal(l?.mtu, mtu, `${dev} mtu`);
      tt.ok(l?.flags.includes('UP'), `${dev} up`);
    }
    tt.equal(ipLink(ns, tap)?.ifalias, 'session tap');

    const res2 = child(tt, ns, [
      { op: 'setLink', args: [va, { master: null, up: false }] },
      { op: 'setLink', args: [tap, { master: null, alias: '' }] },
      { op: 'linkByName', args: [va] },
    ]);
    tt.ok(res2[0]?.ok && res2[1]?.ok, 'nomaster ok', { res2 });
    const vaInfo = value<{ master?: number; up: boolean }>(res2[2]);
    tt.equal(vaInfo.master, undefined, 'LinkInfo.master absent after nomaster');
    tt.equal(vaInfo.up, false);
    tt.equal(ipLink(ns, va)?.master, undefined, `${va} has no master`);
    tt.notOk(ipLink(ns, va)?.flags.includes('UP'), `${va} down`);
    tt.equal(ipLink(ns, tap)?.master, undefined, `${tap} has no master`);
    tt.notOk(ipLink(ns, tap)?.ifalias, 'alias cleared');

    ip(ns, 'link', 'del', va);
    ip(ns, 'link', 'del', tap);
    ip(ns, 'link', 'del', br);
  });

  t.test('link events: new and del for a link made by ip', async (tt) => {
    const a = uniqueName('ev'), b = uniqueName('ev');
    const res = child(tt, ns, [
      { op: 'watch' },
      { op: 'ip', args: ['link', 'add', a, 'type', 'veth', 'peer', 'name', b] },
      { op: 'waitEvent', args: [{ type: 'new', name: a }, 5000] },
      { op: 'ip', args: ['link', 'del', a] },
      { op: 'waitEvent', args: [{ type: 'del', name: a }, 5000] },
      { op: 'events', args: [a] },
      { op: 'unwatch' },
      { op: 'watch' }, // re-subscribe after the monitor was closed; close() must still end the process
    ]);
    tt.equal(value(res[2]), true, 'saw RTM_NEWLINK');
    tt.equal(value(res[4]), true, 'saw RTM_DELLINK');
    const evs = value<{ type: string; link: { name: string; index: number; kind?: string } }[]>(res[5]);
    const news = evs.filter((e) => e.type === 'new'), dels = evs.filter((e) => e.type === 'del');
    tt.ok(news.length >= 1 && dels.length >= 1, 'both kinds present');
    tt.equal(evs[0]?.type, 'new', 'first event is new');
    tt.equal(evs[evs.length - 1]?.type, 'del', 'last event is del');
    tt.equal(news[0]?.link.index, dels[0]?.link.index, 'same ifindex');
    tt.equal(news[0]?.link.kind, 'veth');
  });

  t.test('vlan: request bytes vs iproute2, then live create', async (tt) => {
    const trunk = uniqueName('tk'), peer = uniqueName('tp');
    const vname = `${trunk}.5`;
    ip(ns, 'link', 'add', trunk, 'type', 'veth', 'peer', 'name', peer);
    const trunkIndex = ipLink(ns, trunk)?.ifindex ?? 0;
    tt.ok(trunkIndex > 0);

    const ours = child(tt, ns, [
      { op: 'vlanRequest', args: [trunkIndex, 5, vname] },
      { op: 'createVlan', args: [trunk, 5, vname, { alias: 'vlan 5 trunk' }] },
      { op: 'createVlan', args: ['nlabsent0', 5, 'nlabsent0.5'] },
    ]);
    const ourMsg = decodeLinkMessage(Buffer.from(value<string>(ours[0]), 'hex'));
    tt.match(ours[2], { ok: false, error: { code: 'ENODEV', message: 'create vlan nlabsent0.5 on nlabsent0: ENODEV (no such trunk interface)' } });

    tt.test('wire comparison with `ip link add … type vlan id 5`', { skip: hasCommand('strace') ? false : 'strace not installed' }, async (tw) => {
      const name2 = `${peer}.5`; // separate name so a 802.1Q kernel's success above does not EEXIST here
      const peerIndex = ipLink(ns, peer)?.ifindex ?? 0;
      const r = spawnSync('ip', ['netns', 'exec', ns, 'strace', '-f', '-e', 'trace=sendmsg', '-e', 'write=all', '-xx',
        'ip', 'link', 'add', 'link', peer, 'name', name2, 'type', 'vlan', 'id', '5'], { encoding: 'utf8' });
      const msgs = straceSendBuffers(r.stderr).filter((b) => b.length >= 32 && b.readUInt16LE(4) === RTM_NEWLINK);
      tw.equal(msgs.length, 1, 'iproute2 sent one RTM_NEWLINK', { stderr: r.stderr.slice(-2000) });
      if (r.status === 0) ip(ns, 'link', 'del', name2);
      const theirs = decodeLinkMessage(msgs[0] ?? Buffer.alloc(32));
      const mine = decodeLinkMessage(Buffer.from(child(tw, ns, [{ op: 'vlanRequest', args: [peerIndex, 5, name2] }]).map((x) => value<string>(x))[0] ?? '', 'hex'));
      tw.same(semantic(mine), semantic(theirs), 'same type, flags, ifinfomsg and attribute tree');
      tw.equal(mine.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE);
      tw.same(mine.attrs.map((a) => a.type), [IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO]);
      tw.same(mine.attrs.find((a) => a.type === IFLA_LINKINFO)?.value, [
        { type: IFLA_INFO_KIND, value: 'vlan' },
        { type: IFLA_INFO_DATA, value: [{ type: IFLA_VLAN_ID, value: 5 }] },
      ]);
      tw.equal(mine.attrs.find((a) => a.type === IFLA_LINK)?.value, peerIndex);
      tw.equal(ourMsg.attrs.find((a) => a.type === IFLA_LINK)?.value, trunkIndex);
      tw.equal(ourMsg.attrs.find((a) => a.type === IFLA_IFNAME)?.value, vname);
    });

    const live = ours[1];
    if (!live?.ok) {
      tt.match(live, { ok: false, error: {
        isNetlinkError: true, code: 'EOPNOTSUPP', errno: 95, op: `create vlan ${vname} on ${trunk}`,
        message: `create vlan ${vname} on ${trunk}: EOPNOTSUPP (kernel without 802.1Q?)`,
      } }, 'no 802.1Q: a clear EOPNOTSUPP NetlinkError');
      tt.equal(ipLink(ns, vname), undefined, 'nothing left behind');
    }
    tt.test('live vlan creation', { skip: live?.ok ? false : 'kernel has no 802.1Q (CONFIG_VLAN_8021Q)' }, async (tl) => {
      tl.match(live, { ok: true, value: { name: vname, kind: 'vlan', alias: 'vlan 5 trunk' } });
      const l = ipLink(ns, vname);
      tl.equal(l?.linkinfo?.info_kind, 'vlan');
      tl.equal(l?.linkinfo?.info_data?.id, 5);
      tl.equal(l?.link, trunk);
      ip(ns, 'link', 'del', vname);
    });
    ip(ns, 'link', 'del', trunk);
  });
});
