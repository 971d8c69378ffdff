/**
 * Control messages in the data plane (src/dataplane/control-channel.ts) through the real
 * Forwarder over a fake addon: a tunnel with hello_interval sends its Hello (UDP: at offset 0;
 * IP: behind the zero session ID) to peer_tunnel_id, answers the peer's, goes Up on an answer
 * and Down when the answers stop; hostile control traffic (wrong connection ID, foreign source,
 * malformed, SCCRQ) is dropped, counted and changes no state; a Hello on a tunnel without
 * hello_interval is dropped as before. The diagnostics rows say what was seen.
 */
import t from 'tap';
import { Forwarder, type TunnelSpec } from '../../src/dataplane/forwarder.js';
import { SLOT_COUNT, SLOT_SIZE } from '../../src/dataplane/layout.js';
import {
  HOST_ROW, SESSION_COUNTER_BYTES, TUNNEL_COUNTER_BYTES, TUNNEL_ROW_WIDTH, TunnelCounter as T,
} from '../../src/dataplane/counters.js';
import {
  HELLO_ROW_WIDTH, HelloField as H, TUNNEL_DIAG_WIDTH, TunnelDiag as TD, ForeignField as F, allocateStatusBuffers,
} from '../../src/dataplane/status.js';
import { ControlReason, ControlMessage, EncapKind, HelloReason, MessageType, decodeControl, writeControl } from '../../src/protocol/index.js';
import { POLL_READABLE, SOURCE_STRIDE } from '../../src/native/index.js';
import { FakeIo } from '../helpers/fake-io.js';

const UDP_FD = 6;
const RAW_FD = 5;
const PEER = ((192 << 24) | (2 << 8) | 2) >>> 0;
const OTHER = ((192 << 24) | (2 << 8) | 9) >>> 0;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

class WireIo extends FakeIo {
  /** Next datagrams recvBatch hands out: bytes (as the socket gives them) and the source words. */
  readonly inbox: Array<{ bytes: Buffer; source: number[] }> = [];
  /** Every message sendBatch took: fd, peer id, bytes. */
  readonly sent: Array<{ fd: number; peer: number; bytes: Buffer }> = [];
  override recvBatch(_fd: number, offsets: Uint32Array, _cap: number, count: number, lengths: Int32Array, sources: Uint32Array): number {
    const n = Math.min(count, this.inbox.length);
    for (let i = 0; i < n; i++) {
      const d = this.inbox.shift()!;
      this.bytes.set(d.bytes, offsets[i]);
      lengths[i] = d.bytes.length;
      sources.set(d.source, i * SOURCE_STRIDE);
    }
    return n;
  }
  override sendBatch(fd: number, offsets: Uint32Array, lengths: Uint32Array, peers: Uint32Array, first: number, count: number): number {
    for (let q = first; q < first + count; q++) {
      this.sent.push({ fd, peer: peers[q], bytes: Buffer.from(this.bytes.subarray(offsets[q], offsets[q] + lengths[q])) });
    }
    return count;
  }
  deliver(fd: number, bytes: Buffer, source: number[]): void {
    this.inbox.push({ bytes, source });
    this.fire(fd, POLL_READABLE);
  }
}

function control(ip: boolean, ccid: number, ns: number, nr: number, type: number): Buffer {
  const b = new Uint8Array(32);
  const n = writeControl(b, 0, 32, ip, ccid, ns, nr, type);
  return Buffer.from(b.subarray(0, n));
}

/** An IPv4 header (20 bytes, source `src`) in front of `payload`, as a raw IPv4 socket reads it. */
function withIp(src: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h[9] = 115;
  h.writeUInt32BE(src, 12);
  return Buffer.concat([h, payload]);
}

function setup(): { io: WireIo; fwd: Forwarder; tc: Float64Array; hello: Float64Array; diag: Float64Array; signal: Int32Array } {
  const io = new WireIo();
  io.wallMs = 1.7e12;
  io.monoMs = 1000;
  const tunnels = new SharedArrayBuffer(TUNNEL_COUNTER_BYTES);
  const status = allocateStatusBuffers();
  const fwd = new Forwarder(io, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE), new SharedArrayBuffer(SESSION_COUNTER_BYTES), tunnels, status);
  return {
    io, fwd, tc: new Float64Array(tunnels), hello: new Float64Array(status.hello), diag: new Float64Array(status.tunnelDiag),
    signal: new Int32Array(status.signal),
  };
}

const udpTunnel = (over: Partial<TunnelSpec> = {}): TunnelSpec => ({
  slot: 2, tunnelId: 3000, peerTunnelId: 4000, encap: EncapKind.Udp, family: 4, fd: UDP_FD, remote: '192.0.2.2', remotePort: 6000,
  helloIntervalMs: 1000, helloRetries: 2, ...over,
});
const fromPeer = [(4 << 16) | 6000, PEER, 0, 0, 0];

