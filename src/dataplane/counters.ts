/**
 * Every counter of the data plane, defined once: its index in a shared counter row (the const
 * enums the hot path uses), its name in the API and `show -s`, its Prometheus family and help,
 * and, for a dropped packet, the reason that feeds it. The forwarder counts through the drop
 * tables built here, /metrics renders these definitions, `show -s` prints their names.
 * Both threads import this file: every index is part of the contract between them.
 *
 * To add a counter: a member at the end of its enum and its entry in the table below (the
 * compiler refuses a member without one). It then has a row field, a name, a metric family and a
 * column in `show -s`.
 */
import { DROP_REASON_COUNT, DropReason } from '../protocol/index.js';
import { MAX_SESSIONS, MAX_TUNNELS } from './layout.js';

/** Per-session counters: a Float64Array row (exact up to 2^53). Names follow the kernel's L2TP_ATTR_* statistics. */
export const enum SessionCounter {
  RxPackets = 0,
  RxBytes,
  TxPackets,
  TxBytes,
  RxErrors,
  TxErrors,
  RxSeqDiscards,
  RxOosPackets,
  RxCookieDiscards,
  RxInvalid,
  TxOversize,
  RxShortFrames,
  LastRxMs,
  RxTapDrops,
  RxOversize,
  RxSeqResyncs,
  RxReorderTimeouts,
  RxReorderOverflows,
  RxWindowDrops,
}

/**
 * Per-tunnel counters: the sessions' traffic (aggregated on delivery, like the kernel) plus the
 * packets dropped before a session was found, one counter per reason. Rows 0..MAX_TUNNELS-1 are
 * tunnels; HOST_ROW counts raw IP packets that match no tunnel.
 */
export const enum TunnelCounter {
  RxPackets = 0,
  RxBytes,
  TxPackets,
  TxBytes,
  RxErrors,
  TxErrors,
  RxInvalid,
  DropShortPacket,
  DropBadVersion,
  DropControl,
  DropUnknownSession,
  DropForeignSource,
  DropOversize,
  DropSocketError,
  RxControl,
  TxControl,
  DropControlMalformed,
  DropControlWrongId,
}

export interface CounterDef {
  /** Name in the API's `stats` and in `show -s` (rx_/tx_/drop_ prefixes group the columns). */
  readonly name: string;
  /** Prometheus family. */
  readonly metric: string;
  readonly help: string;
  /** A gauge of value / scale; a counter when absent. */
  readonly gauge?: { readonly scale: number };
  /** Tunnel drops: the `reason` label in the shared drops family. */
  readonly reason?: string;
}

