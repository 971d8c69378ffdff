/**
 * Child-process driver for the native addon tests (test/unit/native.test.ts). Runs one scenario,
 * usually inside a network namespace (`ip netns exec NS node -r <ts-node register> native-child.ts
 * SCENARIO 'ARGS JSON'`), and prints one JSON line with what it observed; the test asserts it.
 * Run without a scenario (e.g. picked up by a test runner) it does nothing.
 * Only the addon through src/native/index.ts is used, so the loader is exercised too.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Flags, FlagsGet, formatMessage, type ifla } from 'netlink';
import { linkPayload, RTM_DELLINK, RTM_GETLINK } from '../../src/netlink/messages.js';
import { native, POLL_READABLE, POLL_WRITABLE, SOURCE_STRIDE, socketOption, type IntSocketOption } from '../../src/native/index.js';

type Args = Record<string, unknown>;
const POOL_SIZE = 1 << 20;

function errInfo(fn: () => unknown): { code?: string; errno?: number; syscall?: string; message: string } | null {
  try { fn(); return null; } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { code: err.code, errno: err.errno, syscall: err.syscall, message: err.message };
  }
}

/** Resolves at the first readiness callback for fd (then stops polling), or rejects on timeout. */
function readable(fd: number, ms = 3000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { native.pollStop(fd); reject(new Error(`fd ${fd} not readable in ${ms} ms`)); }, ms);
    native.pollStart(fd, POLL_READABLE, (_fd, events) => {
      native.pollStop(fd);  // from inside the callback
      clearTimeout(timer);
      resolve(events);
    });
  });
}

const hex = (u8: Uint8Array, off: number, len: number): string => Buffer.from(u8.buffer, u8.byteOffset + off, len).toString('hex');
const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** UDP: one sendBatch to two peers, recvBatch on each, plus a truncated oversized datagram. */
async function udp(a: Args): Promise<unknown> {
  const family = a.family as 4 | 6;
  const local = a.local as string;
  const sab = new SharedArrayBuffer(POOL_SIZE);
  const pool = new Uint8Array(sab);
  native.attachPool(sab);
  const tx = native.udpOpen(family, local, 0, {});
  const rx1 = native.udpOpen(family, local, 0, { options: family === 6 ? [socketOption('UDP_NO_CHECK6_RX', 1)] : [] });
  const rx2 = native.udpOpen(family, local, 0,
    { options: [family === 4 ? socketOption('SO_NO_CHECK', 1) : socketOption('UDP_NO_CHECK6_TX', 1)] });
  const ports = { tx: native.localPort(tx), rx1: native.localPort(rx1), rx2: native.localPort(rx2) };
  native.setPeer(3, family, local, ports.rx1);
  native.setPeer(40, family, local, ports.rx2);  // grows the peer table

  // Five messages, lengths 1..5 * 100, byte pattern = message index; peers alternate.
  const n = 5;
  const offsets = new Uint32Array(n), lengths = new Uint32Array(n), peers = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    offsets[i] = 4096 + i * 2048; lengths[i] = (i + 1) * 100; peers[i] = i % 2 === 0 ? 3 : 40;
    pool.fill(0xa0 + i, offsets[i], offsets[i] + lengths[i]);
  }
  const sent = native.sendBatch(tx, offsets, lengths, peers, 0, n);
  const events = await readable(rx1);

  const recv = (fd: number): unknown => {
    const ro = new Uint32Array(8).map((_, i) => 65536 + i * 2048);
    const rl = new Int32Array(8), rs = new Uint32Array(8 * SOURCE_STRIDE);
    pool.fill(0, 65536, 65536 + 8 * 2048);
    const got = native.recvBatch(fd, ro, 2048, 8, rl, rs);
    const msgs = [];
    for (let i = 0; i < Math.max(got, 0); i++) {
      msgs.push({ length: rl[i], first: pool[ro[i]], last: pool[ro[i] + rl[i] - 1], after: pool[ro[i] + rl[i]],
        source: Array.from(rs.subarray(i * SOURCE_STRIDE, (i + 1) * SOURCE_STRIDE)) });
    }
    return { got, msgs };
  };
  const r1 = recv(rx1);
  await readable(rx2);
  const r2 = recv(rx2);
  const again = recv(rx1);  // nothing left: EAGAIN -> 0

  // Oversized datagram: 3000 bytes into 1000 bytes of room; the byte after the room is a sentinel.
  pool.fill(0x5a, 0, 3000);
  native.sendBatch(tx, new Uint32Array([0]), new Uint32Array([3000]), new Uint32Array([3]), 0, 1);
  await readable(rx1);
  pool.fill(0xee, 200000, 202000);
  const tl = new Int32Array(1), ts = new Uint32Array(SOURCE_STRIDE);
  const tgot = native.recvBatch(rx1, new Uint32Array([200000]), 1000, 1, tl, ts);
  const trunc = { got: tgot, length: tl[0], lastIn: pool[200999], sentinel: pool[201000] };

  // pollStart again on the same fd replaces mask and callback; close() also drops the poll.
  const calls: string[] = [];
  await new Promise<void>((resolve) => {
    native.pollStart(tx, POLL_READABLE, () => calls.push('old'));
    native.pollStart(tx, POLL_WRITABLE, (_fd, ev) => { calls.push(`new:${ev}`); native.pollStop(tx); resolve(); });
  });
  // pollPause stops the callbacks but keeps the handle: a datagram waits until pollStart re-arms it.
  const paused: string[] = [];
  await new Promise<void>((resolve) => {
    const onReadable = (): void => { paused.push('fired'); native.pollStop(rx1); resolve(); };
    native.pollStart(rx1, POLL_READABLE, onReadable);
    native.pollPause(rx1);
    native.sendBatch(tx, new Uint32Array([0]), new Uint32Array([10]), new Uint32Array([3]), 0, 1);
    setTimeout(() => { paused.push('rearm'); native.pollStart(rx1, POLL_READABLE, onReadable); }, 200);
  });
  for (const fd of [tx, rx1, rx2]) native.close(fd);
  return { sent, events, ports, r1, r2, again, trunc, calls, paused };
}

