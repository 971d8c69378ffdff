/**
 * The control messages of static tunnels, in the data-plane worker: which tunnel a received
 * control message belongs to and whether it may touch it, the Hello keepalive of tunnels with
 * hello_interval (protocol/hello.ts), and the status rows the control plane reads
 * (status.ts). Rules and sources: docs/liveness.md.
 *
 * A received control message is, in order:
 * - UDP: from the tunnel's remote:udp_dport (checked by the forwarder before anything is
 *   parsed), well formed (else control_malformed), addressed to this tunnel's tunnel_id (else
 *   control_connection_id);
 * - IP: well formed, addressed to a tunnel on this socket (else control_connection_id, counted on
 *   the tunnel whose remote sent it, or the host row), from that tunnel's remote (else
 *   foreign_source);
 * - then a HELLO, ACK or ZLB for a tunnel with hello_interval goes to its HelloMachine; anything
 *   else, or any control message on a tunnel without hello_interval, is dropped and counted as
 *   control_message, as before. Only the first kind can change a tunnel's state.
 * Nothing here allocates per message or per timer tick.
 */
import {
  ControlMessage, ControlReason, DropReason, HelloMachine, LinkState, MessageType, SEND_ACK, SEND_HELLO, decodeControl,
} from '../protocol/index.js';
import { TUNNEL_ROW_WIDTH, TunnelCounter as T, HOST_ROW } from './counters.js';
import { HELLO_ROW_WIDTH, HelloField as H } from './status.js';
import { SOURCE_STRIDE } from '../native/types.js';
import type { DiagRecorder } from './diagnostics.js';

/** Indices into the forwarder's clock array. */
export const WALL = 0;
export const MONO = 1;
/** How often Hello deadlines are looked at (ms): well under the 1 s least timeout. */
export const HELLO_TICK_MS = 100;
/** Marks a queued packet as a control message (the forwarder's per-message session slot). */
export const CONTROL_QUEUE_MARK = -2;

/** What the channel needs from the forwarder. */
export interface ControlHost {
  /** Queue one control message to the peer of the tunnel in `slot`; false when there is no room. */
  sendControl(tunnelSlot: number, ccid: number, ns: number, nr: number, type: number): boolean;
  countTunnelDrop(row: number, reason: DropReason): void;
}

export interface ControlTunnelSpec {
  slot: number;
  tunnelId: number;
  peerTunnelId: number;
  fd: number;
  /** 0: no Hello on this tunnel. */
  helloIntervalMs: number;
  helloRetries: number;
}

/** Does recvBatch's source i equal `expected` (SOURCE_STRIDE words)? */
export function sourceIs(expected: Uint32Array, sources: Uint32Array, i: number): boolean {
  const b = i * SOURCE_STRIDE;
  return sources[b] === expected[0] && sources[b + 1] === expected[1] && sources[b + 2] === expected[2]
    && sources[b + 3] === expected[3] && sources[b + 4] === expected[4];
}

/** A small int key of an address (verified with sourceIs after the lookup). */
function addressKey(words: Uint32Array, at: number): number {
  return (words[at + 1] ^ words[at + 2] ^ words[at + 3] ^ words[at + 4]) | 0;
}

class ControlTunnel {
  /** peer_tunnel_id as int32 (writeControl takes it so, without a heap number per call). */
  readonly peerCcid: number;
  published = -1;

  constructor(readonly spec: ControlTunnelSpec, readonly src: Uint32Array, readonly hello: HelloMachine | null) {
    this.peerCcid = spec.peerTunnelId | 0;
  }
}

export class ControlChannel {
  private readonly byId = new Map<number, ControlTunnel>();
  private readonly bySlot = new Map<number, ControlTunnel>();
  /** By socket fd, then by addressKey of the remote: which tunnel a message from an address is about. */
  private readonly byAddress = new Map<number, Map<number, ControlTunnel>>();
  private readonly helloTunnels: ControlTunnel[] = [];
  private readonly msg = new ControlMessage();
  private readonly monoClock: Float64Array;
  private timer: NodeJS.Timeout | null = null;
  private readonly onTick = (): void => this.tick();

