/**
 * The Hello state machine (src/protocol/hello.ts), on a simulated clock: the RFC 3931 §4.2
 * retransmission schedule and the Down verdict at exactly the documented time, probing while
 * down and Up at the first answer, answering the peer's Hellos, the ACK rate limit, and the
 * numbering rules against peers that restart — another HelloMachine, and a strict RFC 3931 peer
 * modelled on go-l2tp's transport (duplicates ignored but acknowledged, messages whose Nr is
 * ahead of its Ns dropped whole, out-of-order messages never delivered).
 */
import t from 'tap';
import {
  HelloMachine, HelloReason, LinkState, MessageType, RESYNC_RESEND_GAP_MS, SEND_ACK, SEND_HELLO, helloDownAfterMs,
} from '../../src/protocol/index.js';
import { gcsDuring } from '../helpers/gc.js';

const MASK = 0xffff;

function machine(intervalMs = 1000, retries = 3, seed = 7): { m: HelloMachine; clock: Float64Array } {
  const clock = new Float64Array(1);
  const m = new HelloMachine({ intervalMs, retries, clock, jitterSeed: seed });
  m.start();
  return { m, clock };
}

/** Advance the clock to each deadline until `until`, collecting the times Hellos were sent. */
function runUntil(m: HelloMachine, clock: Float64Array, until: number, sent: number[] = []): number[] {
  for (let guard = 0; guard < 100000; guard++) {
    const d = m.nextDeadline();
    if (d > until) break;
    clock[0] = Math.max(clock[0], d);
    if (m.poll() & SEND_HELLO) sent.push(clock[0]);
  }
  clock[0] = until;
  return sent;
}

t.test('documented down time: interval + the sum of the backed-off timeouts', async (t) => {
  t.equal(helloDownAfterMs(1000, 10), 1000 + 1000 + 2000 + 4000 + 8000 * 8, 'RFC defaults: 10 retransmissions, 1 s doubling, 8 s cap');
  t.equal(helloDownAfterMs(1000, 2), 1000 + 7000);
  t.equal(helloDownAfterMs(60000, 0), 61000, 'no retransmission: one timeout');
  t.equal(machine(5000, 3).m.downAfterMs(), 5000 + 15000);
});

t.test('a quiet peer: schedule, Down verdict, probing, Up at the first answer', async (t) => {
  const { m, clock } = machine(1000, 3);
  t.same([m.state, m.reason], [LinkState.Down, HelloReason.Starting], 'starts Down, starting');
  clock[0] = 0;
  t.equal(m.poll(), SEND_HELLO, 'the first Hello goes at start');
  t.same([m.helloNs, m.nr], [0, 0], 'Ns 0, Nr 0');
  // answered after 20 ms
  clock[0] = 20;
  t.equal(m.onMessage(MessageType.Ack, 0, 1), 0, 'an ACK needs no answer');
  t.same([m.state, m.reason, m.rttMs, m.transitions], [LinkState.Up, HelloReason.Answered, 20, 1], 'Up, RTT 20 ms');
  const next = m.nextDeadline();
  t.ok(next >= 20 + 900 && next <= 20 + 1000, `next Hello ${next - 20} ms after the answer (interval less ≤ 10 % jitter)`);
  // the peer goes silent from now on
  const lastAnswer = 20;
  const sent = runUntil(m, clock, 60000);
  const offsets = sent.map((s) => s - sent[0]);
  t.same(offsets.slice(0, 4), [0, 1000, 3000, 7000], 'retransmitted after 1, 2, 4 s');
  t.equal(m.helloNs, 1, 'every retransmission keeps its Ns');
  // Down after the 3rd retransmission's 8 s timeout: 15 s after the first transmission
  t.equal(m.state, LinkState.Down);
  t.equal(m.reason, HelloReason.NoAnswer);
  t.equal(m.since, sent[0] + 15000, 'Down 15 s after the unanswered Hello was first sent');
  t.ok(m.since - lastAnswer <= m.downAfterMs(), `within the documented ${m.downAfterMs()} ms of the last answer (${m.since - lastAnswer})`);
  t.same(offsets.slice(4, 8), [15000, 16000, 17000, 18000], 'then probed every interval (1 s), from the Down verdict on');
  t.equal(m.transitions, 2);
  // the peer answers a probe
  clock[0] = 60005;
  m.onMessage(MessageType.Ack, 0, 2);
  t.same([m.state, m.reason, m.transitions], [LinkState.Up, HelloReason.Answered, 3], 'Up at the first answer');
  t.equal(m.rttMs, 20, 'an answer to a retransmitted Hello gives no RTT sample (Karn)');
  t.ok(m.retransmissions > 40 && m.hellosSent === 2, `${m.hellosSent} Hellos, ${m.retransmissions} retransmissions`);
});