/**
 * Raw IP proto 115: an IPv4 receiver sees the IPv4 header in front of the payload, an IPv6
 * receiver only the payload (the kernel strips the IPv6 header).
 */
async function raw(a: Args): Promise<unknown> {
  const family = (a.family ?? 4) as 4 | 6;
  const sab = new SharedArrayBuffer(POOL_SIZE);
  const pool = new Uint8Array(sab);
  native.attachPool(sab);
  const tx = native.rawOpen(family, a.src as string, 115, {});
  const rx = native.rawOpen(family, a.dst as string, 115, {});
  native.setPeer(0, family, a.dst as string, 0);  // raw: port 0 (raw IPv6 reads it as the protocol)
  pool.set([0, 0, 0, 7, 1, 2, 3, 4], 0);  // session 7, cookie 01020304
  const sent = native.sendBatch(tx, new Uint32Array([0]), new Uint32Array([8]), new Uint32Array([0]), 0, 1);
  await readable(rx);
  const rl = new Int32Array(2), rs = new Uint32Array(2 * SOURCE_STRIDE);
  const got = native.recvBatch(rx, new Uint32Array([8192, 16384]), 2048, 2, rl, rs);
  const hdr = family === 4 ? 20 : 0;
  const result = { sent, got, length: rl[0], header: hex(pool, 8192, hdr), payload: hex(pool, 8192 + hdr, 8), source: Array.from(rs.subarray(0, SOURCE_STRIDE)) };
  native.close(tx); native.close(rx);
  return result;
}

