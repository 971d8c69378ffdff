/**
 * Forwarder behaviour with a recording stand-in for the addon (no syscalls): what is queued
 * under backpressure on a raw IP socket that several tunnels share, how an offload tap is read,
 * and how the peer's S bit switches a session's sending.
 */
import t from 'tap';
import { Forwarder, type SessionSpec, type TunnelSpec } from '../../src/dataplane/forwarder.js';
import { BATCH, GSO_MAX_SEGS, SESSION_TX_WIDTH, SLOT_COUNT, SLOT_SIZE, SessionTx, seedSessionTx } from '../../src/dataplane/layout.js';
import {
  SESSION_COUNTER_BYTES, SESSION_ROW_WIDTH, SessionCounter as S, TUNNEL_COUNTER_BYTES,
} from '../../src/dataplane/counters.js';
import { POLL_READABLE, POLL_WRITABLE, SOURCE_STRIDE } from '../../src/native/index.js';
import { FakeIo, PEER_SOURCE } from '../helpers/fake-io.js';
import { EncapKind, IP_WIRE, UDP_WIRE, buildTxTemplate, writeHeader, type WireEncap } from '../../src/protocol/index.js';
import { sessionSpec } from '../helpers/session-spec.js';
import { allocateStatusBuffers } from '../../src/dataplane/status.js';

const RAW_FD = 5;
const UDP_FD = 6;
const FRAME = 60;
const TAP_A = 20;

/** The shared fake, recording what the forwarder asks of it. */
class RecordingAddon extends FakeIo {
  readonly peers = new Map<number, string>();
  /** sendBatch accepts nothing while full (EAGAIN), everything otherwise. */
  full = false;
  /** Peer address of every message the kernel accepted. */
  readonly sentTo: string[] = [];
  /** The 32-bit word 8 bytes into every accepted message: the sublayer of a UDP header without cookie. */
  readonly sentWord8: number[] = [];
  framesOnTap = 0;
  /** `count` of every readBatch call. */
  readonly offered: number[] = [];
  /** What readBatch returns per call, as lengths (negative: a frame read but dropped); else framesOnTap. */
  readonly reads: number[][] = [];
  /** The offload flag of every readBatch call, as "fd:offload". */
  readonly offload: string[] = [];

  /** Datagrams recvBatch hands out next: [peer session id (= our session id), marker byte, sequence number or none]. */
  readonly datagrams: Array<[number, number, number?]> = [];
  /** writeBatch calls: fd, offload, and the marker byte of each frame. */
  readonly writes: Array<{ fd: number; offload: boolean; markers: number[] }> = [];
  /** Fewest bytes any written frame had in front of it within its slot (the addon's scratch). */
  writeScratch = Infinity;
  /** Marker bytes of frames the "tap" refuses (marked -EIO). */
  readonly refuse = new Set<number>();

