/**
 * Child of test/unit/forwarder-alloc.test.ts: pushes frames through the real Forwarder over a
 * simulated addon and prints one JSON line with what went through and how many GCs ran while it
 * did. It runs in its own process, without coverage: V8's block-coverage instrumentation
 * allocates by itself, which would hide what the forwarder does.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { Forwarder, type TunnelSpec } from '../../src/dataplane/forwarder.js';
import { sessionSpec } from './session-spec.js';
import { BATCH, SLOT_COUNT, SLOT_SIZE, SessionTx, seedSessionTx } from '../../src/dataplane/layout.js';
import { allocateStatusBuffers } from '../../src/dataplane/status.js';
import {
  SESSION_COUNTER_BYTES, SESSION_ROW_WIDTH, SessionCounter as S, TUNNEL_COUNTER_BYTES,
} from '../../src/dataplane/counters.js';
import { POLL_READABLE, POLL_WRITABLE, SOURCE_STRIDE } from '../../src/native/index.js';
import { FakeIo, PEER_SOURCE, PEER_V4, ipv4Source } from './fake-io.js';
import { EncapKind, MessageType, UDP_WIRE, buildTxTemplate, nextSeq, writeControl, writeHeader } from '../../src/protocol/index.js';
import { TUNNEL_ROW_WIDTH, TunnelCounter as T } from '../../src/dataplane/counters.js';

const SOCK_FD = 10;
const TAP_A = 20;
const TAP_B = 21;
const FRAME = 60;
/** The peer's address from another port: a foreign source. */
const OTHER_PORT_SOURCE = ipv4Source(PEER_V4, 1702);

/** The addon's forwarder side, with traffic: each call does what the syscall would, on the pool, without allocating. */
class SimulatedAddon extends FakeIo {
  // Decap traffic: session A (cookie; numbered every other frame, a peer flipping its S bit, which
  // switches A's sending each time), then session B (sequenced), alternating runs of 16.
  readonly tplA = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x90000001, cookie: Uint8Array.of(9, 8, 7, 6), l2spec: 'default', offset: 0 });
  readonly tplB = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 7, cookie: new Uint8Array(0), l2spec: 'default', offset: 0 });
  seqB = 0;
  seqA = 0;
  framesA = 0;
  /** Every 32nd datagram is one of the drop or control paths, in turn (see recvBatch). */
  odd = 0;
  readonly tplUnknown = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x9abcdef0, cookie: new Uint8Array(0), l2spec: 'default', offset: 0 });
  sendCalls = 0;
  sent = 0;
  read = 0;
  written = 0;

  ticks = 0;
  override readClock(out: Float64Array): void {
    this.ticks++;
    out[0] = 1.7e12 + this.ticks * 0.01;
    out[1] = 5e6 + this.ticks * 0.01;
  }

  override recvBatch(_fd: number, offsets: Uint32Array, _cap: number, count: number, lengths: Int32Array, sources: Uint32Array): number {
    for (let i = 0; i < count; i++) {
      const b = i * SOURCE_STRIDE;
      sources.set(PEER_SOURCE, b);
      if ((i & 31) === 31) {
        lengths[i] = this.oddDatagram(offsets[i], sources, b);
        continue;
      }
      const useB = (i & 16) !== 0;
      const tpl = useB ? this.tplB : this.tplA;
      const frameStart = offsets[i] + tpl.length;
      this.bytes.fill(0x5a, frameStart, frameStart + FRAME);
      let seq = -1;
      if (useB) {
        seq = this.seqB;
        this.seqB = nextSeq(seq);
      } else if ((this.framesA++ & 1) !== 0) {
        seq = this.seqA;
        this.seqA = nextSeq(seq);
      }
      writeHeader(this.bytes, frameStart, tpl, seq);
      lengths[i] = tpl.length + FRAME;
    }
    return count;
  }
  /**
   * In turn: a session ID ≥ 2^31 no session has, a wrong cookie, a foreign source port, a HELLO
   * from the peer (answered: the control send path), one for another connection ID, and a
   * malformed control message.
   */
  private oddDatagram(at: number, sources: Uint32Array, b: number): number {
    const v = this.odd++ % 6;
    if (v <= 2) {
      const tpl = v === 0 ? this.tplUnknown : this.tplA;
      writeHeader(this.bytes, at + tpl.length, tpl, -1);
      this.bytes.fill(0x5a, at + tpl.length, at + tpl.length + FRAME);
      if (v === 1) this.bytes[at + 8] ^= 0xff;
      if (v === 2) sources.set(OTHER_PORT_SOURCE, b);
      return tpl.length + FRAME;
    }
    const n = writeControl(this.bytes, at, at + 64, false, v === 4 ? 101 : 100, this.odd & 0xffff, 0, MessageType.Hello);
    if (v === 5) this.bytes[at + 13] = 5; // Message Type AVP length 5
    return n;
  }
  override writeBatch(_fd: number, _o: Uint32Array, _l: Int32Array, _first: number, count: number): number {
    this.written += count;
    return count;
  }
  override readBatch(_fd: number, _o: Uint32Array, _cap: number, count: number, lengths: Int32Array): number {
    for (let i = 0; i < count; i++) lengths[i] = FRAME;
    this.read += count;
    return count;
  }
  override sendBatch(_fd: number, _o: Uint32Array, _l: Uint32Array, _p: Uint32Array, _first: number, count: number): number {
    // Every 50th call the socket is "full" after half the batch: the forwarder must block.
    const n = ++this.sendCalls % 50 === 0 ? count >> 1 : count;
    this.sent += n;
    return n;
  }
}

