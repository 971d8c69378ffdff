/**
 * The forwarder's side of the addon for tests: the real ForwarderIo interface, checked by the
 * compiler, over the real pool and without syscalls. Polls are recorded (callback and mask per
 * fd) so a test can fire readiness with fire(); the clock is a pair of fields; the batch calls
 * move nothing (no datagram, no frame; sends and tap writes are all taken) until a test's
 * subclass says what they do. No method allocates, so the allocation test can build on it.
 */
import type { ForwarderIo, PollCallback } from '../../src/native/index.js';

export type { PollCallback };

/** A recvBatch source entry (ForwarderIo.recvBatch): an IPv4 address, as a big-endian number, and a port. */
export function ipv4Source(address: number, port: number): Uint32Array {
  return Uint32Array.of((4 << 16) | port, address >>> 0, 0, 0, 0);
}

/** 192.0.2.2, the peer of the forwarder's tests, as an IPv4 source address. */
export const PEER_V4 = ((192 << 24) | (2 << 8) | 2) >>> 0;
/** Datagrams from PEER_V4 port 1701. */
export const PEER_SOURCE = ipv4Source(PEER_V4, 1701);

export class FakeIo implements ForwarderIo {
  /** The pool, as attached by the forwarder. */
  bytes: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  /** The last callback and event mask registered per fd (0 once stopped or paused). */
  readonly callbacks = new Map<number, PollCallback>();
  readonly events = new Map<number, number>();
  /** What readClock reports: wall clock and monotonic clock (ms). */
  wallMs = 0;
  monoMs = 0;

  attachPool(pool: SharedArrayBuffer): void { this.bytes = new Uint8Array(pool); }
  setPeer(_peerId: number, _family: 4 | 6, _address: string, _port: number): void { /* no table to fill */ }
  readClock(out: Float64Array): void {
    out[0] = this.wallMs;
    out[1] = this.monoMs;
  }

  recvBatch(_fd: number, _offsets: Uint32Array, _capacity: number, _count: number, _lengths: Int32Array, _sources: Uint32Array): number {
    return 0;
  }
  sendBatch(_fd: number, _offsets: Uint32Array, _lengths: Uint32Array, _peers: Uint32Array, _first: number, count: number): number {
    return count;
  }
  readBatch(_fd: number, _offsets: Uint32Array, _capacity: number, _count: number, _lengths: Int32Array, _offload: boolean): number {
    return 0;
  }
  writeBatch(_fd: number, _offsets: Uint32Array, _lengths: Int32Array, _first: number, count: number, _offload: boolean): number {
    return count;
  }

  pollStart(fd: number, events: number, callback: PollCallback): void {
    this.callbacks.set(fd, callback);
    this.events.set(fd, events);
  }
  pollStop(fd: number): void { this.events.set(fd, 0); }
  pollPause(fd: number): void { this.events.set(fd, 0); }
  /** What runs after each wake's callbacks (pollEnd). */
  endCallback: (() => void) | null = null;
  pollEnd(callback: (() => void) | null): void { this.endCallback = callback; }

  /** A wake that finds `fd` ready alone, as the loop would report it: its callback, then pollEnd's. */
  fire(fd: number, events: number): void {
    this.callbacks.get(fd)!(fd, events, 1);
    this.endCallback?.();
  }

  /**
   * A wake that finds several fds ready (one epoll_wait): each one's callback in order, skipping
   * any paused or stopped by an earlier one as the addon does, then pollEnd's.
   */
  fireWake(ready: ReadonlyArray<readonly [fd: number, events: number]>): void {
    for (const [fd, events] of ready) {
      const armed = this.events.get(fd) ?? 0;
      if ((armed & events) !== 0) this.callbacks.get(fd)!(fd, armed & events, ready.length);
    }
    this.endCallback?.();
  }
}
