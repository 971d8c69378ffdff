/**
 * L2TPv3 control messages: the header and AVP codec for the messages a static tunnel exchanges
 * (Hello and its acknowledgement), and a check of everything else a peer might send. Rules and
 * sources: docs/liveness.md.
 *
 * Wire format (RFC 3931 §3.2.1, §4.1.1.2, §5.1, §5.4.1):
 *
 *   UDP:             |T L x x S x x x x x x x Ver=3| Length | Control Connection ID | Ns | Nr | AVPs
 *   IP:  0x00000000  |T L x x S x x x x x x x Ver=3| Length | Control Connection ID | Ns | Nr | AVPs
 *
 * T, L and S are 1 on every control message; Length counts from the flags word (never the four
 * zero bytes over IP); the Control Connection ID is the *recipient's* ID. Each AVP is
 * |M H rsvd(4) Length(10)| Vendor ID | Attribute Type | Value, Length ≥ 6. The first AVP of a
 * message is the Message Type AVP (vendor 0, type 0, length 8, never hidden). A message with no
 * AVP at all is a Zero-Length Body (ZLB) acknowledgement (§6.15).
 *
 * decodeControl reads only [start, end), never writes, never throws and never allocates: a
 * malformed message gives a ControlReason. writeControl writes one message in place.
 */

/** Control message types (RFC 3931 §3.1). */
export const enum MessageType {
  /** No AVP at all: a Zero-Length Body acknowledgement (RFC 3931 §6.15). Not on the wire. */
  Zlb = -1,
  Sccrq = 1,
  Sccrp = 2,
  Scccn = 3,
  StopCcn = 4,
  Hello = 6,
  Ocrq = 7,
  Ocrp = 8,
  Occn = 9,
  Icrq = 10,
  Icrp = 11,
  Iccn = 12,
  Cdn = 14,
  Wen = 15,
  Sli = 16,
  /** Explicit Acknowledgement (RFC 3931 §6.15). */
  Ack = 20,
}

/** Names of the message types for logs and diagnostics (index = type). */
export const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  [-1]: 'ZLB', 1: 'SCCRQ', 2: 'SCCRP', 3: 'SCCCN', 4: 'StopCCN', 6: 'HELLO', 7: 'OCRQ', 8: 'OCRP', 9: 'OCCN',
  10: 'ICRQ', 11: 'ICRP', 12: 'ICCN', 14: 'CDN', 15: 'WEN', 16: 'SLI', 20: 'ACK',
};

/** The name of a message type, or `type N` for one RFC 3931 does not define. */
export function messageTypeName(type: number): string {
  return MESSAGE_TYPE_NAMES[type] ?? `type ${type}`;
}

/** Attribute types l2tpd looks at (RFC 3931 §5.4.1, §5.4.3). */
export const enum AvpType {
  MessageType = 0,
  RandomVector = 36,
  MessageDigest = 59,
}

/** flags/version word of every control message l2tpd sends: T, L, S set, Ver 3. */
export const CONTROL_FLAGS = 0xc803;
export const CONTROL_T_BIT = 0x8000;
export const CONTROL_L_BIT = 0x4000;
export const CONTROL_S_BIT = 0x0800;
/** flags/version + Length + Control Connection ID + Ns + Nr. */
export const CONTROL_HEADER_LEN = 12;
/** The zero session ID in front of a control message over IP (RFC 3931 §4.1.1.2). */
export const IP_CONTROL_PREFIX_LEN = 4;
export const AVP_HEADER_LEN = 6;
export const AVP_M_BIT = 0x8000;
export const AVP_H_BIT = 0x4000;
export const AVP_LENGTH_MASK = 0x03ff;
/** The Message Type AVP: header + 2-byte value. */
export const MESSAGE_TYPE_AVP_LEN = 8;
/** Largest message writeControl produces: IP prefix + header + Message Type AVP. */
export const MAX_CONTROL_MESSAGE_LEN = IP_CONTROL_PREFIX_LEN + CONTROL_HEADER_LEN + MESSAGE_TYPE_AVP_LEN;
/** Ns and Nr are 16-bit (RFC 3931 §4.2). */
export const CONTROL_SEQ_MASK = 0xffff;