/** Two taps in one bridge: writeBatch on A, readBatch on B. Then write errors, persist/reattach. */
async function tap(a: Args): Promise<unknown> {
  const sab = new SharedArrayBuffer(POOL_SIZE);
  const pool = new Uint8Array(sab);
  native.attachPool(sab);
  const prefix = a.prefix as string;
  const A = native.tapOpen(`${prefix}%d`, false);
  const B = native.tapOpen(`${prefix}%d`, false);
  ip('link', 'add', 'br0', 'type', 'bridge');
  // No IPv6 on these links: the kernel's own ND/MLD frames would reach B at any time and make
  // "nothing left to read" below a race.
  for (const n of [A.name, B.name, 'br0']) writeFileSync(`/proc/sys/net/ipv6/conf/${n}/disable_ipv6`, '1');
  for (const t of [A.name, B.name]) ip('link', 'set', t, 'master', 'br0', 'up');
  ip('link', 'set', 'br0', 'up');

  // Broadcast frame, local-experimental ethertype 0x88b5, 100 bytes.
  const frame = new Uint8Array(100);
  frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
  for (let i = 14; i < 100; i++) frame[i] = i;
  pool.set(frame, 1000);
  pool.set(frame, 3000); pool[3000 + 14] = 0xaa;  // second frame differs in the first payload byte
  const writtenLengths = new Int32Array([0, 100, 100]);
  const written = native.writeBatch(A.fd, new Uint32Array([0, 1000, 3000]), writtenLengths, 1, 2, false);

  const seen: string[] = [];
  const deadline = Date.now() + 3000;
  while (seen.length < 2 && Date.now() < deadline) {
    await readable(B.fd).catch(() => 0);
    const ro = new Uint32Array([100000, 102048, 104096, 106144]), rl = new Int32Array(4);
    const n = native.readBatch(B.fd, ro, 2048, 4, rl, false);
    for (let i = 0; i < n; i++) {
      if (pool[ro[i] + 12] === 0x88 && pool[ro[i] + 13] === 0xb5) seen.push(`${rl[i]}:${hex(pool, ro[i] + 14, 2)}`);
    }
  }
  const drained = native.readBatch(B.fd, new Uint32Array([100000]), 2048, 1, new Int32Array(1), false);

  // Tap A down: the kernel refuses writes (EIO); writeBatch skips them, marked -errno.
  ip('link', 'set', A.name, 'down');
  const downLengths = new Int32Array([100, 100]);
  const downWritten = native.writeBatch(A.fd, new Uint32Array([1000, 1000]), downLengths, 0, 2, false);

  // Persistent tap: survives close, and tapOpen by name reattaches.
  const P = native.tapOpen(`${prefix}p%d`, true);
  native.close(P.fd);
  const existsAfterClose = ip('-o', 'link', 'show', 'dev', P.name).includes(P.name);
  const P2 = native.tapOpen(P.name, false);
  native.tapSetPersist(P2.fd, false);
  native.close(P2.fd);
  const gone = errInfo(() => ip('link', 'show', 'dev', P.name)) !== null;

  native.close(A.fd); native.close(B.fd);
  return { names: [A.name, B.name], written, writtenLengths: Array.from(writtenLengths), seen, drained, downWritten, downLengths: Array.from(downLengths),
    persistName: P.name, reattachName: P2.name, existsAfterClose, gone };
}

/** Internet checksum, written independently of the addon's: 16-bit big-endian words, folded. */
function checksum(parts: Uint8Array[]): number {
  let acc = 0;
  for (const p of parts) for (let i = 0; i < p.length; i += 2) acc += (p[i] << 8) | (p[i + 1] ?? 0);
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return ~acc & 0xffff;
}

/**
 * `count` back-to-back segments of one TCP flow (timestamps option, ACK; PSH on the last), as a
 * host's stack sends them: IPv4 with DF and consecutive ids, or IPv6. Payload i is `mss` bytes
 * (the last `lastLen`), filled with a pattern that differs per segment.
 */
