/**
 * The forwarding core of the data plane: tap -> socket encapsulation and socket -> tap
 * decapsulation on the shared pool. Runs in the data-plane worker; every per-packet step works
 * on preallocated typed arrays and integer offsets (no objects, closures or promises per packet).
 *
 * Ownership: the control plane opens and closes every fd and tells this class which fds belong
 * to which tunnel/session; this class only polls them and moves packets.
 */
import {
  BATCH, DATAGRAM_CAPACITY, FRAME_CAPACITY, GSO_MAX_SEGS, HEADROOM, MAX_SESSIONS, RX_HEADROOM, SESSION_TX_WIDTH, SLOT_COUNT,
  SessionTx as TX,
} from './layout.js';
import {
  HOST_ROW, SESSION_DROP_COUNTER, SESSION_ROW_WIDTH, SessionCounter as S, TUNNEL_DROP_COUNTER,
  TUNNEL_DROP_INVALID, TUNNEL_ROW_WIDTH, TunnelCounter as T,
} from './counters.js';
import { SlotAllocator, slotOffset } from './slots.js';
import { CONTROL_QUEUE_MARK, ControlChannel, MONO, WALL, sourceIs, type ControlHost } from './control-channel.js';
import { DiagRecorder } from './diagnostics.js';
import { SAMPLE_INTERVAL_MS, allocateStatusBuffers, type StatusBuffers } from './status.js';
import { POLL_READABLE, POLL_WRITABLE, SOURCE_STRIDE } from '../native/types.js';
import type { ForwarderIo } from '../native/index.js';
import {
  DecodeResult, DropReason, L2TP_VERSION_3, MAX_CONTROL_MESSAGE_LEN, SeqAction, SequenceState, T_BIT, VERSION_MASK,
  decodeSession, EncapKind, nextSeq, writeControl, writeHeader, type TxTemplate, type RxContext, type WireEncap,
} from '../protocol/index.js';
import { encapOfKind, type Encapsulation } from './encap.js';

/**
 * Session-table key: the id as an int32. Ids of 2^31 and above would otherwise be heap numbers,
 * one allocation per lookup.
 */
function sessionIdKey(sessionId: number): number {
  return sessionId | 0;
}

/** What the control plane sends to add a tunnel. */
export interface TunnelSpec {
  slot: number;
  tunnelId: number;
  /** The tunnel's Encapsulation, by kind (a number survives postMessage; encap.ts). */
  encap: EncapKind;
  family: 4 | 6;
  /** UDP: the tunnel's own socket. IP: the raw socket shared by tunnels on the same local address. */
  fd: number;
  remote: string;
  /** udp_dport for UDP, 0 for IP. */
  remotePort: number;
  /** The connection ID the peer's control messages carry for it (control messages only). */
  peerTunnelId?: number;
  /** hello_interval in ms; 0 or absent: no Hello on this tunnel. */
  helloIntervalMs?: number;
  /** hello_retries. */
  helloRetries?: number;
}

/** A session's words as the data plane uses them, compiled once by the control plane (session-words.ts). */
export interface CompiledSession {
  /** The header written in front of every frame sent (peer session ID, cookie, sublayer, padding). */
  tx: TxTemplate;
  /** What is expected after the session ID of every frame received. */
  rx: RxContext;
  /** Number the frames sent (S bit set) from the start; with seqMirror the peer's S bit may switch it. */
  seqSend: boolean;
  /**
   * Follow the peer's S bit on transmit as a Linux static session does (l2tp_recv_common): a
   * numbered frame turns sending numbers on, an unnumbered one turns it off unless seqRecv.
   */
  seqMirror: boolean;
  /** Drop received frames without a number. */
  seqRecv: boolean;
  /** 0: out-of-order frames are dropped (as Linux); > 0: held this long for reordering. */
  reorderTimeoutMs: number;
}

/** What the control plane sends to add a session. */
export interface SessionSpec extends CompiledSession {
  slot: number;
  tunnelSlot: number;
  sessionId: number;
  tapFd: number;
  /** The tap was opened with offload (TapHandle.offload): reads may bring TCP super-frames. */
  tapOffload: boolean;
  mtu: number;
}

/** Entries a socket's transmit queue can hold: one batch being sent plus backlog. */
const TXQ_CAP = BATCH * 4;
/**
 * Slots offered to one read from an offload tap: a batch, with room kept for a super-frame's
 * segments (the addon starts another read only while GSO_MAX_SEGS slots are left).
 */
const OFFLOAD_BATCH = BATCH + GSO_MAX_SEGS - 1;
/** Batches handled per readiness event before yielding to other fds. */
const ROUNDS = 8;
/** Frames a session may hold for reordering (each holds a pool slot). */
const REORDER_CAPACITY = 32;
/** Tap deliveries one receive batch can queue: a batch plus all one session releases from its reorder queue. */
const DELIVERY_CAPACITY = BATCH + REORDER_CAPACITY + 1;

class SocketState {
  /** What precedes the session ID, and the first receive stage for it. */
  readonly wire: WireEncap;
  readonly ipv4HeaderIncluded: boolean;
  /** By sessionIdKey(session id). */
  readonly sessions = new Map<number, SessionState>();
  /**
   * The same sessions as an array, for pausing and re-arming their taps under backpressure:
   * iterating the Map there made an iterator (garbage) on every block.
   */
  readonly tapSessions: SessionState[] = [];
  /** The tunnel a per-tunnel socket (UDP) serves; null for a raw socket shared by several tunnels. */
  owner: TunnelState | null = null;
  refs = 0;
  blocked = false;
  /** In the forwarder's list of sockets to flush when the current wake ends. */
  flushPending = false;
  /** Poll callback, made once: block/unblock re-register it without allocating a closure. */
  readonly onEvent: (fd: number, events: number) => void;
  // Transmit queue (head..head+count): what was encapsulated but not yet accepted by the kernel.
  readonly qOffsets = new Uint32Array(TXQ_CAP);
  readonly qLengths = new Uint32Array(TXQ_CAP);
  readonly qPeers = new Uint32Array(TXQ_CAP);
  readonly qSlots = new Int32Array(TXQ_CAP);
  readonly qSessions = new Int32Array(TXQ_CAP);
  qHead = 0;
  qCount = 0;

