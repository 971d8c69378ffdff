/**
 * Hello keepalive of one static tunnel (RFC 3931 §4.2, §4.4, §6.5): when to send a Hello, when
 * to answer one, when the peer is dead, and how the control-channel numbering (Ns/Nr) is kept in
 * step with a peer that never did a handshake. No I/O, no clock of its own (clock[0] is a
 * monotonic millisecond time the caller keeps current), and nothing allocated after
 * construction: the caller turns the returned actions into packets (control.ts writeControl).
 * The rules, their sources and where they depart from them: docs/liveness.md.
 *
 *   const m = new HelloMachine({ intervalMs, retries, clock });
 *   m.start();
 *   // timer, at m.nextDeadline() or later:  act(m.poll())
 *   // each valid control message from the peer (ccid and source checked by the caller):
 *   //   act(m.onMessage(type, ns, nr))
 *   // act(a): a & SEND_HELLO → HELLO with Ns m.helloNs, Nr m.helloNr
 *   //         a & SEND_ACK   → ACK   with Ns m.ns,      Nr m.nr
 *
 * Behaviour:
 * - A Hello goes out at start(), then `intervalMs` (less up to 10 % jitter, §4.4) after the
 *   previous one was answered. One Hello is outstanding at a time.
 * - It is answered by any message from the peer whose Nr is its Ns + 1 (§4.2: an ACK, a ZLB, or
 *   the peer's own Hello). Unanswered, it is sent again after 1, 2, 4, 8, 8, … s (§4.2:
 *   exponential backoff, capped at no less than 8 s). After `retries` retransmissions and one more
 *   timeout the peer is dead: state Down, reason NoAnswer. The outstanding Hello is then sent
 *   every min(intervalMs, 8 s) until it is answered (state Up again); every other one of these
 *   probes carries Nr 0, which a peer that restarted accepts whatever our numbering was.
 * - A Hello from the peer is always answered at once (§4.2 forbids delaying acknowledgements),
 *   by an explicit ACK, or by our own Hello when one is due in the same call. At most 10 ACKs are
 *   sent per second (ackLimit); Hellos beyond that are still counted and numbered.
 * - Numbering, without a handshake: a Hello's Ns sets nr := Ns + 1, whatever came before, so the
 *   peer's latest Hello is always the one acknowledged (a retransmission gives the same Nr as the
 *   RFC's duplicate rule; an older one gives an Nr that RFC peers ignore). A message whose Nr is
 *   neither our next Ns nor (while a Hello is outstanding) that Hello's Ns means the peer expects
 *   other numbers — one side restarted: ns := its Nr (the outstanding Hello is renumbered and
 *   sent again at once, at most every 250 ms) and, for an ACK or ZLB, nr := its Ns (resyncs).
 */
import { CONTROL_SEQ_MASK, MessageType } from './control.js';

export interface HelloConfig {
  /** Time from an answered Hello to the next one, ms (> 0). */
  intervalMs: number;
  /** Retransmissions of an unanswered Hello before the peer is declared dead (RFC 3931: default 10). */
  retries: number;
  /** First retransmission timeout, ms (RFC 3931 §4.2: 1 s). */
  initialTimeoutMs?: number;
  /** Cap of the backoff, ms (RFC 3931 §4.2: no less than 8 s). */
  maxTimeoutMs?: number;
  /** Seed of the jitter, e.g. the tunnel ID: tunnels to one peer do not send in step (§4.4). */
  jitterSeed?: number;
  /** clock[0]: the current monotonic time in ms. */
  clock: Float64Array;
}

export const DEFAULT_HELLO_RETRIES = 10;
export const INITIAL_TIMEOUT_MS = 1000;
export const MAX_TIMEOUT_MS = 8000;
/** Least time between a resend after a resync and the transmission before it. */
export const RESYNC_RESEND_GAP_MS = 250;
/** ACKs per second (and burst) a tunnel sends at most. */
export const ACK_LIMIT_PER_SECOND = 10;

/** Actions returned by poll() and onMessage(). */
export const SEND_HELLO = 1;
export const SEND_ACK = 2;

export const enum LinkState {
  Down = 0,
  Up = 1,
}

export const enum HelloReason {
  /** No Hello answered yet and the first one's retransmissions have not run out. */
  Starting = 0,
  /** The last Hello was answered. */
  Answered = 1,
  /** A Hello went unanswered through every retransmission. */
  NoAnswer = 2,
}
export const HELLO_REASON_NAMES: readonly string[] = ['starting', 'answered', 'no_answer'];

const MASK = CONTROL_SEQ_MASK;

/** Retransmission timeout after the k-th transmission (k ≥ 0): initial · 2^k, capped. */
function timeoutAfter(k: number, initial: number, max: number): number {
  const t = initial * 2 ** Math.min(k, 30);
  return t < max ? t : max;
}

