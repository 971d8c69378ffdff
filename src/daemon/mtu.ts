import type { SessionConfig, TunnelConfig } from '../control/model.js';
import { buildTxTemplate } from '../protocol/index.js';
import { ENCAPSULATIONS } from '../dataplane/encap.js';

/** A session's cookie as bytes (config holds 8 or 16 validated hex digits). */
export function cookieBytes(hex: string | undefined): Uint8Array {
  return Uint8Array.from(Buffer.from(hex ?? '', 'hex'));
}

/**
 * The kernel's l2tp_eth_adjust_mtu overhead: outer IP header + UDP + L2TPv3 header (the length
 * of the header l2tpd writes, offset padding included) + inner Ethernet header.
 * 1500 - overhead = 1446 for UDP/IPv4 with the default sublayer and no cookie.
 */
export function sessionOverhead(
  t: Pick<TunnelConfig, 'encap'>,
  s: Pick<SessionConfig, 'peer_session_id' | 'cookie' | 'l2spec_type' | 'offset'>,
  family: 4 | 6,
): number {
  const encap = ENCAPSULATIONS[t.encap];
  const header = buildTxTemplate({
    encap: encap.wire, peerSessionId: s.peer_session_id, cookie: cookieBytes(s.cookie),
    l2spec: s.l2spec_type ?? 'default', offset: s.offset ?? 0,
  }).length;
  return encap.outerOverhead(family) + header + 14;
}
