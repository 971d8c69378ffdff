/**
 * Pure rtnetlink message builders (no sockets). Rtnl sends exactly these payloads, so the
 * bytes can be checked against iproute2 offline.
 */
import {
  AttrStream, Flags, FlagsNew, formatMessage, ifla, putU32, rt, type StreamData,
} from 'netlink';
import { IFNAME_ALLOWED, ifnameProblem } from './ifname.js';

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_NEWROUTE = 24;
export const RTM_GETROUTE = 26;
export const NLMSG_ERROR = 2;

/** Flatten a StreamData (nested attribute stream) into one Buffer. */
export function toBuf(d: StreamData): Buffer {
  const s = new AttrStream();
  s.emit(d);
  return Buffer.concat(s.bufs);
}

/** ifinfomsg + attributes, with trailing padding to a 4-byte boundary (NLMSG_ALIGN). */
export function linkPayload(data: rt.Link, attrs: ifla.LinkAttrs): Buffer {
  const s = new AttrStream();
  rt.formatLinkMessage({ kind: 'link', data, attrs }, s);
  const b = Buffer.concat(s.bufs);
  const pad = (4 - (b.length & 3)) & 3;
  return pad ? Buffer.concat([b, Buffer.alloc(pad)]) : b;
}

/** IFLA_LINKINFO { IFLA_INFO_KIND kind, IFLA_INFO_DATA data } as a raw Buffer. */
export function linkInfo(kind: string, data?: StreamData): Buffer {
  return toBuf(ifla.formatInfo({ kind, ...(data === undefined ? {} : { data: toBuf(data) }) }));
}

export function checkIfname(name: string): void {
  const problem = typeof name === 'string' ? ifnameProblem(name) : 'not a string';
  if (problem !== undefined) throw new RangeError(`invalid interface name ${JSON.stringify(name)}: ${problem} (${IFNAME_ALLOWED})`);
}

export function checkVlanId(vlanId: number): void {
  if (!Number.isInteger(vlanId) || vlanId < 1 || vlanId > 4094) {
    throw new RangeError(`invalid VLAN ID ${vlanId} (1-4094)`);
  }
}

/** RTM_NEWLINK payload for `ip link add link TRUNK name NAME type vlan id ID`. */
export function vlanPayload(trunkIndex: number, vlanId: number, name: string): Buffer {
  checkVlanId(vlanId);
  checkIfname(name);
  return linkPayload({}, {
    ifname: name,
    link: putU32(trunkIndex),
    linkinfo: linkInfo('vlan', ifla.formatVlan({ id: vlanId })),
  });
}

/** RTM_NEWLINK payload for a bridge with STP off. */
export function bridgePayload(name: string): Buffer {
  checkIfname(name);
  return linkPayload({}, {
    ifname: name,
    linkinfo: linkInfo('bridge', ifla.formatBridge({ stpState: putU32(0) })),
  });
}

/** Flags Rtnl puts on a create request (the package's request() adds REQUEST|ACK). */
export const CREATE_FLAGS = FlagsNew.CREATE | FlagsNew.EXCL;

/**
 * The complete netlink message l2tpd sends to create a VLAN interface, with a fixed
 * seq/port (defaults 1/0) so it can be compared with iproute2's bytes.
 */
export function vlanRequest(trunkIndex: number, vlanId: number, name: string, opts: { seq?: number; port?: number } = {}): Buffer {
  const data = vlanPayload(trunkIndex, vlanId, name);
  return Buffer.concat(formatMessage({
    type: RTM_NEWLINK,
    flags: Flags.REQUEST | Flags.ACK | CREATE_FLAGS,
    seq: opts.seq ?? 1,
    port: opts.port ?? 0,
    data,
  }));
}