  constructor(readonly fd: number, readonly encap: Encapsulation, readonly family: 4 | 6,
    onEvent: (sock: SocketState, events: number) => void) {
    this.onEvent = (_fd, events): void => onEvent(this, events);
    this.wire = encap.wire;
    this.ipv4HeaderIncluded = encap.ipHeaderOnReceive(family);
  }

  get counterRow(): number {
    return this.owner ? this.owner.slot : HOST_ROW;
  }
}

class TunnelState {
  /** Expected source: (family << 16) | port, then four address words as recvBatch reports them. */
  readonly src = new Uint32Array(SOURCE_STRIDE);
  readonly sessions = new Set<SessionState>();

  constructor(readonly slot: number, readonly tunnelId: number, readonly socket: SocketState, remote: string,
    remotePort: number, family: 4 | 6) {
    this.src[0] = ((family << 16) | remotePort) >>> 0;
    addressWords(remote, family, this.src);
  }
}

class SessionState {
  /**
   * What the hot path reads of the spec, copied here: with a thousand busy sessions every frame
   * is for another one, and each further object it reads is one more cache miss.
   */
  readonly slot: number;
  readonly tapFd: number;
  readonly tapOffload: boolean;
  /** seq recv or both: unnumbered frames are dropped. */
  readonly recvSeq: boolean;
  readonly tpl: TxTemplate;
  readonly rx: RxContext;
  /** The sublayer carries numbers at all (l2spec_type default). */
  readonly numbered: boolean;
  /** numbered and seqMirror: received S bits switch sending. */
  readonly mirror: boolean;
  /** This session's row in the shared transmit state (layout.ts SessionTx). */
  readonly txRow: number;
  /** Largest frame accepted in either direction: MTU + Ethernet header + one VLAN tag. */
  readonly maxFrame: number;
  /** Slots offered to one tap read, and the fewest worth a read (an offload tap needs room for a super-frame). */
  readonly readSlots: number;
  readonly minReadSlots: number;
  /**
   * Frames the last drain of this tap brought (at least 1): what a read is bounded to when other
   * fds are ready in the same wake, so it need not end in a read that fails with EAGAIN.
   */
  readHint = BATCH;
  /** The wake (Forwarder.wakeSeq) in which a bounded read of this tap filled up, or -1. */
  filledWake = -1;
  readonly seq: SequenceState;
  /** Tap poll callback, made once (see SocketState.onEvent). */
  readonly onReadable: (fd: number, events: number, ready: number) => void;

  constructor(readonly spec: SessionSpec, readonly tunnel: TunnelState,
    onReadable: (s: SessionState, ready: number) => void, monoClock: Float64Array) {
    this.onReadable = (_fd, _events, ready): void => onReadable(this, ready);
    this.slot = spec.slot;
    this.tapFd = spec.tapFd;
    this.tapOffload = spec.tapOffload;
    this.recvSeq = spec.seqRecv;
    this.tpl = spec.tx;
    this.rx = spec.rx;
    this.numbered = spec.tx.l2ssOffset >= 0;
    this.mirror = this.numbered && spec.seqMirror;
    this.txRow = spec.slot * SESSION_TX_WIDTH;
    this.maxFrame = Math.min(spec.mtu + 18, FRAME_CAPACITY);
    this.readSlots = spec.tapOffload ? OFFLOAD_BATCH : BATCH;
    this.minReadSlots = spec.tapOffload ? GSO_MAX_SEGS : 1;
    this.seq = new SequenceState({
      recvSeq: spec.seqRecv, reorderTimeoutMs: spec.reorderTimeoutMs,
      capacity: spec.reorderTimeoutMs > 0 ? REORDER_CAPACITY : 1, clock: monoClock,
    });
  }
}

/** Parse an IPv4/IPv6 literal into the four address words recvBatch reports (big-endian). */
function addressWords(address: string, family: 4 | 6, out: Uint32Array, at = 1): void {
  out.fill(0, at, at + 4);
  if (family === 4) {
    const p = address.split('.').map(Number);
    out[at] = ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
    return;
  }
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array(8 - h.length - tl.length).fill('0'), ...tl];
  for (let g = 0; g < 8; g++) {
    const v = parseInt(groups[g] || '0', 16);
    const w = at + (g >> 1);
    out[w] = g & 1 ? (out[w] | v) >>> 0 : (v << 16) >>> 0;
  }
}

export class Forwarder implements ControlHost {
  private readonly bytes: Uint8Array;
  private readonly sc: Float64Array;
  private readonly tc: Float64Array;
  /** Shared per-session transmit state (layout.ts SessionTx), seeded by the control plane. */
  private readonly tx: Int32Array;
  private readonly slots: SlotAllocator;
  private readonly sockets = new Map<number, SocketState>();
  private readonly tunnels = new Map<number, TunnelState>();
  /** Sessions by slot (null: free). An array, not a Map: the delivery path looks one up per frame. */
  private readonly sessionAt: Array<SessionState | null> = new Array<SessionState | null>(MAX_SESSIONS).fill(null);
  private readonly dec = new DecodeResult();