  /** How recvBatch builds them: UDP from 192.0.2.2:1701 with the default sublayer, unless changed. */
  rxEncap: { encap: 'udp' | 'ip'; l2spec: 'none' | 'default'; source: ArrayLike<number> } =
    { encap: 'udp', l2spec: 'default', source: PEER_SOURCE };
  override recvBatch(_fd: number, offsets: Uint32Array, _cap: number, count: number, lengths: Int32Array, sources: Uint32Array): number {
    const n = Math.min(count, this.datagrams.length);
    const { encap, l2spec, source } = this.rxEncap;
    for (let i = 0; i < n; i++) {
      const [sid, marker, seq = -1] = this.datagrams.shift()!;
      const tpl = buildTxTemplate({ encap: encap === 'udp' ? UDP_WIRE : IP_WIRE, peerSessionId: sid, cookie: new Uint8Array(0), l2spec, offset: 0 });
      const frameStart = offsets[i] + tpl.length;
      // Frames differ in length (FRAME + marker), so byte counts show which ones were counted.
      this.bytes.fill(marker, frameStart, frameStart + FRAME + marker);
      writeHeader(this.bytes, frameStart, tpl, seq);
      lengths[i] = tpl.length + FRAME + marker;
      sources.set(source, i * SOURCE_STRIDE);
    }
    return n;
  }
  override writeBatch(fd: number, offsets: Uint32Array, lengths: Int32Array, first: number, count: number, offload: boolean): number {
    const markers: number[] = [];
    for (let j = first; j < first + count; j++) {
      const marker = this.bytes[offsets[j] + 14];
      markers.push(marker);
      this.writeScratch = Math.min(this.writeScratch, offsets[j] % SLOT_SIZE);
      if (this.refuse.has(marker)) lengths[j] = -5;
    }
    this.writes.push({ fd, offload, markers });
    return count;
  }
  override setPeer(id: number, _family: 4 | 6, address: string): void { this.peers.set(id, address); }
  override readBatch(fd: number, _o: Uint32Array, _cap: number, count: number, lengths: Int32Array, offload: boolean): number {
    this.offered.push(count);
    this.offload.push(`${fd}:${offload}`);
    const planned = this.reads.shift();
    if (planned) {
      planned.forEach((len, i) => { lengths[i] = len; });
      return planned.length;
    }
    const n = Math.min(count, this.framesOnTap);
    for (let i = 0; i < n; i++) lengths[i] = 60;
    this.framesOnTap -= n;
    return n;
  }
  override sendBatch(_fd: number, offsets: Uint32Array, _l: Uint32Array, peers: Uint32Array, first: number, count: number): number {
    if (this.full) return 0;
    for (let i = first; i < first + count; i++) {
      this.sentTo.push(this.peers.get(peers[i])!);
      const o = offsets[i];
      this.sentWord8.push(((this.bytes[o + 8] << 24) | (this.bytes[o + 9] << 16) | (this.bytes[o + 10] << 8) | this.bytes[o + 11]) >>> 0);
    }
    return count;
  }
}

function ipTunnel(slot: number, remote: string): TunnelSpec {
  return { slot, tunnelId: slot, encap: EncapKind.Ip, family: 4, fd: RAW_FD, remote, remotePort: 0 };
}

/** Session 100 + slot (the peer's: 200 + slot) of the tunnel in `tunnelSlot`, with `words` added. */
function session(slot: number, tunnelSlot: number, tapFd: number, tapOffload = false,
  wire: WireEncap = IP_WIRE, words: Record<string, unknown> = {}): SessionSpec {
  return sessionSpec({ session_id: 100 + slot, peer_session_id: 200 + slot, ...words }, wire, { slot, tunnelSlot, tapFd, tapOffload });
}

/** A Forwarder over a RecordingAddon, with its session counters and transmit state. */
function forwarderUnderTest(): { addon: RecordingAddon; fwd: Forwarder; sc: Float64Array; st: Int32Array } {
  const addon = new RecordingAddon();
  const sessions = new SharedArrayBuffer(SESSION_COUNTER_BYTES);
  const status = allocateStatusBuffers();
  const st = new Int32Array(status.sessionTx);
  const fwd = new Forwarder(addon, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE),
    sessions, new SharedArrayBuffer(TUNNEL_COUNTER_BYTES), status);
  return { addon, fwd, sc: new Float64Array(sessions), st };
}

t.test('a tunnel of an unknown encapsulation is refused', async (t) => {
  const { fwd } = forwarderUnderTest();
  // The encapsulation used to be a string checked when a session's header was built; it is a kind now.
  t.throws(() => fwd.addTunnel({ ...ipTunnel(1, '192.0.2.2'), encap: 9 as EncapKind }), RangeError);
});

t.test('deleting a tunnel on a shared raw socket drops its queued packets', async (t) => {
  const { addon, fwd } = forwarderUnderTest();
  fwd.addTunnel(ipTunnel(1, '192.0.2.2'));
  fwd.addTunnel(ipTunnel(2, '192.0.2.3'));
  fwd.addSession(session(0, 1, TAP_A));
  fwd.addSession(session(1, 2, 21));

  // The socket is full: three frames of tunnel 1 wait in the socket's queue.
  addon.full = true;
  addon.framesOnTap = 3;
  addon.fire(TAP_A, POLL_READABLE);
  t.equal(addon.sentTo.length, 0, 'nothing accepted while the socket is full');

  // Tunnel 1 goes; a new tunnel takes its slot (and peer entry) before the socket drains.
  fwd.delTunnel(1);
  fwd.addTunnel(ipTunnel(1, '192.0.2.9'));
  addon.full = false;
  addon.fire(RAW_FD, POLL_WRITABLE);
  t.same(addon.sentTo, [], 'the deleted tunnel\'s frames are not sent to the slot\'s new peer');

  // The socket works as before for the tunnel that stayed.
  addon.framesOnTap = 2;
  addon.fire(21, POLL_READABLE);
  t.same(addon.sentTo, ['192.0.2.3', '192.0.2.3'], 'tunnel 2 still sends to its peer');
});