t.test('a long interval probes every 8 s while down, and the first verdict can be Down', async (t) => {
  const { m, clock } = machine(60000, 1);
  const sent = runUntil(m, clock, 40000);
  t.same(sent, [0, 1000, 3000, 11000, 19000, 27000, 35000], 'first Hello, one retransmission, Down at 3 s, then every 8 s');
  t.same([m.state, m.reason, m.transitions], [LinkState.Down, HelloReason.NoAnswer, 1], 'starting → no answer is a verdict');
});

t.test('answering the peer', async (t) => {
  const { m, clock } = machine(1000, 3);
  clock[0] = 0;
  m.poll();
  clock[0] = 5;
  let a = m.onMessage(MessageType.Hello, 41, 0);
  t.equal(a, SEND_ACK, "the peer's Hello is acknowledged at once");
  t.same([m.ns, m.nr], [1, 42], 'ACK carries Ns 1 (not consumed) and Nr 42');
  t.equal(m.state, LinkState.Down, 'a Hello whose Nr does not cover ours is no answer');
  a = m.onMessage(MessageType.Hello, 41, 0);
  t.same([a, m.nr], [SEND_ACK, 42], 'a retransmitted Hello is acknowledged again, with the same Nr');
  a = m.onMessage(MessageType.Hello, 42, 1);
  t.same([a, m.nr, m.state], [SEND_ACK, 43, LinkState.Up], 'a Hello whose Nr covers ours answers it');
  a = m.onMessage(MessageType.Hello, 40, 1);
  t.same([a, m.nr], [SEND_ACK, 41], 'an older Hello is acknowledged with its own Nr (harmless to RFC peers)');
  t.equal(m.resyncs, 0, 'none of this is a resync');
  t.equal(m.onMessage(MessageType.Zlb, 43, 1), 0, 'ZLBs and ACKs are not answered');
});

t.test('crossing Hellos are not a resync', async (t) => {
  const { m, clock } = machine(1000, 3);
  m.poll(); // Hello Ns 0
  clock[0] = 3;
  // the peer's Hello sent before ours arrived: its Nr is our outstanding Ns
  const a = m.onMessage(MessageType.Hello, 9, 0);
  t.same([a, m.resyncs, m.outstanding], [SEND_ACK, 0, 1], 'acknowledged, still waiting for our answer');
  clock[0] = 6;
  m.onMessage(MessageType.Ack, 10, 1);
  t.same([m.state, m.rttMs], [LinkState.Up, 6]);
});

t.test('ACKs are limited to 10 a second', async (t) => {
  const { m, clock } = machine(1000, 3);
  m.poll();
  let acks = 0;
  for (let i = 0; i < 30; i++) if (m.onMessage(MessageType.Hello, i, 0) & SEND_ACK) acks++;
  t.equal(acks, 10, '10 of a burst of 30');
  t.equal(m.acksLimited, 20);
  t.equal(m.nr, 30, 'every Hello still counts for the numbering');
  clock[0] = 500;
  acks = 0;
  for (let i = 30; i < 40; i++) if (m.onMessage(MessageType.Hello, i, 0) & SEND_ACK) acks++;
  t.equal(acks, 5, 'half a second refills 5');
});