function setup(): { fwd: Forwarder; addon: SimulatedAddon; sc: Float64Array; tc: Float64Array; state: Int32Array } {
  const addon = new SimulatedAddon();
  const pool = new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE);
  const sessions = new SharedArrayBuffer(SESSION_COUNTER_BYTES);
  const tunnels = new SharedArrayBuffer(TUNNEL_COUNTER_BYTES);
  const status = allocateStatusBuffers();
  const state = new Int32Array(status.sessionTx);
  const fwd = new Forwarder(addon, pool, sessions, tunnels, status);
  const tunnel: TunnelSpec = {
    slot: 3, tunnelId: 100, peerTunnelId: 200, encap: EncapKind.Udp, family: 4, fd: SOCK_FD, remote: '192.0.2.2', remotePort: 1701,
    helloIntervalMs: 1000, helloRetries: 3,
  };
  fwd.addTunnel(tunnel);
  fwd.addSession(sessionSpec({ session_id: 0x90000001, peer_session_id: 0x90000002, cookie: '01020304', peer_cookie: '09080706' },
    UDP_WIRE, { slot: 0, tunnelSlot: 3, tapFd: TAP_A, tapOffload: true }));
  // As the control plane seeds them: session 1 (`seq both`) starts out numbered.
  seedSessionTx(state, 1, 0, true);
  fwd.addSession(sessionSpec({ session_id: 7, peer_session_id: 8, seq: 'both' }, UDP_WIRE, { slot: 1, tunnelSlot: 3, tapFd: TAP_B }));
  return { fwd, addon, sc: new Float64Array(sessions), tc: new Float64Array(tunnels), state };
}

export interface AllocResult {
  written: number;
  sent: number;
  sendCalls: number;
  /** Frames the taps gave the forwarder, and writability grants after a block, in the window. */
  read: number;
  unblocks: number;
  rxErrors: number;
  /** The drop and control paths taken in the window (every 32nd datagram). */
  cookieDiscards: number;
  unknownSession: number;
  foreignSource: number;
  controlIn: number;
  controlOut: number;
  controlDrops: number;
  rxPacketsA: number;
  rxPacketsB: number;
  /** Times the peer's S bit switched session A's sending. */
  seqChangesA: number;
  gcs: number;
  ms: number;
  coverage: boolean;
}

async function main(frames: number): Promise<AllocResult> {
  const { fwd, addon, sc, tc, state } = setup();
  const socketEvent = (events: number): void => addon.fire(SOCK_FD, events);
  let unblocks = 0;
  const run = (batches: number): void => {
    for (let k = 0; k < batches; k++) {
      socketEvent(POLL_READABLE);
      const tap = (k & 1) === 0 ? TAP_A : TAP_B;
      if (addon.events.get(tap) === POLL_READABLE) addon.fire(tap, POLL_READABLE);
      // Backpressure: the socket asks for writability while blocked; grant it.
      if ((addon.events.get(SOCK_FD)! & POLL_WRITABLE) !== 0) {
        unblocks++;
        socketEvent(POLL_WRITABLE);
      }
    }
  };
  // Each readiness event handles up to 8 rounds of BATCH frames.
  const perEvent = 8 * BATCH;
  run(2000); // warm up (feedback, optimisation)
  const tunnel = (k: T): number => tc[3 * TUNNEL_ROW_WIDTH + k];
  const odd = (): number[] => [sc[S.RxCookieDiscards], tunnel(T.DropUnknownSession), tunnel(T.DropForeignSource), tunnel(T.RxControl),
    tunnel(T.TxControl), tunnel(T.DropControlWrongId) + tunnel(T.DropControlMalformed)];
  const oddBefore = odd();
  const before = { written: addon.written, sent: addon.sent, read: addon.read, unblocks, rxErrors: sc[S.RxErrors] + sc[SESSION_ROW_WIDTH + S.RxErrors] };
  const gcs: number[] = [];
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcs.push(e.startTime); });
  obs.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  run(Math.ceil(frames / perEvent));
  const t1 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 20));
  obs.disconnect();
  fwd.stop();
  const oddAfter = odd().map((x, k) => x - oddBefore[k]);
  return {
    written: addon.written - before.written,
    sent: addon.sent - before.sent,
    sendCalls: addon.sendCalls,
    read: addon.read - before.read,
    unblocks: unblocks - before.unblocks,
    rxErrors: sc[0 * SESSION_ROW_WIDTH + S.RxErrors] + sc[1 * SESSION_ROW_WIDTH + S.RxErrors] - before.rxErrors,
    cookieDiscards: oddAfter[0],
    unknownSession: oddAfter[1],
    foreignSource: oddAfter[2],
    controlIn: oddAfter[3],
    controlOut: oddAfter[4],
    controlDrops: oddAfter[5],
    rxPacketsA: sc[0 * SESSION_ROW_WIDTH + S.RxPackets],
    rxPacketsB: sc[1 * SESSION_ROW_WIDTH + S.RxPackets],
    seqChangesA: state[SessionTx.Switches],
    gcs: gcs.filter((x) => x >= t0 && x <= t1).length,
    ms: t1 - t0,
    coverage: process.env.NODE_V8_COVERAGE !== undefined,
  };
}

main(Number(process.argv[2])).then((r) => console.log(JSON.stringify(r)), (err) => {
  console.error(err);
  process.exit(1);
});
