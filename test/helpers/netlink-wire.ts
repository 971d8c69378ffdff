/**
 * Decode rtnetlink link messages into comparable trees, and pull netlink messages out of
 * `strace -f -e trace=sendmsg -e write=all -xx` output. Used to compare l2tpd's bytes with
 * iproute2's semantically: attribute order, NLA_F_NESTED, trailing NULs in strings and
 * padding are normalised away (the differences docs/dependencies.md "netlink" documents).
 */
export type AttrKind = 'u8' | 'u16' | 'u32' | 'string' | 'raw' | AttrSchema;
export interface AttrSchema { [type: number]: AttrKind }

/** IFLA_INFO_DATA for kind "vlan" */
const VLAN_DATA: AttrSchema = { 1: 'u16' /* IFLA_VLAN_ID */, 2: 'raw', 3: 'raw', 4: 'raw', 5: 'u16' /* PROTOCOL (be) */ };
/** IFLA_LINKINFO */
const LINKINFO: AttrSchema = { 1: 'string' /* KIND */, 2: VLAN_DATA /* DATA */, 4: 'string' /* SLAVE_KIND */ };
/** top-level IFLA_* of RTM_NEWLINK */
export const IFLA_SCHEMA: AttrSchema = {
  3: 'string', // IFLA_IFNAME
  4: 'u32', // IFLA_MTU
  5: 'u32', // IFLA_LINK
  10: 'u32', // IFLA_MASTER
  18: LINKINFO, // IFLA_LINKINFO
  20: 'string', // IFLA_IFALIAS
  29: 'u32', // IFLA_EXT_MASK
};

export interface AttrNode { type: number; value: string | number | AttrNode[] }

export interface DecodedLinkMessage {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
  ifinfomsg: { family: number; type: number; index: number; flags: number; change: number };
  attrs: AttrNode[];
}

/** Decode an attribute stream; unknown attributes are kept as hex. Sorted by type. */
export function decodeAttrs(buf: Buffer, schema: AttrSchema): AttrNode[] {
  const out: AttrNode[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff; // drop NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (len < 4 || off + len > buf.length) throw new Error(`bad attribute at ${off}: len ${len}, ${buf.length - off} left`);
    const data = buf.subarray(off + 4, off + len);
    const kind = schema[type] ?? 'raw';
    let value: AttrNode['value'];
    if (kind === 'u8') value = data.readUInt8(0);
    else if (kind === 'u16') value = data.readUInt16LE(0);
    else if (kind === 'u32') value = data.readUInt32LE(0);
    else if (kind === 'string') value = data.toString('utf8').replace(/\0+$/, '');
    else if (kind === 'raw') value = data.toString('hex');
    else value = decodeAttrs(data, kind);
    out.push({ type, value });
    off += (len + 3) & ~3;
  }
  return out.sort((a, b) => a.type - b.type);
}

/** Decode one RTM_*LINK message (header + ifinfomsg + IFLA_* attributes). */
export function decodeLinkMessage(buf: Buffer): DecodedLinkMessage {
  const len = buf.readUInt32LE(0);
  if (len > buf.length || len < 32) throw new Error(`bad nlmsg_len ${len} for ${buf.length} bytes`);
  const msg = buf.subarray(0, len);
  return {
    len,
    type: msg.readUInt16LE(4),
    flags: msg.readUInt16LE(6),
    seq: msg.readUInt32LE(8),
    pid: msg.readUInt32LE(12),
    ifinfomsg: {
      family: msg.readUInt8(16),
      type: msg.readUInt16LE(18),
      index: msg.readInt32LE(20),
      flags: msg.readUInt32LE(24),
      change: msg.readUInt32LE(28),
    },
    attrs: decodeAttrs(msg.subarray(32), IFLA_SCHEMA),
  };
}

/** The semantic part of a decoded message: everything but length, seq and pid. */
export function semantic(m: DecodedLinkMessage): Omit<DecodedLinkMessage, 'len' | 'seq' | 'pid'> {
  return { type: m.type, flags: m.flags, ifinfomsg: m.ifinfomsg, attrs: m.attrs };
}

/**
 * Every buffer strace dumped for sendmsg calls (`-e write=all -xx`), in order, with the thread
 * that sent it. The hex area of a dump line ` | 00000  4c 00 00 00 10 00 05 06  01 4e ...  L....... |`
 * is columns 10..58. Under `-f` a syscall line says `[pid N]` (N the thread id) and the dump
 * lines after it do not (as strace 6 prints them here); a prefixed dump line is taken as that
 * thread's too. A dump is put together from its own thread's lines; `thread` is that N, or 'main'
 * for what follows a line without a prefix.
 */
export function straceSends(out: string): Array<{ thread: string; bytes: Buffer }> {
  const dumps: Array<{ thread: string; hex: string[] }> = [];
  const open = new Map<string, string[]>();
  let current = 'main';
  for (const raw of out.split('\n')) {
    const pid = /^\[pid\s+(\d+)\]\s*/.exec(raw);
    const line = pid ? raw.slice(pid[0].length) : raw;
    // A line of its own with no prefix (strace drops them when one thread is left) is the main thread's.
    if (pid) current = pid[1]!;
    else if (!/^ [*|] /.test(line)) current = 'main';
    const thread = current;
    if (/^ \* \d+ bytes in buffer \d+/.test(line)) {
      const hex: string[] = [];
      dumps.push({ thread, hex });
      open.set(thread, hex);
      continue;
    }
    const m = /^ \| ([0-9a-f]{5})  /.exec(line);
    const hex = open.get(thread);
    if (m && hex) {
      hex.push(...(line.slice(10, 59).match(/[0-9a-f]{2}/g) ?? []));
      continue;
    }
    open.delete(thread);
  }
  return dumps.map(({ thread, hex }) => ({ thread, bytes: Buffer.from(hex.join(''), 'hex') })).filter((d) => d.bytes.length > 0);
}

/** The buffers of straceSends, without their threads. */
export function straceSendBuffers(out: string): Buffer[] {
  return straceSends(out).map((d) => d.bytes);
}