t.test('resync: the peer expects other numbers', async (t) => {
  const { m, clock } = machine(1000, 3);
  m.poll();
  clock[0] = 10;
  m.onMessage(MessageType.Ack, 0, 1);
  for (let i = 0; i < 6; i++) { // six answered rounds: Ns 1..6
    clock[0] = m.nextDeadline();
    m.poll();
    clock[0] += 10;
    m.onMessage(MessageType.Ack, 0, m.ns);
  }
  t.equal(m.ns, 7);
  clock[0] = m.nextDeadline();
  m.poll(); // Hello Ns 7, outstanding
  clock[0] += 5;
  // a restarted peer (go-l2tp) acknowledges with its fresh Nr 0 and Ns 1: within the gap, no resend yet
  t.equal(m.onMessage(MessageType.Ack, 1, 0), 0, 'renumbered, resent when the gap allows');
  t.same([m.helloNs, m.ns, m.nr, m.resyncs], [0, 1, 1, 1], 'our Hello takes Ns 0, Nr takes its Ns');
  t.equal(m.nextDeadline(), clock[0] - 5 + RESYNC_RESEND_GAP_MS, 'resent 250 ms after the last transmission');
  clock[0] = m.nextDeadline();
  t.equal(m.poll(), SEND_HELLO);
  clock[0] += 5;
  m.onMessage(MessageType.Ack, 1, 1);
  t.same([m.state, m.outstanding], [LinkState.Up, 0], 'answered under the new numbering');
  // later: the peer's Nr jumps ahead (we restarted and it did not — seen from the other side)
  clock[0] = m.nextDeadline();
  m.poll(); // Hello Ns 1
  clock[0] += 400;
  t.equal(m.onMessage(MessageType.Hello, 77, 500), SEND_HELLO, 'past the gap: resent at once, the resend acknowledges the Hello');
  t.same([m.helloNs, m.nr, m.resyncs], [500, 78, 2]);
});

/**
 * Two endpoints over a simulated link (one-way delay `delay` ms). An endpoint is either a
 * HelloMachine or a strict RFC 3931 peer that only answers and sends its own Hellos the way
 * go-l2tp's transport does.
 */
interface Msg { type: number; ns: number; nr: number }
interface Endpoint { receive(m: Msg): void; wake(): void; next(): number }

class Link {
  now = 0;
  private queue: Array<{ at: number; to: 0 | 1; m: Msg }> = [];
  paused: [boolean, boolean] = [false, false];
  /** Messages to a paused endpoint wait in its socket; they arrive in a burst when it resumes. */
  private backlog: [Msg[], Msg[]] = [[], []];
  ends: [Endpoint | null, Endpoint | null] = [null, null];
  constructor(readonly delay: number) {}
  send(from: 0 | 1, m: Msg): void { this.queue.push({ at: this.now + this.delay, to: from === 0 ? 1 : 0, m }); }
  resume(i: 0 | 1): void {
    this.paused[i] = false;
    for (const m of this.backlog[i].splice(0)) this.ends[i]!.receive(m);
  }
  run(until: number, clocks: Float64Array[]): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      const nextMsg = this.queue.reduce((a, q) => Math.min(a, q.at), Infinity);
      const wakes = this.ends.map((e, i) => (e && !this.paused[i] ? e.next() : Infinity));
      const at = Math.min(nextMsg, ...wakes);
      if (at > until) break;
      this.now = Math.max(this.now, at);
      for (const c of clocks) c[0] = this.now;
      if (nextMsg === at) {
        const i = this.queue.findIndex((q) => q.at === at);
        const q = this.queue.splice(i, 1)[0];
        if (this.paused[q.to]) this.backlog[q.to].push(q.m);
        else this.ends[q.to]?.receive(q.m);
      } else {
        const i = wakes.indexOf(at);
        this.ends[i]!.wake();
      }
    }
    this.now = until;
    for (const c of clocks) c[0] = until;
  }
}

