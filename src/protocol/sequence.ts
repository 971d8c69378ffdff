/**
 * Per-session receive sequencing: RFC 3931 §4.6 / Appendix C, compatible with Linux
 * (l2tp_recv_common → l2tp_recv_data_seq → l2tp_recv_dequeue) where
 * Linux is right, better where it is weak. The table of differences is in docs/sequencing.md.
 *
 * ## API (allocation-free)
 *
 * Packets are identified by integer **tokens** ≥ 0 (the data plane uses pool slot indices).
 *
 *   const seq = new SequenceState({ recvSeq, reorderTimeoutMs, capacity });
 *   seq.onPacket(hasSeq, ns, token, nowMs);            // → SeqAction for this packet
 *   for (let t; (t = seq.takeDeliverable()) >= 0;) deliver(t);   // in sequence order
 *   for (let t; (t = seq.takeDropped()) >= 0;) drop(t, seq.lastDropReason);
 *   // timer: if (seq.nextDeadline() >= 0) arm(seq.nextDeadline());  on fire: seq.expire(now), drain.
 *
 * Tokens come out through two internal Int32Array rings (deliver, drop). Take everything after
 * each onPacket/expire/reset call: one call produces at most capacity + 1 deliveries and at most
 * one drop (reset: up to capacity drops), and the rings hold 2 × capacity + 8 entries. Every token
 * passed in comes out exactly once (delivered or dropped), possibly in a later call if held.
 * `nowMs` is any monotonic millisecond clock, the same one for onPacket, expire and nextDeadline.
 * It is kept in clock[0] (the config's `clock`, or the state's own). A hot caller shares its clock
 * array and leaves nowMs out: a double passed as an argument can cost a heap number per call
 * (seen: optimised code boxing it on every packet), a value read from a Float64Array does not.
 *
 * ## Behaviour
 *
 * Unsequenced packet (S=0 or no sublayer): recvSeq → drop, SeqDiscard (Linux: rx_seq_discards);
 * otherwise delivered at once. Sequenced packets are always checked, whatever recvSeq says (as
 * Linux: l2tp_recv_data_seq runs for every packet with S=1).
 *
 * Let nr be the next expected ns, and d = (ns − nr) mod 2^24 (every comparison is modular and
 * therefore wrap-aware across 0xffffff → 0).
 * - First sequenced packet of a session (or after reset): nr := ns, delivered. (Linux also uses
 *   the NR of the first packet — reorder_skip = 1 — but runs the window check against nr = 0
 *   first, so a fresh Linux session drops everything from a peer whose ns ≥ 0x7fffff: S10.)
 * - d = 0: delivered, nr advances, held packets that are now in order follow.
 * - 0 < d < 2^23 − 1 (ahead, a gap):
 *   - reorderTimeoutMs = 0: Linux's rule exactly — dropped (SeqDiscard) unless it is the 6th of
 *     a run of consecutive numbers (nr_oos_count > 4), which resyncs nr := ns and is delivered.
 *   - reorderTimeoutMs > 0: held in order (oosPackets counted as Linux counts rx_oos_packets:
 *     when a packet goes in front of a held one). A held duplicate is dropped (Window).
 *     A held packet waits at most reorderTimeoutMs: expire(now) releases, in order, every held
 *     packet up to the last one whose deadline has passed, giving up on the gaps before them
 *     (reorderTimeouts). Linux drops expired packets instead and only looks when the next
 *     packet arrives. When the queue is full, the gap before the earliest packet is given up
 *     on and that packet is released with its in-order successors (reorderOverflows).
 * - d ≥ 2^23 − 1 (behind: old, duplicate, or a peer that restarted its numbering): dropped,
 *   Window (Linux: rx_errors only). If 5 such packets in a row continue each other's numbering
 *   (ns, ns+1, …) with no accepted packet in between, the 6th resyncs nr := ns and is
 *   delivered (resyncs); held packets are released first. Linux never resyncs here (S9).
 */