  /**
   * `clock` is the forwarder's [wall, monotonic] array; `readClock` refreshes it (a bound
   * function, made once). `status` holds HELLO_ROW_WIDTH fields per tunnel slot; `signal[0]` is
   * incremented and notified on every verdict.
   */
  constructor(
    private readonly bytes: Uint8Array,
    private readonly tc: Float64Array,
    private readonly status: Float64Array,
    private readonly signal: Int32Array,
    private readonly diag: DiagRecorder,
    private readonly clock: Float64Array,
    private readonly readClock: () => void,
    private readonly host: ControlHost,
  ) {
    this.monoClock = clock.subarray(MONO, MONO + 1);
  }

  addTunnel(spec: ControlTunnelSpec, src: Uint32Array): void {
    const hello = spec.helloIntervalMs > 0
      ? new HelloMachine({ intervalMs: spec.helloIntervalMs, retries: spec.helloRetries, clock: this.monoClock, jitterSeed: spec.tunnelId })
      : null;
    const t = new ControlTunnel(spec, src, hello);
    this.byId.set(spec.tunnelId | 0, t);
    this.bySlot.set(spec.slot, t);
    let local = this.byAddress.get(spec.fd);
    if (!local) this.byAddress.set(spec.fd, (local = new Map()));
    local.set(addressKey(src, 0), t);
    const row = spec.slot * HELLO_ROW_WIDTH;
    this.status.fill(0, row, row + HELLO_ROW_WIDTH);
    this.status[row + H.State] = -1;
    if (!hello) return;
    this.helloTunnels.push(t);
    this.readClock();
    hello.start();
    this.status[row + H.DownAfterMs] = hello.downAfterMs();
    this.act(t, hello.poll());
    this.publish(t);
    if (!this.timer) this.timer = setInterval(this.onTick, HELLO_TICK_MS);
  }

