/**
 * Thin typed rtnetlink wrapper over the `netlink` package (0.3.0). Main thread only: the
 * package's native socket crashes at worker teardown unless closed (docs/dependencies.md, netlink 5),
 * so always call Rtnl.close().
 *
 * Workarounds for the package (docs/dependencies.md, netlink):
 *  - nested attributes (IFLA_LINKINFO, IFLA_LINK, IFLA_BR_*) are encoded by hand (toBuf);
 *  - CREATE|EXCL is passed explicitly on create;
 *  - requests use checkError:false and decode NLMSG_ERROR here, so errors carry the errno;
 *  - link and address events read the raw nlmsg_type (16 NEWLINK / 17 DELLINK, 20 NEWADDR /
 *    21 DELADDR), which parsed messages drop.
 */
import {
  AttrStream, createNetlink, Flags, FlagsGet, formatMessage, ifla, parseError, Protocol, putU32, rt,
  type NetlinkMessage, type NetlinkSocket,
} from 'netlink';
import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isMainThread } from 'node:worker_threads';
import { addonCall } from './addon.js';
import { decodeLink } from './decode.js';
import { errnoName, NetlinkError, toNetlinkError } from './errors.js';
import { guardMonitorSocket, NETLINK_ROUTE, type MonitorGuard } from './monitor-socket.js';
import { netlinkSocketRow } from './socket-fd.js';
import {
  bridgePayload, checkIfname, checkVlanId, CREATE_FLAGS, linkPayload, NLMSG_ERROR,
  RTM_DELADDR, RTM_DELLINK, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK, vlanPayload,
} from './messages.js';

export { NetlinkError, toNetlinkError } from './errors.js';
export { vlanRequest } from './messages.js';

export type OperState = 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';

export interface LinkInfo {
  index: number;
  name: string;
  mtu: number;
  /** administratively up (IFF_UP) */
  up: boolean;
  /** IFLA_MASTER ifindex, if enslaved */
  master?: number;
  /** IFLA_INFO_KIND ('bridge', 'veth', 'tun', 'vlan', …); absent for devices without rtnl_link_ops */
  kind?: string;
  /** IFLA_LINK: ifindex of the lower device (a VLAN interface's trunk, a veth's peer) */
  link?: number;
  /** IFLA_LINK_NETNSID: set when `link` is an ifindex in another network namespace */
  linkNetnsid?: number;
  /** IFLA_INFO_DATA/IFLA_VLAN_ID of a `vlan` link */
  vlanId?: number;
  /** IFLA_IFALIAS */
  alias?: string;
  /** IFLA_GSO_MAX_SEGS: larger GSO packets are segmented by the kernel before this device */
  gsoMaxSegs?: number;
  /** IFLA_GROUP (`ip link set … group N`); absent for the default group 0 */
  group?: number;
  operstate: OperState;
}

/** Filter for Rtnl.listLinks. */
export interface LinkFilter {
  /** only the ports of this master (bridge) ifindex; filtered by the kernel (IFLA_MASTER in the dump request) */
  master?: number;
}

export interface LinkEvent { type: 'new' | 'del'; link: LinkInfo }

/** The link monitor socket's defences against bursts (Rtnl.monitorStatus). */
export interface MonitorStatus {
  /**
   * NETLINK_NO_ENOBUFS is on: a burst larger than the receive buffer drops events silently, it
   * cannot abort the process. false: the fd was not found or the option refused, so such a
   * burst aborts the process (netlink@0.3.0, see Rtnl.openMonitor); worth one warning.
   */
  overrunSafe: boolean;
  /** SO_RCVBUFFORCE took (CAP_NET_ADMIN); false: SO_RCVBUF, capped by net.core.rmem_max, or nothing */
  forced: boolean;
  /** the socket's fd (found through /proc; the package does not expose it); for diagnostics only */
  fd?: number;
  /** SO_RCVBUF as the kernel reports it: twice the bytes set, the skb truesize the queue may hold */
  recvBuffer?: number;
  /** events the kernel dropped on this socket so far (/proc/net/netlink Drops) */
  drops?: number;
}

/** An address added to (RTM_NEWADDR) or removed from (RTM_DELADDR) an interface. */
export interface AddressEvent { type: 'new' | 'del'; family: 4 | 6; address: string; index: number }