import { DropReason, SEQ_MASK, SEQ_WINDOW } from './constants.js';

/**
 * Send numbering across a stop whose exact number was lost (a crash). A Linux receiver takes a
 * numbered frame only when it lies less than SEQ_WINDOW ahead of the number it expects (nr), and
 * never resynchronises on frames behind nr (docs/sequencing.md S9); a frame ahead costs a run of
 * 5 out-of-sequence drops, after which it follows (S1). The control plane saves each session's
 * next number whenever it has moved SEQ_SAVE_STRIDE since the last save (checked every second),
 * so at a crash the peer's nr lies at most that, plus one second of traffic, past the saved
 * number (and at most what was in flight behind it). Resuming SEQ_CRASH_SKIP (a quarter of the
 * space) past the saved number lands at or ahead of nr, inside the window, while fewer than
 * 2^22 frames went out since the save and the peer lags less than 2^22 − 1 behind it: 4 M
 * frames, where the stride plus a second at line rate is about 1.3 M.
 */
export const SEQ_SAVE_STRIDE = 1 << 20;
export const SEQ_CRASH_SKIP = 1 << 22;

/** Where numbering resumes after a crash, from the last saved next number. */
export function seqAfterCrash(saved: number): number {
  return (saved + SEQ_CRASH_SKIP) & SEQ_MASK;
}

/** How far `to` is ahead of `from` in the 24-bit space (0..2^24 − 1). */
export function seqAhead(from: number, to: number): number {
  return (to - from) & SEQ_MASK;
}

export interface SequenceConfig {
  /** seq recv|both: unsequenced packets are dropped. */
  recvSeq: boolean;
  /** 0 = no reordering (Linux default); > 0 = hold out-of-order packets up to this long. */
  reorderTimeoutMs: number;
  /** Most packets held for reordering (e.g. 64). */
  capacity: number;
  /** clock[0] is the current time (nowMs); onPacket/expire given a nowMs write it there first. */
  clock?: Float64Array;
}

/** What happened to the packet passed to onPacket (during that call). */
export const enum SeqAction {
  /** In the deliver ring (possibly behind earlier held packets released by the same call). */
  Delivered = 0,
  /** Held in the reorder queue; it comes out through a later call. */
  Held = 1,
  /** In the drop ring; lastDropReason tells why when it is taken. */
  Dropped = 2,
}

/** Linux nr_oos_count_max: the run of consecutive out-of-sequence drops tolerated before resync. */
export const OOS_COUNT_MAX = 4;
/** Consecutive, mutually in-sequence "behind" drops before l2tpd resyncs on the next one. */
export const BEHIND_RESYNC_DROPS = 5;

export class SequenceState {
  readonly recvSeq: boolean;
  readonly reorderTimeoutMs: number;
  readonly capacity: number;

  // ---- receive state ----
  /** Next expected sequence number. */
  nr = 0;
  /** 0 until the first sequenced packet set nr. */
  synced = 0;
  /** Linux nr_oos / nr_oos_count (no-reorder mode). */
  private oosNs = 0;
  private oosCount = 0;
  /** Run of consecutive "behind" packets (peer restart detection). */
  private behindNs = 0;
  private behindCount = 0;
  /** 1 when the last packet carried a sequence number (Linux mirrors this on transmit). */
  peerSendsSeq = 0;

  // ---- counters (cumulative since construction/reset) ----
  /** Linux rx_seq_discards: unsequenced with recvSeq, out-of-sequence in no-reorder mode. */
  seqDiscards = 0;
  /** Linux rx_oos_packets: insertions in front of a held packet (reorder mode). */
  oosPackets = 0;
  /** Old or duplicate packets (Linux counts them only in rx_errors). */
  windowDrops = 0;
  /** Resynchronisations: Linux's OOS rule, and l2tpd's behind-the-window rule. */
  resyncs = 0;
  /** Gaps given up on because a held packet reached its deadline. */
  reorderTimeouts = 0;
  /** Gaps given up on because the reorder queue was full. */
  reorderOverflows = 0;

