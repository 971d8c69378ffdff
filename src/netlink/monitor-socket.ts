/**
 * Overrun protection for the link monitor socket (Rtnl.openMonitor), which the `netlink`
 * package opens and does not expose the fd of: the fd is found through procfs (socket-fd.ts) and
 * set with the addon's setSockoptInt. See Rtnl.openMonitor for why.
 */
import type { Setup } from '../native/types.js';
import { addonCall } from './addon.js';
import { findNetlinkSocketFd } from './socket-fd.js';

export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
export const SOL_NETLINK = 270;
export const NETLINK_NO_ENOBUFS = 5;
/** NETLINK_ROUTE, the `Eth` column of /proc/net/netlink */
export const NETLINK_ROUTE = 0;
/** Bytes asked for with SO_RCVBUFFORCE (the kernel doubles it: 64 MiB of skb truesize). */
export const MONITOR_RCVBUF = 32 << 20;

export type SetSockoptInt = Setup['setSockoptInt'];

/** What guardMonitorSocket could do. */
export interface MonitorGuard {
  /** the socket's fd, found through /proc; undefined: not found, nothing was set */
  fd?: number;
  /** NETLINK_NO_ENOBUFS is on: an overrun drops events instead of raising ENOBUFS (EPOLLERR) */
  overrunSafe: boolean;
  /** SO_RCVBUFFORCE took; false: SO_RCVBUF (capped by net.core.rmem_max) or nothing */
  forced: boolean;
}

export interface GuardOptions {
  /** receive buffer to ask for (MONITOR_RCVBUF) */
  rcvbuf?: number;
  /** the setsockopt to use (default: the addon's, loaded on first use) */
  setsockopt?: SetSockoptInt;
  /** where procfs is mounted (tests) */
  procRoot?: string;
}

/**
 * Make the NETLINK_ROUTE socket bound to `portId` (its address().port) drop what does not fit
 * instead of failing (NETLINK_NO_ENOBUFS), and give it a large receive buffer (SO_RCVBUFFORCE,
 * needs CAP_NET_ADMIN; else SO_RCVBUF, capped by net.core.rmem_max). Never throws: whatever
 * fails is left as it was, and the result says what took.
 */
export function guardMonitorSocket(portId: number, opts: GuardOptions = {}): MonitorGuard {
  const setsockopt = opts.setsockopt ?? addonCall('setSockoptInt');
  if (!setsockopt) return { overrunSafe: false, forced: false };
  let fd: number | undefined;
  try { fd = findNetlinkSocketFd(portId, NETLINK_ROUTE, opts.procRoot); } catch { fd = undefined; }
  if (fd === undefined) return { overrunSafe: false, forced: false };
  const bytes = opts.rcvbuf ?? MONITOR_RCVBUF;
  let overrunSafe = false, forced = false;
  try { setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1); overrunSafe = true; } catch { /* reported by the flag */ }
  try {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes);
    forced = true;
  } catch {
    try { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, bytes); } catch { /* keep the buffer as it was */ }
  }
  return { fd, overrunSafe, forced };
}