t.test('an offload tap is read with room for a super-frame, and its undeliverable frames are counted', async (t) => {
  const { addon, fwd, sc } = forwarderUnderTest();
  fwd.addTunnel(ipTunnel(1, '192.0.2.2'));
  fwd.addSession(session(0, 1, TAP_A, true));
  fwd.addSession(session(1, 1, 21, false));

  // Read 1: the addon stopped with fewer than GSO_MAX_SEGS slots left (a 45-segment super-frame
  // and 20 frames): not drained, so the forwarder reads again. Read 2: two dropped frames, then EAGAIN.
  const full = BATCH + GSO_MAX_SEGS - 1;
  addon.reads.push(new Array(65).fill(1000), [-22, 800, -90]);
  addon.fire(TAP_A, POLL_READABLE);
  t.same(addon.offered, [full, full], 'offered a batch plus room for one more super-frame, twice');
  t.same(addon.offload, [`${TAP_A}:true`, `${TAP_A}:true`], 'read as an offload tap');
  t.equal(addon.sentTo.length, 66, 'every deliverable frame went out');
  const row = 0 * SESSION_ROW_WIDTH;
  t.equal(sc[row + S.TxPackets], 66, 'tx_packets');
  t.equal(sc[row + S.TxErrors], 2, 'the two frames the addon could not deliver are tx_errors');

  // A plain tap is offered a plain batch, and stops at the first short read.
  addon.offered.length = 0;
  addon.framesOnTap = 10;
  addon.fire(21, POLL_READABLE);
  t.same(addon.offered, [BATCH], 'plain tap: one batch, drained');
  t.same(addon.offload.slice(2), ['21:false'], 'read as a plain tap');

  // Every slot came back: a full pool is offered again.
  addon.offered.length = 0;
  addon.fire(TAP_A, POLL_READABLE);
  t.same(addon.offered, [full], 'no slot leaked');
});

t.test('a receive batch is written one session at a time, in order, and refused frames are counted exactly', async (t) => {
  const { addon, fwd, sc } = forwarderUnderTest();
  fwd.addTunnel({ slot: 1, tunnelId: 1, encap: EncapKind.Udp, family: 4, fd: UDP_FD, remote: '192.0.2.2', remotePort: 1701 });
  fwd.addSession(session(0, 1, TAP_A, true, UDP_WIRE));
  fwd.addSession(session(1, 1, 21, false, UDP_WIRE));

  // Sessions interleave on the tunnel socket; the tap of session 1 refuses its second frame.
  for (let i = 0; i < 6; i++) addon.datagrams.push([i % 2 === 0 ? 100 : 101, i + 1]);
  addon.refuse.add(4);
  addon.fire(UDP_FD, POLL_READABLE);
  t.same(addon.writes, [
    { fd: TAP_A, offload: true, markers: [1, 3, 5] },
    { fd: 21, offload: false, markers: [2, 4, 6] },
  ], 'one writeBatch per session, its frames in arrival order, with its tap\'s offload flag');
  // UDP data header, session id, default sublayer, frame of FRAME + marker bytes.
  const l2tpBytes = (marker: number) => 4 + 4 + 4 + FRAME + marker;
  t.equal(sc[0 * SESSION_ROW_WIDTH + S.RxPackets], 3, 'session 0: rx_packets');
  t.equal(sc[0 * SESSION_ROW_WIDTH + S.RxBytes], l2tpBytes(1) + l2tpBytes(3) + l2tpBytes(5), 'session 0: rx_bytes');
  t.equal(sc[1 * SESSION_ROW_WIDTH + S.RxPackets], 2, 'session 1: the refused frame is not received');
  t.equal(sc[1 * SESSION_ROW_WIDTH + S.RxBytes], l2tpBytes(2) + l2tpBytes(6), 'session 1: rx_bytes of exactly the two it took');
  t.equal(sc[1 * SESSION_ROW_WIDTH + S.RxTapDrops], 1, 'session 1: one tap drop');
});