const SESSION: { readonly [C in SessionCounter]: CounterDef } = {
  [SessionCounter.RxPackets]: { name: 'rx_packets', metric: 'l2tp_session_rx_packets_total', help: 'Frames received from the peer and delivered to the session interface.' },
  [SessionCounter.RxBytes]: { name: 'rx_bytes', metric: 'l2tp_session_rx_bytes_total', help: 'Bytes delivered, counted as L2TPv3 header plus frame (as the kernel does).' },
  [SessionCounter.TxPackets]: { name: 'tx_packets', metric: 'l2tp_session_tx_packets_total', help: 'Frames read from the session interface and sent to the peer.' },
  [SessionCounter.TxBytes]: { name: 'tx_bytes', metric: 'l2tp_session_tx_bytes_total', help: 'Bytes sent, counted as L2TPv3 header plus frame.' },
  [SessionCounter.RxErrors]: { name: 'rx_errors', metric: 'l2tp_session_rx_errors_total', help: 'Received frames dropped for any reason after the session was found.' },
  [SessionCounter.TxErrors]: { name: 'tx_errors', metric: 'l2tp_session_tx_errors_total', help: 'Frames that could not be sent.' },
  [SessionCounter.RxSeqDiscards]: { name: 'rx_seq_discards', metric: 'l2tp_session_rx_seq_discards_total', help: 'Frames dropped by sequence number processing.' },
  [SessionCounter.RxOosPackets]: { name: 'rx_oos_packets', metric: 'l2tp_session_rx_oos_packets_total', help: 'Frames received out of sequence and reordered.' },
  [SessionCounter.RxCookieDiscards]: { name: 'rx_cookie_discards', metric: 'l2tp_session_rx_cookie_discards_total', help: 'Frames dropped because the cookie did not match peer_cookie.' },
  [SessionCounter.RxInvalid]: { name: 'rx_invalid', metric: 'l2tp_session_rx_invalid_total', help: 'Frames with a malformed session header.' },
  [SessionCounter.TxOversize]: { name: 'tx_oversize', metric: 'l2tp_session_tx_oversize_total', help: 'Frames from the session interface too large to carry, dropped.' },
  [SessionCounter.RxShortFrames]: { name: 'rx_short_frames', metric: 'l2tp_session_rx_short_frames_total', help: 'Payloads shorter than an Ethernet header, dropped.' },
  [SessionCounter.LastRxMs]: {
    name: 'last_rx_ms', metric: 'l2tp_session_last_rx_timestamp_seconds', gauge: { scale: 1000 },
    help: 'Unix time of the last frame delivered on the session, 0 if none yet.',
  },
  [SessionCounter.RxTapDrops]: { name: 'rx_tap_drops', metric: 'l2tp_session_rx_tap_drops_total', help: 'Frames the session interface refused (down or full).' },
  [SessionCounter.RxOversize]: { name: 'rx_oversize', metric: 'l2tp_session_rx_oversize_total', help: 'Frames larger than the session interface MTU allows, dropped.' },
  [SessionCounter.RxSeqResyncs]: {
    name: 'rx_seq_resyncs', metric: 'l2tp_session_rx_seq_resyncs_total',
    help: 'Times the expected sequence number was reset to the peer\'s (a run of out-of-sequence frames, or a peer that restarted its numbering).',
  },
  [SessionCounter.RxReorderTimeouts]: {
    name: 'rx_reorder_timeouts', metric: 'l2tp_session_rx_reorder_timeouts_total',
    help: 'Sequence gaps given up on because a held frame reached reorder_timeout.',
  },
  [SessionCounter.RxReorderOverflows]: {
    name: 'rx_reorder_overflows', metric: 'l2tp_session_rx_reorder_overflows_total',
    help: 'Sequence gaps given up on because the reorder queue was full.',
  },
  [SessionCounter.RxWindowDrops]: {
    name: 'rx_window_drops', metric: 'l2tp_session_rx_window_drops_total',
    help: 'Frames dropped as old or duplicate by their sequence number (also in rx_errors, as the kernel counts them).',
  },
};