function decoded(b: Buffer, ip: boolean): ControlMessage {
  const m = new ControlMessage();
  const r = decodeControl(b, ip ? 4 : 0, b.length, m);
  if (r !== ControlReason.None) throw new Error(`sent a malformed control message: ${r}`);
  return m;
}

t.test('UDP: Hello out at once, answered → up, peer Hello answered, silence → down', async (t) => {
  const { io, fwd, tc, hello, signal } = setup();
  fwd.addTunnel(udpTunnel());
  const row = 2 * HELLO_ROW_WIDTH;
  t.equal(io.sent.length, 1, 'the first Hello goes out when the tunnel is added');
  const h = decoded(io.sent[0].bytes, false);
  t.same([io.sent[0].fd, io.sent[0].peer, h.messageType, h.ccid, h.ns, h.nr], [UDP_FD, 2, MessageType.Hello, 4000, 0, 0],
    'HELLO on the tunnel socket to its peer, connection ID = peer_tunnel_id, Ns 0, Nr 0');
  t.same([hello[row + H.State], hello[row + H.Reason]], [0, HelloReason.Starting], 'down, starting');
  t.equal(tc[2 * TUNNEL_ROW_WIDTH + T.TxControl], 1, 'counted as tx_control');
  t.equal(tc[2 * TUNNEL_ROW_WIDTH + T.TxPackets], 0, 'not as data');
  const before = Atomics.load(signal, 0);
  io.monoMs += 12;
  io.deliver(UDP_FD, control(false, 3000, 0, 1, MessageType.Ack), fromPeer);
  t.same([hello[row + H.State], hello[row + H.RttMs], hello[row + H.Transitions]], [1, 12, 1], 'up after the ACK, RTT 12 ms');
  t.equal(Atomics.load(signal, 0), before + 1, 'the control plane is signalled');
  t.equal(tc[2 * TUNNEL_ROW_WIDTH + T.RxControl], 1, 'rx_control');
  io.deliver(UDP_FD, control(false, 3000, 7, 1, MessageType.Hello), fromPeer);
  const ack = decoded(io.sent[1].bytes, false);
  t.same([ack.messageType, ack.ccid, ack.ns, ack.nr], [MessageType.Ack, 4000, 1, 8], "the peer's Hello gets an ACK with Nr = its Ns + 1");
  // The answers stop: ticks drive the retransmissions (1, 2, 4 s) and the Down verdict.
  const ch = (fwd as unknown as { control: { tick(): void } }).control;
  for (let k = 0; k < 200; k++) { io.monoMs += 100; ch.tick(); }
  t.same([hello[row + H.State], hello[row + H.Reason]], [0, HelloReason.NoAnswer], 'down: no answer');
  t.ok(hello[row + H.Retransmissions] >= 2, `${hello[row + H.Retransmissions]} retransmissions`);
  t.equal(hello[row + H.DownAfterMs], 1000 + 7000, 'the documented bound is published');
  fwd.stop();
});

t.test('hostile control traffic is dropped, counted and changes nothing', async (t) => {
  const { io, fwd, tc, hello, diag } = setup();
  fwd.addTunnel(udpTunnel());
  io.deliver(UDP_FD, control(false, 3000, 0, 1, MessageType.Ack), fromPeer);
  const row = 2 * HELLO_ROW_WIDTH;
  const state = (): number[] => [hello[row + H.State], hello[row + H.Transitions], hello[row + H.Answers], hello[row + H.HellosReceived]];
  const s0 = state();
  const sent0 = io.sent.length;
  const c = (k: T): number => tc[2 * TUNNEL_ROW_WIDTH + k];
  io.deliver(UDP_FD, control(false, 3001, 5, 1, MessageType.Hello), fromPeer);
  t.equal(c(T.DropControlWrongId), 1, 'wrong connection ID: control_connection_id');
  t.equal(diag[2 * TUNNEL_DIAG_WIDTH + TD.WrongIdCcid], 3001, 'and the ID seen is kept');
  io.deliver(UDP_FD, control(false, 3000, 5, 1, MessageType.Hello), [(4 << 16) | 6001, PEER, 0, 0, 0]);
  t.equal(c(T.DropForeignSource), 1, 'another source port: foreign_source');
  const f = 2 * TUNNEL_DIAG_WIDTH + TD.Foreign;
  t.same([diag[f + F.Source] & 0xffff, diag[f + F.Count], diag[f + F.Control], diag[f + F.Id]], [6001, 1, 1, 3000],
    'the source, and that it sent a control message for connection 3000');
  io.deliver(UDP_FD, hex('c803001a 00000bb8 00050001 80080000 00000006 80060009 0001'), fromPeer);
  t.equal(c(T.DropControlMalformed), 1, 'unknown mandatory AVP: control_malformed');
  t.equal(diag[2 * TUNNEL_DIAG_WIDTH + TD.MalformedReason], ControlReason.UnknownMandatoryAvp);
  io.deliver(UDP_FD, hex('c8030014 00000bb8 00050001 80050000 00000006'), fromPeer);
  t.equal(c(T.DropControlMalformed), 2, 'AVP length 5: control_malformed');
  io.deliver(UDP_FD, control(false, 3000, 5, 1, MessageType.Sccrq), fromPeer);
  t.equal(c(T.DropControl), 1, 'SCCRQ: control_message, as before');
  t.equal(diag[2 * TUNNEL_DIAG_WIDTH + TD.OtherType], MessageType.Sccrq, 'the type is kept');
  t.same(state(), s0, 'state, transitions, answers and Hellos received unchanged');
  t.equal(io.sent.length, sent0, 'and nothing was sent in answer');
  t.equal(c(T.RxErrors), 5, 'every drop is an rx_error');
  fwd.stop();
});