  // Receive batch: BATCH slots owned by the receive path (swapped out when a frame is held).
  private readonly rxSlots = new Int32Array(BATCH);
  private readonly rxOffsets = new Uint32Array(BATCH);
  private readonly rxLengths = new Int32Array(BATCH);
  private readonly rxSources = new Uint32Array(BATCH * SOURCE_STRIDE);
  // Tap deliveries of the current receive batch (tap, offload and tunnel come from the session, per group).
  private readonly dOffsets = new Uint32Array(DELIVERY_CAPACITY);
  private readonly dLengths = new Int32Array(DELIVERY_CAPACITY);
  private readonly dSessions = new Int32Array(DELIVERY_CAPACITY);
  private readonly dBytes = new Int32Array(DELIVERY_CAPACITY);
  /** Slot to give back once the frame is written (a held frame), or -1. */
  private readonly dRelease = new Int32Array(DELIVERY_CAPACITY);
  private dCount = 0;
  // Deliveries regrouped by session, arrival order kept within each: sessions interleave in a
  // receive batch, and one writeBatch per session (runs an offload tap can merge) beats one per
  // frame. Per session slot: the epoch that last saw it, its first and last delivery.
  private readonly groupEpochOf = new Int32Array(MAX_SESSIONS);
  private readonly groupHead = new Int32Array(MAX_SESSIONS);
  private readonly groupTail = new Int32Array(MAX_SESSIONS);
  private groupEpoch = 0;
  private readonly groupSlots = new Int32Array(DELIVERY_CAPACITY);
  /** Next delivery of the same session, or -1. */
  private readonly dNext = new Int32Array(DELIVERY_CAPACITY);
  // The write order: delivery index, offset and length (writeBatch marks refused frames in wLengths).
  private readonly wOrder = new Int32Array(DELIVERY_CAPACITY);
  private readonly wOffsets = new Uint32Array(DELIVERY_CAPACITY);
  private readonly wLengths = new Int32Array(DELIVERY_CAPACITY);
  // Tap read batch: slots owned by the tap read path, tFilled of them at the front. A read
  // consumes the first ones; only those are replaced (taking and returning a whole batch of
  // slots per read was most of the cost of a read that brings one frame).
  private readonly tSlots = new Int32Array(OFFLOAD_BATCH);
  private readonly tOffsets = new Uint32Array(OFFLOAD_BATCH);
  private readonly tLengths = new Int32Array(OFFLOAD_BATCH);
  private tFilled = 0;
  /** Sockets with queued datagrams to send when the current wake ends (flushPending set), first flushCount. */
  private readonly flushList: Array<SocketState | null> = [];
  private flushCount = 0;
  /** Counts wakes (int32, wraps): a tap ready again in the wake right after its bounded read filled had a burst. */
  private wakeSeq = 0;
  private readonly onWakeEndBound = (): void => this.onWakeEnd();
  /** Where a held frame lives in its slot (frame start, length, L2TP bytes), by slot index. */
  private readonly heldStart: Uint32Array;
  private readonly heldLength: Int32Array;
  private readonly heldBytes: Int32Array;
  /** [wall ms, monotonic ms], read once per batch: wall for last-rx counters, monotonic for reorder deadlines. */
  private readonly clock = new Float64Array(2);
  /** clock[MONO] as the sequencers' clock: they read it themselves, so no double is passed per packet. */
  private readonly monoClock = this.clock.subarray(MONO, MONO + 1);
  private readonly holding = new Set<SessionState>();
  private reorderTimer: NodeJS.Timeout | null = null;
  private readonly onReorderTimerBound = (): void => this.onReorderTimer();
  private reorderDeadline = -1;
  private readonly diag: DiagRecorder;
  private readonly control: ControlChannel;
  /** By session slot: wall ms from which its next received frame is sampled for the diagnostics. */
  private readonly nextSampleMs = new Float64Array(MAX_SESSIONS);

  /** `status`: the Hello status and diagnostics rows the control plane reads (status.ts); tests may leave it out. */
  constructor(private readonly io: ForwarderIo, pool: SharedArrayBuffer,
    sessionCounters: SharedArrayBuffer, tunnelCounters: SharedArrayBuffer, status: StatusBuffers = allocateStatusBuffers()) {
    this.bytes = new Uint8Array(pool);
    this.sc = new Float64Array(sessionCounters);
    this.tc = new Float64Array(tunnelCounters);
    this.diag = new DiagRecorder(new Float64Array(status.tunnelDiag), new Float64Array(status.sessionDiag), this.clock);
    const readClock = (): void => this.io.readClock(this.clock);
    this.control = new ControlChannel(this.bytes, this.tc, new Float64Array(status.hello), new Int32Array(status.signal),
      this.diag, this.clock, readClock, this);
    this.tx = new Int32Array(status.sessionTx);
    this.slots = new SlotAllocator(Math.min(SLOT_COUNT, Math.floor(pool.byteLength / slotOffset(1))));
    io.attachPool(pool);
    this.heldStart = new Uint32Array(this.slots.slotCount);
    this.heldLength = new Int32Array(this.slots.slotCount);
    this.heldBytes = new Int32Array(this.slots.slotCount);
    for (let i = 0; i < BATCH; i++) this.setRxSlot(i, this.slots.take());
    io.pollEnd(this.onWakeEndBound);
  }

  private setRxSlot(i: number, slot: number): void {
    this.rxSlots[i] = slot;
    this.rxOffsets[i] = slotOffset(slot) + RX_HEADROOM;
  }