class MachineEnd implements Endpoint {
  constructor(readonly m: HelloMachine, private readonly link: Link, private readonly side: 0 | 1) {}
  private act(a: number): void {
    if (a & SEND_HELLO) this.link.send(this.side, { type: MessageType.Hello, ns: this.m.helloNs, nr: this.m.helloNr });
    if (a & SEND_ACK) this.link.send(this.side, { type: MessageType.Ack, ns: this.m.ns, nr: this.m.nr });
  }
  receive(msg: Msg): void { this.act(this.m.onMessage(msg.type, msg.ns, msg.nr)); }
  wake(): void { this.act(this.m.poll()); }
  next(): number { return this.m.nextDeadline(); }
}

/** go-l2tp's transport rules (l2tp/transport.go), reduced to Hello and ACK. */
class StrictPeer implements Endpoint {
  ns = 0;
  nr = 0;
  helloOut = -1;
  helloSentAt = 0;
  tries = 0;
  failures = 0;
  answered = 0;
  private nextHello: number;
  constructor(private readonly link: Link, private readonly side: 0 | 1, private readonly clock: Float64Array,
    private readonly helloEvery = Infinity, readonly maxTries = 3) {
    this.nextHello = helloEvery;
  }
  private static cmp(a: number, b: number): number {
    const d = (a - b) & MASK;
    return d === 0 ? 0 : d < 0x8000 ? 1 : -1;
  }
  receive(msg: Msg): void {
    if (StrictPeer.cmp(msg.nr, (this.ns + 1) & MASK) > 0) return; // "dropping invalid packet"
    if (this.helloOut >= 0 && StrictPeer.cmp(msg.nr, this.helloOut) > 0) {
      this.helloOut = -1;
      this.answered++;
      this.nextHello = this.clock[0] + this.helloEvery;
    }
    if (msg.type === MessageType.Ack) return;
    if (msg.ns === this.nr) this.nr = (this.nr + 1) & MASK; // in sequence; stale and future: not delivered
    this.link.send(this.side, { type: MessageType.Ack, ns: this.ns, nr: this.nr });
  }
  wake(): void {
    const now = this.clock[0];
    if (this.helloOut < 0) {
      this.helloOut = this.ns;
      this.ns = (this.ns + 1) & MASK;
      this.tries = 1;
      this.helloSentAt = now;
    } else if (this.tries >= this.maxTries) {
      this.failures++; // go-l2tp would close the tunnel; the model starts a new Hello instead
      this.helloOut = -1;
      this.nextHello = now;
      return;
    } else {
      this.tries++;
    }
    this.helloSentAt = now;
    this.link.send(this.side, { type: MessageType.Hello, ns: this.helloOut, nr: this.nr });
  }
  next(): number {
    if (this.helloOut < 0) return this.nextHello;
    return this.helloSentAt + 1000 * 2 ** (this.tries - 1);
  }
}

function pair(delay = 5): { link: Link; a: MachineEnd; b: MachineEnd; clocks: Float64Array[] } {
  const link = new Link(delay);
  const ca = new Float64Array(1);
  const cb = new Float64Array(1);
  const a = new MachineEnd(new HelloMachine({ intervalMs: 1000, retries: 2, clock: ca, jitterSeed: 1 }), link, 0);
  const b = new MachineEnd(new HelloMachine({ intervalMs: 1000, retries: 2, clock: cb, jitterSeed: 2 }), link, 1);
  link.ends = [a, b];
  a.m.start();
  b.m.start();
  return { link, a, b, clocks: [ca, cb] };
}