t.test('decapsulated frames keep scratch in their slot for an offload tap\'s virtio header, even behind a 4-byte header', async (t) => {
  const { addon, fwd, sc } = forwarderUnderTest();
  // The shortest L2TPv3 header: IP encapsulation over IPv6 (no IP header on the socket), no
  // cookie, no sublayer — the session id alone.
  fwd.addTunnel({ slot: 1, tunnelId: 1, encap: EncapKind.Ip, family: 6, fd: RAW_FD, remote: '2001:db8::2', remotePort: 0 });
  fwd.addSession(session(0, 1, TAP_A, true, IP_WIRE, { l2spec_type: 'none' }));
  addon.rxEncap = { encap: 'ip', l2spec: 'none', source: [6 << 16, 0x20010db8, 0, 0, 2] };
  for (let i = 0; i < 3; i++) addon.datagrams.push([100, i + 1]);
  addon.fire(RAW_FD, POLL_READABLE);
  t.same(addon.writes, [{ fd: TAP_A, offload: true, markers: [1, 2, 3] }], 'all three delivered to the offload tap');
  t.equal(sc[S.RxPackets], 3, 'rx_packets');
  // writeBatch (offload) puts a 10-byte virtio header in front of a frame written alone.
  t.ok(addon.writeScratch >= 10, `${addon.writeScratch} bytes in front of each frame within its slot (>= 10)`);
});

t.test('what the sequencer counts is in the session counters: resyncs, window drops, reorder timeouts and overflows', async (t) => {
  const { addon, fwd, sc } = forwarderUnderTest();
  fwd.addTunnel({ slot: 1, tunnelId: 1, encap: EncapKind.Udp, family: 4, fd: UDP_FD, remote: '192.0.2.2', remotePort: 1701 });
  fwd.addSession(session(0, 1, TAP_A, false, UDP_WIRE, { seq: 'both' }));
  fwd.addSession(session(1, 1, 21, false, UDP_WIRE, { seq: 'both', reorder_timeout: 1000 }));
  const receive = (sid: number, seqs: number[]): void => {
    for (const n of seqs) addon.datagrams.push([sid, 1, n]);
    addon.fire(UDP_FD, POLL_READABLE);
  };
  const row = (slot: number, c: S): number => sc[slot * SESSION_ROW_WIDTH + c];

  // No reordering: 0, then a gap; the sixth of a run of consecutive numbers resyncs (Linux's rule),
  // then 10 is behind the new expected number (11): an old frame.
  receive(100, [0, 5, 6, 7, 8, 9, 10, 10]);
  t.equal(row(0, S.RxPackets), 2, 'session 0: 0 and the resyncing 10 delivered');
  t.equal(row(0, S.RxSeqDiscards), 5, 'session 0: five out-of-sequence drops');
  t.equal(row(0, S.RxSeqResyncs), 1, 'session 0: one resync');
  t.equal(row(0, S.RxWindowDrops), 1, 'session 0: the repeated 10 is a window drop');
  t.equal(row(0, S.RxErrors), 6, 'session 0: every drop is an rx_error');

  // Reordering: 2 waits for 1; at 2000 ms it has waited longer than 1000 ms and is released.
  receive(101, [0, 2]);
  addon.monoMs = 2000;
  receive(101, [3]);
  t.equal(row(1, S.RxReorderTimeouts), 1, 'session 1: the gap before 2 given up on by timeout');
  // 33 frames ahead of the expected 4 (5..37): the 33rd finds the queue (32) full.
  receive(101, Array.from({ length: 33 }, (_, i) => 5 + i));
  t.equal(row(1, S.RxReorderOverflows), 1, 'session 1: the gap before 5 given up on because the queue was full');
  t.equal(row(1, S.RxPackets), 3 + 33, 'session 1: every frame delivered, none dropped');
  t.equal(row(1, S.RxErrors), 0, 'session 1: no errors');
});