  addTunnel(spec: TunnelSpec): void {
    if (this.tunnels.has(spec.slot)) throw new Error(`tunnel slot ${spec.slot} already in use`);
    let sock = this.sockets.get(spec.fd);
    if (!sock) {
      sock = new SocketState(spec.fd, encapOfKind(spec.encap), spec.family, (so, events) => this.onSocketEvent(so, events));
      this.sockets.set(spec.fd, sock);
      this.io.pollStart(spec.fd, POLL_READABLE, sock.onEvent);
    }
    const tunnel = new TunnelState(spec.slot, spec.tunnelId, sock, spec.remote, spec.remotePort, spec.family);
    if (sock.encap.socketPerTunnel) sock.owner = tunnel;
    sock.refs++;
    this.io.setPeer(spec.slot, spec.family, spec.remote, spec.remotePort);
    this.tunnels.set(spec.slot, tunnel);
    this.control.addTunnel({
      slot: spec.slot, tunnelId: spec.tunnelId, peerTunnelId: spec.peerTunnelId ?? 0, fd: spec.fd,
      helloIntervalMs: spec.helloIntervalMs ?? 0, helloRetries: spec.helloRetries ?? 0,
    }, tunnel.src);
  }

  delTunnel(slot: number): void {
    const tunnel = this.tunnels.get(slot);
    if (!tunnel) return;
    for (const s of [...tunnel.sessions]) this.delSession(s.slot);
    this.control.delTunnel(slot);
    this.tunnels.delete(slot);
    const sock = tunnel.socket;
    if (--sock.refs === 0) {
      this.io.pollStop(sock.fd);
      this.dropQueue(sock);
      this.sockets.delete(sock.fd);
    } else {
      // A shared raw socket stays: its queued packets for this tunnel must not go out later to
      // whatever tunnel takes the slot (and peer entry) next.
      this.dropQueued(sock, slot);
    }
  }

  addSession(spec: SessionSpec): void {
    const tunnel = this.tunnels.get(spec.tunnelSlot);
    if (!tunnel) throw new Error(`no tunnel in slot ${spec.tunnelSlot}`);
    if (this.sessionAt[spec.slot] !== null) throw new Error(`session slot ${spec.slot} already in use`);
    const sock = tunnel.socket;
    if (sock.sessions.has(sessionIdKey(spec.sessionId))) throw new Error(`session ${spec.sessionId} already on this socket`);
    const s = new SessionState(spec, tunnel, (ss, ready) => this.onTapReadable(ss, ready), this.monoClock);
    sock.sessions.set(sessionIdKey(spec.sessionId), s);
    sock.tapSessions.push(s);
    tunnel.sessions.add(s);
    this.sessionAt[spec.slot] = s;
    if (!sock.blocked) this.io.pollStart(spec.tapFd, POLL_READABLE, s.onReadable);
  }

  delSession(slot: number): void {
    const s = this.sessionAt[slot];
    if (!s) return;
    this.io.pollStop(s.tapFd);
    const sock = s.tunnel.socket;
    sock.sessions.delete(sessionIdKey(s.spec.sessionId));
    sock.tapSessions.splice(sock.tapSessions.indexOf(s), 1);
    s.tunnel.sessions.delete(s);
    this.sessionAt[slot] = null;
    // Frames held for reordering go back to the pool; queued transmits still go out.
    s.seq.reset();
    for (let t = s.seq.takeDeliverable(); t >= 0; t = s.seq.takeDeliverable()) this.slots.give(t);
    for (let t = s.seq.takeDropped(); t >= 0; t = s.seq.takeDropped()) this.slots.give(t);
    this.holding.delete(s);
    for (let i = sock.qHead; i < sock.qHead + sock.qCount; i++) if (sock.qSessions[i] === slot) sock.qSessions[i] = -1;
  }

  /** Stop polling everything (worker shutdown). The control plane closes the fds. */
  stop(): void {
    for (const s of this.sessionAt) if (s !== null) this.io.pollStop(s.tapFd);
    for (const sock of this.sockets.values()) this.io.pollStop(sock.fd);
    this.io.pollEnd(null);
    if (this.reorderTimer) clearTimeout(this.reorderTimer);
    this.control.stop();
  }

  /**
   * ControlHost: queue a control message to the peer of the tunnel in `tunnelSlot` behind its
   * socket's data. `ccid` as int32 (writeControl). false (and a tx error) when the queue or the
   * pool is full.
   */
  sendControl(tunnelSlot: number, ccid: number, ns: number, nr: number, type: number): boolean {
    const tunnel = this.tunnels.get(tunnelSlot);
    if (tunnel === undefined) return false;
    const sock = tunnel.socket;
    if (sock.qCount >= TXQ_CAP || this.slots.free === 0) {
      this.tc[tunnelSlot * TUNNEL_ROW_WIDTH + T.TxErrors]++;
      return false;
    }
    const slot = this.slots.take();
    const at = slotOffset(slot) + HEADROOM;
    const len = writeControl(this.bytes, at, at + MAX_CONTROL_MESSAGE_LEN, sock.wire.kind === EncapKind.Ip, ccid, ns, nr, type);
    if (sock.qHead + sock.qCount + 1 > TXQ_CAP) this.compactQueue(sock);
    const q = sock.qHead + sock.qCount;
    sock.qOffsets[q] = at;
    sock.qLengths[q] = len;
    sock.qPeers[q] = tunnelSlot;
    sock.qSlots[q] = slot;
    sock.qSessions[q] = CONTROL_QUEUE_MARK;
    sock.qCount++;
    this.flush(sock);
    return true;
  }

  // ---------------------------------------------------------------- encapsulation: tap -> socket

