/**
 * Decoding of RTM_NEWLINK / RTM_DELLINK payloads (ifinfomsg + attributes) into LinkInfo, reading
 * only the attributes l2tpd uses. The `netlink` package's parser decodes every attribute of every
 * link (statistics, per-family data) into objects: about 27 us a link, so a dump of 10,000 taps
 * held the main thread for a quarter of a second. This walks the attribute headers and skips what
 * it does not need. Pure: no sockets.
 *
 * Layout (include/uapi/linux/rtnetlink.h, if_link.h): struct ifinfomsg is 16 bytes —
 * u8 family, u8 pad, u16 type, s32 index, u32 flags, u32 change — followed by attributes, each
 * u16 length (header included), u16 type, payload, padded to 4 bytes. Host byte order (x86: LE).
 */
import type { LinkInfo, OperState } from './index.js';

const IFINFOMSG_LEN = 16;
const IFF_UP = 1;
/** Attribute types masked of NLA_F_NESTED / NLA_F_NET_BYTEORDER. */
const NLA_TYPE_MASK = 0x3fff;

const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_OPERSTATE = 16;
const IFLA_LINKINFO = 18;
const IFLA_IFALIAS = 20;
const IFLA_GROUP = 27;
const IFLA_GSO_MAX_SEGS = 40;
const IFLA_LINK_NETNSID = 37;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VLAN_ID = 1;

export const OPER_STATES: readonly OperState[] = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];

/** Call `fn(type, start, end)` for each attribute in buf[from, to); stops at a malformed header. */
function eachAttr(buf: Buffer, from: number, to: number, fn: (type: number, start: number, end: number) => void): void {
  let at = from;
  while (at + 4 <= to) {
    const len = buf.readUInt16LE(at);
    if (len < 4 || at + len > to) return;
    fn(buf.readUInt16LE(at + 2) & NLA_TYPE_MASK, at + 4, at + len);
    at += (len + 3) & ~3;
  }
}

/** A NUL-terminated (or not) string attribute. */
function str(buf: Buffer, start: number, end: number): string {
  let stop = start;
  while (stop < end && buf[stop] !== 0) stop++;
  return buf.toString('utf8', start, stop);
}

/** Decode one link message's payload. */
export function decodeLink(buf: Buffer): LinkInfo {
  if (buf.length < IFINFOMSG_LEN) throw new RangeError(`link message of ${buf.length} bytes: shorter than ifinfomsg`);
  const info: LinkInfo = {
    index: buf.readInt32LE(4),
    name: '',
    mtu: 0,
    up: (buf.readUInt32LE(8) & IFF_UP) !== 0,
    operstate: 'unknown',
  };
  eachAttr(buf, IFINFOMSG_LEN, buf.length, (type, start, end) => {
    const len = end - start;
    switch (type) {
      case IFLA_IFNAME: info.name = str(buf, start, end); break;
      case IFLA_MTU: if (len >= 4) info.mtu = buf.readUInt32LE(start); break;
      case IFLA_LINK: if (len === 4) info.link = buf.readUInt32LE(start); break;
      case IFLA_MASTER: if (len >= 4 && buf.readUInt32LE(start) !== 0) info.master = buf.readUInt32LE(start); break;
      case IFLA_OPERSTATE: if (len >= 1) info.operstate = OPER_STATES[buf[start]] ?? 'unknown'; break;
      case IFLA_IFALIAS: { const a = str(buf, start, end); if (a !== '') info.alias = a; break; }
      case IFLA_GSO_MAX_SEGS: if (len >= 4) info.gsoMaxSegs = buf.readUInt32LE(start); break;
      case IFLA_GROUP: if (len >= 4 && buf.readUInt32LE(start) !== 0) info.group = buf.readUInt32LE(start); break;
      case IFLA_LINK_NETNSID: if (len >= 4) info.linkNetnsid = buf.readInt32LE(start); break;
      case IFLA_LINKINFO: decodeLinkinfo(buf, start, end, info); break;
      default: break;
    }
  });
  return info;
}

/** IFLA_LINKINFO: the kind, and the VLAN ID of a `vlan` link. */
function decodeLinkinfo(buf: Buffer, from: number, to: number, info: LinkInfo): void {
  let data: [number, number] | undefined;
  eachAttr(buf, from, to, (type, start, end) => {
    if (type === IFLA_INFO_KIND) info.kind = str(buf, start, end);
    else if (type === IFLA_INFO_DATA) data = [start, end];
  });
  if (info.kind === '') delete info.kind;
  if (info.kind !== 'vlan' || data === undefined) return;
  eachAttr(buf, data[0], data[1], (type, start, end) => {
    if (type === IFLA_VLAN_ID && end - start >= 2) info.vlanId = buf.readUInt16LE(start);
  });
}