/** Why a control message was refused. Every value has a name in CONTROL_REASON_NAMES. */
export const enum ControlReason {
  None = 0,
  /** Fewer bytes than a control header. */
  Short,
  /** T, L or S bit clear (RFC 3931 §3.2.1: they MUST be 1). */
  BadFlags,
  /** Version nibble other than 3. */
  BadVersion,
  /** Length below 12 or beyond the datagram. */
  BadLength,
  /** An AVP whose length is below 6 or runs past the message, or a malformed Message Type AVP. */
  BadAvp,
  /** The first AVP is not the Message Type AVP (RFC 3931 §5.4.1: it MUST be first). */
  NoMessageType,
  /** A Hello or ACK with an AVP l2tpd does not know and whose M bit is set (RFC 3931 §5.2). */
  UnknownMandatoryAvp,
}
export const CONTROL_REASON_COUNT = 8;

/** Names for logs, diagnostics and metric labels, indexed by ControlReason. */
export const CONTROL_REASON_NAMES: readonly string[] = [
  'none', 'short', 'bad_flags', 'bad_version', 'bad_length', 'bad_avp', 'no_message_type', 'unknown_mandatory_avp',
];

/** Reusable result of decodeControl. Numeric fields only. */
export class ControlMessage {
  /** Control Connection ID (uint32): the recipient's tunnel ID. */
  ccid = 0;
  ns = 0;
  nr = 0;
  /** Length field: bytes from the flags word to the end of the message. */
  length = 0;
  /** Message type value, or MessageType.Zlb. */
  messageType: number = MessageType.Zlb;
  /** Vendor ID of the Message Type AVP (0 = IETF; anything else is a vendor-specific message). */
  messageVendor = 0;
  /** 1 when the Message Type AVP had its M bit set. */
  messageMandatory = 0;
  /** 1 when the message carries a Message Digest AVP (the peer authenticates control messages). */
  hasDigest = 0;
  /** AVPs in the message (0 for a ZLB). */
  avpCount = 0;
  /** With BadAvp/UnknownMandatoryAvp: vendor << 16 | attribute type of the AVP at fault. */
  badAvp = 0;
}

function be16(b: Uint8Array, p: number): number {
  return (b[p] << 8) | b[p + 1];
}