  /**
   * Read the tap and queue its frames, encapsulated, on the tunnel's socket; the socket is sent
   * when the wake ends (onWakeEnd), so the frames of all the taps one wake finds ready leave in
   * one sendmmsg per socket. `ready`: fds ready in this wake; when there are others, the read is
   * bounded to what this tap brought last time (readHint) and level-triggered readiness brings
   * the rest, rather than a read per tap that ends in EAGAIN.
   */
  private onTapReadable(s: SessionState, ready: number): void {
    const sock = s.tunnel.socket;
    const io = this.io;
    const sc = this.sc;
    const row = s.slot * SESSION_ROW_WIDTH;
    const tx = this.tx;
    const nextSeqAt = s.txRow + TX.NextSeq;
    const least = s.minReadSlots;
    if (this.tFilled < s.readSlots) this.topUpTapSlots(s.readSlots);
    if (s.filledWake !== -1 && ((s.filledWake + 1) | 0) === this.wakeSeq) {
      // Its last bounded read filled up and it is ready in the very next wake: a burst, allow more.
      s.readHint = s.readHint * 2 < BATCH ? s.readHint * 2 : BATCH;
    }
    s.filledWake = -1;
    for (let round = 0; round < ROUNDS && !sock.blocked; round++) {
      // Read per batch: the peer's S bit may have switched it since the last one.
      const numbering = s.numbered && tx[s.txRow + TX.Numbering] !== 0;
      let want = s.readSlots < this.tFilled ? s.readSlots : this.tFilled;
      // An offload tap is bounded to one read (room for one super-frame) while its drains bring
      // fewer frames than a super-frame can carry; a plain tap to the frames its last drain brought.
      const bounded = ready > 1 && s.readHint < want && s.readHint < (least === 1 ? want : least);
      if (bounded) want = least === 1 ? s.readHint : least;
      if (TXQ_CAP - sock.qCount < want) {
        // What other taps queued leaves no room for this read: send it first.
        this.flush(sock);
        if (sock.blocked) return;
      }
      const room = TXQ_CAP - sock.qCount;
      if (room < want) want = room;
      // A super-frame needs its segments' slots at once: wait for them rather than drop it.
      if (want < least) return;
      const n = io.readBatch(s.tapFd, this.tOffsets, FRAME_CAPACITY, want, this.tLengths, s.tapOffload);
      if (n < 0) {
        sc[row + S.TxErrors]++;
        return;
      }
      if (sock.qHead + sock.qCount + n > TXQ_CAP) this.compactQueue(sock);
      let q = sock.qHead + sock.qCount;
      for (let i = 0; i < n; i++) {
        const len = this.tLengths[i];
        if (len < 0) {
          // Read from an offload tap but not deliverable (headers not as announced, or too many segments).
          sc[row + S.TxErrors]++;
          this.slots.give(this.tSlots[i]);
          continue;
        }
        if (len > s.maxFrame || len >= FRAME_CAPACITY) {
          // Larger than the session carries (or possibly cut by the read): count, never truncate.
          sc[row + S.TxOversize]++;
          sc[row + S.TxErrors]++;
          this.slots.give(this.tSlots[i]);
          continue;
        }
        let seq = -1;
        if (numbering) {
          seq = tx[nextSeqAt];
          tx[nextSeqAt] = nextSeq(seq);
        }
        const start = writeHeader(this.bytes, this.tOffsets[i], s.tpl, seq);
        sock.qOffsets[q] = start;
        sock.qLengths[q] = len + s.tpl.length;
        sock.qPeers[q] = s.tunnel.slot;
        sock.qSlots[q] = this.tSlots[i];
        sock.qSessions[q] = s.slot;
        q++;
        sock.qCount++;
      }
      this.refillTapSlots(n);
      if (sock.qCount > 0 && !sock.flushPending) {
        sock.flushPending = true;
        this.flushList[this.flushCount++] = sock;
      }
      // Drained (EAGAIN), unless the addon stopped for want of room for another super-frame.
      if (n <= want - least) {
        s.readHint = n > 1 ? n : 1;
        return;
      }
      if (bounded) {
        // Perhaps not drained: readiness brings this tap back after the others if it is not.
        s.filledWake = this.wakeSeq;
        return;
      }
    }
  }

  /** Give the tap read batch slots up to `count` (a read of an offload tap needs more). */
  private topUpTapSlots(count: number): void {
    while (this.tFilled < count && this.slots.free > 0) this.setTapSlot(this.tFilled++, this.slots.take());
  }

  private setTapSlot(i: number, slot: number): void {
    this.tSlots[i] = slot;
    this.tOffsets[i] = slotOffset(slot) + HEADROOM;
  }

  /** The first `used` tap read slots went to the queue (or back to the pool): replace them. */
  private refillTapSlots(used: number): void {
    let i = 0;
    for (; i < used && this.slots.free > 0; i++) this.setTapSlot(i, this.slots.take());
    // The pool ran dry: close the remaining holes with slots from the end of the batch.
    let end = this.tFilled;
    for (; i < used && end > used; i++) this.setTapSlot(i, this.tSlots[--end]);
    this.tFilled = i < used ? i : end;
  }

  /** The wake ended: send what its callbacks queued, one sendmmsg (batch) per socket. */
  private onWakeEnd(): void {
    const list = this.flushList;
    const count = this.flushCount;
    // Reset before any send: a send that throws must not leave the list half-served for the next wake.
    this.flushCount = 0;
    this.wakeSeq = (this.wakeSeq + 1) | 0;
    let failure: unknown;
    for (let k = 0; k < count; k++) {
      const sock = list[k]!;
      list[k] = null;
      sock.flushPending = false;
      // A socket deleted since (its queue dropped) is no longer in the table.
      if (sock.blocked || this.sockets.get(sock.fd) !== sock) continue;
      // One socket's failure does not keep the others' frames back.
      try { this.flush(sock); } catch (err) { failure ??= err; }
    }
    if (failure !== undefined) throw failure;
  }