t.test("the peer's S bit switches a session's sending, as a Linux static session's (l2tp_recv_common)", async (t) => {
  const { addon, fwd, st } = forwarderUnderTest();
  fwd.addTunnel({ slot: 1, tunnelId: 1, encap: EncapKind.Udp, family: 4, fd: UDP_FD, remote: '192.0.2.2', remotePort: 1701 });
  // As the control plane seeds them: where numbering resumes, and the configured sending.
  const seeds: Array<[slot: number, seq: 'none' | 'send' | 'recv' | 'both', next: number, mirror: boolean]> = [
    [0, 'none', 1000, true], [1, 'recv', 0, true], [2, 'send', 50, false], [3, 'both', 7, true],
  ];
  for (const [slot, seq, next, mirror] of seeds) {
    seedSessionTx(st, slot, next, seq === 'send' || seq === 'both');
    fwd.addSession(session(slot, 1, 30 + slot, false, UDP_WIRE, { seq, seq_mirror: mirror ? 'on' : 'off' }));
  }
  const state = (slot: number, f: SessionTx) => st[slot * SESSION_TX_WIDTH + f];
  /** What session `slot` sends for two frames from its tap: the sublayer words. */
  const sends = (slot: number): string[] => {
    addon.sentWord8.length = 0;
    addon.framesOnTap = 2;
    addon.fire(30 + slot, POLL_READABLE);
    return addon.sentWord8.map((w) => (w & 0x40000000 ? `S${w & 0xffffff}` : w === 0 ? '-' : `?${w.toString(16)}`));
  };
  const receive = (slot: number, seq?: number) => {
    addon.datagrams.push([100 + slot, 1, seq]);
    addon.fire(UDP_FD, POLL_READABLE);
  };

  t.same(sends(0), ['-', '-'], 'seq none: unnumbered');
  receive(0, 5);
  t.same([state(0, SessionTx.Numbering), state(0, SessionTx.Switches)], [1, 1], 'a numbered frame switched it on (once)');
  t.same(sends(0), ['S1000', 'S1001'], 'numbered, from where the control plane seeded it');
  receive(0, 6);
  t.equal(state(0, SessionTx.Switches), 1, 'more numbered frames change nothing');
  receive(0);
  t.same([state(0, SessionTx.Numbering), state(0, SessionTx.Switches)], [0, 2], 'an unnumbered frame switched it off');
  t.same(sends(0), ['-', '-'], 'unnumbered again');
  receive(0, 9);
  t.same(sends(0), ['S1002', 'S1003'], 'on again: the numbering carried on, it did not restart');
  t.equal(state(0, SessionTx.NextSeq), 1004, 'the next number is in shared memory');

  receive(1);
  t.same([state(1, SessionTx.Numbering), state(1, SessionTx.Switches)], [0, 0], 'seq recv: an unnumbered frame (dropped) changes nothing');
  receive(1, 0);
  t.same(sends(1), ['S0', 'S1'], 'seq recv: a numbered frame switched sending on');

  receive(2);
  t.same(sends(2), ['S50', 'S51'], 'seq_mirror off: seq send keeps numbering whatever the peer sends');
  t.equal(state(2, SessionTx.Switches), 0, 'and nothing was switched');

  receive(3);
  t.same(sends(3), ['S7', 'S8'], 'seq both: an unnumbered frame is dropped and leaves sending on');

  // The control plane re-adds a session for a new tap fd (a repaired tap) without seeding it.
  fwd.delSession(0);
  fwd.addSession(session(0, 1, 30, false, UDP_WIRE));
  receive(0, 10);
  t.same(sends(0), ['S1004', 'S1005'], 're-added: numbering continues where it was');
});

