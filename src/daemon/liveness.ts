/**
 * Whether each running tunnel and session works, as the control plane reports it and acts on it:
 * - a tunnel with hello_interval is up or down as its Hello keepalive says (the worker's verdict,
 *   dataplane/control-channel.ts, read from the shared status row when the worker signals one);
 *   a tunnel without it is up while it runs;
 * - a session is down while its tunnel is, and, with peer_timeout, when no valid frame came from
 *   the peer for that long; up again with the next one;
 * - every verdict change: the session taps' carrier follows (TUNSETCARRIER), one log line
 *   (warning when down, info when up), the `show`/API state, the metrics gauges.
 * A verdict that is not yet known ("starting": no answer or no frame yet, and the timeout not yet
 * run out) does not touch the carrier, so a restart of l2tpd does not flap bridges.
 * The diagnostics of diagnose.ts are gathered here too (sample histories, once a second).
 */
import type { Logger } from 'pino';
import type { DataPlane } from '../dataplane/index.js';
import { HELLO_ROW_WIDTH, HelloField as H, SESSION_DIAG_WIDTH, SessionDiag as SD, TUNNEL_DIAG_WIDTH } from '../dataplane/status.js';
import { HOST_ROW, SESSION_ROW_WIDTH, SessionCounter as S } from '../dataplane/counters.js';
import { HelloReason } from '../protocol/index.js';
import {
  SampleHistory, sessionDiagnostics, tunnelDiagnostics, type Diagnostic, type SessionFacts, type TunnelFacts,
} from './diagnose.js';

/** Atomics.waitAsync (V8 8.7, Node 16+): not in the TypeScript lib this project targets. */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

/** How often peer_timeout is checked and samples are looked at (ms). */
export const LIVENESS_TICK_MS = 250;

export interface Verdict {
  state: 'up' | 'down';
  reason: string;
  /** Wall ms of the last change. */
  since: number;
  transitions: number;
  /** false while starting: no answer or frame yet, and no timeout run out. */
  known: boolean;
}

export interface HelloReport {
  interval: number;
  retries: number;
  /** Upper bound of the down-detection time, s. */
  down_after: number;
  rtt_ms?: number;
  last_heard?: string;
  sent: number;
  retransmissions: number;
  received: number;
  answers: number;
  acks_sent: number;
  resyncs: number;
}

/** The shared rows it reads, and each session's transmit state (DataPlane has them). */
export type LivenessRows = Pick<DataPlane, 'helloStatus' | 'helloSignal' | 'sessionCounters' | 'sessionDiag' | 'tunnelDiag' | 'txState'>;

interface LiveTunnel {
  facts: TunnelFacts & { hello_retries?: number };
  slot: number;
  verdict: Verdict;
  seenTransitions: number;
}

interface LiveSession {
  facts: SessionFacts & { peer_timeout?: number };
  key: string;
  slot: number;
  tapFd: number;
  ifname: string;
  startedAt: number;
  verdict: Verdict;
  /** What the carrier was last set to, undefined before l2tpd set it. */
  carrier: boolean | undefined;
  history: SampleHistory;
}

export class Liveness {
  private readonly tunnels = new Map<number, LiveTunnel>();
  private readonly sessions = new Map<string, LiveSession>();
  /** The sessions of each tunnel, for its diagnostics (a look at all sessions per tunnel is quadratic). */
  private readonly ofTunnel = new Map<number, Set<LiveSession>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private ticks = 0;
  private signalSeen: number;
  private carrierWarned = false;

