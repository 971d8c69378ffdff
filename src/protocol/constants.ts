/**
 * L2TPv3 data-message constants (RFC 3931 §4.1, §4.6; docs/protocol.md).
 *
 * Pure module: no Node APIs, no imports from outside src/protocol.
 */

/** T bit of the UDP flags/version word: 1 = control message. */
export const T_BIT = 0x8000;
/** Version nibble of the UDP flags/version word. */
export const VERSION_MASK = 0x000f;
export const L2TP_VERSION_3 = 3;
/** First 32-bit word of every data message over UDP as Linux and QEMU write it. */
export const UDP_DATA_WORD = 0x00030000;
/** UDP: flags/version (2) + reserved (2) + session id (4). */
export const UDP_SESSION_HEADER_LEN = 8;
/** IP: session id (4). */
export const IP_SESSION_HEADER_LEN = 4;

/** S bit of the Default L2-Specific Sublayer (RFC 3931 §4.6). */
export const L2SS_S_BIT = 0x40000000;
export const L2SS_LEN = 4;
/** 24-bit sequence number space. */
export const SEQ_MASK = 0xffffff;
export const SEQ_MODULUS = 0x1000000;
/**
 * Receive window: ns is "new" when (ns - nr) mod 2^24 < SEQ_WINDOW (Linux `nr_window_size` =
 * nr_max / 2 = 0x7fffff, i.e. 2^23 − 1).
 */
export const SEQ_WINDOW = 0x7fffff;

/** IANA protocol number of L2TP over IP. */
export const IPPROTO_L2TP = 115;
export const IPV4_MIN_HEADER_LEN = 20;
/** Ethernet header (DA, SA, type/len): the shortest frame a session hands to its tap. */
export const ETH_HEADER_LEN = 14;
/** Cookie lengths that can be configured (RFC: up to 64 bits; iproute2: 4 or 8). */
export const MAX_COOKIE_LEN = 8;
/** Largest offset padding (QEMU `offset=N`, N ≤ 256). */
export const MAX_OFFSET = 256;
/** Largest L2TPv3 session header l2tpd writes: UDP 8 + cookie 8 + L2SS 4 + offset 256. */
export const MAX_HEADER_LEN = UDP_SESSION_HEADER_LEN + MAX_COOKIE_LEN + L2SS_LEN + MAX_OFFSET;

/** Encapsulation, numeric for the hot path (values as the kernel's `L2TP_ATTR_ENCAP_TYPE`). */
export const enum EncapKind {
  Udp = 0,
  Ip = 1,
}

/** L2-Specific Sublayer type (values as the kernel's `l2spec_type`). */
export const enum L2SpecKind {
  None = 0,
  Default = 1,
}

/**
 * Why a packet was dropped. Every drop has exactly one reason; each reason maps to one counter
 * in the data plane (src/dataplane/layout.ts):
 *
 * | Reason          | Produced by                  | Counter                                          |
 * |-----------------|------------------------------|--------------------------------------------------|
 * | ShortPacket     | decodeCommon                 | tunnel drop_short_packet                         |
 * | ShortPacket     | decodeSession (no room for cookie/L2SS/offset) | session rx_invalid (Linux: opt-in-linear failure) |
 * | BadIpHeader     | decodeCommon (raw IPv4)      | tunnel/host drop_short_packet (malformed outer)  |
 * | BadVersion      | decodeCommon (UDP)           | tunnel drop_bad_version                          |
 * | Control         | decodeCommon                 | tunnel drop_control                              |
 * | UnknownSession  | decodeCommon (UDP sid 0), data plane lookup | tunnel/host drop_unknown_session  |
 * | ForeignSource   | data plane (peer address check) | tunnel drop_foreign_source                    |
 * | CookieMismatch  | decodeSession                | session rx_cookie_discards + rx_errors           |
 * | ShortFrame      | decodeSession                | session rx_short_frames + rx_errors              |
 * | Oversize        | data plane (transmit/receive size) | session tx_oversize or tunnel drop_oversize |
 * | SeqDiscard      | SequenceState                | session rx_seq_discards + rx_errors              |
 * | Window          | SequenceState (old/duplicate)| session rx_errors only (as Linux)                |
 * | Flushed         | SequenceState.reset()        | not counted (tokens handed back on reset)        |
 * | ControlMalformed| decodeControl (control.ts)   | tunnel drop_control_malformed                    |
 * | ControlWrongId  | data plane (connection ID ≠ tunnel_id) | tunnel drop_control_connection_id      |
 */
export const enum DropReason {
  None = 0,
  ShortPacket,
  BadIpHeader,
  BadVersion,
  Control,
  UnknownSession,
  ForeignSource,
  CookieMismatch,
  ShortFrame,
  Oversize,
  SeqDiscard,
  Window,
  Flushed,
  ControlMalformed,
  ControlWrongId,
}
/** Number of DropReason values (for sizing per-reason tables). */
export const DROP_REASON_COUNT = 15;