/** Taps holding frames per fd (each frame filled with its marker byte), and what each sendBatch carried. */
class WakeAddon extends RecordingAddon {
  readonly tapFrames = new Map<number, number[]>();
  /** Per readBatch call: fd, frames offered, frames read. */
  readonly tapReads: Array<{ fd: number; offered: number; got: number }> = [];
  /** Per sendBatch call: socket fd and the marker (last byte) of every message. */
  readonly sends: Array<{ fd: number; markers: number[] }> = [];
  override readBatch(fd: number, offsets: Uint32Array, _cap: number, count: number, lengths: Int32Array): number {
    const q = this.tapFrames.get(fd) ?? [];
    const n = Math.min(count, q.length);
    for (let i = 0; i < n; i++) {
      this.bytes.fill(q.shift()!, offsets[i], offsets[i] + FRAME);
      lengths[i] = FRAME;
    }
    this.tapReads.push({ fd, offered: count, got: n });
    return n;
  }
  override sendBatch(fd: number, offsets: Uint32Array, lengths: Uint32Array, _p: Uint32Array, first: number, count: number): number {
    const markers: number[] = [];
    for (let i = first; i < first + count; i++) markers.push(this.bytes[offsets[i] + lengths[i] - 1]);
    this.sends.push({ fd, markers });
    return count;
  }
  /** Taps that still hold frames: what a level-triggered wake reports. */
  readyTaps(): Array<[number, number]> {
    return [...this.tapFrames].filter(([, q]) => q.length > 0).map(([fd]) => [fd, POLL_READABLE]);
  }
}

function wakeForwarder(): { addon: WakeAddon; fwd: Forwarder; sc: Float64Array } {
  const addon = new WakeAddon();
  const sessions = new SharedArrayBuffer(SESSION_COUNTER_BYTES);
  const fwd = new Forwarder(addon, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE), sessions,
    new SharedArrayBuffer(TUNNEL_COUNTER_BYTES), allocateStatusBuffers());
  // Tunnel 1 (socket 6): sessions 0..2 on taps 20..22; tunnel 2 (socket 7): session 3 on tap 23.
  fwd.addTunnel({ slot: 1, tunnelId: 1, encap: EncapKind.Udp, family: 4, fd: UDP_FD, remote: '192.0.2.2', remotePort: 1701 });
  fwd.addTunnel({ slot: 2, tunnelId: 2, encap: EncapKind.Udp, family: 4, fd: UDP_FD + 1, remote: '192.0.2.3', remotePort: 1701 });
  for (let k = 0; k < 4; k++) fwd.addSession(session(k, k < 3 ? 1 : 2, 20 + k, false, UDP_WIRE));
  return { addon, fwd, sc: new Float64Array(sessions) };
}

t.test('the frames of all the taps one wake finds ready leave in one sendBatch per tunnel socket, in order', async (t) => {
  const { addon, sc } = wakeForwarder();
  addon.tapFrames.set(20, [1, 2]).set(21, [3]).set(22, [4, 5, 6]).set(23, [7]);
  addon.fireWake(addon.readyTaps());
  t.same(addon.sends, [{ fd: UDP_FD, markers: [1, 2, 3, 4, 5, 6] }, { fd: UDP_FD + 1, markers: [7] }],
    'one send per socket when the wake ends, each session\'s frames in the order its tap gave them');
  t.same([0, 1, 2, 3].map((k) => sc[k * SESSION_ROW_WIDTH + S.TxPackets]), [2, 1, 3, 1], 'tx_packets per session');
  const bytes = [0, 1, 2, 3].map((k) => sc[k * SESSION_ROW_WIDTH + S.TxBytes]);
  t.ok(bytes[1] > 0, 'tx_bytes counted');
  t.same(bytes, [2 * bytes[1], bytes[1], 3 * bytes[1], bytes[1]], 'tx_bytes per session, in proportion to its frames (all the same size)');
  t.same(addon.tapReads.map((r) => r.offered), [BATCH, BATCH, BATCH, BATCH], 'first wake: each tap offered a batch');

  // A lone fd in its wake is drained as before, and its frames go out at the end of that wake.
  addon.sends.length = 0;
  addon.tapFrames.set(22, [8, 9]);
  addon.fire(22, POLL_READABLE);
  t.same(addon.sends, [{ fd: UDP_FD, markers: [8, 9] }], 'a wake with one tap ready: its frames in one send');
});

