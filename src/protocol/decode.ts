/**
 * Receive side, in two allocation-free stages around the session lookup (RFC 3931 §4.1: "The
 * Session ID alone provides the necessary context for all further packet processing"):
 *
 *   const r = UDP_WIRE.decodeCommon(pool, start, length, false, out);  // or IP_WIRE (encap.ts)
 *   if (r !== DropReason.None) count(r);                 // tunnel-level reason
 *   else { const s = lookup(out.sessionId);              // data plane; may give UnknownSession
 *          const r2 = decodeSession(pool, out, s.rx, out.end);
 *          ... out.frameStart / out.frameLength / out.hasSeq / out.seq ... }
 *
 * Both stages read only bytes in [start, start + length), never write, never throw and never
 * allocate: malformed input yields a DropReason. `out` is a caller-owned, reused DecodeResult.
 *
 * Receive policy (where the sources disagree, l2tpd follows the RFC):
 * - UDP: fewer than 8 bytes → ShortPacket. T bit → Control (checked first, like Linux).
 *   Version nibble ≠ 3 → BadVersion. RFC 3931 says to check it; Linux parses every version other
 *   than 2 as v3 (then counts rx_invalid if the session exists) and QEMU never looks at it.
 *   The x bits and the Reserved field are ignored on receive, as the RFC requires.
 *   Session ID 0 → UnknownSession: 0 is reserved and no session can be configured with it, so
 *   the data plane would not find it anyway; deciding here keeps the lookup free of the case.
 * - IP: fewer than 4 bytes → ShortPacket. Session ID 0 → Control (control over IP, RFC 3931 §4.1.1.2).
 * - Raw IPv4 receive (ipv4HeaderIncluded): the datagram starts with the IPv4 header. Version ≠ 4,
 *   IHL < 5 or IHL*4 > length → BadIpHeader. The header length is read from IHL, never
 *   assumed to be 20 (QEMU assumes 20). `out.ipv4Src` carries the source for the peer check.
 * - Session stage: no room for cookie + L2SS + peer offset → ShortPacket (Linux: rx_invalid);
 *   cookie bytes ≠ peer cookie → CookieMismatch; fewer than 14 bytes left → ShortFrame.
 */
import {
  DropReason,
  ETH_HEADER_LEN,
  IP_SESSION_HEADER_LEN,
  IPV4_MIN_HEADER_LEN,
  L2SS_LEN,
  L2SpecKind,
  L2TP_VERSION_3,
  MAX_OFFSET,
  SEQ_MASK,
  T_BIT,
  UDP_SESSION_HEADER_LEN,
  VERSION_MASK,
} from './constants.js';

/** Reusable result of decodeCommon/decodeSession. Numeric fields only. */
export class DecodeResult {
  /** Session ID (uint32). Valid after decodeCommon returns None. */
  sessionId = 0;
  /** Offset of the L2TP header (after the IPv4 header on raw receive). rx_bytes = end - l2tpStart. */
  l2tpStart = 0;
  /** Offset just after the session ID. */
  pos = 0;
  /** start + length of the datagram: the exclusive end of the readable window. */
  end = 0;
  /** Raw IPv4 only: source address from the IPv4 header as uint32, else 0. */
  ipv4Src = 0;
  /** Raw IPv4 only: header length read from IHL, else 0. */
  ipHeaderLength = 0;
  /** 1 when the default L2SS had the S bit set, else 0. */
  hasSeq = 0;
  /** Sequence number (24-bit) when hasSeq, else 0. */
  seq = 0;
  /** The Ethernet frame: [frameStart, frameStart + frameLength). Valid after decodeSession → None. */
  frameStart = 0;
  frameLength = 0;

}

/** What the receiver of a session expects, as configured; makeRxContext turns it into an RxContext. */
export interface RxParams {
  /** Cookie expected from the peer, 0, 4 or 8 bytes (its `cookie`, our `peer_cookie`). */
  readonly peerCookie: Uint8Array;
  readonly l2spec: 'none' | 'default' | L2SpecKind;
  /** Bytes skipped after the sublayer (legacy/QEMU offset), 0..256. */
  readonly peerOffset: number;
}

/** What decodeSession checks after the session ID: numbers only, built once per session. */
export interface RxContext {
  readonly peerCookie: Uint8Array;
  /** L2SS_LEN with the default sublayer, 0 without. */
  readonly sublayerLength: number;
  readonly peerOffset: number;
}

/** Validate a session's receive parameters and build its RxContext (config time; RangeError on invalid values). */
export function makeRxContext(cfg: RxParams): RxContext {
  const n = cfg.peerCookie.length;
  if (n !== 0 && n !== 4 && n !== 8) throw new RangeError(`peerCookie: ${n} bytes, allowed 0, 4 or 8`);
  const l2spec = isDefaultL2Spec(cfg.l2spec) ? L2SpecKind.Default
    : cfg.l2spec === 'none' || cfg.l2spec === L2SpecKind.None ? L2SpecKind.None : -1;
  if (l2spec === -1) throw new RangeError(`l2spec: ${String(cfg.l2spec)} is not none or default`);
  const off = cfg.peerOffset;
  if (!Number.isInteger(off) || off < 0 || off > MAX_OFFSET) {
    throw new RangeError(`peerOffset: ${off} is not an integer in 0..${MAX_OFFSET}`);
  }
  return { peerCookie: Uint8Array.from(cfg.peerCookie), sublayerLength: l2spec === L2SpecKind.Default ? L2SS_LEN : 0, peerOffset: off };
}

function isDefaultL2Spec(l2spec: 'none' | 'default' | L2SpecKind): boolean {
  return l2spec === 'default' || l2spec === L2SpecKind.Default;
}