  /** Reason of the token last returned by takeDropped(). */
  lastDropReason: DropReason = DropReason.None;

  // ---- reorder queue: ring of `capacity`, sorted by (ns − nr) mod 2^24 ----
  private readonly qTok: Int32Array;
  private readonly qNs: Int32Array;
  private readonly qDl: Float64Array;
  private qHead = 0;
  private qCount = 0;

  // ---- output rings ----
  private readonly ringSize: number;
  private readonly clock: Float64Array;
  private readonly outTok: Int32Array;
  private outHead = 0;
  private outCount = 0;
  private readonly dropTok: Int32Array;
  private readonly dropWhy: Uint8Array;
  private dropHead = 0;
  private dropCount = 0;

  constructor(cfg: SequenceConfig) {
    const cap = cfg.capacity;
    if (!Number.isInteger(cap) || cap < 1 || cap > 65536) {
      throw new RangeError(`capacity: ${cap} is not an integer in 1..65536`);
    }
    const to = cfg.reorderTimeoutMs;
    if (!Number.isFinite(to) || to < 0) throw new RangeError(`reorderTimeoutMs: ${to} is not >= 0`);
    this.recvSeq = cfg.recvSeq;
    this.clock = cfg.clock ?? new Float64Array(1);
    this.reorderTimeoutMs = to;
    this.capacity = cap;
    this.qTok = new Int32Array(cap);
    this.qNs = new Int32Array(cap);
    this.qDl = new Float64Array(cap);
    this.ringSize = 2 * cap + 8;
    this.outTok = new Int32Array(this.ringSize);
    this.dropTok = new Int32Array(this.ringSize);
    this.dropWhy = new Uint8Array(this.ringSize);
  }

  /** Packets currently held for reordering. */
  get held(): number {
    return this.qCount;
  }

  /**
   * One received data packet. `hasSeq` is the S bit (DecodeResult.hasSeq), `ns` its 24-bit
   * number, `token` ≥ 0 identifies the packet. Runs expiry for `nowMs` first, so the result does
   * not depend on how late the caller's timer fires.
   */
  onPacket(hasSeq: number | boolean, ns: number, token: number, nowMs?: number): SeqAction {
    if (nowMs !== undefined) this.clock[0] = nowMs;
    if (this.qCount !== 0) this.expire();
    if (!hasSeq) {
      this.peerSendsSeq = 0;
      if (this.recvSeq) {
        this.seqDiscards++;
        this.pushDrop(token, DropReason.SeqDiscard);
        return SeqAction.Dropped;
      }
      // Delivered in arrival order, without waiting for held sequenced packets (Linux queues
      // it behind them; mixing S=0 and S=1 in one session is not a real stream).
      this.pushDeliver(token);
      return SeqAction.Delivered;
    }
    this.peerSendsSeq = 1;
    ns &= SEQ_MASK;
    if (this.synced === 0) {
      this.synced = 1;
      this.nr = ns;
    }
    const d = (ns - this.nr) & SEQ_MASK;
    if (d === 0) {
      if (this.qCount !== 0) this.oosPackets++; // Linux inserts it in front of the held head
      this.deliverInOrder(token);
      return SeqAction.Delivered;
    }
    if (d >= SEQ_WINDOW) return this.behind(ns, token);
    return this.reorderTimeoutMs > 0 ? this.hold(ns, d, token) : this.outOfSequence(ns, token);
  }

