/**
 * Forwarder behaviour with a recording stand-in for the addon (no syscalls): what is queued
 * under backpressure on a raw IP socket that several tunnels share.
 */
import t from 'tap';
import { Forwarder, type SessionSpec, type TunnelSpec } from '../../src/dataplane/forwarder.js';
import { SESSION_COUNTER_BYTES, SLOT_COUNT, SLOT_SIZE, TUNNEL_COUNTER_BYTES } from '../../src/dataplane/layout.js';
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

  attachPool(): void { /* no memory needed */ }
  setPeer(id: number, _family: number, address: string): void { this.peers.set(id, address); }
  pollStart(fd: number, _events: number, cb: (fd: number, events: number) => void): void { this.callbacks.set(fd, cb); }
  pollStop(): void { /* nothing to release */ }
  pollPause(): void { /* nothing to release */ }
  readClock(out: Float64Array): void { out[0] = 0; out[1] = 0; }
  readBatch(_fd: number, _o: Uint32Array, _cap: number, count: number, lengths: Int32Array): number {
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

function session(slot: number, tunnelSlot: number, tapFd: number): SessionSpec {
  return {
    slot, tunnelSlot, sessionId: 100 + slot, peerSessionId: 200 + slot, tapFd, cookie: [], peerCookie: [],
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
