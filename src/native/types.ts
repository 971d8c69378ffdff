/**
 * The typed face of native-bindings/ (C++, node-addon-api). The addon does syscalls and loops
 * only; all L2TPv3 knowledge lives in TypeScript. It is context-aware: load it in the main
 * thread (control plane: open/close fds) and in the data-plane worker (I/O and readiness).
 *
 * Split by who uses it: `Setup` is the control plane's (taps, sockets, path MTU, wake fds);
 * `PacketIo` and `Readiness` are all the forwarder needs; `SliceControl` is the worker's loop;
 * `ServiceProcess` is the daemon's (service notifications, thread names).
 *
 * Conventions:
 * - Set-up calls (open, bind, setsockopt) throw an Error with `code` (e.g. 'EADDRINUSE'),
 *   `errno` (positive number) and `syscall` properties.
 * - Hot-path calls never throw for I/O errors: they return a count >= 0, or -errno.
 *   EAGAIN with nothing done returns 0.
 * - Packet memory is the SharedArrayBuffer pool attached with attachPool(); every offset is
 *   an absolute byte offset into that pool.
 */

/**
 * One integer socket option, set with setsockopt(level, name, value) after the socket is made
 * and before it is bound. `label` names it in errors ('IP_TTL'). The addon knows no option by
 * name: src/native/sockopt.ts holds the numbers, so a new option needs no addon change.
 */
export interface IntSocketOption {
  level: number;
  name: number;
  value: number;
  label: string;
}

export interface SocketOptions {
  /** SO_RCVBUFFORCE / SO_SNDBUFFORCE (falls back to SO_RCVBUF/SO_SNDBUF). Bytes. */
  rcvbuf?: number;
  sndbuf?: number;
  /** Set in order; the first that fails closes the socket and throws, naming its label. */
  options?: readonly IntSocketOption[];
}

export interface TapHandle {
  fd: number;
  /** The name the kernel gave (resolves l2tpeth%d). */
  name: string;
  /**
   * IFF_VNET_HDR with checksum and TCP segmentation offload (TUNSETOFFLOAD CSUM|TSO4|TSO6|
   * TSO_ECN) is on: every read and write carries a virtio_net_hdr; pass offload = true to
   * readBatch and writeBatch for this fd.
   */
  offload: boolean;
}

/** Events for pollStart and its callback. */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

/** Per-message stride (in Uint32 words) of the `sources` array filled by recvBatch. */
export const SOURCE_STRIDE = 5;

/** Control plane: opening and closing taps and sockets. Throw on error. */
export interface Setup {
  /**
   * Open (or attach to a persistent) tap: IFF_TAP|IFF_NO_PI, non-blocking, close-on-exec.
   * `offload` asks for IFF_VNET_HDR + TSO; a kernel that refuses it gives a plain tap
   * (result.offload false). Without it, offloads an earlier run left on the device are cleared.
   */
  tapOpen(name: string, persist: boolean, offload?: boolean): TapHandle;
  /** TUNSETPERSIST on an open tap fd. */
  tapSetPersist(fd: number, persist: boolean): void;
  /** TUNSETCARRIER on an open tap fd: the link shows NO-CARRIER while off (frames written still arrive). */
  tapSetCarrier(fd: number, on: boolean): void;

  /**
   * UDP socket bound to localAddress:localPort, non-blocking, IP_PMTUDISC_DONT (the kernel
   * fragments oversized outer packets), large buffers. Not connected.
   */
  udpOpen(family: 4 | 6, localAddress: string, localPort: number, opts: SocketOptions): number;
  /** Raw IP socket for `protocol` (115) bound to localAddress, non-blocking, PMTUDISC_DONT. */
  rawOpen(family: 4 | 6, localAddress: string, protocol: number, opts: SocketOptions): number;
  close(fd: number): void;
  /** Path MTU towards remoteAddress (route MTU): connected UDP socket + IP_MTU / IPV6_MTU. */
  pathMtu(family: 4 | 6, remoteAddress: string): number;
  /** Bound local port of a socket (getsockname). */
  localPort(fd: number): number;
  /** A non-blocking eventfd for SliceControl.pollWake; close it with close(). */
  wakeOpen(): number;
  /** Signal a wake fd (from any thread). */
  wakeSignal(fd: number): void;
  /**
   * One integer setsockopt(fd, level, name, value) on a socket opened elsewhere (src/netlink's
   * monitor socket belongs to the netlink package). Throws the errno Error (syscall
   * 'setsockopt', e.g. code 'EPERM', 'ENOPROTOOPT', 'EBADF'); RangeError when fd, level or name
   * is negative or value is not a 32-bit integer.
   */
  setSockoptInt(fd: number, level: number, name: number, value: number): void;
}

/** The data plane's packet I/O on the shared pool. Never throws for I/O errors (see above). */
export interface PacketIo {
  /** Pin the pool for this thread; must be called before any batch call in that thread. */
  attachPool(pool: SharedArrayBuffer): void;
  /**
   * Destination table for sendBatch, per thread: peerId -> sockaddr. Pass port 0 for a raw
   * socket: raw IPv6 reads sin6_port as the protocol and refuses any other value (EINVAL).
   */
  setPeer(peerId: number, family: 4 | 6, address: string, port: number): void;