  private compactQueue(sock: SocketState): void {
    const h = sock.qHead;
    const e = h + sock.qCount;
    sock.qOffsets.copyWithin(0, h, e);
    sock.qLengths.copyWithin(0, h, e);
    sock.qPeers.copyWithin(0, h, e);
    sock.qSlots.copyWithin(0, h, e);
    sock.qSessions.copyWithin(0, h, e);
    sock.qHead = 0;
  }

  /** Send the socket's queue with sendmmsg; on EAGAIN keep the rest and wait for writability. */
  private flush(sock: SocketState): void {
    while (sock.qCount > 0) {
      const sent = this.io.sendBatch(sock.fd, sock.qOffsets, sock.qLengths, sock.qPeers, sock.qHead, sock.qCount);
      if (sent < 0) {
        // The head message failed (e.g. no route): count it and try the rest.
        this.retire(sock, 1, false);
        continue;
      }
      if (sent > 0) this.retire(sock, sent, true);
      if (sent === 0 || sock.qCount > 0) {
        if (!sock.blocked) this.block(sock);
        return;
      }
    }
    if (sock.blocked) this.unblock(sock);
  }

  /** Account for and release the first `n` queued messages. */
  private retire(sock: SocketState, n: number, ok: boolean): void {
    const sc = this.sc;
    const tc = this.tc;
    const end = sock.qHead + n;
    for (let q = sock.qHead; q < end; q++) {
      const sess = sock.qSessions[q];
      const tRow = sock.qPeers[q] * TUNNEL_ROW_WIDTH;
      if (sess >= 0) {
        const row = sess * SESSION_ROW_WIDTH;
        if (ok) {
          sc[row + S.TxPackets]++;
          sc[row + S.TxBytes] += sock.qLengths[q];
        } else {
          sc[row + S.TxErrors]++;
        }
      }
      if (ok && sess === CONTROL_QUEUE_MARK) {
        tc[tRow + T.TxControl]++;
      } else if (ok) {
        tc[tRow + T.TxPackets]++;
        tc[tRow + T.TxBytes] += sock.qLengths[q];
      } else {
        tc[tRow + T.TxErrors]++;
      }
      this.slots.give(sock.qSlots[q]);
    }
    sock.qHead = end;
    sock.qCount -= n;
    if (sock.qCount === 0) sock.qHead = 0;
  }

  /** Drop the queued packets addressed to tunnel `tunnelSlot`, keeping the rest in order. */
  private dropQueued(sock: SocketState, tunnelSlot: number): void {
    let w = sock.qHead;
    for (let q = sock.qHead; q < sock.qHead + sock.qCount; q++) {
      if (sock.qPeers[q] === tunnelSlot) {
        this.slots.give(sock.qSlots[q]);
        continue;
      }
      sock.qOffsets[w] = sock.qOffsets[q];
      sock.qLengths[w] = sock.qLengths[q];
      sock.qPeers[w] = sock.qPeers[q];
      sock.qSlots[w] = sock.qSlots[q];
      sock.qSessions[w] = sock.qSessions[q];
      w++;
    }
    sock.qCount = w - sock.qHead;
    if (sock.qCount === 0) sock.qHead = 0;
  }

  private dropQueue(sock: SocketState): void {
    for (let q = sock.qHead; q < sock.qHead + sock.qCount; q++) this.slots.give(sock.qSlots[q]);
    sock.qHead = 0;
    sock.qCount = 0;
  }

  private block(sock: SocketState): void {
    sock.blocked = true;
    const taps = sock.tapSessions;
    for (let i = 0; i < taps.length; i++) this.io.pollPause(taps[i].tapFd);
    this.io.pollStart(sock.fd, POLL_READABLE | POLL_WRITABLE, sock.onEvent);
  }

  private unblock(sock: SocketState): void {
    sock.blocked = false;
    this.io.pollStart(sock.fd, POLL_READABLE, sock.onEvent);
    const taps = sock.tapSessions;
    for (let i = 0; i < taps.length; i++) this.io.pollStart(taps[i].tapFd, POLL_READABLE, taps[i].onReadable);
  }

  // ---------------------------------------------------------------- decapsulation: socket -> tap

  private onSocketEvent(sock: SocketState, events: number): void {
    if (events & POLL_WRITABLE) this.flush(sock);
    if (events & POLL_READABLE) this.onSocketReadable(sock);
  }

  private onSocketReadable(sock: SocketState): void {
    for (let round = 0; round < ROUNDS; round++) {
      const n = this.io.recvBatch(sock.fd, this.rxOffsets, DATAGRAM_CAPACITY, BATCH, this.rxLengths, this.rxSources);
      if (n <= 0) {
        if (n < 0) this.tc[sock.counterRow * TUNNEL_ROW_WIDTH + T.DropSocketError]++;
        return;
      }
      this.io.readClock(this.clock);
      for (let i = 0; i < n; i++) this.receive(sock, i);
      this.deliverBatch();
      if (n < BATCH) return;
    }
  }

  private sourceMatches(tunnel: TunnelState, i: number): boolean {
    return sourceIs(tunnel.src, this.rxSources, i);
  }

  /** A packet dropped before its session was known: its reason's counter (counters.ts) and rx_errors. */
  countTunnelDrop(row: number, reason: DropReason): void {
    const tc = this.tc;
    const base = row * TUNNEL_ROW_WIDTH;
    tc[base + TUNNEL_DROP_COUNTER[reason]]++;
    if (TUNNEL_DROP_INVALID[reason] !== 0) tc[base + T.RxInvalid]++;
    tc[base + T.RxErrors]++;
  }

