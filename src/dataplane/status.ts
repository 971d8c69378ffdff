/**
 * Shared-memory layout of what the data plane tells the control plane besides counters: the
 * Hello state of each tunnel, and what dropped traffic looked like (the mismatch diagnostics).
 * The worker writes these rows (never allocating); the control plane reads them when it reports
 * a state change, answers `show`, or is scraped. Both threads import this file.
 */
import { MAX_SESSIONS, MAX_TUNNELS, SESSION_TX_BYTES } from './layout.js';
import { SOURCE_STRIDE } from '../native/types.js';

/**
 * Per-tunnel Hello status (Float64Array rows of HELLO_ROW_WIDTH). Times are wall-clock ms.
 * State: -1 no Hello on this tunnel, else LinkState (0 down, 1 up).
 */
export const enum HelloField {
  State = 0,
  /** HelloReason. */
  Reason,
  SinceMs,
  Transitions,
  /** Round-trip time of the last Hello answered at its first transmission; -1 before one. */
  RttMs,
  /** The last valid control message from the peer; 0 before one. */
  LastHeardMs,
  HellosSent,
  Retransmissions,
  AcksSent,
  HellosReceived,
  Answers,
  Resyncs,
  AcksLimited,
  /** Upper bound of the down-detection time of this tunnel's settings. */
  DownAfterMs,
}
export const HELLO_ROW_WIDTH = 14;
export const HELLO_STATUS_BYTES = MAX_TUNNELS * HELLO_ROW_WIDTH * 8;

/**
 * Int32Array word the worker increments (and Atomics.notify-s) whenever a tunnel's Hello state
 * or reason changes, so the control plane reacts without polling.
 */
export const SIGNAL_BYTES = 8;

/** Entries kept per tunnel for unknown session IDs and for foreign sources. */
export const DIAG_SLOTS = 4;
/**
 * SOURCE_STRIDE as a literal: a const enum member must be one its own file can evaluate
 * (each file is transpiled alone).
 */
const SOURCE_WORDS = 5;
if (SOURCE_WORDS !== SOURCE_STRIDE) throw new Error('status.ts: SOURCE_WORDS is not SOURCE_STRIDE');

/** One unknown-session entry: the ID, how often and when it was last seen, who sent it. */
export const enum UnknownField {
  SessionId = 0,
  Count,
  LastMs,
  /** SOURCE_STRIDE words. */
  Source,
}
export const UNKNOWN_WIDTH = 3 + SOURCE_STRIDE;

/** One foreign-source entry: who sent valid-looking L2TPv3, and what. */
export const enum ForeignField {
  /** SOURCE_STRIDE words. */
  Source = 0,
  Count = SOURCE_WORDS,
  LastMs,
  /** The session ID of the data message, or the connection ID of a control message. */
  Id,
  /** 0 data message, 1 control message. */
  Control,
}
export const FOREIGN_WIDTH = SOURCE_STRIDE + 4;

/**
 * Per-tunnel diagnostics row (HOST_ROW included: raw IP traffic that matched no tunnel). Offsets
 * of the entry tables, then single fields for control messages the tunnel dropped.
 */
export const enum TunnelDiag {
  Unknown = 0,
  /** DIAG_SLOTS * UNKNOWN_WIDTH (checked below). */
  Foreign = 32,
  /**
   * Foreign + DIAG_SLOTS * FOREIGN_WIDTH. A control message whose connection ID was not this
   * tunnel's tunnel_id: the ID seen.
   */
  WrongIdCcid = 68,
  WrongIdCount,
  WrongIdLastMs,
  /** A control message l2tpd does not run (anything but HELLO/ACK/ZLB, or those without hello_interval). */
  OtherType,
  OtherVendor,
  OtherCount,
  OtherLastMs,
  /** HELLOs received on a tunnel without hello_interval. */
  HelloIgnoredCount,
  HelloIgnoredLastMs,
  /** ControlReason of the last malformed control message. */
  MalformedReason,
  MalformedCount,
  MalformedLastMs,
  /** Last HELLO carrying a Message Digest AVP (the peer authenticates control messages). */
  DigestLastMs,
}
export const TUNNEL_DIAG_WIDTH = TunnelDiag.DigestLastMs + 1;
if (TunnelDiag.Foreign !== DIAG_SLOTS * UNKNOWN_WIDTH || TunnelDiag.WrongIdCcid !== TunnelDiag.Foreign + DIAG_SLOTS * FOREIGN_WIDTH) {
  throw new Error('status.ts: TunnelDiag offsets do not match the entry widths');
}
export const TUNNEL_DIAG_BYTES = (MAX_TUNNELS + 1) * TUNNEL_DIAG_WIDTH * 8;

/** Words kept from where a mismatched cookie was: room for a sublayer and an Ethernet header behind it. */
export const COOKIE_WORDS = 8;
/** Bytes of a session's header sampled, from just after the session ID. */
export const SAMPLE_BYTES = 64;
export const SAMPLE_WORDS = SAMPLE_BYTES / 4;
/** Least time between two samples of one session (ms). */
export const SAMPLE_INTERVAL_MS = 1000;

/**
 * Per-session diagnostics row: the bytes where the cookie should be on the last cookie mismatch,
 * frames dropped for want of a sequence number, and a sample (at most one a second) of a
 * received frame's header, taken after the cookie check and before sequencing.
 */
export const enum SessionDiag {
  /** COOKIE_WORDS words: the bytes from the cookie position of the last frame whose cookie did not match. */
  CookieWords = 0,
  CookieCount = 8,
  CookieLastMs,
  /** Frames without a sequence number dropped because the session has seq recv/both. */
  UnsequencedCount,
  UnsequencedLastMs,
  SampleMs,
  /** Bytes after the session ID in the sampled datagram. */
  SampleLength,
  /** SAMPLE_WORDS words from just after the session ID (big-endian, zero past the datagram). */
  SampleWords,
}
export const SESSION_DIAG_WIDTH = SessionDiag.SampleWords + SAMPLE_WORDS;
if (SessionDiag.CookieCount !== SessionDiag.CookieWords + COOKIE_WORDS) throw new Error('status.ts: SessionDiag offsets do not match COOKIE_WORDS');
export const SESSION_DIAG_BYTES = MAX_SESSIONS * SESSION_DIAG_WIDTH * 8;

/** The shared buffers of this file, made by the control plane and handed to the worker. */
export interface StatusBuffers {
  hello: SharedArrayBuffer;
  signal: SharedArrayBuffer;
  tunnelDiag: SharedArrayBuffer;
  sessionDiag: SharedArrayBuffer;
  /** Per-session transmit state (layout.ts SessionTx): seeded by the control plane, kept by the worker. */
  sessionTx: SharedArrayBuffer;
}

export function allocateStatusBuffers(): StatusBuffers {
  return {
    hello: new SharedArrayBuffer(HELLO_STATUS_BYTES),
    signal: new SharedArrayBuffer(SIGNAL_BYTES),
    tunnelDiag: new SharedArrayBuffer(TUNNEL_DIAG_BYTES),
    sessionDiag: new SharedArrayBuffer(SESSION_DIAG_BYTES),
    sessionTx: new SharedArrayBuffer(SESSION_TX_BYTES),
  };
}