  /**
   * Release held packets whose deadline has passed (reorder mode): every held packet up to the
   * last expired one, in order, then their in-order successors. Returns how many were released.
   */
  expire(nowMs?: number): number {
    if (nowMs !== undefined) this.clock[0] = nowMs;
    const now = this.clock[0];
    const n = this.qCount;
    if (n === 0) return 0;
    const cap = this.capacity;
    let last = -1;
    let idx = this.qHead;
    for (let i = 0; i < n; i++) {
      if (this.qDl[idx] <= now) last = i;
      if (++idx === cap) idx = 0;
    }
    if (last < 0) return 0;
    // Entries 0..last go out in order, giving up on every gap in front of them; their in-order
    // successors follow (releaseHeadRun).
    let released = 0;
    while (released <= last) {
      const ns = this.qNs[this.qHead];
      if (ns !== this.nr) {
        this.reorderTimeouts++;
        this.nr = ns;
      }
      released += this.releaseHeadRun();
    }
    return released;
  }

  /** Deadline (same clock as nowMs) of the earliest held packet, or -1 when none is held. */
  nextDeadline(): number {
    const n = this.qCount;
    if (n === 0) return -1;
    const cap = this.capacity;
    let min = Infinity;
    let idx = this.qHead;
    for (let i = 0; i < n; i++) {
      const dl = this.qDl[idx];
      if (dl < min) min = dl;
      if (++idx === cap) idx = 0;
    }
    return min;
  }

  /** Next token to deliver, in order, or -1. */
  takeDeliverable(): number {
    if (this.outCount === 0) return -1;
    const t = this.outTok[this.outHead];
    if (++this.outHead === this.ringSize) this.outHead = 0;
    this.outCount--;
    return t;
  }

  /** Next dropped token, or -1; sets lastDropReason. */
  takeDropped(): number {
    if (this.dropCount === 0) {
      this.lastDropReason = DropReason.None;
      return -1;
    }
    const h = this.dropHead;
    const t = this.dropTok[h];
    this.lastDropReason = this.dropWhy[h] as DropReason;
    this.dropHead = h + 1 === this.ringSize ? 0 : h + 1;
    this.dropCount--;
    return t;
  }

  /**
   * Session recreated: forget the numbering and zero the counters. Held tokens go to the drop
   * ring with reason Flushed (not a counted drop) so their slots can be returned; tokens already
   * in the output rings stay there.
   */
  reset(): void {
    while (this.qCount !== 0) {
      this.pushDrop(this.qTok[this.qHead], DropReason.Flushed);
      this.pop();
    }
    this.qHead = 0;
    this.nr = 0;
    this.synced = 0;
    this.oosNs = 0;
    this.oosCount = 0;
    this.behindNs = 0;
    this.behindCount = 0;
    this.peerSendsSeq = 0;
    this.seqDiscards = 0;
    this.oosPackets = 0;
    this.windowDrops = 0;
    this.resyncs = 0;
    this.reorderTimeouts = 0;
    this.reorderOverflows = 0;
  }

  // ---------------------------------------------------------------------------------------

  /** No-reorder mode, ns ahead of nr: Linux's nr_oos rule. */
  private outOfSequence(ns: number, token: number): SeqAction {
    if (ns === ((this.oosNs + 1) & SEQ_MASK)) this.oosCount++;
    else this.oosCount = 0;
    this.oosNs = ns;
    if (this.oosCount > OOS_COUNT_MAX) {
      this.resyncs++;
      this.nr = ns;
      this.deliverInOrder(token);
      return SeqAction.Delivered;
    }
    this.seqDiscards++;
    this.pushDrop(token, DropReason.SeqDiscard);
    return SeqAction.Dropped;
  }

