/**
 * Linux socket option numbers (the kernel's ABI: include/uapi/linux/in.h, in6.h, udp.h,
 * asm-generic/socket.h), for SocketOptions.options. A word that sets a socket option names one
 * of these; the addon sets whatever it is given.
 */
import type { IntSocketOption } from './types.js';

const SOL_SOCKET = 1;
const IPPROTO_IP = 0;
const IPPROTO_IPV6 = 41;
const IPPROTO_UDP = 17;

/** Level and name of each option l2tpd sets. */
export const SOCKET_OPTION = {
  /** IPv4 UDP: send a zero checksum. */
  SO_NO_CHECK: { level: SOL_SOCKET, name: 11 },
  /** IPv6 UDP: send a zero checksum. */
  UDP_NO_CHECK6_TX: { level: IPPROTO_UDP, name: 101 },
  /** IPv6 UDP: accept a zero checksum. */
  UDP_NO_CHECK6_RX: { level: IPPROTO_UDP, name: 102 },
  /** IPv4: the TOS byte of every datagram sent. */
  IP_TOS: { level: IPPROTO_IP, name: 1 },
  /** IPv4: the TTL of every datagram sent. */
  IP_TTL: { level: IPPROTO_IP, name: 2 },
  /** IPv6: the hop limit of unicast datagrams sent. */
  IPV6_UNICAST_HOPS: { level: IPPROTO_IPV6, name: 16 },
  /** IPv6: the traffic class of every datagram sent. */
  IPV6_TCLASS: { level: IPPROTO_IPV6, name: 67 },
} as const;

export type SocketOptionName = keyof typeof SOCKET_OPTION;

/** The option `label` with `value`, ready for SocketOptions.options. */
export function socketOption(label: SocketOptionName, value: number): IntSocketOption {
  return { ...SOCKET_OPTION[label], value, label };
}