  /** A packet of session slot `slot` dropped: its reason's counter (counters.ts) and rx_errors. */
  private countSessionDrop(slot: number, reason: DropReason): void {
    const sc = this.sc;
    const base = slot * SESSION_ROW_WIDTH;
    sc[base + SESSION_DROP_COUNTER[reason]]++;
    sc[base + S.RxErrors]++;
  }

  private receive(sock: SocketState, i: number): void {
    const len = this.rxLengths[i];
    const start = this.rxOffsets[i];
    if (len > DATAGRAM_CAPACITY) {
      this.countTunnelDrop(sock.counterRow, DropReason.Oversize);
      return;
    }
    // A socket of one tunnel (UDP): the source is checked before anything is parsed.
    const owner = sock.owner;
    if (owner !== null && !this.sourceMatches(owner, i)) {
      this.countTunnelDrop(owner.slot, DropReason.ForeignSource);
      this.noteForeignUdp(owner, i, start, len);
      return;
    }
    const dec = this.dec;
    let r = sock.wire.decodeCommon(this.bytes, start, len, sock.ipv4HeaderIncluded, dec);
    if (r !== DropReason.None) {
      if (r === DropReason.Control) this.control.receive(sock.fd, owner !== null ? owner.slot : -1, dec.pos, dec.end, this.rxSources, i);
      else this.countTunnelDrop(sock.counterRow, r);
      return;
    }
    const s = sock.sessions.get(sessionIdKey(dec.sessionId));
    if (s === undefined) {
      this.countTunnelDrop(sock.counterRow, DropReason.UnknownSession);
      this.diag.unknownSession(sock.counterRow, dec.sessionId | 0, this.rxSources, i);
      return;
    }
    // A shared socket (IP): the source is checked against the session's tunnel.
    if (owner === null && !this.sourceMatches(s.tunnel, i)) {
      this.countTunnelDrop(s.tunnel.slot, DropReason.ForeignSource);
      this.diag.foreignSource(s.tunnel.slot, this.rxSources, i, dec.sessionId | 0, 0);
      return;
    }
    r = decodeSession(this.bytes, dec, s.rx, start + len);
    if (r !== DropReason.None) {
      this.countSessionDrop(s.slot, r);
      if (r === DropReason.CookieMismatch) this.diag.cookieMismatch(s.slot, this.bytes, dec.pos, start + len);
      return;
    }
    if (this.clock[WALL] >= this.nextSampleMs[s.slot]) {
      this.nextSampleMs[s.slot] = this.clock[WALL] + SAMPLE_INTERVAL_MS;
      this.diag.sample(s.slot, this.bytes, dec.pos, start + len);
    }
    if (dec.hasSeq === 0 && s.recvSeq) this.diag.unsequenced(s.slot);
    if (s.mirror) this.followPeerSequencing(s, dec.hasSeq);
    if (dec.frameLength > s.maxFrame) {
      this.countSessionDrop(s.slot, DropReason.Oversize);
      return;
    }
    const l2tpBytes = start + len - dec.l2tpStart;
    if (dec.hasSeq || s.recvSeq) {
      this.sequence(s, i, l2tpBytes);
      return;
    }
    this.queueDelivery(s, dec.frameStart, dec.frameLength, l2tpBytes, -1);
  }

  /**
   * A datagram from a source other than the UDP tunnel's remote: if it looks like L2TPv3 (version
   * 3), note who sent it and what (drop path only).
   */
  private noteForeignUdp(tunnel: TunnelState, i: number, start: number, len: number): void {
    if (len < 8) return;
    const b = this.bytes;
    const flags = (b[start] << 8) | b[start + 1];
    if ((flags & VERSION_MASK) !== L2TP_VERSION_3) return;
    const control = (flags & T_BIT) !== 0 ? 1 : 0;
    // data: the session ID at 4; control: the connection ID at 4 (after flags and Length)
    const id = (b[start + 4] << 24) | (b[start + 5] << 16) | (b[start + 6] << 8) | b[start + 7];
    this.diag.foreignSource(tunnel.slot, this.rxSources, i, id, control);
  }

  /**
   * Linux's rule for a static session (l2tp_recv_common), applied to every frame that passed the
   * cookie check, before the sequence and size checks: a numbered frame switches our numbering
   * on; an unnumbered one switches it off unless we require numbers (those frames are dropped).
   * A switch is recorded in shared memory for the control plane, which reports it.
   */
  private followPeerSequencing(s: SessionState, hasSeq: number): void {
    const tx = this.tx;
    const at = s.txRow + TX.Numbering;
    const on = tx[at] !== 0;
    const numbered = hasSeq !== 0;
    if (numbered === on || (!numbered && s.recvSeq)) return;
    tx[at] = numbered ? 1 : 0;
    tx[s.txRow + TX.Switches] = (tx[s.txRow + TX.Switches] + 1) | 0;
  }

  /** Queue a frame for its tap; `release` is a slot to give back once written (a held frame), or -1. */
  private queueDelivery(s: SessionState, frameStart: number, frameLength: number, l2tpBytes: number, release: number): void {
    if (this.dCount === DELIVERY_CAPACITY) this.deliverBatch();
    const d = this.dCount++;
    this.dRelease[d] = release;
    this.dOffsets[d] = frameStart;
    this.dLengths[d] = frameLength;
    this.dSessions[d] = s.slot;
    this.dBytes[d] = l2tpBytes;
  }