  /** Reorder mode, ns ahead of nr by d (0 < d < window). */
  private hold(ns: number, d: number, token: number): SeqAction {
    const cap = this.capacity;
    // Duplicate of a held packet?
    let idx = this.qHead;
    for (let i = 0; i < this.qCount; i++) {
      if (this.qNs[idx] === ns) {
        this.windowDrops++;
        this.pushDrop(token, DropReason.Window);
        return SeqAction.Dropped;
      }
      if (++idx === cap) idx = 0;
    }
    this.behindCount = 0;
    if (this.qCount === cap) {
      this.reorderOverflows++;
      const headD = (this.qNs[this.qHead] - this.nr) & SEQ_MASK;
      if (d < headD) {
        // The new packet is the earliest: give up on the gap before it.
        this.nr = ns;
        this.deliverInOrder(token);
        return SeqAction.Delivered;
      }
      this.nr = this.qNs[this.qHead];
      this.releaseHeadRun();
      d = (ns - this.nr) & SEQ_MASK;
      if (d === 0) {
        if (this.qCount !== 0) this.oosPackets++;
        this.deliverInOrder(token);
        return SeqAction.Delivered;
      }
      // d cannot be "behind" here: ns was after the head and is not a duplicate.
    }
    // Insert sorted by distance from nr, scanning from the tail.
    let pos = this.qCount; // logical position
    while (pos > 0) {
      const pi = this.phys(pos - 1);
      if (((this.qNs[pi] - this.nr) & SEQ_MASK) < d) break;
      const to = this.phys(pos);
      this.qTok[to] = this.qTok[pi];
      this.qNs[to] = this.qNs[pi];
      this.qDl[to] = this.qDl[pi];
      pos--;
    }
    if (pos < this.qCount) this.oosPackets++;
    const at = this.phys(pos);
    this.qTok[at] = token;
    this.qNs[at] = ns;
    this.qDl[at] = this.clock[0] + this.reorderTimeoutMs;
    this.qCount++;
    return SeqAction.Held;
  }

  /** ns behind the window: old, duplicate, or a restarted peer. */
  private behind(ns: number, token: number): SeqAction {
    if (this.behindCount > 0 && ns === ((this.behindNs + 1) & SEQ_MASK)) this.behindCount++;
    else this.behindCount = 1;
    this.behindNs = ns;
    if (this.behindCount > BEHIND_RESYNC_DROPS) {
      // The peer restarted its numbering: hand over what the old numbering left held, in order.
      while (this.qCount !== 0) {
        this.nr = this.qNs[this.qHead];
        this.releaseHeadRun();
      }
      this.resyncs++;
      this.oosCount = 0;
      this.nr = ns;
      this.deliverInOrder(token);
      return SeqAction.Delivered;
    }
    this.windowDrops++;
    this.pushDrop(token, DropReason.Window);
    return SeqAction.Dropped;
  }

  /** Deliver `token` as ns = nr, advance, release held successors. */
  private deliverInOrder(token: number): void {
    this.behindCount = 0;
    this.pushDeliver(token);
    this.nr = (this.nr + 1) & SEQ_MASK;
    this.releaseHeadRun();
  }

  /** Deliver held packets from the head while head.ns === nr. */
  private releaseHeadRun(): number {
    let n = 0;
    while (this.qCount !== 0 && this.qNs[this.qHead] === this.nr) {
      this.pushDeliver(this.qTok[this.qHead]);
      this.pop();
      this.nr = (this.nr + 1) & SEQ_MASK;
      n++;
    }
    return n;
  }

  private pop(): void {
    if (++this.qHead === this.capacity) this.qHead = 0;
    this.qCount--;
  }

  private phys(logical: number): number {
    const i = this.qHead + logical;
    return i >= this.capacity ? i - this.capacity : i;
  }

  private pushDeliver(token: number): void {
    let i = this.outHead + this.outCount;
    if (i >= this.ringSize) i -= this.ringSize;
    this.outTok[i] = token;
    this.outCount++;
  }

  private pushDrop(token: number, why: DropReason): void {
    let i = this.dropHead + this.dropCount;
    if (i >= this.ringSize) i -= this.ringSize;
    this.dropTok[i] = token;
    this.dropWhy[i] = why;
    this.dropCount++;
  }
}
