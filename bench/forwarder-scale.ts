/**
 * The forwarder's own CPU per frame, without syscalls: the real Forwarder over the tests' FakeIo
 * (test/helpers/fake-io.ts), one session against SESSIONS in TUNNELS UDP tunnels, each frame for
 * the next session in turn, both directions, in one run. What a thousand busy sessions cost the
 * forwarder's code, apart from the kernel's work on a thousand taps (bench:control measures both).
 *   npx ts-node --transpile-only bench/forwarder-scale.ts [sessions] [tunnels] [wakes]
 */
import { Forwarder } from '../src/dataplane/forwarder.js';
import { SLOT_COUNT, SLOT_SIZE } from '../src/dataplane/layout.js';
import { allocateStatusBuffers } from '../src/dataplane/status.js';
import { SESSION_COUNTER_BYTES, TUNNEL_COUNTER_BYTES } from '../src/dataplane/counters.js';
import { POLL_READABLE, SOURCE_STRIDE } from '../src/native/index.js';
import { EncapKind, UDP_WIRE, writeHeader, type TxTemplate } from '../src/protocol/index.js';
import { FakeIo, PEER_SOURCE } from '../test/helpers/fake-io.js';
import { sessionSpec } from '../test/helpers/session-spec.js';

const SESSIONS = Number(process.argv[2] ?? 1000);
const TUNNELS = Number(process.argv[3] ?? 25);
const WAKES = Number(process.argv[4] ?? 20000);
const FRAME = 60;
/** PEER_SOURCE's words (its IPv6 words are 0). */
const [SOURCE_WORD0, SOURCE_WORD1] = PEER_SOURCE;
const SOCKET_FD0 = 1000;
const TAP_FD0 = 5000;
/** Taps one encapsulation wake finds ready, a frame each. */
const TAPS_PER_WAKE = 20;

/** Datagrams for the sessions of the socket's tunnel in turn; each tap ready with one frame. */
class Traffic extends FakeIo {
  /** What the peer sends to each session: its own header, as session_id and peer_session_id are equal here. */
  readonly templates: TxTemplate[] = [];
  perTunnel = 1;
  next = 0;
  /** Batches a socket still has (one per decapsulation wake). */
  socketBatches = 0;
  /** Frames the tap being read still has (one per readiness). */
  tapFrames = 0;
  written = 0;
  sent = 0;

  override recvBatch(fd: number, offsets: Uint32Array, _cap: number, count: number, lengths: Int32Array, sources: Uint32Array): number {
    if (this.socketBatches === 0) return 0;
    this.socketBatches--;
    const first = (fd - SOCKET_FD0) * this.perTunnel;
    for (let i = 0; i < count; i++) {
      // Word by word: TypedArray.set costs this fake some 10 ns a datagram, more than the forwarder's own share.
      const b = i * SOURCE_STRIDE;
      sources[b] = SOURCE_WORD0;
      sources[b + 1] = SOURCE_WORD1;
      sources[b + 2] = 0; sources[b + 3] = 0; sources[b + 4] = 0;
      const tpl = this.templates[first + (this.next++ % this.perTunnel)];
      writeHeader(this.bytes, offsets[i] + tpl.length, tpl, -1);
      lengths[i] = tpl.length + FRAME;
    }
    return count;
  }
  override readBatch(_fd: number, _o: Uint32Array, _cap: number, _count: number, lengths: Int32Array): number {
    if (this.tapFrames === 0) return 0;
    this.tapFrames--;
    lengths[0] = FRAME;
    return 1;
  }
  override writeBatch(_fd: number, _o: Uint32Array, _l: Int32Array, _first: number, count: number): number {
    this.written += count;
    return count;
  }
  override sendBatch(_fd: number, _o: Uint32Array, _l: Uint32Array, _p: Uint32Array, _first: number, count: number): number {
    this.sent += count;
    return count;
  }
}

function forwarderWith(sessions: number, tunnels: number): { io: Traffic; fwd: Forwarder } {
  const io = new Traffic();
  io.perTunnel = sessions / tunnels;
  const fwd = new Forwarder(io, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE), new SharedArrayBuffer(SESSION_COUNTER_BYTES),
    new SharedArrayBuffer(TUNNEL_COUNTER_BYTES), allocateStatusBuffers());
  for (let t = 0; t < tunnels; t++) {
    fwd.addTunnel({ slot: t, tunnelId: t + 1, peerTunnelId: t + 1, encap: EncapKind.Udp, family: 4, fd: SOCKET_FD0 + t,
      remote: '192.0.2.2', remotePort: 1701, helloIntervalMs: 0, helloRetries: 3 });
  }
  for (let k = 0; k < sessions; k++) {
    const t = Math.floor(k / io.perTunnel);
    const spec = sessionSpec({ tunnel_id: t + 1, session_id: k + 1, peer_session_id: k + 1 }, UDP_WIRE, { slot: k, tunnelSlot: t, tapFd: TAP_FD0 + k });
    fwd.addSession(spec);
    io.templates.push(spec.tx);
  }
  return { io, fwd };
}

/** ns per frame of `wake` over `wakes` wakes, after as many to warm up; `count` says frames so far. */
function nsPerFrame(wake: (w: number) => void, count: () => number, wakes: number): number {
  for (let w = 0; w < wakes; w++) wake(w);
  const before = count();
  const t0 = process.hrtime.bigint();
  for (let w = 0; w < wakes; w++) wake(w);
  return Number(process.hrtime.bigint() - t0) / (count() - before);
}

function measure(sessions: number, tunnels: number): { decap: number; encap: number } {
  const { io, fwd } = forwarderWith(sessions, tunnels);
  // Decapsulation: each wake, one tunnel's socket is ready with one batch.
  const decap = nsPerFrame((w) => { io.socketBatches = 1; io.fire(SOCKET_FD0 + (w % tunnels), POLL_READABLE); }, () => io.written, WAKES);
  // Encapsulation: each wake finds TAPS_PER_WAKE taps ready, in turn over all sessions.
  let tap = 0;
  const encap = nsPerFrame(() => {
    for (let j = 0; j < TAPS_PER_WAKE; j++) {
      const fd = TAP_FD0 + (tap++ % sessions);
      io.tapFrames = 1;
      io.callbacks.get(fd)!(fd, POLL_READABLE, TAPS_PER_WAKE);
    }
    io.endCallback?.();
  }, () => io.sent, WAKES * 3);
  fwd.stop();
  return { decap, encap };
}

const one = measure(1, 1);
const many = measure(SESSIONS, TUNNELS);
console.log('| ns of forwarder CPU per frame | 1 session | %d sessions in %d tunnels | ratio |', SESSIONS, TUNNELS);
console.log('|---|---|---|---|');
for (const dir of ['decap', 'encap'] as const) {
  console.log(`| ${dir} | ${one[dir].toFixed(0)} | ${many[dir].toFixed(0)} | ${(many[dir] / one[dir]).toFixed(2)} |`);
}