  /**
   * recvmmsg(MSG_DONTWAIT|MSG_TRUNC) of up to `count` datagrams. Message i lands at
   * offsets[i] with room for `capacity` bytes. lengths[i] = the datagram's real length
   * (greater than capacity when it was truncated). sources[i*SOURCE_STRIDE ..]:
   * [family<<16 | port, addr word 0, 1, 2, 3] with address words in network byte order read
   * as big-endian numbers (IPv4 uses word 0 only, the rest 0).
   */
  recvBatch(fd: number, offsets: Uint32Array, capacity: number, count: number,
            lengths: Int32Array, sources: Uint32Array): number;
  /**
   * sendmmsg of messages first..first+count-1: bytes at offsets[i], lengths[i], to the peer
   * registered as peers[i]. Returns how many were sent (short on EAGAIN) or -errno if none.
   */
  sendBatch(fd: number, offsets: Uint32Array, lengths: Uint32Array, peers: Uint32Array,
            first: number, count: number): number;
  /**
   * Tap drain: read() up to `count` frames (until EAGAIN) into offsets[i] (room `capacity`).
   * lengths[i] >= capacity: the frame may not have fitted (cut short, or not copied at all).
   * offload (a tap opened with offload): checksums the kernel left open are completed and TCP
   * super-frames are cut into segments, one slot each; another read starts only while
   * GSO_MAX_SEGS slots are left. lengths[i] < 0: a frame read but dropped (-EINVAL: headers not
   * as the virtio header said; -EMSGSIZE: more segments than slots).
   */
  readBatch(fd: number, offsets: Uint32Array, capacity: number, count: number, lengths: Int32Array, offload: boolean): number;
  /**
   * Tap write: one write() per frame first..first+count-1; stops at EAGAIN. Returns frames
   * processed or -errno if none. A frame the tap refused (EIO when down, EINVAL) is processed
   * and marked lengths[j] = -errno. offload: a virtio header in front of each write, and runs of
   * one TCP flow merged into one super-frame. A frame written alone gets its header in the 10
   * bytes in front of it, which must be scratch (offsets[j] < 10: -EINVAL).
   */
  writeBatch(fd: number, offsets: Uint32Array, lengths: Int32Array, first: number, count: number, offload: boolean): number;
  /**
   * out[0] = wall clock (ms since the epoch), out[1] = monotonic clock (ms). Fills the caller's
   * array because Date.now() and performance.now() allocate a heap number per call.
   */
  readClock(out: Float64Array): void;
}

/** Readiness of the fds the forwarder serves, on the calling thread's loop. */
export interface Readiness {
  /**
   * Level-triggered readiness on the calling thread's loop (one epoll set per thread, watched by
   * libuv). `events` is a POLL_* mask; calling again for the same fd changes the mask (and
   * callback). The callback gets (fd, events, ready) once per readiness; `ready` is how many fds
   * the same wake (one epoll_wait) reported, so a callback can tell a busy wake from a lone fd
   * (an upper bound: it counts the loop's wake fd and fds paused by an earlier callback). The
   * callbacks of one wake share one callback scope: promises they settle run after all of them.
   */
  pollStart(fd: number, events: number, callback: PollCallback): void;
  pollStop(fd: number): void;
  /** Stop the callbacks for fd but keep its handle: the next pollStart only re-arms it. */
  pollPause(fd: number): void;
  /**
   * A callback run once after the fd callbacks of each wake (one epoll_wait), before the next
   * wait (null: none). What the callbacks gathered, e.g. datagrams for one socket from many taps,
   * can leave in one call per wake. One per thread: a second registration replaces the first
   * (the data plane's forwarder is its one user).
   */
  pollEnd(callback: (() => void) | null): void;
}

/** A readiness callback: fd, POLL_* events, and how many fds the same wake reported. */
export type PollCallback = (fd: number, events: number, ready: number) => void;

/** How the data-plane worker's loop serves readiness. */
export interface SliceControl {
  /**
   * How long (ms, 0..1000) one readiness callback may go on serving the set before it returns to
   * libuv; it returns earlier when a libuv timer is due, setImmediate is pending, the wake fd is
   * signalled or nothing is ready for the rest of the slice. 0 (default): one batch per turn.
   * Every libuv turn allocates on the JS heap inside Node; the data plane's slice avoids them.
   */
  pollSlice(ms: number): void;
  /** Register an eventfd from Setup.wakeOpen: signalling it ends the current slice. One per thread. */
  pollWake(fd: number): void;
}

/** The daemon's process: service-manager notifications and thread names. Throw on error. */
export interface ServiceProcess {
  /**
   * One sd_notify(3) datagram (`READY=1`, `WATCHDOG=1`, ... newline-separated) to the service
   * manager's socket: an absolute path, or `@name` in the abstract namespace. Non-blocking;
   * throws (EAGAIN when the manager's queue is full, ECONNREFUSED, ENOENT, ...).
   */
  notifySend(socket: string, message: string): void;
  /** PR_SET_NAME for the calling thread: what ps, top -H and /proc/PID/task/TID/comm show (1..15 bytes). */
  setThreadName(name: string): void;
}

/** Kernel requests that take long inside the kernel, made from a libuv pool thread. */
export interface KernelRequests {
  /**
   * Send one complete rtnetlink message (nlmsghdr with NLM_F_REQUEST|NLM_F_ACK; nlmsg_len its
   * length) on a socket of its own, and resolve with its acknowledgement's error: 0, or a negative
   * errno. The kernel carries a request out inside the sendmsg() that delivers it, which here
   * waits on the pool thread, not on the caller's. Rejects (code, errno) when a socket call fails.
   */
  netlinkAck(message: Buffer): Promise<number>;
}

/** What the forwarder is given: packet I/O and readiness, nothing that opens or closes. */
export type ForwarderIo = PacketIo & Readiness;

/** The whole addon, as loaded in each thread. */
export type NativeAddon = Setup & PacketIo & Readiness & SliceControl & ServiceProcess & KernelRequests;
