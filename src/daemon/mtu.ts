import type { Encapsulation } from '../dataplane/encap.js';
import { ETH_HEADER_LEN } from '../protocol/index.js';
import { MTU_MIN } from '../control/session-words.js';

/**
 * The kernel's l2tp_eth_adjust_mtu overhead: outer IP header + UDP + the L2TPv3 header the
 * session writes (`headerLength`, offset padding included) + the inner Ethernet header.
 * 1500 - overhead = 1446 for UDP/IPv4 with the default sublayer and no cookie.
 */
export function sessionOverhead(encap: Encapsulation, family: 4 | 6, headerLength: number): number {
  return encap.outerOverhead(family) + headerLength + ETH_HEADER_LEN;
}

/** A session's MTU when `mtu` is not given: the underlay's path MTU less the overhead, at least MTU_MIN. */
export function defaultSessionMtu(underlay: number, encap: Encapsulation, family: 4 | 6, headerLength: number): number {
  return Math.max(MTU_MIN, underlay - sessionOverhead(encap, family, headerLength));
}
