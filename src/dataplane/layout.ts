/**
 * Shared-memory layout of the data plane: the packet pool and the sizes of the tables (the
 * counter rows are in counters.ts). Both the control plane (main thread) and the data plane
 * (worker) import this file, so every value here is part of the contract between them.
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
 * Per-session transmit state, an Int32Array row of SESSION_TX_WIDTH in shared memory. The
 * control plane seeds a row when it starts a session (the number to resume at, the configured
 * sequencing); the worker keeps it current and never resets it, so a session re-added for a new
 * tap fd carries on; the control plane reads it to persist the numbering and to notice the peer
 * switching sequencing (docs/sequencing.md "Sending").
 */
export const enum SessionTx {
  /** The next sequence number to send (0..2^24-1). */
  NextSeq = 0,
  /** 1 while frames go out numbered: `seq send|both`, or switched by the peer's S bit. */
  Numbering,
  /** How often the peer's S bit switched Numbering (int32, wraps; compare differences). */
  Switches,
}
export const SESSION_TX_WIDTH = 4;
export const SESSION_TX_BYTES = MAX_SESSIONS * SESSION_TX_WIDTH * 4;

/**
 * Seed a session's row before it is added: the next number to send and whether it starts out
 * numbered (its configured `seq`); the switch count starts at 0.
 */
export function seedSessionTx(state: Int32Array, slot: number, nextSeq: number, numbered: boolean): void {
  const row = slot * SESSION_TX_WIDTH;
  state[row + SessionTx.NextSeq] = nextSeq;
  state[row + SessionTx.Numbering] = numbered ? 1 : 0;
  state[row + SessionTx.Switches] = 0;
}