  constructor(private readonly dp: LivenessRows, private readonly log: Logger,
    private readonly setCarrier: (fd: number, on: boolean) => void, private readonly now: () => number = Date.now) {
    this.signalSeen = Atomics.load(dp.helloSignal, 0);
    this.waitForSignal();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  // ---------------------------------------------------------------- membership

  addTunnel(facts: LiveTunnel['facts'], slot: number): void {
    const hello = (facts.hello_interval ?? 0) > 0;
    this.tunnels.set(facts.tunnel_id, {
      facts, slot, seenTransitions: 0,
      verdict: hello
        ? { state: 'down', reason: 'starting: no answer to Hello yet', since: this.now(), transitions: 0, known: false }
        : { state: 'up', reason: 'running (no hello_interval)', since: this.now(), transitions: 0, known: true },
    });
    if (hello) this.readHello(this.tunnels.get(facts.tunnel_id)!);
    this.ensureTimer();
  }

  delTunnel(tunnelId: number): void {
    this.tunnels.delete(tunnelId);
  }

  addSession(facts: LiveSession['facts'], key: string, slot: number, tapFd: number, ifname: string): void {
    const s: LiveSession = {
      facts, key, slot, tapFd, ifname, startedAt: this.now(), carrier: undefined, history: new SampleHistory(),
      verdict: { state: 'down', reason: 'starting', since: this.now(), transitions: 0, known: false },
    };
    this.delSession(key);
    this.sessions.set(key, s);
    let mine = this.ofTunnel.get(facts.tunnel_id);
    if (!mine) { mine = new Set(); this.ofTunnel.set(facts.tunnel_id, mine); }
    mine.add(s);
    this.evaluate(s, false);
    this.ensureTimer();
  }

  delSession(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    const mine = this.ofTunnel.get(s.facts.tunnel_id);
    mine?.delete(s);
    if (mine?.size === 0) this.ofTunnel.delete(s.facts.tunnel_id);
  }

  /** The session has a new tap (restored after it was removed behind l2tpd's back): re-apply the carrier. */
  setTap(key: string, fd: number): void {
    const s = this.sessions.get(key);
    if (!s) return;
    s.tapFd = fd;
    s.carrier = undefined;
    this.applyCarrier(s);
  }

  // ---------------------------------------------------------------- reports

  tunnel(tunnelId: number): Verdict | undefined {
    return this.tunnels.get(tunnelId)?.verdict;
  }

  session(key: string): Verdict | undefined {
    return this.sessions.get(key)?.verdict;
  }

  helloReport(tunnelId: number): HelloReport | undefined {
    const t = this.tunnels.get(tunnelId);
    if (!t || !(t.facts.hello_interval! > 0)) return undefined;
    const r = this.dp.helloStatus;
    const b = t.slot * HELLO_ROW_WIDTH;
    return {
      interval: t.facts.hello_interval!, retries: t.facts.hello_retries ?? 0, down_after: r[b + H.DownAfterMs] / 1000,
      ...(r[b + H.RttMs] >= 0 ? { rtt_ms: r[b + H.RttMs] } : {}),
      ...(r[b + H.LastHeardMs] > 0 ? { last_heard: new Date(r[b + H.LastHeardMs]).toISOString() } : {}),
      sent: r[b + H.HellosSent], retransmissions: r[b + H.Retransmissions], received: r[b + H.HellosReceived],
      answers: r[b + H.Answers], acks_sent: r[b + H.AcksSent], resyncs: r[b + H.Resyncs],
    };
  }

  /** Hello round-trip time of a tunnel, ms, when one was measured. */
  rttMs(tunnelId: number): number | undefined {
    const t = this.tunnels.get(tunnelId);
    if (!t || !(t.facts.hello_interval! > 0)) return undefined;
    const v = this.dp.helloStatus[t.slot * HELLO_ROW_WIDTH + H.RttMs];
    return v >= 0 ? v : undefined;
  }

  tunnelDiagnostics(tunnelId: number): Diagnostic[] {
    const t = this.tunnels.get(tunnelId);
    if (!t) return [];
    const sessions = [...this.ofTunnel.get(tunnelId) ?? []].map((s) => s.facts);
    const now = this.now();
    const hello = t.facts.hello_interval! > 0 ? { row: this.dp.helloStatus, base: t.slot * HELLO_ROW_WIDTH } : undefined;
    const out = tunnelDiagnostics(t.facts, sessions, this.dp.tunnelDiag, t.slot * TUNNEL_DIAG_WIDTH, now, hello);
    // Raw IP data that matched no session on this host, sent from this tunnel's remote.
    if (t.facts.encap === 'ip') {
      for (const d of tunnelDiagnostics(t.facts, sessions, this.dp.tunnelDiag, HOST_ROW * TUNNEL_DIAG_WIDTH, now)) {
        if (d.kind === 'unknown_session' && d.message.startsWith(`${t.facts.remote} `)) out.push(d);
      }
    }
    return out;
  }

  sessionDiagnostics(key: string): Diagnostic[] {
    const s = this.sessions.get(key);
    if (!s) return [];
    return sessionDiagnostics(s.facts, this.dp.sessionDiag, s.slot * SESSION_DIAG_WIDTH, s.history, this.now(),
      this.dp.txState(s.slot).numbered);
  }

  // ---------------------------------------------------------------- evaluation

  private waitForSignal(): void {
    if (this.stopped) return;
    const r = waitAsync(this.dp.helloSignal, 0, this.signalSeen);
    const go = (): void => {
      if (this.stopped) return;
      this.signalSeen = Atomics.load(this.dp.helloSignal, 0);
      for (const t of this.tunnels.values()) this.readHello(t);
      this.waitForSignal();
    };
    if (r.async) void (r.value as Promise<string>).then(go);
    else queueMicrotask(go);
  }

  private ensureTimer(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.tick(), LIVENESS_TICK_MS);
    this.timer.unref();
  }