/** Bytes of L2TPv3 header a session expects after the session id (cookie + L2SS + offset). */
export function rxSessionHeaderLength(rx: RxContext): number {
  return rx.peerCookie.length + rx.sublayerLength + rx.peerOffset;
}

/**
 * Reset `out` and check the window [start, start + length) against the pool; on a raw IPv4
 * socket (ipv4HeaderIncluded) read past the IPv4 header. On None, out.l2tpStart is where the
 * L2TPv3 header starts and out.end the end of the datagram.
 */
function decodeOuter(pool: Uint8Array, start: number, length: number, ipv4HeaderIncluded: boolean,
  out: DecodeResult): DropReason {
  out.hasSeq = 0;
  out.seq = 0;
  out.frameStart = 0;
  out.frameLength = 0;
  out.sessionId = 0;
  out.ipv4Src = 0;
  out.ipHeaderLength = 0;
  out.l2tpStart = start;
  out.pos = start;
  // Defensive window check: a window outside the pool is an empty packet.
  if (start < 0 || length < 0 || start + length > pool.length) {
    out.end = start;
    return DropReason.ShortPacket;
  }
  out.end = start + length;
  if (ipv4HeaderIncluded) {
    if (length < IPV4_MIN_HEADER_LEN) return DropReason.BadIpHeader;
    const vihl = pool[start];
    const ihl = (vihl & 0x0f) << 2;
    if (vihl >>> 4 !== 4 || ihl < IPV4_MIN_HEADER_LEN || ihl > length) return DropReason.BadIpHeader;
    out.ipHeaderLength = ihl;
    out.ipv4Src = ((pool[start + 12] << 24) | (pool[start + 13] << 16) | (pool[start + 14] << 8) | pool[start + 15]) >>> 0;
    out.l2tpStart = start + ihl;
    out.pos = start + ihl;
  }
  return DropReason.None;
}

/**
 * Stage 1 over UDP: flags/version word, Reserved, session ID. On None: out.sessionId, out.pos
 * (just after the session ID) and out.end are set.
 */
export function decodeUdpCommon(pool: Uint8Array, start: number, length: number, ipv4HeaderIncluded: boolean,
  out: DecodeResult): DropReason {
  const r = decodeOuter(pool, start, length, ipv4HeaderIncluded, out);
  if (r !== DropReason.None) return r;
  let p = out.l2tpStart;
  if (out.end - p < UDP_SESSION_HEADER_LEN) return DropReason.ShortPacket;
  const flags = (pool[p] << 8) | pool[p + 1];
  if ((flags & T_BIT) !== 0) return DropReason.Control;
  if ((flags & VERSION_MASK) !== L2TP_VERSION_3) return DropReason.BadVersion;
  p += 4; // flags/version + Reserved (ignored)
  const sid = ((pool[p] << 24) | (pool[p + 1] << 16) | (pool[p + 2] << 8) | pool[p + 3]) >>> 0;
  out.sessionId = sid;
  out.pos = p + 4;
  return sid === 0 ? DropReason.UnknownSession : DropReason.None;
}

/**
 * Stage 1 over IP protocol 115: the session ID (0: a control message follows). On None:
 * out.sessionId, out.pos (just after the session ID) and out.end (and out.ipv4Src /
 * ipHeaderLength on raw IPv4) are set.
 */
export function decodeIpCommon(pool: Uint8Array, start: number, length: number, ipv4HeaderIncluded: boolean,
  out: DecodeResult): DropReason {
  const r = decodeOuter(pool, start, length, ipv4HeaderIncluded, out);
  if (r !== DropReason.None) return r;
  const p = out.l2tpStart;
  if (out.end - p < IP_SESSION_HEADER_LEN) return DropReason.ShortPacket;
  const sid = ((pool[p] << 24) | (pool[p + 1] << 16) | (pool[p + 2] << 8) | pool[p + 3]) >>> 0;
  out.sessionId = sid;
  out.pos = p + 4;
  return sid === 0 ? DropReason.Control : DropReason.None;
}

/**
 * Stage 2, after the session lookup: cookie, default L2SS (S bit and sequence), peer offset,
 * Ethernet frame bounds. Reads [out.pos, end). On None: out.hasSeq, out.seq, out.frameStart,
 * out.frameLength are set.
 */
export function decodeSession(pool: Uint8Array, out: DecodeResult, rx: RxContext, end: number): DropReason {
  let p = out.pos;
  out.hasSeq = 0;
  out.seq = 0;
  out.frameStart = 0;
  out.frameLength = 0;
  const cookie = rx.peerCookie;
  const cookieLen = cookie.length;
  const l2ssLen = rx.sublayerLength;
  if (end > pool.length || p < 0 || p > end) return DropReason.ShortPacket;
  if (end - p < cookieLen + l2ssLen + rx.peerOffset) return DropReason.ShortPacket;
  for (let i = 0; i < cookieLen; i++) {
    if (pool[p + i] !== cookie[i]) return DropReason.CookieMismatch;
  }
  p += cookieLen;
  if (l2ssLen !== 0) {
    // |x|S|x|x|x|x|x|x| Sequence Number (24) — only S and the number are meaningful.
    if ((pool[p] & 0x40) !== 0) {
      out.hasSeq = 1;
      out.seq = ((pool[p + 1] << 16) | (pool[p + 2] << 8) | pool[p + 3]) & SEQ_MASK;
    }
    p += L2SS_LEN;
  }
  p += rx.peerOffset;
  const frameLength = end - p;
  if (frameLength < ETH_HEADER_LEN) return DropReason.ShortFrame;
  out.frameStart = p;
  out.frameLength = frameLength;
  return DropReason.None;
}