t.test('two machines: stop one, the other goes down in time; continue it, up within an interval', async (t) => {
  const { link, a, b, clocks } = pair();
  link.run(5000, clocks);
  t.same([a.m.state, b.m.state], [LinkState.Up, LinkState.Up], 'both up');
  t.same([a.m.rttMs, b.m.rttMs], [10, 10], 'RTT = twice the one-way delay');
  t.equal(a.m.resyncs + b.m.resyncs, 0, 'no resync between fresh peers');
  // SIGSTOP b at 5 s
  link.paused[1] = true;
  const stoppedAt = link.now;
  link.run(30000, clocks);
  t.equal(a.m.state, LinkState.Down, 'a declares b dead');
  t.ok(a.m.since - stoppedAt <= a.m.downAfterMs(), `after ${a.m.since - stoppedAt} ms, documented ≤ ${a.m.downAfterMs()} ms`);
  // SIGCONT b at 30 s: it handles the backlog (a's probes) first
  const resumedAt = link.now;
  link.resume(1);
  link.run(resumedAt + 1000, clocks);
  t.equal(a.m.state, LinkState.Up, 'a is up again');
  t.ok(a.m.since - resumedAt < 1000, `within one interval (${a.m.since - resumedAt} ms)`);
  link.run(resumedAt + 20000, clocks);
  t.same([a.m.state, b.m.state], [LinkState.Up, LinkState.Up], 'and both stay up');
});

t.test('two machines: one restarts (fresh numbering), both up again within an interval', async (t) => {
  const { link, a, b, clocks } = pair();
  link.run(20000, clocks); // numbers well past 0
  t.ok(a.m.ns > 10 && b.m.nr > 10, `numbers in use: a.ns ${a.m.ns}, b.nr ${b.m.nr}`);
  const cb = new Float64Array([link.now]);
  clocks[1] = cb;
  b.m.state; // old b is gone
  const fresh = new MachineEnd(new HelloMachine({ intervalMs: 1000, retries: 2, clock: cb, jitterSeed: 3 }), link, 1);
  link.ends[1] = fresh;
  fresh.m.start();
  const restartedAt = link.now;
  link.run(restartedAt + 1000, clocks);
  t.same([a.m.state, fresh.m.state], [LinkState.Up, LinkState.Up], 'both up');
  t.ok(fresh.m.since - restartedAt < 1000, `the restarted side is up after ${fresh.m.since - restartedAt} ms`);
  t.ok(a.m.resyncs + fresh.m.resyncs >= 1, 'through a resync');
  link.run(restartedAt + 30000, clocks);
  t.same([a.m.state, fresh.m.state, a.m.transitions], [LinkState.Up, LinkState.Up, 1], 'a never went down');
});

t.test('against a strict RFC peer (go-l2tp rules)', async (t) => {
  const setup = (peerHelloEvery: number): { link: Link; ca: Float64Array; cp: Float64Array; a: MachineEnd; p: StrictPeer } => {
    const link = new Link(5);
    const ca = new Float64Array(1);
    const cp = new Float64Array(1);
    const a = new MachineEnd(new HelloMachine({ intervalMs: 1000, retries: 3, clock: ca, jitterSeed: 1 }), link, 0);
    const p = new StrictPeer(link, 1, cp, peerHelloEvery);
    link.ends = [a, p];
    a.m.start();
    link.run(30000, [ca, cp]);
    return { link, ca, cp, a, p };
  };
  {
    const { link, ca, cp, a, p } = setup(1500);
    t.equal(a.m.state, LinkState.Up, 'up with the strict peer');
    t.ok(p.answered > 10 && p.failures === 0, `the peer's Hellos are all answered (${p.answered})`);
    t.equal(a.m.resyncs, 0, 'no resync in steady state');
    // The peer restarts: it drops our messages (their Nr is ahead of its Ns 0) until its own
    // first Hello tells us its numbering.
    const q = new StrictPeer(link, 1, cp, 1500);
    link.ends[1] = q;
    const at = link.now;
    link.run(at + 3000, [ca, cp]);
    t.ok(q.answered >= 1 && q.failures === 0, "peer restarts: its first Hello is answered");
    t.equal(a.m.transitions, 1, 'peer restarts: l2tpd never went down');
    t.ok(a.m.resyncs >= 1, 'peer restarts: through a resync');
    link.run(at + 40000, [ca, cp]);
    t.same([a.m.state, q.failures, a.m.transitions], [LinkState.Up, 0, 1], 'peer restarts: both stay up');
  }
  {
    const { link, ca, cp, p } = setup(1500);
    // l2tpd restarts: its fresh numbering looks like duplicates to the peer, which acknowledges
    // them with its real Nr.
    const b = new MachineEnd(new HelloMachine({ intervalMs: 1000, retries: 3, clock: ca, jitterSeed: 9 }), link, 0);
    link.ends[0] = b;
    b.m.start();
    const at = link.now;
    link.run(at + 1000, [ca, cp]);
    t.equal(b.m.state, LinkState.Up, 'l2tpd restarts: up again');
    t.ok(b.m.since - at < 1000, `l2tpd restarts: within one interval (${b.m.since - at} ms)`);
    const before = p.answered;
    link.run(at + 40000, [ca, cp]);
    t.same([b.m.state, b.m.transitions, p.failures], [LinkState.Up, 1, 0], 'l2tpd restarts: both stay up');
    t.ok(p.answered > before, `l2tpd restarts: the peer's Hellos keep being answered (${p.answered - before})`);
  }
  {
    // A strict peer restarts and sends no Hello of its own any more: nothing tells us its new
    // numbering, and it drops our Hellos (Nr ahead of its Ns) until a probe with Nr 0 gets through.
    const { link, ca, cp, a } = setup(1500);
    t.ok(a.m.nr > 10, `our Nr follows its Hellos (${a.m.nr})`);
    link.ends[1] = new StrictPeer(link, 1, cp, Infinity);
    const at = link.now;
    link.run(at + a.m.downAfterMs() + 3000, [ca, cp]);
    t.equal(a.m.state, LinkState.Up, 'it restarted: up again after the Nr-0 probe');
    t.equal(a.m.transitions, 3, 'through one Down verdict');
  }
});