/** The family every tunnel drop counter shares, one sample per tunnel and reason. */
export const TUNNEL_DROPS_FAMILY = {
  metric: 'l2tp_tunnel_rx_drops_total',
  help: 'Packets dropped before a session was found, by reason. tunnel_id="" counts raw IP packets that matched no tunnel.',
} as const;
const DROPS_METRIC = TUNNEL_DROPS_FAMILY.metric;
const TUNNEL: { readonly [C in TunnelCounter]: CounterDef } = {
  [TunnelCounter.RxPackets]: { name: 'rx_packets', metric: 'l2tp_tunnel_rx_packets_total', help: 'Frames delivered to sessions of this tunnel.' },
  [TunnelCounter.RxBytes]: { name: 'rx_bytes', metric: 'l2tp_tunnel_rx_bytes_total', help: 'Bytes delivered to sessions of this tunnel.' },
  [TunnelCounter.TxPackets]: { name: 'tx_packets', metric: 'l2tp_tunnel_tx_packets_total', help: 'Packets sent by sessions of this tunnel.' },
  [TunnelCounter.TxBytes]: { name: 'tx_bytes', metric: 'l2tp_tunnel_tx_bytes_total', help: 'Bytes sent by sessions of this tunnel.' },
  [TunnelCounter.RxErrors]: {
    name: 'rx_errors', metric: 'l2tp_tunnel_rx_errors_total',
    help: 'Packets for this tunnel dropped before a session was found (all reasons of l2tp_tunnel_rx_drops_total).',
  },
  [TunnelCounter.TxErrors]: { name: 'tx_errors', metric: 'l2tp_tunnel_tx_errors_total', help: 'Packets of this tunnel the kernel refused to send.' },
  [TunnelCounter.RxInvalid]: {
    name: 'rx_invalid', metric: 'l2tp_tunnel_rx_invalid_total',
    help: 'Packets for this tunnel with an invalid L2TPv3 header (a version other than 3), as the kernel counts rx_invalid.',
  },
  [TunnelCounter.DropShortPacket]: { name: 'drop_short_packet', metric: DROPS_METRIC, reason: 'short_packet', help: 'Too short for an L2TPv3 header, or a malformed outer IPv4 header.' },
  [TunnelCounter.DropBadVersion]: { name: 'drop_bad_version', metric: DROPS_METRIC, reason: 'bad_version', help: 'A version other than 3 (also counted in rx_invalid).' },
  [TunnelCounter.DropControl]: {
    name: 'drop_control', metric: DROPS_METRIC, reason: 'control_message',
    help: 'Control messages l2tpd does not run: all but HELLO, ACK and ZLB, and every one on a tunnel without hello_interval.',
  },
  [TunnelCounter.DropUnknownSession]: { name: 'drop_unknown_session', metric: DROPS_METRIC, reason: 'unknown_session', help: 'No session with that ID on this tunnel (over IP: on this host).' },
  [TunnelCounter.DropForeignSource]: { name: 'drop_foreign_source', metric: DROPS_METRIC, reason: 'foreign_source', help: 'From an address (or UDP port) other than the tunnel\'s remote.' },
  [TunnelCounter.DropOversize]: { name: 'drop_oversize', metric: DROPS_METRIC, reason: 'oversize', help: 'Datagrams larger than a pool slot.' },
  [TunnelCounter.DropSocketError]: { name: 'drop_socket_error', metric: DROPS_METRIC, reason: 'socket_error', help: 'Receive calls the kernel failed.' },
  [TunnelCounter.RxControl]: {
    name: 'rx_control', metric: 'l2tp_tunnel_rx_control_total',
    help: 'Control messages from the peer taken by the Hello keepalive (HELLO, ACK, ZLB on a tunnel with hello_interval).',
  },
  [TunnelCounter.TxControl]: {
    name: 'tx_control', metric: 'l2tp_tunnel_tx_control_total',
    help: 'Control messages sent to the peer (HELLOs, their retransmissions, ACKs).',
  },
  [TunnelCounter.DropControlMalformed]: {
    name: 'drop_control_malformed', metric: DROPS_METRIC, reason: 'control_malformed',
    help: 'Malformed control messages: bad flags, version or length, malformed or unknown mandatory AVPs.',
  },
  [TunnelCounter.DropControlWrongId]: {
    name: 'drop_control_connection_id', metric: DROPS_METRIC, reason: 'control_connection_id',
    help: 'Control messages for a connection ID other than this tunnel\'s tunnel_id (over IP: for no tunnel on that address).',
  },
};

function inOrder<C extends number>(table: { readonly [K in C]: CounterDef }): readonly CounterDef[] {
  return Object.keys(table).map(Number).sort((a, b) => a - b).map((k, i) => {
    if (k !== i) throw new Error(`counter table: index ${i} missing`);
    return table[k as C];
  });
}

/** Session counters by index (SessionCounter). */
export const SESSION_COUNTERS = inOrder<SessionCounter>(SESSION);
/** Tunnel counters by index (TunnelCounter). */
export const TUNNEL_COUNTERS = inOrder<TunnelCounter>(TUNNEL);
export const SESSION_COUNTER_NAMES: readonly string[] = SESSION_COUNTERS.map((c) => c.name);
export const TUNNEL_COUNTER_NAMES: readonly string[] = TUNNEL_COUNTERS.map((c) => c.name);