/** How the kernel routes to an address (rtm_type of `ip route get`). */
export type RouteType = 'unicast' | 'local' | 'broadcast' | 'anycast' | 'multicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'other';
const ROUTE_TYPES: readonly RouteType[] = ['other', 'unicast', 'local', 'broadcast', 'anycast', 'multicast', 'blackhole', 'unreachable', 'prohibit'];

export interface SetLinkOptions {
  up?: boolean;
  mtu?: number;
  /** ifindex of the new master; null = nomaster */
  master?: number | null;
  /** IFLA_IFALIAS; '' clears it */
  alias?: string;
  /** IFLA_GSO_MAX_SEGS: larger GSO packets are segmented by the kernel before this device. */
  gsoMaxSegs?: number;
}

export type LinkRef = string | number;

const RTNLGRP_LINK = 1;
const RTNLGRP_IPV4_IFADDR = 5;
const RTNLGRP_IPV6_IFADDR = 9;
const AF_INET = 2;
const AF_INET6 = 10;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
/** Links deleteLinks deletes with one request (one group), with the kernel's RTNL lock held throughout. */
export const DELETE_BATCH = 200;
/** Links listLinks decodes between two turns of the event loop. */
const DECODE_STEP = 2000;
/** RTM_SETLINKs deleteLinks keeps in flight: bounds the ACKs queued on the socket (rcvbuf) at once. */
const SETLINK_WINDOW = 32;

/** A random IFLA_GROUP value in 1..2^32-1 (0 is the default group, which the kernel refuses to delete). */
function randomGroup(): number {
  for (;;) {
    const g = randomBytes(4).readUInt32LE(0);
    if (g !== 0) return g;
  }
}

/**
 * Orders the requests of one socket around its dumps. The kernel sends a dump's parts as the
 * reader drains them, so a reply to anything sent while a dump is open arrives among its parts,
 * and the package then ends the dump early ("Multipart message not terminated properly"); two
 * dumps in flight mix their parts the same way. The daemon's readers (show session) dump while
 * a reload or a repair sends requests. So, in the order they come: a dump starts when everything
 * before it has finished, a request when the dumps before it have. Requests still overlap each
 * other (deleteLinks keeps SETLINK_WINDOW in flight), and readers dumping back to back cannot
 * hold a reload's requests back.
 */
class DumpGate {
  /** Settles when everything queued so far has finished: the next dump's turn. */
  private allDone: Promise<void> = Promise.resolve();
  /** Settles when the last dump queued has finished: the next request's turn. */
  private dumpDone: Promise<void> = Promise.resolve();

  request<T>(send: () => Promise<T>): Promise<T> {
    const run = this.dumpDone.then(send);
    this.allDone = Promise.all([this.allDone, settled(run)]).then(() => undefined);
    return run;
  }

  dump<T>(send: () => Promise<T>): Promise<T> {
    const run = this.allDone.then(send);
    this.allDone = this.dumpDone = settled(run);
    return run;
  }
}

const settled = (p: Promise<unknown>): Promise<void> => p.then(() => undefined, () => undefined);

/** Run fn over items with at most `limit` calls pending; resolves when all have settled. */
async function eachWindowed<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** How often the monitor's drop count is read (Rtnl.openMonitor). */
const DROP_CHECK_MS = 1000;

/**
 * Call a subscriber. Events are delivered from inside the package's native read callback, where
 * an exception aborts the process (std::terminate, no stack): one a subscriber throws is thrown
 * again outside it, as an ordinary uncaught exception.
 */
function deliver(call: () => void): void {
  try {
    call();
  } catch (err) {
    setImmediate(() => { throw err; });
  }
}

/** Decode an RTM_NEWLINK/RTM_DELLINK payload (ifinfomsg + attributes): see decode.ts. */
export const parseLinkInfo = decodeLink;

function refAttrs(ref: LinkRef): { data: rt.Link; attrs: ifla.LinkAttrs; label: string } {
  if (typeof ref === 'number') {
    if (!Number.isInteger(ref) || ref <= 0) throw new RangeError(`invalid ifindex ${ref}`);
    return { data: { index: ref }, attrs: {}, label: `#${ref}` };
  }
  checkIfname(ref);
  return { data: {}, attrs: { ifname: ref }, label: ref };
}