function be32(b: Uint8Array, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

/**
 * Decode the control message whose flags word is at `start` (over IP: after the zero session
 * ID) and which may use the bytes up to `end` (exclusive). Bytes after Length are ignored. For a
 * Hello or an ACK every AVP is checked (an unknown one with the M bit set refuses the message, an
 * unknown one without it is skipped); for other types only the AVP boundaries are checked,
 * since l2tpd drops those messages anyway.
 */
export function decodeControl(pool: Uint8Array, start: number, end: number, out: ControlMessage): ControlReason {
  out.ccid = 0;
  out.ns = 0;
  out.nr = 0;
  out.length = 0;
  out.messageType = MessageType.Zlb;
  out.messageVendor = 0;
  out.messageMandatory = 0;
  out.hasDigest = 0;
  out.avpCount = 0;
  out.badAvp = 0;
  if (start < 0 || end > pool.length || end - start < CONTROL_HEADER_LEN) return ControlReason.Short;
  const flags = be16(pool, start);
  const need = CONTROL_T_BIT | CONTROL_L_BIT | CONTROL_S_BIT;
  if ((flags & need) !== need) return ControlReason.BadFlags;
  if ((flags & 0x000f) !== 3) return ControlReason.BadVersion;
  const length = be16(pool, start + 2);
  if (length < CONTROL_HEADER_LEN || length > end - start) return ControlReason.BadLength;
  out.length = length;
  out.ccid = be32(pool, start + 4);
  out.ns = be16(pool, start + 8);
  out.nr = be16(pool, start + 10);
  const stop = start + length;
  let p = start + CONTROL_HEADER_LEN;
  if (p === stop) return ControlReason.None; // ZLB
  // The Message Type AVP, first and exactly 8 bytes long, not hidden.
  if (stop - p < AVP_HEADER_LEN) return bad(out, ControlReason.BadAvp, 0xffffffff);
  let w = be16(pool, p);
  let alen = w & AVP_LENGTH_MASK;
  let vendor = be16(pool, p + 2);
  let type = be16(pool, p + 4);
  if (alen < AVP_HEADER_LEN || alen > stop - p) return bad(out, ControlReason.BadAvp, (vendor << 16) | type);
  if (type !== AvpType.MessageType) return bad(out, ControlReason.NoMessageType, (vendor << 16) | type);
  if (alen !== MESSAGE_TYPE_AVP_LEN || (w & AVP_H_BIT) !== 0) return bad(out, ControlReason.BadAvp, (vendor << 16) | type);
  out.messageVendor = vendor;
  out.messageType = be16(pool, p + 6);
  out.messageMandatory = (w & AVP_M_BIT) !== 0 ? 1 : 0;
  out.avpCount = 1;
  p += alen;
  const checked = vendor === 0 && (out.messageType === MessageType.Hello || out.messageType === MessageType.Ack);
  while (p < stop) {
    if (stop - p < AVP_HEADER_LEN) return bad(out, ControlReason.BadAvp, 0xffffffff);
    w = be16(pool, p);
    alen = w & AVP_LENGTH_MASK;
    vendor = be16(pool, p + 2);
    type = be16(pool, p + 4);
    if (alen < AVP_HEADER_LEN || alen > stop - p) return bad(out, ControlReason.BadAvp, (vendor << 16) | type);
    out.avpCount++;
    if (vendor === 0 && type === AvpType.MessageDigest) out.hasDigest = 1;
    else if (checked && (w & AVP_M_BIT) !== 0 && !(vendor === 0 && type === AvpType.RandomVector)) {
      return bad(out, ControlReason.UnknownMandatoryAvp, (vendor << 16) | type);
    }
    p += alen;
  }
  return ControlReason.None;
}

function bad(out: ControlMessage, reason: ControlReason, avp: number): ControlReason {
  out.badAvp = avp >>> 0;
  return reason;
}

/**
 * Write a control message at `at`: over IP (`ip` true) the four zero bytes first. `messageType`
 * MessageType.Zlb writes a header-only ZLB; any other value one Message Type AVP with the M bit
 * set (RFC 3931 §5.4.1: M is 1 for every type it defines). Returns the bytes written, or -1
 * when they do not fit before `limit` (nothing is written then). Allocates nothing, given a
 * `ccid` of int32 range: pass `id | 0` (a uint32 of 2^31 or more is a heap number per call).
 */
export function writeControl(
  pool: Uint8Array, at: number, limit: number, ip: boolean, ccid: number, ns: number, nr: number, messageType: number,
): number {
  const prefix = ip ? IP_CONTROL_PREFIX_LEN : 0;
  const length = CONTROL_HEADER_LEN + (messageType === MessageType.Zlb ? 0 : MESSAGE_TYPE_AVP_LEN);
  const total = prefix + length;
  if (at < 0 || limit > pool.length || limit - at < total) return -1;
  let p = at;
  if (ip) {
    pool[p] = 0; pool[p + 1] = 0; pool[p + 2] = 0; pool[p + 3] = 0;
    p += 4;
  }
  pool[p] = CONTROL_FLAGS >>> 8;
  pool[p + 1] = CONTROL_FLAGS & 0xff;
  pool[p + 2] = length >>> 8;
  pool[p + 3] = length & 0xff;
  pool[p + 4] = (ccid >>> 24) & 0xff;
  pool[p + 5] = (ccid >>> 16) & 0xff;
  pool[p + 6] = (ccid >>> 8) & 0xff;
  pool[p + 7] = ccid & 0xff;
  pool[p + 8] = (ns >>> 8) & 0xff;
  pool[p + 9] = ns & 0xff;
  pool[p + 10] = (nr >>> 8) & 0xff;
  pool[p + 11] = nr & 0xff;
  if (messageType !== MessageType.Zlb) {
    const q = p + CONTROL_HEADER_LEN;
    pool[q] = AVP_M_BIT >>> 8; // M = 1, H = 0, length 8
    pool[q + 1] = MESSAGE_TYPE_AVP_LEN;
    pool[q + 2] = 0; // vendor 0 (IETF)
    pool[q + 3] = 0;
    pool[q + 4] = 0; // attribute type 0: Message Type
    pool[q + 5] = 0;
    pool[q + 6] = (messageType >>> 8) & 0xff;
    pool[q + 7] = messageType & 0xff;
  }
  return total;
}
