/**
 * The configuration model: what a user declares. Field names are the words of `ip l2tp`
 * (README "l2tpctl"), used verbatim in the config file, the API bodies and the CLI.
 */

import type { EncapName } from '../dataplane/encap.js';

export type OnOff = 'on' | 'off';
export type L2SpecType = 'none' | 'default';
export type SeqMode = 'none' | 'send' | 'recv' | 'both';

export interface TunnelConfig {
  tunnel_id: number;
  peer_tunnel_id: number;
  encap: EncapName;
  /** IPv4 or IPv6 literal, same family as remote. */
  local: string;
  remote: string;
  /** Required for udp, absent for ip. */
  udp_sport?: number;
  udp_dport?: number;
  /** IPv4 UDP checksum on transmit (iproute2 default off). */
  udp_csum?: OnOff;
  /** IPv6 UDP checksum on transmit / required on receive (iproute2 default on). */
  udp6_csum_tx?: OnOff;
  udp6_csum_rx?: OnOff;
}

export interface SessionConfig {
  tunnel_id: number;
  session_id: number;
  peer_session_id: number;
  /** Interface name; default l2tpeth%d like the kernel. */
  name?: string;
  /** Cookie we send, 8 or 16 lowercase hex digits. */
  cookie?: string;
  /** Cookie we expect from the peer, 8 or 16 hex digits. */
  peer_cookie?: string;
  l2spec_type?: L2SpecType;
  seq?: SeqMode;
  /** Padding bytes sent between header and frame (0..256). */
  offset?: number;
  /** Padding bytes skipped on receive between header and frame (0..256). */
  peer_offset?: number;
  /** Reorder timeout in ms for received sequenced frames; 0 = no reordering. */
  reorder_timeout?: number;
  /** Session interface MTU; default by the kernel formula from the underlay path MTU. */
  mtu?: number;
  /** Bridge to enslave the session interface to (created if missing). */
  bridge?: string;
  /** VLAN id on `dev` (trunk): creates dev.vlan and a per-VLAN bridge. */
  vlan?: number;
  dev?: string;
}

export interface Config {
  tunnels: TunnelConfig[];
  sessions: SessionConfig[];
}

/** Defaults applied when a field is absent (they match `ip l2tp`). */
export const TUNNEL_DEFAULTS = {
  encap: 'udp' as EncapName,
  udp_csum: 'off' as OnOff,
  udp6_csum_tx: 'on' as OnOff,
  udp6_csum_rx: 'on' as OnOff,
};

export const SESSION_DEFAULTS = {
  l2spec_type: 'default' as L2SpecType,
  seq: 'none' as SeqMode,
  offset: 0,
  peer_offset: 0,
  reorder_timeout: 0,
};
