/**
 * Shared-memory layout of the data plane: the packet pool and the counters.
 * Both the control plane (main thread) and the data plane (worker) import this file,
 * so every index here is part of the contract between them.
 */

/** Bytes per pool slot. Covers a session MTU up to MAX_SESSION_MTU plus headroom. */
export const SLOT_SIZE = 16384;
/**
 * Bytes in front of every frame read from a tap, so the L2TPv3 header (UDP: 4 + 4 + 8 cookie
 * + 4 sublayer + up to 256 offset padding) is written in place without moving the frame.
 */
export const HEADROOM = 320;
/** Largest frame a slot can hold behind the headroom. */
export const FRAME_CAPACITY = SLOT_SIZE - HEADROOM;
/** Session MTU upper bound: frame = MTU + 14 (Ethernet) + 4 (one VLAN tag) must fit. */
export const MAX_SESSION_MTU = 16000;
/**
 * Bytes in front of every datagram received into a slot. An offload tap write puts its 10-byte
 * virtio header in front of the frame, where the L2TPv3 header can be as short as 4 bytes.
 */
export const RX_HEADROOM = 16;
/** Largest datagram (incl. an IPv4 header on raw sockets) received into a slot. */
export const DATAGRAM_CAPACITY = SLOT_SIZE - RX_HEADROOM;
/** Slots in the pool. */
export const SLOT_COUNT = 2048;
/** Frames moved per syscall batch (recvmmsg/sendmmsg/tap drain). */
export const BATCH = 64;
/**
 * Most segments one TCP super-frame from an offload tap becomes: the tap's gso_max_segs (the
 * kernel segments anything larger itself) and kGsoMaxSegs in native-bindings/src/offload.h.
 */
export const GSO_MAX_SEGS = 64;

/** Capacity of the counter tables (a session or tunnel gets a row index in [0, MAX)). */
export const MAX_SESSIONS = 16384;
export const MAX_TUNNELS = 4096;

/**
 * Per-session counters, a Float64Array row of SESSION_FIELDS (exact up to 2^53).
 * Names follow the kernel's L2TP_ATTR_* statistics (docs/protocol.md "Counters").
 */
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
  /** Frames read from the tap that exceed what the session can carry (counted, not truncated). */
  TxOversize,
  /** Decapsulated frames shorter than an Ethernet header. */
  RxShortFrames,
  /** Date.now() of the last frame delivered to the tap, 0 if none. */
  LastRxMs,
  /** Frames that could not be written to the tap (tap down or queue full). */
  RxTapDrops,
  /** Decapsulated frames larger than the session interface accepts (MTU + 18). */
  RxOversize,
}
export const SESSION_FIELDS = 16;

/**
 * Per-tunnel counters: the session set (aggregated on delivery, like the kernel) plus
 * packets dropped before a session was found, one counter per reason.
 * Row 0..MAX_TUNNELS-1 are tunnels. Packets on a shared raw IP socket that match no session
 * are counted in the "host" row of the same table: HOST_ROW.
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
}
export const TUNNEL_FIELDS = 16;
/** Extra row for drops on raw IP sockets that cannot be attributed to a tunnel. */
export const HOST_ROW = MAX_TUNNELS;

export const SESSION_COUNTER_BYTES = MAX_SESSIONS * SESSION_FIELDS * 8;
export const TUNNEL_COUNTER_BYTES = (MAX_TUNNELS + 1) * TUNNEL_FIELDS * 8;

export const SESSION_COUNTER_NAMES = [
  'rx_packets', 'rx_bytes', 'tx_packets', 'tx_bytes', 'rx_errors', 'tx_errors',
  'rx_seq_discards', 'rx_oos_packets', 'rx_cookie_discards', 'rx_invalid',
  'tx_oversize', 'rx_short_frames', 'last_rx_ms', 'rx_tap_drops', 'rx_oversize',
] as const;

export const TUNNEL_COUNTER_NAMES = [
  'rx_packets', 'rx_bytes', 'tx_packets', 'tx_bytes', 'rx_errors', 'tx_errors', 'rx_invalid',
  'drop_short_packet', 'drop_bad_version', 'drop_control', 'drop_unknown_session',
  'drop_foreign_source', 'drop_oversize', 'drop_socket_error',
] as const;