function tcpFlow(v: 4 | 6, count: number, mss: number, lastLen: number): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const ipLen = v === 4 ? 20 : 40;
  for (let i = 0; i < count; i++) {
    const payload = i === count - 1 ? lastLen : mss;
    const f = new Uint8Array(14 + ipLen + 32 + payload);
    const dv = new DataView(f.buffer);
    f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    dv.setUint16(12, v === 4 ? 0x0800 : 0x86dd);
    const ipAt = 14, tcpAt = 14 + ipLen, tcpLen = 32 + payload;
    let pseudo: Uint8Array;
    if (v === 4) {
      f.set([0x45, 0], ipAt);
      dv.setUint16(ipAt + 2, ipLen + tcpLen);
      dv.setUint16(ipAt + 4, 0x1000 + i);
      dv.setUint16(ipAt + 6, 0x4000);  // DF
      f.set([64, 6], ipAt + 8);
      f.set([192, 0, 2, 1, 192, 0, 2, 2], ipAt + 12);
      dv.setUint16(ipAt + 10, checksum([f.subarray(ipAt, ipAt + 20)]));
      pseudo = new Uint8Array(12);
      pseudo.set(f.subarray(ipAt + 12, ipAt + 20));
      pseudo[9] = 6;
      new DataView(pseudo.buffer).setUint16(10, tcpLen);
    } else {
      dv.setUint32(ipAt, 0x60000000);
      dv.setUint16(ipAt + 4, tcpLen);
      f.set([6, 64], ipAt + 6);
      const a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
      f.set([...a, 1, ...a, 2], ipAt + 8);
      pseudo = new Uint8Array(40);
      pseudo.set(f.subarray(ipAt + 8, ipAt + 40));
      new DataView(pseudo.buffer).setUint32(32, tcpLen);
      pseudo[39] = 6;
    }
    dv.setUint16(tcpAt, 40000);
    dv.setUint16(tcpAt + 2, 5201);
    dv.setUint32(tcpAt + 4, 1000 + i * mss);
    dv.setUint32(tcpAt + 8, 77);
    f[tcpAt + 12] = 8 << 4;
    f[tcpAt + 13] = 0x10 | (i === count - 1 ? 0x08 : 0);
    dv.setUint16(tcpAt + 14, 500);
    f.set([1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6], tcpAt + 20);  // NOP NOP timestamps 5/6
    for (let k = 0; k < payload; k++) f[tcpAt + 32 + k] = (i * 7 + k) & 0xff;
    dv.setUint16(tcpAt + 16, checksum([pseudo, f.subarray(tcpAt)]));
    frames.push(f);
  }
  return frames;
}

/**
 * Two offload taps in one bridge. Frames written to A with writeBatch (merged into one
 * super-frame where they may be) cross the bridge as the kernel passes them and are read on B
 * with readBatch (super-frames cut back into segments). `writes` = packets the kernel took in
 * on A (its rx_packets): 1 for a merged run.
 */
