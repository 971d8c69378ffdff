import type { SessionConfig, TunnelConfig } from '../control/model.js';

/** Bytes of L2TPv3 header a session puts in front of each frame (what the kernel calls hdr_len, plus offset padding). */
export function l2tpHeaderLength(encap: 'udp' | 'ip', s: Pick<SessionConfig, 'cookie' | 'l2spec_type' | 'offset'>): number {
  const cookie = s.cookie ? s.cookie.length / 2 : 0;
  const l2spec = (s.l2spec_type ?? 'default') === 'default' ? 4 : 0;
  return (encap === 'udp' ? 4 : 0) + 4 + cookie + l2spec + (s.offset ?? 0);
}

/**
 * The kernel's l2tp_eth_adjust_mtu overhead: outer IP header + UDP + L2TP header + inner
 * Ethernet header. 1500 - overhead = 1446 for UDP/IPv4 with the default sublayer, no cookie.
 */
export function sessionOverhead(t: Pick<TunnelConfig, 'encap'>, s: Pick<SessionConfig, 'cookie' | 'l2spec_type' | 'offset'>, family: 4 | 6): number {
  return (family === 6 ? 40 : 20) + (t.encap === 'udp' ? 8 : 0) + l2tpHeaderLength(t.encap, s) + 14;
}