t.test('with other fds ready a tap is read as far as it brought last time; one that stays readable is served until drained', async (t) => {
  const { addon, sc } = wakeForwarder();
  // Wake 1 teaches each tap's hint: tap 20 brought 1 frame, tap 21 two.
  addon.tapFrames.set(20, [1]).set(21, [2, 3]);
  addon.fireWake(addon.readyTaps());
  addon.tapReads.length = 0;
  addon.sends.length = 0;
  // Then a burst on tap 20 (40 frames) while tap 21 gets one frame in each of the next 10 wakes.
  addon.tapFrames.set(20, Array.from({ length: 40 }, (_, i) => 10 + i));
  let wakes = 0;
  let sentTwice = 0;
  for (; (wakes < 10 || addon.readyTaps().length > 0) && wakes < 100; wakes++) {
    if (wakes < 10) addon.tapFrames.get(21)!.push(100 + wakes);
    const before = addon.sends.length;
    addon.fireWake(addon.readyTaps());
    const fds = addon.sends.slice(before).map((x) => x.fd);
    if (new Set(fds).size !== fds.length) sentTwice++;
  }
  const reads20 = addon.tapReads.filter((r) => r.fd === 20);
  t.same(reads20.map((r) => r.offered), [1, 2, 4, 8, 16, 32], 'tap 20: bounded to its last count, doubling while it stays readable');
  t.equal(reads20.reduce((a, r) => a + r.got, 0), 40, 'tap 20: all 40 frames read');
  t.ok(wakes < 100, `every tap drained after ${wakes} wakes`);
  t.equal(addon.tapReads.filter((r) => r.got === 0).length, 0, 'no read came back empty (EAGAIN)');
  const sent = addon.sends.flatMap((x) => x.markers);
  t.same(sent.filter((m) => m >= 10 && m < 50), Array.from({ length: 40 }, (_, i) => 10 + i), 'tap 20\'s frames sent in order');
  t.same(sent.filter((m) => m >= 100), Array.from({ length: 10 }, (_, i) => 100 + i), 'tap 21\'s frames sent in order, one per wake');
  t.equal(sc[0 * SESSION_ROW_WIDTH + S.TxPackets], 41, 'session 0: tx_packets');
  t.equal(sc[1 * SESSION_ROW_WIDTH + S.TxPackets], 2 + 10, 'session 1: tx_packets');
  t.ok(addon.sends.every((x) => x.fd === UDP_FD), 'all on tunnel 1\'s socket');
  t.equal(sentTwice, 0, `no socket sent twice in one wake (${addon.sends.length} sends in ${wakes} wakes)`);
});

t.test('a send that throws at the end of a wake leaves the other sockets sent and later wakes working', async (t) => {
  const { addon } = wakeForwarder();
  let failOnce = true;
  const send = addon.sendBatch.bind(addon);
  addon.sendBatch = (fd, ...rest) => {
    if (fd === UDP_FD && failOnce) { failOnce = false; throw new Error('send failed'); }
    return send(fd, ...rest);
  };
  addon.tapFrames.set(20, [1]).set(23, [2]);
  t.throws(() => addon.fireWake(addon.readyTaps()), /send failed/, 'the error reaches the wake');
  t.same(addon.sends, [{ fd: UDP_FD + 1, markers: [2] }], 'the other socket was still sent in that wake');
  addon.tapFrames.set(20, [3]).set(23, [4]);
  addon.fireWake(addon.readyTaps());
  t.same(addon.sends.slice(1).map((x) => x.fd).sort(), [UDP_FD, UDP_FD + 1], 'the next wake sends both sockets');
  t.same(addon.sends.slice(1).find((x) => x.fd === UDP_FD)!.markers, [1, 3], 'the frame kept from the failed send goes first');
});

t.test('with other fds ready an offload tap that brought a frame or two is read once, with room for a super-frame', async (t) => {
  const { addon, fwd } = wakeForwarder();
  fwd.addSession(session(4, 1, 24, true, UDP_WIRE));
  addon.tapFrames.set(24, [1]).set(20, [2]);
  addon.fireWake(addon.readyTaps());
  addon.tapReads.length = 0;
  addon.tapFrames.set(24, [3]).set(20, [4]);
  addon.fireWake(addon.readyTaps());
  t.same(addon.tapReads.filter((r) => r.fd === 24).map((r) => r.offered), [GSO_MAX_SEGS], 'one read, room for one super-frame');
  t.same(addon.sends.flatMap((x) => x.markers), [1, 2, 3, 4], 'all sent, in the order the wakes read them');
});