/**
 * Upper bound of the time from the peer's last answer to the Down verdict: one interval, then
 * the first transmission and `retries` retransmissions, each followed by its timeout.
 */
export function helloDownAfterMs(intervalMs: number, retries: number,
  initialTimeoutMs = INITIAL_TIMEOUT_MS, maxTimeoutMs = MAX_TIMEOUT_MS): number {
  let total = intervalMs;
  for (let k = 0; k <= retries; k++) total += timeoutAfter(k, initialTimeoutMs, maxTimeoutMs);
  return total;
}

export class HelloMachine {
  readonly intervalMs: number;
  readonly retries: number;
  readonly initialTimeoutMs: number;
  readonly maxTimeoutMs: number;
  private readonly clock: Float64Array;

  // ---- numbering (RFC 3931 §4.2), 16-bit ----
  /** Ns of the next message that takes a number (an ACK carries it without taking it). */
  ns = 0;
  /** Nr: the peer's next Ns as far as we know. */
  nr = 0;
  /** 1 while a Hello waits for its answer. */
  outstanding = 0;
  /** Ns of the outstanding (or last) Hello. */
  helloNs = 0;
  /** Nr of the Hello poll() or onMessage() just asked for: nr, or 0 on every other probe while Down. */
  helloNr = 0;
  /** Transmissions of the outstanding Hello (1 = sent once). */
  transmissions = 0;
  private firstSentAt = 0;
  private lastSentAt = -Infinity;
  /** 0 once the outstanding Hello was sent twice or renumbered: its answer gives no RTT (Karn). */
  private rttValid = 0;
  private deadline = -1;

  // ---- verdict ----
  state: LinkState = LinkState.Down;
  reason: HelloReason = HelloReason.Starting;
  /** Monotonic ms of the last change of state or reason. */
  since = 0;
  /** Changes of (state, reason): every verdict, the first one included. */
  transitions = 0;
  /** Round-trip time of the last Hello answered at its first transmission, ms; -1 before one. */
  rttMs = -1;
  /** Monotonic ms of the last message from the peer, -1 before one. */
  lastHeardAt = -1;

  // ---- counters ----
  hellosSent = 0;
  retransmissions = 0;
  acksSent = 0;
  hellosReceived = 0;
  /** Messages from the peer that answered our Hello. */
  answers = 0;
  /** Messages from the peer (Hello, ACK or ZLB) passed to onMessage. */
  messagesReceived = 0;
  resyncs = 0;
  /** Hellos not acknowledged because of the ACK rate limit. */
  acksLimited = 0;

  private ackTokens = ACK_LIMIT_PER_SECOND;
  private ackRefillAt = 0;
  private jitter: number;

