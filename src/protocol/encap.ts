/**
 * The two encapsulations of L2TPv3 data messages as the codec sees them: what comes before the
 * session ID, and the first receive stage that reads it. Chosen once per tunnel (the data plane's
 * Encapsulation holds one), so nothing on the hot path asks which encapsulation a packet is in.
 */
import { EncapKind, UDP_DATA_WORD } from './constants.js';
import { decodeIpCommon, decodeUdpCommon, type DecodeResult } from './decode.js';
import type { DropReason } from './constants.js';

export interface WireEncap {
  readonly kind: EncapKind;
  /**
   * The L2TPv3 header's bytes in front of the session ID, the same in every data message: UDP's
   * flags/version word (T = 0, version 3) and Reserved; nothing over IP.
   */
  readonly prefix: Uint8Array;
  /** Receive stage 1: outer IPv4 header (raw sockets), data or control, session ID (decode.ts). */
  decodeCommon(pool: Uint8Array, start: number, length: number, ipv4HeaderIncluded: boolean, out: DecodeResult): DropReason;
}

/** L2TPv3 over UDP (RFC 3931 §4.1.2.1). */
export const UDP_WIRE: WireEncap = {
  kind: EncapKind.Udp,
  prefix: Uint8Array.of(UDP_DATA_WORD >>> 24, (UDP_DATA_WORD >>> 16) & 0xff, (UDP_DATA_WORD >>> 8) & 0xff, UDP_DATA_WORD & 0xff),
  decodeCommon: decodeUdpCommon,
};

/** L2TPv3 over IP protocol 115 (RFC 3931 §4.1.1). */
export const IP_WIRE: WireEncap = {
  kind: EncapKind.Ip,
  prefix: new Uint8Array(0),
  decodeCommon: decodeIpCommon,
};
