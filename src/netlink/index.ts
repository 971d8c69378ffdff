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
  AttrStream, createNetlink, FlagsGet, getU32, ifla, parseError, Protocol, putU32, rt,
  type NetlinkMessage, type NetlinkSocket,
} from 'netlink';
import { isMainThread } from 'node:worker_threads';
import { errnoName, NetlinkError, toNetlinkError } from './errors.js';
import {
  bridgePayload, checkIfname, checkVlanId, CREATE_FLAGS, linkPayload, NLMSG_ERROR,
  RTM_DELADDR, RTM_DELLINK, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK, vlanPayload,
} from './messages.js';

export { NetlinkError, toNetlinkError } from './errors.js';
export { vlanRequest } from './messages.js';

export type OperState = 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';
const OPER_STATES: readonly OperState[] = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];

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
  operstate: OperState;
}

export interface LinkEvent { type: 'new' | 'del'; link: LinkInfo }

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

/** Decode an RTM_NEWLINK/RTM_DELLINK payload (ifinfomsg + attributes). */
export function parseLinkInfo(payload: Buffer): LinkInfo {
  const { data, attrs } = rt.parseLinkMessage(payload);
  const info: LinkInfo = {
    index: data.index ?? 0,
    name: attrs.ifname ?? '',
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    operstate: OPER_STATES[attrs.operstate ?? 0] ?? 'unknown',
  };
  if (attrs.master) info.master = attrs.master;
  if (attrs.link?.length === 4) info.link = getU32(attrs.link);
  if (attrs.linkNetnsid !== undefined) info.linkNetnsid = attrs.linkNetnsid;
  if (attrs.linkinfo) {
    try {
      const li = ifla.parseInfo(attrs.linkinfo);
      if (li.kind) info.kind = li.kind.replace(/\0+$/, '');
      if (info.kind === 'vlan' && li.data) {
        const id = ifla.parseVlan(li.data).id;
        if (id !== undefined) info.vlanId = id;
      }
    } catch { /* malformed linkinfo: leave kind (or the VLAN ID) unset */ }
  }
  if (attrs.ifalias !== undefined && attrs.ifalias !== '') info.alias = attrs.ifalias;
  return info;
}

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
  private readonly listeners = new Set<(ev: LinkEvent) => void>();
  private readonly addressListeners = new Set<(ev: AddressEvent) => void>();
  private readonly errorListeners = new Set<(err: NetlinkError) => void>();
  private readonly pending = new Set<(err: Error) => void>();
  private closed = false;

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
   * (empty for a plain ACK). NLMSG_ERROR with errno≠0 → NetlinkError.
   */
  private async request(type: number, payload: Buffer, flags: number, op: string, hints: Record<string, string> = {}): Promise<NetlinkMessage[]> {
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

  /** All links in this namespace (one dump). */
  async listLinks(): Promise<LinkInfo[]> {
    const msgs = await this.request(RTM_GETLINK, linkPayload({}, { extMask: putU32(RTEXT_FILTER_SKIP_STATS) }), FlagsGet.DUMP, 'list links');
    return msgs.filter((m) => m.type === RTM_NEWLINK).map((m) => parseLinkInfo(m.data));
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
   * Subscribe to RTNLGRP_LINK. 'new' covers creation and changes (RTM_NEWLINK), 'del' is
   * RTM_DELLINK. Returns an unsubscribe function; the monitor socket is closed when the last
   * subscriber (of links or addresses) leaves, and by close(). `onError` gets socket errors
   * (e.g. ENOBUFS on overrun).
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

  private openMonitor(): void {
    let mon: NetlinkSocket;
    try { mon = createNetlink(Protocol.ROUTE); } catch (e) { throw toNetlinkError(e, 'monitor links'); }
    try {
      mon.setRecvBufferSize(1 << 20);
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
          for (const l of [...this.listeners]) l({ type, link });
        } else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) {
          if (this.addressListeners.size === 0) continue;
          let ev: AddressEvent | undefined;
          try { ev = parseAddressEvent(m.type === RTM_NEWADDR ? 'new' : 'del', m.data); } catch { continue; }
          if (ev) for (const l of [...this.addressListeners]) l(ev);
        }
      }
    });
    mon.on('invalid', () => { /* unparseable datagram: ignore */ });
    mon.on('error', (e) => {
      const err = toNetlinkError(e, 'monitor links');
      for (const l of [...this.errorListeners]) l(err);
    });
    this.mon = mon;
  }

  private closeMonitor(): void {
    const mon = this.mon;
    this.mon = undefined;
    this.listeners.clear();
    this.addressListeners.clear();
    this.errorListeners.clear();
    if (mon) {
      mon.removeAllListeners('message');
      try { mon.close(); } catch { /* already closed */ }
    }
  }
}