  delTunnel(slot: number): void {
    const t = this.bySlot.get(slot);
    if (!t) return;
    this.bySlot.delete(slot);
    if (this.byId.get(t.spec.tunnelId | 0) === t) this.byId.delete(t.spec.tunnelId | 0);
    const key = addressKey(t.src, 0);
    const local = this.byAddress.get(t.spec.fd);
    if (local?.get(key) === t) {
      local.delete(key);
      for (const o of this.bySlot.values()) if (o.spec.fd === t.spec.fd && addressKey(o.src, 0) === key) { local.set(key, o); break; }
      if (local.size === 0) this.byAddress.delete(t.spec.fd);
    }
    const k = this.helloTunnels.indexOf(t);
    if (k >= 0) this.helloTunnels.splice(k, 1);
    this.status[slot * HELLO_ROW_WIDTH + H.State] = -1;
    if (this.helloTunnels.length === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * A control message at [start, end) (its flags word; over IP after the zero session ID) on
   * socket `fd`. `ownerSlot`: the tunnel of a per-tunnel (UDP) socket, whose source the caller
   * checked; -1 for a shared raw socket. `sources`/`i`: recvBatch's source of the datagram.
   */
  receive(fd: number, ownerSlot: number, start: number, end: number, sources: Uint32Array, i: number): void {
    const m = this.msg;
    const r = decodeControl(this.bytes, start, end, m);
    let t: ControlTunnel | undefined;
    if (ownerSlot >= 0) {
      t = this.bySlot.get(ownerSlot);
      if (t === undefined) return;
      if (r !== ControlReason.None) return this.malformed(ownerSlot, r);
      if (m.ccid !== t.spec.tunnelId) return this.wrongId(ownerSlot, m.ccid);
    } else {
      // The connection ID picks the tunnel; a message refused before its header was read (short,
      // flags, version, length) has none and is placed by its source only.
      const headerRead = r === ControlReason.None || r === ControlReason.BadAvp || r === ControlReason.NoMessageType
        || r === ControlReason.UnknownMandatoryAvp;
      t = headerRead ? this.byId.get(m.ccid | 0) : undefined;
      if (t !== undefined && (t.spec.fd !== fd || !sourceIs(t.src, sources, i))) {
        if (t.spec.fd === fd) {
          this.host.countTunnelDrop(t.spec.slot, DropReason.ForeignSource);
          this.diag.foreignSource(t.spec.slot, sources, i, m.ccid | 0, 1);
          return;
        }
        t = undefined;
      }
      if (t === undefined) {
        // No tunnel of that ID here: count it on the tunnel whose remote sent it, if any.
        const bySource = this.byAddress.get(fd)?.get(addressKey(sources, i * SOURCE_STRIDE));
        const row = bySource !== undefined && sourceIs(bySource.src, sources, i) ? bySource.spec.slot : HOST_ROW;
        if (r !== ControlReason.None) return this.malformed(row, r);
        return this.wrongId(row, m.ccid);
      }
      if (r !== ControlReason.None) return this.malformed(t.spec.slot, r);
    }
    const slot = t.spec.slot;
    const type = m.messageType;
    const keepalive = m.messageVendor === 0 && (type === MessageType.Hello || type === MessageType.Ack || type === MessageType.Zlb);
    if (t.hello === null || !keepalive) {
      if (keepalive && type === MessageType.Hello) this.diag.helloIgnored(slot);
      else this.diag.otherControl(slot, m.messageType, m.messageVendor);
      this.host.countTunnelDrop(slot, DropReason.Control);
      return;
    }
    if (m.hasDigest !== 0) this.diag.digest(slot);
    this.tc[slot * TUNNEL_ROW_WIDTH + T.RxControl]++;
    this.act(t, t.hello.onMessage(type, m.ns, m.nr));
    this.publish(t);
  }

  private malformed(row: number, reason: ControlReason): void {
    this.host.countTunnelDrop(row, DropReason.ControlMalformed);
    this.diag.malformedControl(row, reason);
  }

  private wrongId(row: number, ccid: number): void {
    this.host.countTunnelDrop(row, DropReason.ControlWrongId);
    this.diag.wrongConnectionId(row, ccid | 0);
  }

  /** Timer: Hello deadlines. */
  tick(): void {
    this.readClock();
    const now = this.clock[MONO];
    const list = this.helloTunnels;
    for (let k = 0; k < list.length; k++) {
      const t = list[k];
      const m = t.hello!;
      if (now < m.nextDeadline()) continue;
      this.act(t, m.poll());
      this.publish(t);
    }
  }

  private act(t: ControlTunnel, actions: number): void {
    const m = t.hello!;
    if ((actions & SEND_HELLO) !== 0) this.host.sendControl(t.spec.slot, t.peerCcid, m.helloNs, m.helloNr, MessageType.Hello);
    if ((actions & SEND_ACK) !== 0) this.host.sendControl(t.spec.slot, t.peerCcid, m.ns, m.nr, MessageType.Ack);
  }

  /** Copy the machine's state into the tunnel's status row; signal the control plane on a verdict. */
  private publish(t: ControlTunnel): void {
    const m = t.hello!;
    const s = this.status;
    const row = t.spec.slot * HELLO_ROW_WIDTH;
    const toWall = this.clock[WALL] - this.clock[MONO];
    s[row + H.State] = m.state === LinkState.Up ? 1 : 0;
    s[row + H.Reason] = m.reason;
    s[row + H.SinceMs] = m.since + toWall;
    s[row + H.Transitions] = m.transitions;
    s[row + H.RttMs] = m.rttMs;
    s[row + H.LastHeardMs] = m.lastHeardAt < 0 ? 0 : m.lastHeardAt + toWall;
    s[row + H.HellosSent] = m.hellosSent;
    s[row + H.Retransmissions] = m.retransmissions;
    s[row + H.AcksSent] = m.acksSent;
    s[row + H.HellosReceived] = m.hellosReceived;
    s[row + H.Answers] = m.answers;
    s[row + H.Resyncs] = m.resyncs;
    s[row + H.AcksLimited] = m.acksLimited;
    if (t.published !== m.transitions) {
      t.published = m.transitions;
      Atomics.add(this.signal, 0, 1);
      Atomics.notify(this.signal, 0);
    }
  }
}