/** Float64 fields per session row and per tunnel row of the shared counter arrays. */
export const SESSION_ROW_WIDTH = SESSION_COUNTERS.length;
export const TUNNEL_ROW_WIDTH = TUNNEL_COUNTERS.length;
/** Extra tunnel row for drops on raw IP sockets that cannot be attributed to a tunnel. */
export const HOST_ROW = MAX_TUNNELS;
export const SESSION_COUNTER_BYTES = MAX_SESSIONS * SESSION_ROW_WIDTH * 8;
export const TUNNEL_COUNTER_BYTES = (MAX_TUNNELS + 1) * TUNNEL_ROW_WIDTH * 8;

// ------------------------------------------------------------------------------------------
// Drops: where each reason a received packet is dropped is counted.

export interface DropDef {
  readonly reason: DropReason;
  /** tunnel: before a session is known (tunnel row, or HOST_ROW); session: after the lookup. */
  readonly scope: 'tunnel' | 'session';
  readonly counter: TunnelCounter | SessionCounter;
  /** Also counted in the tunnel's rx_invalid (a bad version, as the kernel counts it). */
  readonly invalid?: true;
}

/**
 * Every drop of a received packet. Each is also counted in the row's rx_errors. A reason may
 * appear once per scope: a short packet before the lookup is a tunnel's short_packet, a session
 * header cut short after it is the session's rx_invalid.
 */
export const DROPS: readonly DropDef[] = [
  { reason: DropReason.ShortPacket, scope: 'tunnel', counter: TunnelCounter.DropShortPacket },
  { reason: DropReason.BadIpHeader, scope: 'tunnel', counter: TunnelCounter.DropShortPacket },
  { reason: DropReason.BadVersion, scope: 'tunnel', counter: TunnelCounter.DropBadVersion, invalid: true },
  { reason: DropReason.Control, scope: 'tunnel', counter: TunnelCounter.DropControl },
  { reason: DropReason.UnknownSession, scope: 'tunnel', counter: TunnelCounter.DropUnknownSession },
  { reason: DropReason.ForeignSource, scope: 'tunnel', counter: TunnelCounter.DropForeignSource },
  { reason: DropReason.Oversize, scope: 'tunnel', counter: TunnelCounter.DropOversize },
  { reason: DropReason.ControlMalformed, scope: 'tunnel', counter: TunnelCounter.DropControlMalformed },
  { reason: DropReason.ControlWrongId, scope: 'tunnel', counter: TunnelCounter.DropControlWrongId },
  { reason: DropReason.ShortPacket, scope: 'session', counter: SessionCounter.RxInvalid },
  { reason: DropReason.CookieMismatch, scope: 'session', counter: SessionCounter.RxCookieDiscards },
  { reason: DropReason.ShortFrame, scope: 'session', counter: SessionCounter.RxShortFrames },
  { reason: DropReason.Oversize, scope: 'session', counter: SessionCounter.RxOversize },
  { reason: DropReason.SeqDiscard, scope: 'session', counter: SessionCounter.RxSeqDiscards },
  { reason: DropReason.Window, scope: 'session', counter: SessionCounter.RxWindowDrops },
];

/** Counter of each reason in `scope`, indexed by DropReason; a reason without a row counts as rx_invalid. */
function dropIndex(scope: DropDef['scope'], fallback: number): Int8Array {
  const out = new Int8Array(DROP_REASON_COUNT).fill(fallback);
  for (const d of DROPS) if (d.scope === scope) out[d.reason] = d.counter;
  return out;
}

/** For the hot path: the counter a drop increments, by DropReason. */
export const TUNNEL_DROP_COUNTER = dropIndex('tunnel', TunnelCounter.RxInvalid);
export const SESSION_DROP_COUNTER = dropIndex('session', SessionCounter.RxInvalid);
/** 1 where a tunnel drop also counts as rx_invalid. */
export const TUNNEL_DROP_INVALID = Uint8Array.from({ length: DROP_REASON_COUNT },
  (_, r) => (DROPS.some((d) => d.scope === 'tunnel' && d.reason === r && d.invalid) ? 1 : 0));