  /** peer_timeout, and (every fourth tick: samples come at most once a second) the diagnostics samples. */
  private tick(): void {
    const samples = this.ticks++ % 4 === 0;
    for (const s of this.sessions.values()) {
      if (samples) s.history.observe(s.facts, this.dp.sessionDiag, s.slot * SESSION_DIAG_WIDTH);
      if (s.facts.peer_timeout) this.evaluate(s, true);
    }
  }

  /** A Hello verdict of the worker, if there is a new one: log it and re-evaluate the tunnel's sessions. */
  private readHello(t: LiveTunnel): void {
    if (!(t.facts.hello_interval! > 0)) return;
    const r = this.dp.helloStatus;
    const b = t.slot * HELLO_ROW_WIDTH;
    const transitions = r[b + H.Transitions];
    if (transitions === t.seenTransitions || r[b + H.State] < 0) return;
    t.seenTransitions = transitions;
    const up = r[b + H.State] === 1;
    const reason = r[b + H.Reason];
    const downAfter = r[b + H.DownAfterMs] / 1000;
    const prev = t.verdict;
    t.verdict = {
      state: up ? 'up' : 'down',
      reason: up ? 'Hello answered'
        : reason === HelloReason.NoAnswer
          ? `no answer to Hello from ${t.facts.remote} (${t.facts.hello_retries ?? 0} retransmissions; dead after ≤ ${downAfter} s)`
          : 'starting: no answer to Hello yet',
      since: r[b + H.SinceMs],
      transitions,
      known: reason !== HelloReason.Starting,
    };
    let changed = 0;
    for (const s of this.sessions.values()) {
      if (s.facts.tunnel_id === t.facts.tunnel_id && this.evaluate(s, false)) changed++;
    }
    if (prev.state === t.verdict.state && prev.known === t.verdict.known) return;
    const fields = { tunnel_id: t.facts.tunnel_id, reason: t.verdict.reason, sessions: changed };
    if (up) this.log.info({ ...fields, rtt_ms: r[b + H.RttMs] >= 0 ? r[b + H.RttMs] : undefined }, 'tunnel up');
    else if (t.verdict.known) this.log.warn(fields, 'tunnel down');
  }

  /**
   * Work out a session's verdict; on a change, set the carrier and (when `logOwn`: the change is
   * the session's own, not its tunnel's) log it. Returns whether the state changed.
   */
  private evaluate(s: LiveSession, logOwn: boolean): boolean {
    const now = this.now();
    const t = this.tunnels.get(s.facts.tunnel_id);
    const timeoutMs = (s.facts.peer_timeout ?? 0) * 1000;
    let state: 'up' | 'down';
    let reason: string;
    let known = true;
    if (t && t.verdict.state === 'down') {
      state = 'down';
      reason = `tunnel ${t.facts.tunnel_id} is down: ${t.verdict.reason}`;
      known = t.verdict.known;
    } else if (timeoutMs > 0) {
      const c = this.dp.sessionCounters;
      const last = Math.max(c[s.slot * SESSION_ROW_WIDTH + S.LastRxMs], this.dp.sessionDiag[s.slot * SESSION_DIAG_WIDTH + SD.SampleMs]);
      if (last > 0 && now - last < timeoutMs) {
        state = 'up';
        reason = 'frames from the peer';
      } else if (last === 0 && now - s.startedAt < timeoutMs) {
        state = 'down';
        reason = 'starting: no frame from the peer yet';
        known = false;
      } else {
        state = 'down';
        reason = `no frame from the peer for ${s.facts.peer_timeout} s (peer_timeout)`;
      }
    } else {
      state = 'up';
      reason = t && t.facts.hello_interval ? 'tunnel up (Hello answered)' : 'running';
    }
    const v = s.verdict;
    const stateChanged = v.state !== state || v.known !== known;
    if (stateChanged) {
      s.verdict = { state, reason, since: now, transitions: v.transitions + 1, known };
      if (logOwn && (known || state === 'up')) {
        const fields = { tunnel_id: s.facts.tunnel_id, session_id: s.facts.session_id, interface: s.ifname, reason };
        if (state === 'up') this.log.info(fields, 'session up');
        else this.log.warn(fields, 'session down');
      }
    } else if (v.reason !== reason) {
      v.reason = reason;
    }
    this.applyCarrier(s);
    return stateChanged;
  }

  private applyCarrier(s: LiveSession): void {
    const v = s.verdict;
    if (!v.known && v.state === 'down') return;
    const want = v.state === 'up';
    if (s.carrier === want) return;
    try {
      this.setCarrier(s.tapFd, want);
      s.carrier = want;
    } catch (err) {
      if (!this.carrierWarned) this.log.warn({ err: (err as Error).message, interface: s.ifname }, 'cannot set the carrier of a session interface');
      this.carrierWarned = true;
      s.carrier = want;
    }
  }
}
