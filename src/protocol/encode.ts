/**
 * Transmit side: a per-session header template built once at config time, and an
 * allocation-free function that writes it in place in front of a frame in the packet pool.
 *
 * Wire format (docs/protocol.md "Data packets", "Offset padding"):
 *   UDP: 00 03 00 00 | peer session id (BE32) | cookie (0/4/8, as-is) | [L2SS] | [offset zeros]
 *   IP:                peer session id (BE32) | cookie (0/4/8, as-is) | [L2SS] | [offset zeros]
 * L2SS (default sublayer) = 0x40000000 | ns when sequencing, else 0x00000000.
 * The offset padding is written as zeros on every packet (QEMU sends uninitialised memory).
 */
import {
  L2SS_LEN,
  L2SS_S_BIT,
  L2SpecKind,
  MAX_OFFSET,
  SEQ_MASK,
} from './constants.js';
import type { WireEncap } from './encap.js';

export interface TxTemplateConfig {
  /** UDP_WIRE or IP_WIRE: what goes in front of the session ID. */
  encap: WireEncap;
  /** The session id the peer assigned (non-zero, 32-bit). */
  peerSessionId: number;
  /** Cookie we send, 0, 4 or 8 bytes, put on the wire as-is. */
  cookie: Uint8Array;
  l2spec: 'none' | 'default';
  /** Zero padding bytes after the sublayer, 0..256 (legacy/QEMU `offset`). */
  offset: number;
}

export interface TxTemplate {
  /** The complete header for this session, with a zero L2SS. Never modified after build. */
  readonly bytes: Uint8Array;
  /** bytes.length. */
  readonly length: number;
  /** Offset of the L2SS word inside the header, or -1 when l2spec is none. */
  readonly l2ssOffset: number;
}

/**
 * Build the header template of a session (config time; allocates; throws RangeError on a
 * value no validated config can contain).
 */
export function buildTxTemplate(cfg: TxTemplateConfig): TxTemplate {
  const sid = cfg.peerSessionId;
  if (!Number.isInteger(sid) || sid < 1 || sid > 0xffffffff) {
    throw new RangeError(`peerSessionId: ${sid} is not an integer in 1..4294967295`);
  }
  const cookieLen = cfg.cookie.length;
  if (cookieLen !== 0 && cookieLen !== 4 && cookieLen !== 8) {
    throw new RangeError(`cookie: ${cookieLen} bytes, allowed 0, 4 or 8`);
  }
  const l2spec = cfg.l2spec === 'default' ? L2SpecKind.Default : cfg.l2spec === 'none' ? L2SpecKind.None : -1;
  if (l2spec === -1) throw new RangeError(`l2spec: ${String(cfg.l2spec)} is not none or default`);
  const offset = cfg.offset;
  if (!Number.isInteger(offset) || offset < 0 || offset > MAX_OFFSET) {
    throw new RangeError(`offset: ${offset} is not an integer in 0..${MAX_OFFSET}`);
  }

  const sidPos = cfg.encap.prefix.length;
  const cookiePos = sidPos + 4;
  const l2ssPos = cookiePos + cookieLen;
  const length = l2ssPos + (l2spec === L2SpecKind.Default ? L2SS_LEN : 0) + offset;
  const bytes = new Uint8Array(length);
  bytes.set(cfg.encap.prefix, 0);
  writeBe32(bytes, sidPos, sid);
  bytes.set(cfg.cookie, cookiePos);
  return {
    bytes,
    length,
    l2ssOffset: l2spec === L2SpecKind.Default ? l2ssPos : -1,
  };
}

/**
 * Hot path. Write `tpl` in front of the frame at `frameStart`, so the header occupies
 * [frameStart - tpl.length, frameStart). With a default sublayer, writes `0x40000000 | seq`
 * when seq >= 0 and 0 when seq is -1 (S=0). Returns the header start, or -1 when the headroom
 * in front of the frame is too small (nothing is written then). Allocates nothing.
 */
export function writeHeader(pool: Uint8Array, frameStart: number, tpl: TxTemplate, seq: number): number {
  const len = tpl.length;
  const start = frameStart - len;
  if (start < 0 || frameStart > pool.length) return -1;
  const src = tpl.bytes;
  for (let i = 0; i < len; i++) pool[start + i] = src[i];
  const l2ss = tpl.l2ssOffset;
  if (l2ss >= 0) {
    const p = start + l2ss;
    if (seq >= 0) {
      pool[p] = 0x40; // S bit; bits 24..29 stay 0
      pool[p + 1] = (seq >>> 16) & 0xff;
      pool[p + 2] = (seq >>> 8) & 0xff;
      pool[p + 3] = seq & 0xff;
    } else {
      pool[p] = 0;
      pool[p + 1] = 0;
      pool[p + 2] = 0;
      pool[p + 3] = 0;
    }
  }
  return start;
}

/** Next transmit sequence number: (ns + 1) mod 2^24. New sessions start at 0 (RFC 3931 §4.6). */
export function nextSeq(ns: number): number {
  return (ns + 1) & SEQ_MASK;
}

/** The L2SS word for a sequence number (-1 = S=0), as writeHeader puts it on the wire. */
export function l2ssWord(seq: number): number {
  return seq >= 0 ? (L2SS_S_BIT | (seq & SEQ_MASK)) >>> 0 : 0;
}

function writeBe32(b: Uint8Array, p: number, v: number): void {
  b[p] = (v >>> 24) & 0xff;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}