  constructor(cfg: HelloConfig) {
    const positive = (name: string, v: number | undefined, dflt: number): number => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || x <= 0) throw new RangeError(`${name}: ${String(v)} is not a positive number of ms`);
      return x;
    };
    this.intervalMs = positive('intervalMs', cfg.intervalMs, 0);
    this.initialTimeoutMs = positive('initialTimeoutMs', cfg.initialTimeoutMs, INITIAL_TIMEOUT_MS);
    this.maxTimeoutMs = Math.max(this.initialTimeoutMs, positive('maxTimeoutMs', cfg.maxTimeoutMs, MAX_TIMEOUT_MS));
    if (!Number.isInteger(cfg.retries) || cfg.retries < 0) throw new RangeError(`retries: ${cfg.retries} is not an integer ≥ 0`);
    this.retries = cfg.retries;
    if (!(cfg.clock instanceof Float64Array) || cfg.clock.length < 1) throw new RangeError('clock: a Float64Array with the time in [0]');
    this.clock = cfg.clock;
    this.jitter = ((cfg.jitterSeed ?? 1) | 0) || 1;
  }

  /** Begin: the first Hello is due now. */
  start(): void {
    const now = this.clock[0];
    this.since = now;
    this.deadline = now;
    this.ackRefillAt = now;
  }

  /** When poll() has something to do next (monotonic ms), or -1 before start(). */
  nextDeadline(): number {
    return this.deadline;
  }

  /** Upper bound of the time from the peer's last answer to the Down verdict (ms). */
  downAfterMs(): number {
    return helloDownAfterMs(this.intervalMs, this.retries, this.initialTimeoutMs, this.maxTimeoutMs);
  }

  /** Timer: send, resend or give up, as the deadline says. Returns SEND_HELLO or 0. */
  poll(): number {
    const now = this.clock[0];
    if (this.deadline < 0 || now < this.deadline) return 0;
    if (this.outstanding === 0) {
      this.helloNs = this.ns;
      this.ns = (this.ns + 1) & MASK;
      this.outstanding = 1;
      this.transmissions = 1;
      this.firstSentAt = now;
      this.lastSentAt = now;
      this.rttValid = 1;
      this.hellosSent++;
      this.helloNr = this.nr;
      this.deadline = now + timeoutAfter(0, this.initialTimeoutMs, this.maxTimeoutMs);
      return SEND_HELLO;
    }
    const dead = this.state === LinkState.Down && this.reason === HelloReason.NoAnswer;
    if (!dead && this.transmissions > this.retries) this.setVerdict(LinkState.Down, HelloReason.NoAnswer, now);
    this.transmissions++;
    this.retransmissions++;
    this.lastSentAt = now;
    this.rttValid = 0;
    const down = this.state === LinkState.Down && this.reason === HelloReason.NoAnswer;
    // A peer that restarted and sends no Hello of its own drops every message whose Nr is ahead
    // of its fresh numbering (go-l2tp does), so every other probe carries Nr 0.
    this.helloNr = down && (this.transmissions & 1) === 0 ? 0 : this.nr;
    this.deadline = now + (down
      ? Math.min(this.intervalMs, this.maxTimeoutMs)
      : timeoutAfter(this.transmissions - 1, this.initialTimeoutMs, this.maxTimeoutMs));
    return SEND_HELLO;
  }

  /**
   * A valid message from the peer: `type` MessageType.Hello, Ack or Zlb (others are not for this
   * machine), with its Ns and Nr. Returns SEND_HELLO and/or SEND_ACK.
   */
  onMessage(type: number, ns: number, nr: number): number {
    const now = this.clock[0];
    this.messagesReceived++;
    this.lastHeardAt = now;
    let actions = 0;
    const pns = ns & MASK;
    const pnr = nr & MASK;
    if (this.outstanding === 1 && pnr === this.ns) {
      // Our Hello is answered.
      this.outstanding = 0;
      this.answers++;
      if (this.rttValid === 1) this.rttMs = now - this.firstSentAt;
      this.deadline = now + this.nextInterval();
      this.setVerdict(LinkState.Up, HelloReason.Answered, now);
    } else if (!(this.outstanding === 1 ? pnr === this.helloNs : pnr === this.ns || pnr === ((this.ns - 1) & MASK))) {
      // The peer expects numbers we are not using: one side restarted. Take the peer's.
      this.resyncs++;
      if (type !== MessageType.Hello) this.nr = pns;
      if (this.outstanding === 1) {
        this.helloNs = pnr;
        this.ns = (pnr + 1) & MASK;
        this.rttValid = 0;
        if (now - this.lastSentAt >= RESYNC_RESEND_GAP_MS) {
          actions |= SEND_HELLO;
          this.helloNr = this.nr;
          this.transmissions++;
          this.retransmissions++;
          this.lastSentAt = now;
          const down = this.state === LinkState.Down && this.reason === HelloReason.NoAnswer;
          this.deadline = now + (down
            ? Math.min(this.intervalMs, this.maxTimeoutMs)
            : timeoutAfter(this.transmissions - 1, this.initialTimeoutMs, this.maxTimeoutMs));
        } else if (this.deadline > this.lastSentAt + RESYNC_RESEND_GAP_MS) {
          this.deadline = this.lastSentAt + RESYNC_RESEND_GAP_MS;
        }
      } else {
        this.ns = pnr;
      }
    }
    if (type === MessageType.Hello) {
      this.hellosReceived++;
      this.nr = (pns + 1) & MASK;
      this.helloNr = this.nr;
      // Our own Hello in this same call carries the Nr: it is the acknowledgement.
      if ((actions & SEND_HELLO) === 0) {
        if (this.takeAckToken(now)) {
          actions |= SEND_ACK;
          this.acksSent++;
        } else {
          this.acksLimited++;
        }
      }
    }
    return actions;
  }

  private takeAckToken(now: number): boolean {
    const refill = ((now - this.ackRefillAt) * ACK_LIMIT_PER_SECOND) / 1000;
    if (refill > 0) {
      this.ackTokens = Math.min(ACK_LIMIT_PER_SECOND, this.ackTokens + refill);
      this.ackRefillAt = now;
    }
    if (this.ackTokens < 1) return false;
    this.ackTokens -= 1;
    return true;
  }

  /** intervalMs less a jitter of up to 10 % (xorshift32 on the seed). */
  private nextInterval(): number {
    let x = this.jitter;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.jitter = x | 0;
    const span = Math.floor(this.intervalMs / 10);
    return span > 0 ? this.intervalMs - ((x >>> 0) % span) : this.intervalMs;
  }

  private setVerdict(state: LinkState, reason: HelloReason, now: number): void {
    if (this.state === state && this.reason === reason) return;
    this.state = state;
    this.reason = reason;
    this.since = now;
    this.transitions++;
  }
}