t.test('configuration errors', async (t) => {
  const clock = new Float64Array(1);
  t.throws(() => new HelloMachine({ intervalMs: 0, retries: 1, clock }), /intervalMs/);
  t.throws(() => new HelloMachine({ intervalMs: 1000, retries: -1, clock }), /retries/);
  t.throws(() => new HelloMachine({ intervalMs: 1000, retries: 1.5, clock }), /retries/);
  t.throws(() => new HelloMachine({ intervalMs: 1000, retries: 1, clock: new Float64Array(0) }), /clock/);
  const m = new HelloMachine({ intervalMs: 1000, retries: 1, clock });
  t.equal(m.poll(), 0, 'nothing happens before start()');
  t.equal(m.nextDeadline(), -1);
});

t.test('poll and onMessage allocate nothing', async (t) => {
  const clock = new Float64Array(1);
  const machines = [0, 1, 2, 3].map((i) => new HelloMachine({ intervalMs: 1000, retries: 2, clock, jitterSeed: i + 1 }));
  for (const m of machines) m.start();
  const acc = new Int32Array(2);
  const loop = (n: number): void => {
    for (let i = 0; i < n; i++) {
      clock[0] += 37;
      const m = machines[i & 3];
      acc[0] += m.poll();
      const k = i % 11;
      const type = k < 4 ? MessageType.Hello : k < 8 ? MessageType.Ack : MessageType.Zlb;
      // mostly answers, some garbage numbering (resyncs), some silence (retransmissions, Down)
      const nr = k === 5 ? (i * 7919) & MASK : m.ns;
      // every fourth stretch of 256 rounds (9.5 s) is silent: retransmissions, Down, probes
      if (((i >> 8) & 3) !== 3) acc[1] += m.onMessage(type, i & MASK, nr);
    }
  };
  loop(3_000_000); // warm up: optimised code (on-stack replacement) allocates once while it is made
  const { gcs, ms } = await gcsDuring(() => loop(2_000_000));
  const transitions = machines.reduce((s, m) => s + m.transitions, 0);
  const resyncs = machines.reduce((s, m) => s + m.resyncs, 0);
  t.comment(`2M rounds in ${ms.toFixed(0)} ms; ${transitions} transitions, ${resyncs} resyncs`);
  t.ok(transitions > 10 && resyncs > 1000 && acc[0] > 0 && acc[1] > 0, 'every path was taken');
  t.equal(gcs, 0, 'no GC');
});