async function offload(a: Args): Promise<unknown> {
  const sab = new SharedArrayBuffer(POOL_SIZE);
  const pool = new Uint8Array(sab);
  native.attachPool(sab);
  execFileSync('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);  // no ND/MLD noise
  const prefix = a.prefix as string;
  const A = native.tapOpen(`${prefix}%d`, false, true);
  const B = native.tapOpen(`${prefix}%d`, false, true);
  ip('link', 'add', 'br0', 'type', 'bridge');
  for (const t of [A.name, B.name]) ip('link', 'set', t, 'master', 'br0', 'up');
  ip('link', 'set', B.name, 'gso_max_segs', '64');
  ip('link', 'set', 'br0', 'up');
  const rxPackets = (): number => Number(readFileSync(`/sys/class/net/${A.name}/statistics/rx_packets`, 'utf8'));

  const roundTrip = async (frames: Uint8Array[]) => {
    const offsets = new Uint32Array(frames.length), lengths = new Int32Array(frames.length);
    frames.forEach((f, i) => { offsets[i] = 0x10000 + i * 2048; lengths[i] = f.length; pool.set(f, offsets[i]); });
    const r0 = rxPackets();
    const written = native.writeBatch(A.fd, offsets, lengths, 0, frames.length, true);
    const writes = rxPackets() - r0;
    const back: string[] = [];
    const slots = 127;
    const ro = new Uint32Array(slots).map((_, i) => 0x80000 + i * 2048), rl = new Int32Array(slots);
    const deadline = Date.now() + 3000;
    while (back.length < frames.length && Date.now() < deadline) {
      await readable(B.fd, 1000).catch(() => 0);
      const n = native.readBatch(B.fd, ro, 2048, slots, rl, true);
      for (let i = 0; i < n; i++) {
        if (rl[i] <= 0) back.push(`error ${rl[i]}`);
        else if (hex(pool, ro[i] + 6, 6) === '020000000001') back.push(hex(pool, ro[i], rl[i]));  // ours, not IGMP from the bridge
      }
    }
    // Compared here: the frames themselves are too big for the one JSON line the test reads.
    const sent = frames.map((f) => Buffer.from(f).toString('hex'));
    const differ = sent.map((h, i) => i).filter((i) => back[i] !== sent[i]);
    const firstDiff = differ.length ? { index: differ[0], sent: sent[differ[0]].slice(0, 160), back: (back[differ[0]] ?? 'nothing').slice(0, 160) } : null;
    return { written, writes, sent: frames.length, received: back.length, differ, firstDiff };
  };

  const corrupt = tcpFlow(4, 6, 1000, 1000);
  corrupt[3][corrupt[3].length - 1] ^= 0xff;  // TCP checksum no longer matches
  const outOfOrder = tcpFlow(4, 4, 1000, 1000);
  [outOfOrder[1], outOfOrder[2]] = [outOfOrder[2], outOfOrder[1]];
  const other = new Uint8Array(100);
  other.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
  const result = {
    offload: [A.offload, B.offload],
    v4: await roundTrip(tcpFlow(4, 6, 1000, 600)),
    v6: await roundTrip(tcpFlow(6, 5, 1200, 1200)),
    long: await roundTrip(tcpFlow(4, 70, 900, 900)),
    corrupt: await roundTrip(corrupt),
    outOfOrder: await roundTrip(outOfOrder),
    other: await roundTrip([other, other]),
  };
  native.close(A.fd); native.close(B.fd);
  return result;
}

/** Set-up errors keep errno/code/syscall. */
async function errors(a: Args): Promise<unknown> {
  const used = native.udpOpen(4, a.local as string, 0, {});
  const port = native.localPort(used);
  const out = {
    notLocal4: errInfo(() => native.udpOpen(4, '203.0.113.9', 1701, {})),
    notLocal6: errInfo(() => native.udpOpen(6, '2001:db8:ffff::9', 1701, {})),
    rawNotLocal: errInfo(() => native.rawOpen(4, '203.0.113.9', 115, {})),
    inUse: errInfo(() => native.udpOpen(4, a.local as string, port, {})),
    badAddress: errInfo(() => native.udpOpen(4, 'not-an-ip', 0, {})),
    // An option the kernel does not know: refused, named by its label, nothing left open.
    badOption: errInfo(() => native.udpOpen(4, a.local as string, 0, { options: [{ level: 0, name: 4242, value: 1, label: 'NOT_AN_OPTION' }] })),
    badOptionRaw: errInfo(() => native.rawOpen(4, a.local as string, 115, { options: [{ level: 0, name: 4242, value: 1, label: 'NOT_AN_OPTION' }] })),
    optionsNotList: errInfo(() => native.udpOpen(4, a.local as string, 0, { options: 'x' as unknown as [] })),
    optionNotObject: errInfo(() => native.udpOpen(4, a.local as string, 0, { options: [7 as unknown as IntSocketOption] })),
    tapTooLong: errInfo(() => native.tapOpen('x'.repeat(20), false)),
    mtu4: native.pathMtu(4, a.remote4 as string),
    mtu6: native.pathMtu(6, a.remote6 as string),
    noRoute: errInfo(() => native.pathMtu(4, '198.51.100.1')),
    closeBad: errInfo(() => native.close(987654)),
  };
  native.close(used);
  return out;
}

/** An RTM_*LINK message for `index` (flags default: REQUEST|ACK), framed as Rtnl frames it. */
function linkRequest(type: number, index: number, seq: number, attrs: ifla.LinkAttrs = {}, flags = Flags.REQUEST | Flags.ACK): Buffer {
  return Buffer.concat(formatMessage({ type, flags, seq, port: 0, data: linkPayload({ index }, attrs) }));
}

/** netlinkAck: the kernel's answer to requests sent from a pool thread, and refused arguments. */
async function netlinkAck(a: Args): Promise<unknown> {
  const index = a.index as number;
  return {
    getLo: await native.netlinkAck(linkRequest(RTM_GETLINK, 1, 7)),
    delMissing: await native.netlinkAck(linkRequest(RTM_DELLINK, 0x7ffffff0, 8)),
    // A group no link is in: the group delete finds nothing.
    delEmptyGroup: await native.netlinkAck(linkRequest(RTM_DELLINK, 0, 9, { group: 4242 })),
    delTap: await native.netlinkAck(linkRequest(RTM_DELLINK, index, 10)),
    badLength: errInfo(() => native.netlinkAck(Buffer.alloc(16))),
    notBuffer: errInfo(() => native.netlinkAck('x' as unknown as Buffer)),
    // Unanswered on success (no NLM_F_ACK) or ended by NLMSG_DONE (a dump): refused before sending.
    noAck: errInfo(() => native.netlinkAck(linkRequest(RTM_DELLINK, index, 11, {}, Flags.REQUEST))),
    dump: errInfo(() => native.netlinkAck(linkRequest(RTM_GETLINK, 0, 12, {}, Flags.REQUEST | Flags.ACK | FlagsGet.DUMP))),
  };
}

/** Bounds checks happen before any syscall, so fd -1 is enough. Needs no root. */
async function bounds(): Promise<unknown> {
  const beforeAttach = errInfo(() => native.readBatch(-1, new Uint32Array(1), 10, 1, new Int32Array(1), false));
  const size = 65536;
  native.attachPool(new SharedArrayBuffer(size));
  native.setPeer(0, 4, '192.0.2.1', 1);
  const u32 = (...v: number[]): Uint32Array => new Uint32Array(v);
  const i32 = (...v: number[]): Int32Array => new Int32Array(v);
  const clock = new Float64Array(2);
  native.readClock(clock);
  const wallSkew = clock[0] - Date.now();
  const mono1 = clock[1];
  const spinUntil = Date.now() + 5;
  while (Date.now() < spinUntil) { /* let the monotonic clock move */ }
  native.readClock(clock);
  return {
    beforeAttach,
    clock: { wallSkew, mono1, monoStep: clock[1] - mono1 },
    clockShort: errInfo(() => native.readClock(new Float64Array(1))),
    clockBadType: errInfo(() => native.readClock(new Float32Array(2) as unknown as Float64Array)),
    recvOut: native.recvBatch(-1, u32(size - 100), 200, 1, new Int32Array(1), new Uint32Array(5)),
    recvHuge: native.recvBatch(-1, u32(0xffffffff), 2, 1, new Int32Array(1), new Uint32Array(5)),
    recvShortSources: native.recvBatch(-1, u32(0, 100), 100, 2, new Int32Array(2), new Uint32Array(5)),
    recvInBounds: native.recvBatch(-1, u32(size - 100), 100, 1, new Int32Array(1), new Uint32Array(5)),
    sendOut: native.sendBatch(-1, u32(0, size - 10), u32(10, 11), u32(0, 0), 0, 2),
    sendPastArrays: native.sendBatch(-1, u32(0), u32(10), u32(0), 0, 2),
    sendUnknownPeer: native.sendBatch(-1, u32(0), u32(10), u32(9), 0, 1),
    sendInBounds: native.sendBatch(-1, u32(0, size - 10), u32(10, 10), u32(0, 0), 0, 2),
    readOut: native.readBatch(-1, u32(size), 1, 1, new Int32Array(1), false),
    writeOut: native.writeBatch(-1, u32(0, size - 1), i32(1, 2), 0, 2, false),
    writeNegative: native.writeBatch(-1, u32(0), i32(-1), 0, 1, false),
    writeFirstPast: native.writeBatch(-1, u32(0), i32(1), 1, 1, false),
    writeNoScratch: native.writeBatch(-1, u32(9), i32(60), 0, 1, true),
    writeScratch: native.writeBatch(-1, u32(10), i32(60), 0, 1, true),
    badType: errInfo(() => native.recvBatch(-1, new Int32Array(1) as unknown as Uint32Array, 1, 1, new Int32Array(1), new Uint32Array(5))),
    enumerable: Object.keys(native).sort(),
  };
}

/**
 * The addon in the main thread and in workers at once. Each worker attaches its own pool, polls
 * its own UDP pair and reports; one worker then calls process.exit with polls active, the other
 * is terminate()d with polls active. The main thread keeps working afterwards.
 */
async function workers(a: Args): Promise<unknown> {
  const local = a.local as string;
  const mainPool = new SharedArrayBuffer(POOL_SIZE);
  native.attachPool(mainPool);
  const mainRx = native.udpOpen(4, local, 0, {});
  let mainEvents = 0;
  native.pollStart(mainRx, POLL_READABLE, () => { mainEvents++; native.recvBatch(mainRx, new Uint32Array([0]), 100, 1, new Int32Array(1), new Uint32Array(5)); });

  const indexPath = require.resolve('../../src/native/index.js');
  const workerSrc = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { native, POLL_READABLE } = require(workerData.indexPath);
    const pool = new SharedArrayBuffer(1 << 16);
    native.attachPool(pool);
    const rx = native.udpOpen(4, workerData.local, 0, {});
    const tx = native.udpOpen(4, workerData.local, 0, {});
    const idle = native.udpOpen(4, workerData.local, 0, {});
    native.pollStart(idle, POLL_READABLE, () => {});  // stays active until teardown
    native.setPeer(1, 4, workerData.local, native.localPort(rx));
    new Uint8Array(pool).fill(7, 0, 64);
    native.pollStart(rx, POLL_READABLE, (fd, events) => {
      const l = new Int32Array(4), s = new Uint32Array(20);
      const n = native.recvBatch(fd, new Uint32Array([1024, 2048, 3072, 4096]), 1000, 4, l, s);
      parentPort.postMessage({ events, n, lengths: Array.from(l.subarray(0, n)), byte: new Uint8Array(pool)[1024] });
    });
    native.sendBatch(tx, new Uint32Array([0, 0]), new Uint32Array([64, 32]), new Uint32Array([1, 1]), 0, 2);
    parentPort.on('message', (m) => { if (m === 'exit') process.exit(0); });
  `;
  const run = (how: 'exit' | 'terminate'): Promise<{ report: unknown; exitCode: number }> => new Promise((resolve, reject) => {
    const w = new Worker(workerSrc, { eval: true, workerData: { indexPath, local } });
    let report: unknown;
    w.on('message', (m) => {
      report = m;
      if (how === 'exit') w.postMessage('exit'); else void w.terminate();
    });
    w.on('error', reject);
    w.on('exit', (exitCode) => resolve({ report, exitCode }));
  });
  const [w1, w2] = await Promise.all([run('exit'), run('terminate')]);
  const w3 = await run('exit');  // load again after others tore down

  // Main thread instance unaffected: send to its own socket and see the poll fire.
  const mainTx = native.udpOpen(4, local, 0, {});
  native.setPeer(0, 4, local, native.localPort(mainRx));
  native.sendBatch(mainTx, new Uint32Array([0]), new Uint32Array([10]), new Uint32Array([0]), 0, 1);
  await new Promise((r) => setTimeout(r, 200));
  native.close(mainTx);
  // Leave mainRx polled: process.exit must tear it down cleanly too.
  return { w1, w2, w3, mainEvents, exitWithActivePoll: true };
}

/**
 * pollSlice in workers, each polling a UDP socket that is always writable (a callback per
 * readiness, as at line rate):
 * - garbage: GC events and heap growth in a `windowMs` window (after a full GC and a warm-up),
 *   with the given slice;
 * - wake: slice 1000 ms; five requests each followed by wakeSignal are answered, a 20 ms timer
 *   set inside a callback fires, and terminate() ends a worker that is inside a slice.
 */
async function slice(a: Args): Promise<unknown> {
  const indexPath = require.resolve('../../src/native/index.js');
  const workerSrc = `(() => {
    const { parentPort, workerData } = require('node:worker_threads');
    const { native, POLL_WRITABLE } = require(workerData.indexPath);
    const v8 = require('node:v8');
    v8.setFlagsFromString('--expose-gc');
    const fullGc = globalThis.gc ?? require('node:vm').runInNewContext('gc');  // before counting: no leftovers
    const { PerformanceObserver } = require('node:perf_hooks');
    let gcs = 0;
    new PerformanceObserver((l) => { gcs += l.getEntries().length; }).observe({ entryTypes: ['gc'] });
    native.pollSlice(workerData.slice);
    if (workerData.wake !== undefined) native.pollWake(workerData.wake);
    const fd = native.udpOpen(4, '127.0.0.1', 0, {});
    let calls = 0;
    parentPort.on('message', (m) => {
      if (m === 'timer') {
        const armed = Date.now();
        setTimeout(() => parentPort.postMessage({ timerMs: Date.now() - armed }), 20);
      } else parentPort.postMessage({ pong: m, calls });
    });
    v8.getHeapStatistics();  // its first call allocates
    fullGc();
    // The callback only counts: measuring inside it would deoptimize it, and recompiling it
    // allocates code on the heap. Timers take the measurements (each ends one slice).
    native.pollStart(fd, POLL_WRITABLE, () => { calls++; });
    parentPort.postMessage('polling');
    if (workerData.windowMs > 0) {
      setTimeout(() => {  // after a warm-up that compiles everything once
        const callsBefore = calls, gcsBefore = gcs, heapBefore = v8.getHeapStatistics().used_heap_size;
        setTimeout(() => {
          const heapGrowth = v8.getHeapStatistics().used_heap_size - heapBefore;
          const window = { gcs: gcs - gcsBefore, heapGrowth, calls: calls - callsBefore };
          native.pollStop(fd);
          setTimeout(() => parentPort.postMessage(window), 50);  // GC entries arrive asynchronously
        }, workerData.windowMs);
      }, 500);
    }
  })();`;
  const start = (data: Record<string, unknown>): { w: Worker; next: () => Promise<any> } => {
    const w = new Worker(workerSrc, { eval: true, workerData: { indexPath, ...data } });
    const queue: unknown[] = [];
    const waiters: ((m: unknown) => void)[] = [];
    w.on('message', (m) => { const r = waiters.shift(); if (r) r(m); else queue.push(m); });
    w.on('error', (e) => { throw e; });
    const next = (): Promise<any> => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
    return { w, next };
  };
  const windowMs = a.windowMs as number;
  const garbage = async (sliceMs: number): Promise<unknown> => {
    const { w, next } = start({ slice: sliceMs, windowMs });
    await next();  // polling
    const r = await next();
    await w.terminate();
    return r;
  };
  const withSlice = await garbage(50);
  const withoutSlice = await garbage(0);

  const wake = native.wakeOpen();
  const { w, next } = start({ slice: 1000, windowMs: 0, wake });
  await next();
  const t0 = Date.now();
  const pongs: unknown[] = [];
  for (let i = 0; i < 5; i++) {
    w.postMessage(i);
    native.wakeSignal(wake);
    const m = await next();
    pongs.push(m.pong);
  }
  const fivePingsMs = Date.now() - t0;
  w.postMessage('timer');
  native.wakeSignal(wake);
  const { timerMs } = await next();
  const t1 = Date.now();
  const exitCode = await w.terminate();
  const terminateMs = Date.now() - t1;
  native.close(wake);
  return { withSlice, withoutSlice, pongs, fivePingsMs, timerMs, exitCode, terminateMs };
}

/**
 * One wake with three fds ready: three UDP sockets (loopback), each holding a datagram before
 * any is polled. Every callback learns how many fds the wake reported, pollEnd runs once after
 * them, and an fd one callback pauses gets no callback later in the same wake.
 */
async function wake(): Promise<unknown> {
  native.attachPool(new SharedArrayBuffer(POOL_SIZE));
  const tx = native.udpOpen(4, '127.0.0.1', 0, {});
  const rx = [0, 1, 2].map(() => native.udpOpen(4, '127.0.0.1', 0, {}));
  rx.forEach((fd, i) => native.setPeer(i, 4, '127.0.0.1', native.localPort(fd)));
  native.sendBatch(tx, new Uint32Array(3), new Uint32Array([8, 8, 8]), new Uint32Array([0, 1, 2]), 0, 3);
  await new Promise((resolve) => setTimeout(resolve, 50));  // all three queued before polling starts
  const log: string[] = [];
  const ro = new Uint32Array([65536]), rl = new Int32Array(1), rs = new Uint32Array(SOURCE_STRIDE);
  await new Promise<void>((resolve) => {
    let ends = 0;
    native.pollEnd(() => {
      log.push(`end:${++ends}`);
      if (ends === 1) { for (const fd of rx) native.pollStop(fd); resolve(); }
    });
    for (const fd of rx) {
      native.pollStart(fd, POLL_READABLE, (f, events, ready) => {
        native.recvBatch(f, ro, 2048, 1, rl, rs);
        log.push(`${rx.indexOf(f)}:${events}:${ready}`);
        // The first socket served pauses the others: their events of this wake are not delivered.
        if (log.length === 1) for (const other of rx) if (other !== f) native.pollPause(other);
      });
    }
  });
  native.pollEnd(null);
  for (const fd of [tx, ...rx]) native.close(fd);
  return { log };
}

const scenarios: Record<string, (a: Args) => Promise<unknown>> = { udp, raw, tap, offload, errors, bounds, workers, slice, wake, netlinkAck };

const name = process.argv[2];
if (name !== undefined && scenarios[name]) {
  const args = JSON.parse(process.argv[3] ?? '{}') as Args;
  scenarios[name](args).then(
    (result) => { process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`); process.exit(0); },
    (e: unknown) => { process.stdout.write(`${JSON.stringify({ ok: false, error: String((e as Error)?.stack ?? e) })}\n`); process.exit(1); },
  );
}
