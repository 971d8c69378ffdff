/**
 * Finding the fd of a netlink socket that a library opened and does not expose (the `netlink`
 * package's sockets), from procfs only:
 *  - the socket's bound address (getsockname, the package's address()) gives its port id;
 *  - /proc/net/netlink (this process's network namespace) lists every netlink socket with its
 *    protocol (`Eth`), port id (`Pid`) and socket inode (`Inode`); (protocol, port id) is unique
 *    within a namespace;
 *  - /proc/self/fd/N is a symlink to `socket:[INODE]`.
 * Linux only. Every function returns undefined instead of throwing when procfs is not there or
 * does not say.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** One row of /proc/net/netlink. */
export interface NetlinkSocketRow {
  /** `Eth`: the netlink protocol (0 = NETLINK_ROUTE) */
  protocol: number;
  /** `Pid`: the bound port id (nl_pid); 0 for kernel sockets and unbound ones */
  portId: number;
  /** `Groups`: the first 32 multicast groups, as a bit mask (bit g-1 = group g) */
  groups: number;
  /** `Rmem`: bytes (skb truesize) queued for reading now */
  rmem: number;
  /** `Drops`: messages the kernel dropped because the receive queue was full */
  drops: number;
  /** `Inode`: the socket's inode (`socket:[INODE]` in /proc/PID/fd) */
  inode: number;
}

/**
 * Parse the text of /proc/net/netlink. Columns are found by their header name (Eth, Pid, Groups,
 * Rmem, Drops, Inode), so their order does not matter; rows that do not parse are skipped.
 */
export function parseProcNetNetlink(text: string): NetlinkSocketRow[] {
  const lines = text.split('\n');
  const header = (lines[0] ?? '').trim().split(/\s+/);
  const col = (name: string): number => header.indexOf(name);
  const eth = col('Eth'), pid = col('Pid'), groups = col('Groups'), rmem = col('Rmem'), drops = col('Drops'), inode = col('Inode');
  if (eth < 0 || pid < 0 || inode < 0) return [];
  const dec = (s: string | undefined): number => (s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN);
  const rows: NetlinkSocketRow[] = [];
  for (const line of lines.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length !== header.length) continue;
    const row: NetlinkSocketRow = {
      protocol: dec(f[eth]),
      portId: dec(f[pid]),
      groups: groups >= 0 && /^[0-9a-fA-F]{1,8}$/.test(f[groups] ?? '') ? parseInt(f[groups] as string, 16) : 0,
      rmem: rmem >= 0 ? dec(f[rmem]) : 0,
      drops: drops >= 0 ? dec(f[drops]) : 0,
      inode: dec(f[inode]),
    };
    if ([row.protocol, row.portId, row.rmem, row.drops, row.inode].some(Number.isNaN)) continue;
    rows.push(row);
  }
  return rows;
}

/** The /proc/net/netlink row of the socket bound to (protocol, portId), if listed. */
export function netlinkSocketRow(portId: number, protocol: number, procRoot = '/proc'): NetlinkSocketRow | undefined {
  if (portId === 0) return undefined; // kernel sockets and unbound ones share port 0
  let text: string;
  try { text = readFileSync(join(procRoot, 'net', 'netlink'), 'utf8'); } catch { return undefined; }
  const matches = parseProcNetNetlink(text).filter((r) => r.protocol === protocol && r.portId === portId);
  return matches.length === 1 ? matches[0] : undefined;
}

/** The fd of this process that is the socket with this inode (/proc/self/fd/N → socket:[inode]). */
export function fdOfSocketInode(inode: number, procRoot = '/proc'): number | undefined {
  const dir = join(procRoot, 'self', 'fd');
  const want = `socket:[${inode}]`;
  let names: string[];
  try { names = readdirSync(dir); } catch { return undefined; }
  for (const name of names) {
    let target: string;
    try { target = readlinkSync(join(dir, name)); } catch { continue; } // closed meanwhile (e.g. readdir's own fd)
    if (target === want && /^\d+$/.test(name)) return Number(name);
  }
  return undefined;
}

/**
 * The fd of the netlink socket bound to `portId` for `protocol` (0 = NETLINK_ROUTE) in this
 * process, or undefined (no procfs, not listed, not ours).
 */
export function findNetlinkSocketFd(portId: number, protocol = 0, procRoot = '/proc'): number | undefined {
  const row = netlinkSocketRow(portId, protocol, procRoot);
  return row ? fdOfSocketInode(row.inode, procRoot) : undefined;
}
