#!/usr/bin/env node
// The forwarder's own CPU per frame, without syscalls (`node bench/forwarder-scale.cjs N T [events] [decap|encap]`,
// after `npm run build`): the real Forwarder over a simulated addon, N sessions in T UDP tunnels,
// each frame for the next session in turn. Run with 1 1 and with 1000 25 to see what a thousand
// busy sessions cost the forwarder itself, apart from the kernel's work on a thousand taps.
const DIST = require('node:path').join(__dirname, '..', 'dist');
const { Forwarder } = require(DIST + '/dataplane/forwarder.js');
const { compileSession } = require(DIST + '/control/session-words.js');
const { normalizeSession } = require(DIST + '/control/validate.js');
const { BATCH, SLOT_COUNT, SLOT_SIZE } = require(DIST + '/dataplane/layout.js');
const { allocateStatusBuffers } = require(DIST + '/dataplane/status.js');
const { SESSION_COUNTER_BYTES, TUNNEL_COUNTER_BYTES } = require(DIST + '/dataplane/counters.js');
const { POLL_READABLE, SOURCE_STRIDE } = require(DIST + '/native/index.js');
const { EncapKind, UDP_WIRE, buildTxTemplate, writeHeader } = require(DIST + '/protocol/index.js');

const N = Number(process.argv[2] ?? 1), T = Number(process.argv[3] ?? 1), ROUNDS_ = Number(process.argv[4] ?? 20000);
const FRAME = 60, PEER_V4 = (192 << 24) | (2 << 8) | 2;
class Io {
  bytes = new Uint8Array(0); callbacks = new Map(); events = new Map(); written = 0; writes = 0;
  attachPool(p) { this.bytes = new Uint8Array(p); } setPeer() {} readClock(o) { o[0] = 1.7e12 + (this.t = (this.t ?? 0) + 0.01); o[1] = 5e6 + this.t; }
  tpls = []; next = 0;
  recvBatch(fd, offsets, cap, count, lengths, sources) {
    const t = fd - 1000; const spt = N / T;
    for (let i = 0; i < count; i++) {
      const b = i * SOURCE_STRIDE; sources[b] = (4 << 16) | 1701; sources[b + 1] = PEER_V4 >>> 0; sources[b + 2] = 0; sources[b + 3] = 0; sources[b + 4] = 0;
      const k = t * spt + ((this.next++) % spt);
      const tpl = this.tpls[k]; const fs = offsets[i] + tpl.length;
      writeHeader(this.bytes, fs, tpl, -1); lengths[i] = tpl.length + FRAME;
    }
    return count;
  }
  sendBatch(_f, _o, _l, _p, _first, count) { this.sent += count; return count; }
  readBatch(fd, o, cap, count, lengths) { if (this.tapBudget <= 0) return 0; this.tapBudget--; lengths[0] = 60; this.readFrames = (this.readFrames ?? 0) + 1; return 1; }
  sent = 0;
  writeBatch(_fd, _o, _l, _first, count) { this.written += count; this.writes++; return count; }
  pollStart(fd, ev, cb) { this.callbacks.set(fd, cb); this.events.set(fd, ev); }
  pollStop(fd) { this.events.set(fd, 0); } pollPause(fd) { this.events.set(fd, 0); }
  pollEnd(cb) { this.endCallback = cb; }
  fire(fd, ev) { this.callbacks.get(fd)(fd, ev, 1); this.endCallback?.(); }
}
const io = new Io();
const status = allocateStatusBuffers();
const fwd = new Forwarder(io, new SharedArrayBuffer(SLOT_COUNT * SLOT_SIZE), new SharedArrayBuffer(SESSION_COUNTER_BYTES), new SharedArrayBuffer(TUNNEL_COUNTER_BYTES), status);
for (let t = 0; t < T; t++) fwd.addTunnel({ slot: t, tunnelId: t + 1, peerTunnelId: t + 1, encap: 0, family: 4, fd: 1000 + t, remote: '192.0.2.2', remotePort: 1701, helloIntervalMs: 0, helloRetries: 3 });
for (let k = 0; k < N; k++) {
  const t = Math.floor(k / (N / T));
  const s = normalizeSession({ tunnel_id: t + 1, session_id: k + 1, peer_session_id: k + 1 });
  fwd.addSession({ ...compileSession(s, UDP_WIRE), slot: k, tunnelSlot: t, sessionId: k + 1, tapFd: 5000 + k, tapOffload: false, mtu: 1500 });
  io.tpls[k] = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: k + 1, cookie: new Uint8Array(0), l2spec: 'default', offset: 0 });
}
// one readiness event per tunnel in turn; the socket gives ROUND batches per event: make recvBatch return BATCH once, then 0
let budget = 0; const orig = io.recvBatch.bind(io);
io.recvBatch = (fd, o, c, count, l, s) => (budget-- > 0 ? orig(fd, o, c, count, l, s) : 0);
const run = (events) => { for (let e = 0; e < events; e++) { budget = 1; io.fire(1000 + (e % T), POLL_READABLE); } };
const MODE = process.argv[5] ?? 'decap';
if (MODE === 'encap') {
  // a wake finds WAKE taps ready (each with one frame), in rotation over all sessions; then the wake's end
  const WAKE = 20; let next = 0;
  const wake = () => { for (let j = 0; j < WAKE; j++) { const fd = 5000 + (next++ % N); io.tapBudget = 1; io.callbacks.get(fd)(fd, POLL_READABLE, WAKE); } io.endCallback?.(); };
  for (let e = 0; e < 5000; e++) wake();
  const s0 = io.sent; const t0 = process.hrtime.bigint();
  for (let e = 0; e < ROUNDS_ * 3; e++) wake();
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(JSON.stringify({ MODE, N, T, frames: io.sent - s0, ns_per_frame: +(ns / (io.sent - s0)).toFixed(1) }));
  process.exit(0);
}
run(5000);
const w0 = io.written; const t0 = process.hrtime.bigint();
run(ROUNDS_);
const ns = Number(process.hrtime.bigint() - t0);
console.log(JSON.stringify({ N, T, frames: io.written - w0, ns_per_frame: +(ns / (io.written - w0)).toFixed(1), writes_per_frame: +(io.writes / io.written).toFixed(3) }));
fwd.stop();