t.test('a tunnel without hello_interval drops Hellos as before, and notes them', async (t) => {
  const { io, fwd, tc, hello, diag } = setup();
  fwd.addTunnel(udpTunnel({ helloIntervalMs: 0 }));
  t.equal(io.sent.length, 0, 'sends nothing');
  t.equal(hello[2 * HELLO_ROW_WIDTH + H.State], -1, 'status: no Hello');
  io.deliver(UDP_FD, control(false, 3000, 0, 0, MessageType.Hello), fromPeer);
  t.equal(tc[2 * TUNNEL_ROW_WIDTH + T.DropControl], 1, 'control_message');
  t.equal(diag[2 * TUNNEL_DIAG_WIDTH + TD.HelloIgnoredCount], 1, 'noted: the peer sends Hellos');
  t.equal(io.sent.length, 0, 'not answered');
  fwd.stop();
});

t.test('IP: the connection ID picks the tunnel on a shared socket; the source must be its remote', async (t) => {
  const { io, fwd, tc, hello, diag } = setup();
  const ipTunnel = (slot: number, tunnelId: number, remote: string): TunnelSpec => ({
    slot, tunnelId, peerTunnelId: tunnelId + 1000, encap: EncapKind.Ip, family: 4, fd: RAW_FD, remote, remotePort: 0,
    helloIntervalMs: 1000, helloRetries: 2,
  });
  fwd.addTunnel(ipTunnel(1, 10, '192.0.2.2'));
  fwd.addTunnel(ipTunnel(4, 40, '192.0.2.9'));
  t.equal(io.sent.length, 2, 'one Hello per tunnel');
  const h = io.sent.map((s) => decoded(s.bytes, true));
  t.same(io.sent.map((s) => s.bytes.subarray(0, 4).toString('hex')), ['00000000', '00000000'], 'behind the zero session ID');
  t.same(h.map((m) => [m.ccid, m.messageType]), [[1010, MessageType.Hello], [1040, MessageType.Hello]], 'to each peer_tunnel_id');
  t.same(io.sent.map((s) => s.peer), [1, 4], 'each to its tunnel\'s peer');
  const src = (a: number): number[] => [(4 << 16), a, 0, 0, 0];
  io.deliver(RAW_FD, withIp(OTHER, control(true, 40, 0, 1, MessageType.Ack)), src(OTHER));
  t.equal(hello[4 * HELLO_ROW_WIDTH + H.State], 1, 'tunnel 40 is up: its ACK came from its remote');
  t.equal(hello[1 * HELLO_ROW_WIDTH + H.State], 0, 'tunnel 10 is not');
  io.deliver(RAW_FD, withIp(PEER, control(true, 40, 0, 1, MessageType.Ack)), src(PEER));
  t.equal(tc[4 * TUNNEL_ROW_WIDTH + T.DropForeignSource], 1, "tunnel 40's ID from tunnel 10's remote: foreign_source on 40");
  t.equal(hello[1 * HELLO_ROW_WIDTH + H.State], 0, 'and tunnel 10 is still not up');
  io.deliver(RAW_FD, withIp(PEER, control(true, 77, 0, 1, MessageType.Ack)), src(PEER));
  t.equal(tc[1 * TUNNEL_ROW_WIDTH + T.DropControlWrongId], 1, 'an unknown ID from tunnel 10\'s remote: counted on tunnel 10');
  t.equal(diag[1 * TUNNEL_DIAG_WIDTH + TD.WrongIdCcid], 77);
  io.deliver(RAW_FD, withIp(((198 << 24) | (51 << 16) | (100 << 8) | 1) >>> 0, control(true, 77, 0, 1, MessageType.Ack)),
    src(((198 << 24) | (51 << 16) | (100 << 8) | 1) >>> 0));
  t.equal(tc[HOST_ROW * TUNNEL_ROW_WIDTH + T.DropControlWrongId], 1, 'from nobody known: the host row');
  io.deliver(RAW_FD, withIp(PEER, hex('00000000 c803')), src(PEER));
  t.equal(tc[1 * TUNNEL_ROW_WIDTH + T.DropControlMalformed], 1, 'a cut header is placed by its source');
  fwd.stop();
});