  /** Write the batch's frames to their taps: one writeBatch per session, its frames in order. */
  private deliverBatch(): void {
    const n = this.dCount;
    if (++this.groupEpoch === 0x7fffffff) {
      this.groupEpochOf.fill(0);
      this.groupEpoch = 1;
    }
    const epoch = this.groupEpoch;
    let groups = 0;
    for (let d = 0; d < n; d++) {
      const slot = this.dSessions[d];
      this.dNext[d] = -1;
      if (this.groupEpochOf[slot] !== epoch) {
        this.groupEpochOf[slot] = epoch;
        this.groupHead[slot] = d;
        this.groupSlots[groups++] = slot;
      } else {
        this.dNext[this.groupTail[slot]] = d;
      }
      this.groupTail[slot] = d;
    }
    let w = 0;
    for (let g = 0; g < groups; g++) {
      const first = w;
      const slot = this.groupSlots[g];
      for (let d = this.groupHead[slot]; d >= 0; d = this.dNext[d]) {
        this.wOrder[w] = d;
        this.wOffsets[w] = this.dOffsets[d];
        this.wLengths[w] = this.dLengths[d];
        w++;
      }
      // Deliveries are queued and written within one event, so their session is still there.
      this.writeSession(this.sessionAt[slot]!, first, w);
    }
    for (let k = 0; k < n; k++) if (this.dRelease[k] >= 0) this.slots.give(this.dRelease[k]);
    this.dCount = 0;
  }

  /** Write one session's frames (write order first..end-1) to its tap and count what it took. */
  private writeSession(s: SessionState, first: number, end: number): void {
    // writeBatch marks the frames the tap refuses (lengths < 0) and stops at EAGAIN.
    const processed = this.io.writeBatch(s.tapFd, this.wOffsets, this.wLengths, first, end - first, s.tapOffload);
    let ok = 0;
    let bytes = 0;
    for (let k = first; k < first + processed; k++) {
      if (this.wLengths[k] < 0) continue;
      ok++;
      bytes += this.dBytes[this.wOrder[k]];
    }
    const sc = this.sc;
    const row = s.slot * SESSION_ROW_WIDTH;
    if (ok > 0) {
      sc[row + S.RxPackets] += ok;
      sc[row + S.RxBytes] += bytes;
      sc[row + S.LastRxMs] = this.clock[WALL];
      const tRow = s.tunnel.slot * TUNNEL_ROW_WIDTH;
      this.tc[tRow + T.RxPackets] += ok;
      this.tc[tRow + T.RxBytes] += bytes;
    }
    const dropped = end - first - ok;
    if (dropped > 0) {
      sc[row + S.RxTapDrops] += dropped;
      sc[row + S.RxErrors] += dropped;
    }
  }


  // ---------------------------------------------------------------- sequencing

  /**
   * Sequence-number processing (protocol/sequence.ts) with pool slots as tokens. A held frame
   * keeps its slot, so the receive batch gets a fresh one in its place.
   */
  private sequence(s: SessionState, i: number, l2tpBytes: number): void {
    const dec = this.dec;
    const slot = this.rxSlots[i];
    if (this.slots.free === 0 && s.seq.reorderTimeoutMs > 0) {
      // No slot to replace a held frame with: refuse to hold rather than stall the receive path.
      this.countSessionDrop(s.slot, DropReason.SeqDiscard);
      return;
    }
    this.heldStart[slot] = dec.frameStart;
    this.heldLength[slot] = dec.frameLength;
    this.heldBytes[slot] = l2tpBytes;
    const action = s.seq.onPacket(dec.hasSeq, dec.seq, slot); // at monoClock
    if (action === SeqAction.Held) this.setRxSlot(i, this.slots.take());
    this.drainSequencer(s, slot);
    if (s.seq.held > 0) this.armReorderTimer(s);
  }

  /** Move what the sequencer released into the delivery batch, and count what it dropped. */
  private drainSequencer(s: SessionState, currentSlot: number): void {
    const seq = s.seq;
    for (let t = seq.takeDeliverable(); t >= 0; t = seq.takeDeliverable()) {
      this.queueDelivery(s, this.heldStart[t], this.heldLength[t], this.heldBytes[t], t === currentSlot ? -1 : t);
    }
    for (let t = seq.takeDropped(); t >= 0; t = seq.takeDropped()) {
      this.countSessionDrop(s.slot, seq.lastDropReason);
      if (t !== currentSlot) this.slots.give(t);
    }
    // What the sequencer counts without dropping (its drops are counted above, by reason).
    const sc = this.sc;
    const row = s.slot * SESSION_ROW_WIDTH;
    sc[row + S.RxOosPackets] = seq.oosPackets;
    sc[row + S.RxSeqResyncs] = seq.resyncs;
    sc[row + S.RxReorderTimeouts] = seq.reorderTimeouts;
    sc[row + S.RxReorderOverflows] = seq.reorderOverflows;
  }

  private armReorderTimer(s: SessionState): void {
    this.holding.add(s);
    const deadline = s.seq.nextDeadline();
    if (deadline < 0 || (this.reorderDeadline >= 0 && deadline >= this.reorderDeadline)) return;
    if (this.reorderTimer) clearTimeout(this.reorderTimer);
    this.reorderDeadline = deadline;
    // The clock was read for this batch (or this timer run) just before.
    this.reorderTimer = setTimeout(this.onReorderTimerBound, Math.max(0, deadline - this.clock[MONO]));
  }

  /** Release (in order) frames whose reorder deadline passed, without waiting for the next packet. */
  private onReorderTimer(): void {
    this.reorderTimer = null;
    this.reorderDeadline = -1;
    this.io.readClock(this.clock);
    // Deleting the current entry while iterating a Set is safe.
    for (const s of this.holding) {
      s.seq.expire();
      this.drainSequencer(s, -1);
      if (s.seq.held === 0) this.holding.delete(s);
    }
    this.deliverBatch();
    for (const s of this.holding) this.armReorderTimer(s);
  }
}
