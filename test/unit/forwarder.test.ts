/**
 * Forwarder behaviour with a recording stand-in for the addon (no syscalls): what is queued
 * under backpressure on a raw IP socket that several tunnels share, and how an offload tap is read.
 */
import t from 'tap';
import { Forwarder, type SessionSpec, type TunnelSpec } from '../../src/dataplane/forwarder.js';
import {
  BATCH, GSO_MAX_SEGS, SESSION_COUNTER_BYTES, SESSION_FIELDS, SLOT_COUNT, SLOT_SIZE, SessionCounter as S,
  TUNNEL_COUNTER_BYTES,
} from '../../src/dataplane/layout.js';
import { POLL_READABLE, POLL_WRITABLE, type NativeAddon } from '../../src/native/index.js';

const RAW_FD = 5;
const TAP_A = 20;

class RecordingAddon {
  readonly callbacks = new Map<number, (fd: number, events: number) => void>();
  readonly peers = new Map<number, string>();
  /** sendBatch accepts nothing while full (EAGAIN), everything otherwise. */
  full = false;
  /** Peer address of every message the kernel accepted. */
  readonly sentTo: string[] = [];
  framesOnTap = 0;
  /** `count` of every readBatch call. */
  readonly offered: number[] = [];
  /** What readBatch returns per call, as lengths (negative: a frame read but dropped); else framesOnTap. */
  readonly reads: number[][] = [];
  /** tapOffload calls, as "fd:on". */
  readonly offload: string[] = [];

  attachPool(): void { /* no memory needed */ }
  setPeer(id: number, _family: number, address: string): void { this.peers.set(id, address); }
  pollStart(fd: number, _events: number, cb: (fd: number, events: number) => void): void { this.callbacks.set(fd, cb); }
  pollStop(): void { /* nothing to release */ }
  pollPause(): void { /* nothing to release */ }
  readClock(out: Float64Array): void { out[0] = 0; out[1] = 0; }
  tapOffload(fd: number, on: boolean): void { this.offload.push(`${fd}:${on}`); }
  readBatch(_fd: number, _o: Uint32Array, _cap: number, count: number, lengths: Int32Array): number {
    this.offered.push(count);
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
  sendBatch(_fd: number, _o: Uint32Array, _l: Uint32Array, peers: Uint32Array, first: number, count: number): number {
    if (this.full) return 0;
    for (let i = first; i < first + count; i++) this.sentTo.push(this.peers.get(peers[i])!);
    return count;
  }
}

function ipTunnel(slot: number, remote: string): TunnelSpec {
  return { slot, tunnelId: slot, encap: 'ip', family: 4, fd: RAW_FD, remote, remotePort: 0 };
}

function session(slot: number, tunnelSlot: number, tapFd: number, tapOffload = false): SessionSpec {
  return {
    slot, tunnelSlot, sessionId: 100 + slot, peerSessionId: 200 + slot, tapFd, tapOffload, cookie: [], peerCookie: [],
    l2spec: 'default', seq: 'none', reorderTimeout: 0, offset: 0, peerOffset: 0, mtu: 1500,
  };
}

t.test('deleting a tunnel on a shared raw socket drops its queued packets', async (t) => {
  const addon = new RecordingAddon();
  const fwd = new Forwarder(addon as unknown as NativeAddon, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE),
    new SharedArrayBuffer(SESSION_COUNTER_BYTES), new SharedArrayBuffer(TUNNEL_COUNTER_BYTES));
  fwd.addTunnel(ipTunnel(1, '192.0.2.2'));
  fwd.addTunnel(ipTunnel(2, '192.0.2.3'));
  fwd.addSession(session(0, 1, TAP_A));
  fwd.addSession(session(1, 2, 21));

  // The socket is full: three frames of tunnel 1 wait in the socket's queue.
  addon.full = true;
  addon.framesOnTap = 3;
  addon.callbacks.get(TAP_A)!(TAP_A, POLL_READABLE);
  t.equal(addon.sentTo.length, 0, 'nothing accepted while the socket is full');

  // Tunnel 1 goes; a new tunnel takes its slot (and peer entry) before the socket drains.
  fwd.delTunnel(1);
  fwd.addTunnel(ipTunnel(1, '192.0.2.9'));
  addon.full = false;
  addon.callbacks.get(RAW_FD)!(RAW_FD, POLL_WRITABLE);
  t.same(addon.sentTo, [], 'the deleted tunnel\'s frames are not sent to the slot\'s new peer');

  // The socket works as before for the tunnel that stayed.
  addon.framesOnTap = 2;
  addon.callbacks.get(21)!(21, POLL_READABLE);
  t.same(addon.sentTo, ['192.0.2.3', '192.0.2.3'], 'tunnel 2 still sends to its peer');
});

t.test('an offload tap is read with room for a super-frame, and its undeliverable frames are counted', async (t) => {
  const addon = new RecordingAddon();
  const sessions = new SharedArrayBuffer(SESSION_COUNTER_BYTES);
  const fwd = new Forwarder(addon as unknown as NativeAddon, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE),
    sessions, new SharedArrayBuffer(TUNNEL_COUNTER_BYTES));
  const sc = new Float64Array(sessions);
  fwd.addTunnel(ipTunnel(1, '192.0.2.2'));
  fwd.addSession(session(0, 1, TAP_A, true));
  fwd.addSession(session(1, 1, 21, false));
  t.same(addon.offload, [`${TAP_A}:true`, '21:false'], 'each session tells the addon how to read its tap');

  // Read 1: the addon stopped with fewer than GSO_MAX_SEGS slots left (a 45-segment super-frame
  // and 20 frames): not drained, so the forwarder reads again. Read 2: two dropped frames, then EAGAIN.
  const full = BATCH + GSO_MAX_SEGS - 1;
  addon.reads.push(new Array(65).fill(1000), [-22, 800, -90]);
  addon.callbacks.get(TAP_A)!(TAP_A, POLL_READABLE);
  t.same(addon.offered, [full, full], 'offered a batch plus room for one more super-frame, twice');
  t.equal(addon.sentTo.length, 66, 'every deliverable frame went out');
  const row = 0 * SESSION_FIELDS;
  t.equal(sc[row + S.TxPackets], 66, 'tx_packets');
  t.equal(sc[row + S.TxErrors], 2, 'the two frames the addon could not deliver are tx_errors');

  // A plain tap is offered a plain batch, and stops at the first short read.
  addon.offered.length = 0;
  addon.framesOnTap = 10;
  addon.callbacks.get(21)!(21, POLL_READABLE);
  t.same(addon.offered, [BATCH], 'plain tap: one batch, drained');

  fwd.delSession(0);
  t.same(addon.offload.slice(2), [`${TAP_A}:false`], 'deleting the session forgets the offload tap');
  // Every slot came back: a full pool is offered again.
  fwd.addSession(session(0, 1, TAP_A, true));
  addon.offered.length = 0;
  addon.callbacks.get(TAP_A)!(TAP_A, POLL_READABLE);
  t.same(addon.offered, [full], 'no slot leaked');
});
