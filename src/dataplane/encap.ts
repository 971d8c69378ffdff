/**
 * One object per encapsulation, chosen once per tunnel: how its socket is opened and shared,
 * where the peer's source is checked, what the L2TPv3 header starts with (protocol/encap.ts)
 * and what the outer headers cost the session MTU. The control plane picks it by the `encap`
 * word, the worker by the numeric kind in a TunnelSpec; nothing else asks which one a tunnel
 * uses.
 */
import { EncapKind, IPPROTO_L2TP, IP_WIRE, UDP_WIRE, type WireEncap } from '../protocol/index.js';
import type { Setup, SocketOptions } from '../native/types.js';

/** The values of the `encap` word. */
export type EncapName = 'udp' | 'ip';

export interface Encapsulation {
  readonly name: EncapName;
  readonly kind: EncapKind;
  /** The L2TPv3 header prefix and the first receive stage. */
  readonly wire: WireEncap;
  /**
   * UDP: each tunnel has its own socket, bound to local:udp_sport, so a datagram's source is
   * checked against the tunnel before anything is parsed. IP: one raw socket per local address
   * serves every tunnel on it; the source is checked against the session's tunnel after the
   * session lookup.
   */
  readonly socketPerTunnel: boolean;
  /**
   * Session IDs are looked up among all of the host's sessions of this encapsulation (IP, as in
   * Linux and RFC 3931), not within the tunnel (UDP), so they must be unique on the host.
   */
  readonly sessionIdsPerHost: boolean;
  /** Outer header bytes in front of the L2TPv3 header: IP, plus UDP's 8. */
  outerOverhead(family: 4 | 6): number;
  /** Datagrams read from the socket start with the IPv4 header (raw IPv4 sockets). */
  ipHeaderOnReceive(family: 4 | 6): boolean;
  /**
   * Key of the socket a tunnel on `local` uses, when tunnels share it (IP); undefined when each
   * tunnel opens its own (UDP).
   */
  sharedSocketKey(family: 4 | 6, local: string): string | undefined;
  /** Open the socket (control plane). `localPort` is udp_sport; the raw socket has none. */
  open(setup: Pick<Setup, 'udpOpen' | 'rawOpen'>, family: 4 | 6, local: string, localPort: number, opts: SocketOptions): number;
}

const ipHeader = (family: 4 | 6): number => (family === 6 ? 40 : 20);

export const UDP_ENCAP: Encapsulation = {
  name: 'udp',
  kind: EncapKind.Udp,
  wire: UDP_WIRE,
  socketPerTunnel: true,
  sessionIdsPerHost: false,
  outerOverhead: (family) => ipHeader(family) + 8,
  ipHeaderOnReceive: () => false,
  sharedSocketKey: () => undefined,
  open: (setup, family, local, localPort, opts) => setup.udpOpen(family, local, localPort, opts),
};

export const IP_ENCAP: Encapsulation = {
  name: 'ip',
  kind: EncapKind.Ip,
  wire: IP_WIRE,
  socketPerTunnel: false,
  sessionIdsPerHost: true,
  outerOverhead: ipHeader,
  ipHeaderOnReceive: (family) => family === 4,
  sharedSocketKey: (family, local) => `ip|${family}|${local}`,
  open: (setup, family, local, _localPort, opts) => setup.rawOpen(family, local, IPPROTO_L2TP, opts),
};

/** By the `encap` word, in the order `ip l2tp` lists them (`encap {ip|udp}`). */
export const ENCAPSULATIONS: Readonly<Record<EncapName, Encapsulation>> = { ip: IP_ENCAP, udp: UDP_ENCAP };

/** By EncapKind (what a TunnelSpec carries to the worker). */
export function encapOfKind(kind: EncapKind): Encapsulation {
  const e = kind === EncapKind.Udp ? UDP_ENCAP : kind === EncapKind.Ip ? IP_ENCAP : undefined;
  if (!e) throw new RangeError(`encapsulation kind ${String(kind)} is not UDP (0) or IP (1)`);
  return e;
}