/** The textual form of an IPv4 (4 bytes) or IPv6 (16 bytes) address. */
function addressText(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

/** Decode an RTM_NEWADDR/RTM_DELADDR payload; undefined for families other than IPv4/IPv6. */
export function parseAddressEvent(type: 'new' | 'del', payload: Buffer): AddressEvent | undefined {
  const { data, attrs } = rt.parseAddressMessage(payload);
  const family = data.family === AF_INET ? 4 : data.family === AF_INET6 ? 6 : undefined;
  // IFA_LOCAL is the local address (on point-to-point links IFA_ADDRESS is the peer's); IPv6 sends IFA_ADDRESS only.
  const raw = attrs.local ?? attrs.address;
  if (family === undefined || raw === undefined) return undefined;
  return { type, family, address: addressText(raw), index: data.index ?? 0 };
}

/** Bytes of an IPv4 or IPv6 literal, as rtnetlink carries it. */
function addressBytes(family: 4 | 6, address: string): Buffer {
  if (family === 4) return Buffer.from(address.split('.').map(Number));
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

export class Rtnl {
  private readonly sock: NetlinkSocket;
  private mon: NetlinkSocket | undefined;
  private monGuard: MonitorGuard | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(ev: LinkEvent) => void>();
  private readonly addressListeners = new Set<(ev: AddressEvent) => void>();
  private readonly errorListeners = new Set<(err: NetlinkError) => void>();
  private readonly pending = new Set<(err: Error) => void>();
  private closed = false;
  private readonly gate = new DumpGate();

  private constructor(sock: NetlinkSocket) { this.sock = sock; }

  /** Open an rtnetlink socket in the calling process's network namespace. */
  static open(): Rtnl {
    if (!isMainThread) throw new Error('Rtnl must run on the main thread (netlink@0.3.0 crashes at worker teardown)');
    let sock: NetlinkSocket;
    try { sock = createNetlink(Protocol.ROUTE); } catch (e) { throw toNetlinkError(e, 'open rtnetlink socket'); }
    return new Rtnl(sock);
  }

  get isClosed(): boolean { return this.closed; }

  /** Close the request socket and the monitor socket (if any). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeMonitor();
    try { this.sock.close(); } catch { /* already closed */ }
    for (const reject of [...this.pending]) reject(new NetlinkError('request', 'ECLOSED', 0, 'netlink socket closed'));
    this.pending.clear();
  }

  /**
   * Send one request (REQUEST|ACK added by the package) and return the reply messages
   * (empty for a plain ACK). NLMSG_ERROR with errno≠0 → NetlinkError. Dumps run alone (DumpGate).
   */
  private request(type: number, payload: Buffer, flags: number, op: string, hints: Record<string, string> = {}): Promise<NetlinkMessage[]> {
    const send = (): Promise<NetlinkMessage[]> => this.exchange(type, payload, flags, op, hints);
    return (flags & FlagsGet.DUMP) !== 0 ? this.gate.dump(send) : this.gate.request(send);
  }

  private async exchange(type: number, payload: Buffer, flags: number, op: string, hints: Record<string, string>): Promise<NetlinkMessage[]> {
    if (this.closed) throw new NetlinkError(op, 'ECLOSED', 0, 'netlink socket closed');
    let msgs: NetlinkMessage[];
    try {
      msgs = await new Promise<NetlinkMessage[]>((resolve, reject) => {
        const onClose = (e: Error): void => reject(e);
        this.pending.add(onClose);
        this.sock.request(type, payload, { flags, checkError: false }).then(
          ([m]) => { this.pending.delete(onClose); resolve(m); },
          (e: unknown) => { this.pending.delete(onClose); reject(e); },
        );
      });
    } catch (e) {
      throw e instanceof NetlinkError ? new NetlinkError(op, e.code, e.errno, e.hint) : toNetlinkError(e, op, hints);
    }
    const first = msgs[0];
    if (first && first.type === NLMSG_ERROR) {
      const errno = Math.abs(parseError(first.data, first.flags).errno);
      if (errno === 0) return [];
      const code = errnoName(errno);
      throw new NetlinkError(op, code, errno, hints[code]);
    }
    return msgs;
  }

  /**
   * A request the kernel takes long to carry out, sent from a pool thread on a socket of its own
   * (the addon's netlinkAck), so that this thread goes on answering readers meanwhile: the
   * kernel carries a request out inside the sendmsg() that delivers it, and deleting a group
   * of a few hundred links takes tens of milliseconds there. Outside the DumpGate, since its
   * acknowledgement comes on that socket. Without the addon: an ordinary request.
   */
  private async requestOffLoop(type: number, payload: Buffer, op: string): Promise<void> {
    const netlinkAck = addonCall('netlinkAck');
    if (netlinkAck === undefined) { await this.request(type, payload, 0, op); return; }
    if (this.closed) throw new NetlinkError(op, 'ECLOSED', 0, 'netlink socket closed');
    // Alone on a fresh socket: any sequence number tells its acknowledgement apart.
    const message = Buffer.concat(formatMessage({ type, flags: Flags.REQUEST | Flags.ACK, seq: 1, port: 0, data: payload }));
    let error: number;
    try { error = await netlinkAck(message); } catch (e) { throw toNetlinkError(e, op); }
    if (error !== 0) throw new NetlinkError(op, errnoName(-error), -error);
  }

  /** One link by name; undefined when it does not exist. */
  async linkByName(name: string): Promise<LinkInfo | undefined> {
    checkIfname(name);
    return this.getOne({}, { ifname: name }, `get link ${name}`);
  }

  /** One link by ifindex; undefined when it does not exist. */
  async linkByIndex(index: number): Promise<LinkInfo | undefined> {
    return this.getOne({ index }, {}, `get link #${index}`);
  }

  private async getOne(data: rt.Link, attrs: ifla.LinkAttrs, op: string): Promise<LinkInfo | undefined> {
    try {
      const msgs = await this.request(RTM_GETLINK, linkPayload(data, { ...attrs, extMask: putU32(RTEXT_FILTER_SKIP_STATS) }), 0, op);
      const m = msgs.find((x) => x.type === RTM_NEWLINK);
      return m ? parseLinkInfo(m.data) : undefined;
    } catch (e) {
      if (e instanceof NetlinkError && e.code === 'ENODEV') return undefined;
      throw e;
    }
  }

  /**
   * Links in this namespace, in one dump (without statistics). No filter: all of them.
   * `{ master }`: only that master's ports. The request carries IFLA_MASTER, so the kernel
   * skips every other link (cheap with thousands of taps elsewhere); a master that does not
   * exist yields []. The result is filtered by `master` here as well, in case a kernel ignores
   * the attribute.
   */
  async listLinks(filter: LinkFilter = {}): Promise<LinkInfo[]> {
    const { master } = filter;
    const attrs: ifla.LinkAttrs = { extMask: putU32(RTEXT_FILTER_SKIP_STATS) };
    let op = 'list links';
    if (master !== undefined) {
      if (!Number.isInteger(master) || master <= 0 || master > 0x7fffffff) throw new RangeError(`invalid master ifindex ${master}`);
      attrs.master = master;
      op = `list links of master #${master}`;
    }
    const msgs = await this.request(RTM_GETLINK, linkPayload({}, attrs), FlagsGet.DUMP, op);
    const links: LinkInfo[] = [];
    for (const m of msgs) {
      if (m.type !== RTM_NEWLINK) continue;
      links.push(parseLinkInfo(m.data));
      // Ten thousand links take tens of milliseconds to decode: other work runs in between.
      if (links.length % DECODE_STEP === 0) await nextTurn();
    }
    return master === undefined ? links : links.filter((l) => l.master === master);
  }

  /**
   * How the kernel would route to `address` (`ip route get`): 'local' for this host's own
   * addresses, 'broadcast' for broadcast addresses of its networks; undefined without a route.
   */
  async routeType(family: 4 | 6, address: string): Promise<RouteType | undefined> {
    const st = new AttrStream();
    rt.formatRouteMessage({
      kind: 'route',
      data: { family: family === 4 ? AF_INET : AF_INET6, dstLen: family === 4 ? 32 : 128 },
      attrs: { dst: addressBytes(family, address) },
    }, st);
    let msgs: NetlinkMessage[];
    try {
      msgs = await this.request(RTM_GETROUTE, Buffer.concat(st.bufs), 0, `get route ${address}`);
    } catch (e) {
      if (e instanceof NetlinkError && (e.code === 'ENETUNREACH' || e.code === 'EHOSTUNREACH')) return undefined;
      throw e;
    }
    const m = msgs.find((x) => x.type === RTM_NEWROUTE);
    if (!m) return undefined;
    // The package decodes rtm_type to the enum's key ('BROADCAST') when it knows the value.
    const type = rt.parseRouteMessage(m.data).data.type;
    const n = typeof type === 'number' ? type : type === undefined ? 0 : rt.RouteType[type];
    return ROUTE_TYPES[n] ?? 'other';
  }

  /** Change admin state / MTU / master / alias in one RTM_SETLINK. */
  async setLink(ref: LinkRef, opts: SetLinkOptions): Promise<void> {
    const { data, attrs, label } = refAttrs(ref);
    const parts: string[] = [];
    if (opts.mtu !== undefined) {
      if (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > 65535) throw new RangeError(`invalid MTU ${opts.mtu} for ${label} (68-65535)`);
      attrs.mtu = opts.mtu; parts.push(`mtu ${opts.mtu}`);
    }
    if (opts.master !== undefined) {
      if (opts.master !== null && (!Number.isInteger(opts.master) || opts.master <= 0)) throw new RangeError(`invalid master ifindex ${opts.master} for ${label}`);
      attrs.master = opts.master ?? 0; parts.push(opts.master === null ? 'nomaster' : `master #${opts.master}`);
    }
    if (opts.alias !== undefined) {
      if (Buffer.byteLength(opts.alias) > 255) throw new RangeError(`alias for ${label} longer than 255 bytes`);
      attrs.ifalias = opts.alias; parts.push(`alias ${JSON.stringify(opts.alias)}`);
    }
    if (opts.gsoMaxSegs !== undefined) {
      if (!Number.isInteger(opts.gsoMaxSegs) || opts.gsoMaxSegs < 1 || opts.gsoMaxSegs > 65535) throw new RangeError(`invalid gso_max_segs ${opts.gsoMaxSegs} for ${label} (1-65535)`);
      attrs.gsoMaxSegs = opts.gsoMaxSegs; parts.push(`gso_max_segs ${opts.gsoMaxSegs}`);
    }
    if (opts.up !== undefined) {
      data.flags = opts.up ? { up: true } : {};
      data.change = { up: true };
      parts.push(opts.up ? 'up' : 'down');
    }
    if (parts.length === 0) return;
    await this.request(RTM_SETLINK, linkPayload(data, attrs), 0, `set link ${label} ${parts.join(' ')}`);
  }

  /** Create a bridge (CREATE|EXCL, stp off), then set mtu/alias and bring it up. */
  async createBridge(name: string, opts: { mtu?: number; alias?: string } = {}): Promise<LinkInfo> {
    const op = `create bridge ${name}`;
    await this.request(RTM_NEWLINK, bridgePayload(name), CREATE_FLAGS, op, {
      EOPNOTSUPP: 'kernel without bridge support (CONFIG_BRIDGE)?',
    });
    return this.finishCreate(name, op, { up: true, mtu: opts.mtu, alias: opts.alias });
  }

  /** Create TRUNK.ID-style VLAN interface `name` on `trunkName` (IFLA_LINK + IFLA_VLAN_ID). */
  async createVlan(trunkName: string, vlanId: number, name: string, opts: { alias?: string; up?: boolean; mtu?: number } = {}): Promise<LinkInfo> {
    checkVlanId(vlanId);
    checkIfname(name);
    const op = `create vlan ${name} on ${trunkName}`;
    const trunk = await this.linkByName(trunkName);
    if (!trunk) throw new NetlinkError(op, 'ENODEV', 19, 'no such trunk interface');
    await this.request(RTM_NEWLINK, vlanPayload(trunk.index, vlanId, name), CREATE_FLAGS, op, {
      EOPNOTSUPP: 'kernel without 802.1Q?',
    });
    return this.finishCreate(name, op, { up: opts.up, mtu: opts.mtu, alias: opts.alias });
  }

  /** After a successful create: apply settings; on failure remove what we just created. */
  private async finishCreate(name: string, op: string, set: SetLinkOptions): Promise<LinkInfo> {
    try {
      await this.setLink(name, set);
      const link = await this.linkByName(name);
      if (!link) throw new NetlinkError(op, 'ENODEV', 19, 'vanished right after creation');
      return link;
    } catch (e) {
      await this.deleteLink(name).catch(() => undefined);
      if (e instanceof NetlinkError) throw new NetlinkError(`${op}: ${e.op}`, e.code, e.errno, e.hint);
      throw e;
    }
  }

  /** Delete a link by name or ifindex. */
  async deleteLink(ref: LinkRef): Promise<void> {
    const { data, attrs, label } = refAttrs(ref);
    await this.request(RTM_DELLINK, linkPayload(data, attrs), 0, `delete link ${label}`);
  }

  /**
   * Delete many links (by ifindex) in one kernel batch: each link gets the same fresh IFLA_GROUP
   * value (one RTM_SETLINK each, ≤32 in flight; cheap), one full dump checks that no other link
   * carries that group, then one RTM_DELLINK {ifindex 0, IFLA_GROUP} makes the kernel
   * (rtnl_group_dellink → unregister_netdevice_many) unregister them all behind a single RCU
   * grace period, instead of one grace period per RTM_DELLINK. That delete is sent from a pool
   * thread (requestOffLoop): this thread is not held up while the kernel works through it.
   * 0 or 1 index: plain deletes.
   *
   * Semantics:
   *  - indexes that do not exist (or vanish before their turn) are skipped, not errors;
   *    duplicates are ignored;
   *  - side effects are those of deleteLink: deleting one end of a veth deletes its peer (even one
   *    not listed, or in another namespace); deleting a bridge releases its ports that are not
   *    listed (they survive, without master);
   *  - bridges and their ports may be mixed in one call (checked on Linux 6.18: a group holding a
   *    bridge, some of its ports and a veth end is deleted in one batch; unlisted ports survive);
   *  - the group is a random u32 ≠ 0. If the check dump finds a link outside `indexes` with it,
   *    or the kernel refuses the group delete (EOPNOTSUPP: a device without rtnl dellink, e.g. a
   *    physical NIC; any other error), the remaining links are deleted one RTM_DELLINK each;
   *  - failures (links that exist but could not be deleted) are collected and thrown after every
   *    link was tried: one failure → the NetlinkError deleteLink would throw
   *    ('delete link #N: CODE'); several → one NetlinkError 'delete links #A, #B…' carrying the
   *    first failure's code/errno, every failure in its hint and an AggregateError as `cause`.
   *
   * Limits: the checking dump lists every link in the namespace (about as costly as listLinks());
   * each RTM_SETLINK emits an RTM_NEWLINK event to link monitors; a link that cannot be deleted
   * is left in the random group (its previous group is not restored); a link that some other
   * process moves into the group between the dump and the delete would be deleted too (it would
   * have to pick the same random 32-bit value).
   */
  async deleteLinks(indexes: readonly number[]): Promise<void> {
    for (const i of indexes) {
      if (!Number.isInteger(i) || i <= 0 || i > 0x7fffffff) throw new RangeError(`invalid ifindex ${i}`);
    }
    const want = [...new Set(indexes)];
    const failures: NetlinkError[] = [];
    const oneByOne = async (list: readonly number[]): Promise<void> => {
      for (const index of list) {
        try {
          await this.deleteLink(index);
        } catch (e) {
          if (!(e instanceof NetlinkError) || e.code === 'ECLOSED') throw e;
          if (e.code !== 'ENODEV') failures.push(e);
        }
      }
    };

    if (want.length >= 2) {
      // One group per batch: the kernel deletes a group inside the sendmsg() that asks for it,
      // which is sent from a pool thread (requestOffLoop). The kernel holds the RTNL lock all
      // that time, so batches keep each hold short for the other requests waiting on it.
      const batches: Array<{ group: number; tagged: number[]; untagged: number[] }> = [];
      const used = new Set<number>();
      for (let at = 0; at < want.length; at += DELETE_BATCH) {
        let group = randomGroup();
        while (used.has(group)) group = randomGroup();
        used.add(group);
        const batch = { group, tagged: [] as number[], untagged: [] as number[] };
        batches.push(batch);
        await eachWindowed(want.slice(at, at + DELETE_BATCH), SETLINK_WINDOW, async (index) => {
          try {
            await this.request(RTM_SETLINK, linkPayload({ index }, { group }), 0, `set link #${index} group ${group}`);
            batch.tagged.push(index);
          } catch (e) {
            if (!(e instanceof NetlinkError) || e.code === 'ECLOSED') throw e;
            if (e.code !== 'ENODEV') batch.untagged.push(index); // refused: try a plain delete below
          }
        });
      }
      // One look at every link, for all batches: no link outside a batch may carry its group.
      const links = await this.listLinks();
      // Indexed once: looking through ten thousand links for each of fifty batches held up the thread.
      const groupOf = new Map(links.map((l) => [l.index, l.group]));
      const byGroup = new Map<number | undefined, number[]>();
      for (const l of links) {
        const list = byGroup.get(l.group);
        if (list) list.push(l.index);
        else byGroup.set(l.group, [l.index]);
      }
      for (const { group, tagged, untagged } of batches) {
        const mine = new Set(tagged);
        const inGroup = byGroup.get(group) ?? [];
        const foreign = inGroup.some((i) => !mine.has(i));
        // Listed links whose group changed after we set it: delete them one by one.
        const moved = tagged.filter((i) => groupOf.has(i) && groupOf.get(i) !== group);
        if (foreign) {
          await oneByOne(inGroup.filter((i) => mine.has(i)));
        } else if (inGroup.length > 0) {
          try {
            await this.requestOffLoop(RTM_DELLINK, linkPayload({}, { group }), `delete link group ${group}`);
          } catch (e) {
            if (!(e instanceof NetlinkError) || e.code === 'ECLOSED') throw e;
            if (e.code !== 'ENODEV') await oneByOne(inGroup); // ENODEV: all of them vanished meanwhile
          }
        }
        await oneByOne([...moved, ...untagged]);
        await nextTurn();
      }
    } else {
      await oneByOne(want);
    }

    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) {
      const first = failures[0] as NetlinkError;
      const labels = failures.slice(0, 8).map((f) => f.op.replace(/^delete link /, '')).join(', ');
      const more = failures.length > 8 ? ` (+${failures.length - 8} more)` : '';
      throw new NetlinkError(`delete links ${labels}${more}`, first.code, first.errno,
        `${failures.length} of ${want.length} failed: ${failures.map((f) => f.message).join('; ')}`,
        new AggregateError(failures, 'delete links'));
    }
  }

  /**
   * Subscribe to RTNLGRP_LINK. 'new' covers creation and changes (RTM_NEWLINK), 'del' is
   * RTM_DELLINK. Returns an unsubscribe function; the monitor socket is closed when the last
   * subscriber (of links or addresses) leaves, and by close(). `onError` gets socket errors
   * (recvmsg failures). Not overruns: with monitorStatus().overrunSafe a burst that does not fit
   * drops events silently (see openMonitor); without it, netlink@0.3.0 aborts the process.
   */
  onLinkEvent(cb: (ev: LinkEvent) => void, onError?: (err: NetlinkError) => void): () => void {
    return this.subscribe(this.listeners, cb, onError);
  }

  /** Subscribe to IPv4 and IPv6 address changes (RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR), like onLinkEvent. */
  onAddressEvent(cb: (ev: AddressEvent) => void, onError?: (err: NetlinkError) => void): () => void {
    return this.subscribe(this.addressListeners, cb, onError);
  }

  private subscribe<E>(set: Set<(ev: E) => void>, cb: (ev: E) => void, onError?: (err: NetlinkError) => void): () => void {
    if (this.closed) throw new NetlinkError('monitor', 'ECLOSED', 0, 'netlink socket closed');
    if (!this.mon) this.openMonitor();
    set.add(cb);
    if (onError) this.errorListeners.add(onError);
    return () => {
      set.delete(cb);
      if (onError) this.errorListeners.delete(onError);
      if (this.listeners.size === 0 && this.addressListeners.size === 0) this.closeMonitor();
    };
  }

  /**
   * The link and address events: their own socket (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
   * RTNLGRP_IPV6_IFADDR), guarded against overrun before it joins any group.
   *
   * Why: when a burst of events overflows a netlink socket's receive queue, the kernel sets
   * sk_err = ENOBUFS, epoll reports EPOLLERR and libuv calls the package's poll callback with
   * UV_EBADF; netlink@0.3.0 (src/binding.cc PollHandler) then builds its ErrnoException with a
   * NULL syscall name, Napi::String::New(env, NULL) fails, and the C++ exception nobody catches
   * aborts the process ("terminate called after throwing an instance of 'Napi::Error'", exit
   * 134); even if it did not, the package would close the socket. Creating or deleting a few
   * thousand links at once (`ip -batch`, deleteLinks) is enough.
   *
   * So (guardMonitorSocket): the socket's fd is found through /proc (the package does not expose
   * it), NETLINK_NO_ENOBUFS is set (an overrun drops what does not fit and sets no error, so
   * there is no EPOLLERR), and SO_RCVBUFFORCE asks for 32 MiB (the kernel doubles it: 64 MiB of
   * skb truesize; memory is only used while events are queued). Without CAP_NET_ADMIN it falls
   * back to SO_RCVBUF, which net.core.rmem_max caps (2 × 208 KiB by default).
   *
   * Size of an event (measured on Linux 6.18 with a tap): RTM_NEWLINK is 1524–1528 bytes,
   * RTM_DELLINK 712–716 bytes, and either is charged 2304 bytes of truesize against the buffer.
   * 64 MiB holds about 29,000 such events queued unread (the 1 MiB the package alone could set,
   * ~900; the rmem_max-capped fallback at the default limit, ~180).
   *
   * A burst larger than that loses the events that did not fit, silently: no error, no
   * onError call, the socket keeps working and later events arrive; monitorStatus().drops counts
   * them. If the fd cannot be found or NETLINK_NO_ENOBUFS is refused, the socket is used as it is
   * (as before: 1 MiB, and a burst that overflows it aborts the process); monitorStatus()
   * .overrunSafe is false then, for the caller to warn about once.
   */
  private openMonitor(): void {
    let mon: NetlinkSocket;
    try { mon = createNetlink(Protocol.ROUTE); } catch (e) { throw toNetlinkError(e, 'monitor links'); }
    let guard: MonitorGuard = { overrunSafe: false, forced: false };
    try {
      mon.setRecvBufferSize(1 << 20);
      try { guard = guardMonitorSocket(mon.address().port); } catch { /* unguarded, as before */ }
      mon.addMembership(RTNLGRP_LINK);
      mon.addMembership(RTNLGRP_IPV4_IFADDR);
      mon.addMembership(RTNLGRP_IPV6_IFADDR);
    } catch (e) {
      try { mon.close(); } catch { /* ignore */ }
      throw toNetlinkError(e, 'monitor links');
    }
    mon.ref(true);
    mon.on('message', (msgs) => {
      for (const m of msgs) {
        if (m.type === RTM_NEWLINK || m.type === RTM_DELLINK) {
          if (this.listeners.size === 0) continue;
          let link: LinkInfo;
          try { link = parseLinkInfo(m.data); } catch { continue; }
          const type = m.type === RTM_NEWLINK ? 'new' : 'del';
          for (const l of [...this.listeners]) deliver(() => l({ type, link }));
        } else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) {
          if (this.addressListeners.size === 0) continue;
          let ev: AddressEvent | undefined;
          try { ev = parseAddressEvent(m.type === RTM_NEWADDR ? 'new' : 'del', m.data); } catch { continue; }
          if (ev) for (const l of [...this.addressListeners]) deliver(() => l(ev!));
        }
      }
    });
    mon.on('invalid', () => { /* unparseable datagram: ignore */ });
    mon.on('error', (e) => {
      const err = toNetlinkError(e, 'monitor links');
      for (const l of [...this.errorListeners]) l(err);
    });
    this.mon = mon;
    this.monGuard = guard;
    // Events dropped in a burst are not reported by the socket (NETLINK_NO_ENOBUFS): the kernel's
    // count of them is, and a rise is told to onError subscribers as lost events.
    if (guard.overrunSafe) {
      let seen = this.monitorStatus()?.drops ?? 0;
      this.dropTimer = setInterval(() => {
        const drops = this.monitorStatus()?.drops;
        if (drops === undefined || drops <= seen) return;
        const err = new NetlinkError('monitor links', 'ENOBUFS', 105, `${drops - seen} events dropped in a burst: the receive buffer was full`);
        seen = drops;
        for (const l of [...this.errorListeners]) l(err);
      }, DROP_CHECK_MS);
      this.dropTimer.unref();
    }
  }

  /**
   * The link monitor's defences against bursts (see openMonitor), and the events the kernel
   * dropped on it so far; undefined while no monitor is open (nobody subscribed).
   */
  monitorStatus(): MonitorStatus | undefined {
    const mon = this.mon;
    if (!mon || !this.monGuard) return undefined;
    const status: MonitorStatus = { overrunSafe: this.monGuard.overrunSafe, forced: this.monGuard.forced };
    if (this.monGuard.fd !== undefined) status.fd = this.monGuard.fd;
    try { status.recvBuffer = mon.getRecvBufferSize(); } catch { /* leave it out */ }
    try {
      const drops = netlinkSocketRow(mon.address().port, NETLINK_ROUTE)?.drops;
      if (drops !== undefined) status.drops = drops;
    } catch { /* leave it out */ }
    return status;
  }

  private closeMonitor(): void {
    const mon = this.mon;
    this.mon = undefined;
    this.monGuard = undefined;
    if (this.dropTimer) clearInterval(this.dropTimer);
    this.dropTimer = undefined;
    this.listeners.clear();
    this.addressListeners.clear();
    this.errorListeners.clear();
    if (mon) {
      mon.removeAllListeners('message');
      try { mon.close(); } catch { /* already closed */ }
    }
  }
}
