/**
 * src/protocol codec against the test vectors of docs/protocol.md "Test vectors": every vector decoded
 * field by field, and encoded with the matching template and compared byte for byte.
 */
import t from 'tap';
import {
  DROP_REASON_COUNT, DecodeResult, DropReason, IP_WIRE, L2SpecKind, MAX_HEADER_LEN, SequenceState, SeqAction, UDP_WIRE,
  buildTxTemplate, decodeSession, l2ssWord, makeRxContext, nextSeq, rxSessionHeaderLength,
  writeHeader, type RxParams, type TxTemplateConfig,
} from '../../src/protocol/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const ARP = 'ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002';
const arp = hex(ARP);

/** Place `bytes` at offset `at` of a pool filled with 0xa5, so reads outside show up as garbage. */
function inPool(bytes: Uint8Array, at = 100, size = 1024): Uint8Array {
  const pool = new Uint8Array(size).fill(0xa5);
  pool.set(bytes, at);
  return pool;
}

interface Vec {
  name: string;
  encap: 'udp' | 'ip';
  l2tp: string;
  rx: RxParams;
  tx?: TxTemplateConfig;
  seq?: number;
}

const NO_COOKIE = new Uint8Array(0);
const VECTORS: Vec[] = [
  {
    name: 'A (iproute2 defaults: sid 1000, L2SS S=0)', encap: 'udp', l2tp: `00030000 000003e8 00000000 ${ARP}`,
    rx: { peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 0 },
    tx: { encap: UDP_WIRE, peerSessionId: 1000, cookie: NO_COOKIE, l2spec: 'default', offset: 0 }, seq: -1,
  },
  {
    name: 'B (cookie deadbeef, S=1 seq 5)', encap: 'udp', l2tp: `00030000 00001234 deadbeef 40000005 ${ARP}`,
    rx: { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 },
    tx: { encap: UDP_WIRE, peerSessionId: 0x1234, cookie: hex('deadbeef'), l2spec: 'default', offset: 0 }, seq: 5,
  },
  {
    name: 'C (IP, no cookie, no L2SS)', encap: 'ip', l2tp: `00001234 ${ARP}`,
    rx: { peerCookie: NO_COOKIE, l2spec: 'none', peerOffset: 0 },
    tx: { encap: IP_WIRE, peerSessionId: 0x1234, cookie: NO_COOKIE, l2spec: 'none', offset: 0 }, seq: -1,
  },
  {
    name: 'D (IP, 8-byte cookie, L2SS S=0)', encap: 'ip', l2tp: `00001234 0102030405060708 00000000 ${ARP}`,
    rx: { peerCookie: hex('0102030405060708'), l2spec: 'default', peerOffset: 0 },
    tx: { encap: IP_WIRE, peerSessionId: 0x1234, cookie: hex('0102030405060708'), l2spec: 'default', offset: 0 }, seq: -1,
  },
  {
    name: 'E1 (seq 0xffffff)', encap: 'udp', l2tp: `00030000 00001234 40ffffff ${ARP}`,
    rx: { peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 0 },
    tx: { encap: UDP_WIRE, peerSessionId: 0x1234, cookie: NO_COOKIE, l2spec: 'default', offset: 0 }, seq: 0xffffff,
  },
  {
    name: 'E2 (seq 0 after the wrap)', encap: 'udp', l2tp: `00030000 00001234 40000000 ${ARP}`,
    rx: { peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 0 },
    tx: { encap: UDP_WIRE, peerSessionId: 0x1234, cookie: NO_COOKIE, l2spec: 'default', offset: 0 }, seq: 0,
  },
];

t.test('test vectors: decode every field, encode byte-exact', async (t) => {
  for (const v of VECTORS) {
    const bytes = hex(v.l2tp);
    const at = 137;
    const pool = inPool(bytes, at);
    const out = new DecodeResult();
    const wire = v.encap === 'udp' ? UDP_WIRE : IP_WIRE;
    t.equal(wire.decodeCommon(pool, at, bytes.length, false, out), DropReason.None, `${v.name}: common`);
    const sid = parseInt(v.l2tp.replace(/\s+/g, '').slice(v.encap === 'udp' ? 8 : 0, v.encap === 'udp' ? 16 : 8), 16);
    t.equal(out.sessionId, sid, `${v.name}: session id`);
    t.equal(out.l2tpStart, at, `${v.name}: l2tp start`);
    t.equal(out.pos, at + (v.encap === 'udp' ? 8 : 4), `${v.name}: pos after session id`);
    t.equal(out.end, at + bytes.length);
    t.equal(decodeSession(pool, out, makeRxContext(v.rx), at + bytes.length), DropReason.None, `${v.name}: session`);
    t.equal(out.hasSeq, v.seq !== undefined && v.seq >= 0 ? 1 : 0, `${v.name}: S bit`);
    t.equal(out.seq, v.seq !== undefined && v.seq >= 0 ? v.seq : 0, `${v.name}: seq`);
    t.equal(out.frameLength, 42, `${v.name}: frame length`);
    t.equal(out.frameStart, at + bytes.length - 42, `${v.name}: frame start`);
    t.equal(toHex(pool.subarray(out.frameStart, out.frameStart + out.frameLength)), toHex(arp), `${v.name}: frame`);
    // The sublayer type given as a string or as L2SpecKind decodes alike.
    const out2 = new DecodeResult();
    const numeric = { ...v.rx, l2spec: v.rx.l2spec === 'none' ? L2SpecKind.None : L2SpecKind.Default };
    t.equal(wire.decodeCommon(pool, at, bytes.length, false, out2), DropReason.None);
    t.equal(decodeSession(pool, out2, makeRxContext(numeric), at + bytes.length), DropReason.None);
    t.same({ ...out2 }, { ...out }, `${v.name}: string and numeric config decode alike`);

    if (v.tx) {
      const tpl = buildTxTemplate(v.tx);
      const frameAt = 400;
      const txPool = new Uint8Array(1024).fill(0x77); // garbage headroom: all of it must be overwritten
      txPool.set(arp, frameAt);
      const hs = writeHeader(txPool, frameAt, tpl, v.seq ?? -1);
      t.equal(hs, frameAt - tpl.length, `${v.name}: header start`);
      t.equal(toHex(txPool.subarray(hs, frameAt + 42)), toHex(bytes), `${v.name}: encoded bytes`);
      t.equal(txPool[hs - 1], 0x77, `${v.name}: nothing written before the header`);
      t.equal(txPool[frameAt + 42], 0x77, `${v.name}: nothing written after the frame`);
    }
  }
});

t.test("B': wrong cookie deadbeee → CookieMismatch; encoding that cookie gives the vector", async (t) => {
  const bytes = hex(`00030000 00001234 deadbeee 40000005 ${ARP}`);
  const pool = inPool(bytes, 0);
  const out = new DecodeResult();
  t.equal(UDP_WIRE.decodeCommon(pool, 0, bytes.length, false, out), DropReason.None);
  t.equal(out.sessionId, 0x1234);
  t.equal(decodeSession(pool, out, makeRxContext({ peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 }), bytes.length),
    DropReason.CookieMismatch);
  const tpl = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x1234, cookie: hex('deadbeee'), l2spec: 'default', offset: 0 });
  const tx = new Uint8Array(200);
  tx.set(arp, 100);
  const hs = writeHeader(tx, 100, tpl, 5);
  t.equal(toHex(tx.subarray(hs, 142)), toHex(bytes));
});

t.test('F: QEMU counter=on word 00000001 has S=0, so it is unsequenced', async (t) => {
  const bytes = hex(`00030000 00001234 00000001 ${ARP}`);
  const pool = inPool(bytes, 3);
  const out = new DecodeResult();
  t.equal(UDP_WIRE.decodeCommon(pool, 3, bytes.length, false, out), DropReason.None);
  t.equal(decodeSession(pool, out, makeRxContext({ peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 0 }), 3 + bytes.length), DropReason.None);
  t.equal(out.hasSeq, 0);
  t.equal(out.seq, 0);
  t.equal(out.frameStart, 15);
  t.equal(out.frameLength, 42);
  // recv/both: dropped as a seq discard (as Linux: rx_seq_discards++)
  const s = new SequenceState({ recvSeq: true, reorderTimeoutMs: 0, capacity: 8 });
  t.equal(s.onPacket(out.hasSeq, out.seq, 7, 0), SeqAction.Dropped);
  t.equal(s.takeDropped(), 7);
  t.equal(s.lastDropReason, DropReason.SeqDiscard);
  t.equal(s.seqDiscards, 1);
  // l2tpd never emits it: an unsequenced session writes an all-zero L2SS.
  const tpl = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x1234, cookie: NO_COOKIE, l2spec: 'default', offset: 0 });
  const tx = new Uint8Array(100);
  const hs = writeHeader(tx, 50, tpl, -1);
  t.equal(toHex(tx.subarray(hs, 50)), '000300000000123400000000');
});

t.test('QEMU counter=on,offset=4: peer offset skipped, pad content ignored', async (t) => {
  const bytes = hex(`00030000 00001234 00000001 097f0000 ${ARP}`);
  const pool = inPool(bytes, 0);
  const out = new DecodeResult();
  t.equal(UDP_WIRE.decodeCommon(pool, 0, bytes.length, false, out), DropReason.None);
  t.equal(decodeSession(pool, out, makeRxContext({ peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 4 }), bytes.length), DropReason.None);
  t.equal(out.frameStart, 16);
  t.equal(out.frameLength, 42);
  t.equal(out.hasSeq, 0);
  // our transmit pads with zeros
  const tpl = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x1234, cookie: NO_COOKIE, l2spec: 'default', offset: 4 });
  const tx = new Uint8Array(100).fill(0xee);
  const hs = writeHeader(tx, 60, tpl, 1);
  t.equal(toHex(tx.subarray(hs, 60)), '00030000000012344000000100000000');
  t.equal(tpl.l2ssOffset, 8);
  t.equal(rxSessionHeaderLength(makeRxContext({ peerCookie: NO_COOKIE, l2spec: 'default', peerOffset: 4 })), 8);
});

t.test('G and H: control messages are not data', async (t) => {
  const g = hex('c803000c 0000abcd 00000000');
  const out = new DecodeResult();
  t.equal(UDP_WIRE.decodeCommon(inPool(g, 0), 0, g.length, false, out), DropReason.Control, 'G over UDP');
  const h = hex('00000000 c803000c 0000abcd 00000000');
  t.equal(IP_WIRE.decodeCommon(inPool(h, 0), 0, h.length, false, out), DropReason.Control, 'H over IP (session id 0)');
  // T bit wins even when the version nibble is wrong (Linux checks T first).
  const g2 = hex('c8050000 00001234 00000000');
  t.equal(UDP_WIRE.decodeCommon(inPool(g2, 0), 0, g2.length, false, out), DropReason.Control);
});

t.test('V: version 2 and 5 → BadVersion (RFC; Linux parses 5 as v3, QEMU ignores it)', async (t) => {
  const out = new DecodeResult();
  for (const w of ['00020000', '00050000', '00000000', '000f0000']) {
    const b = hex(`${w} 00001234 00000000 ${ARP}`);
    t.equal(UDP_WIRE.decodeCommon(inPool(b, 0), 0, b.length, false, out), DropReason.BadVersion, w);
  }
  // x bits and Reserved are ignored on receive
  const b = hex(`7ff3ffff 00001234 00000000 ${ARP}`);
  t.equal(UDP_WIRE.decodeCommon(inPool(b, 0), 0, b.length, false, out), DropReason.None);
  t.equal(out.sessionId, 0x1234);
});

/** Internet checksum over a header. */
function ipChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

t.test('13.1 full IPv4+UDP datagram for B', async (t) => {
  const dgram = hex(`45000056 12344000 4011a45f c0000201 c0000202
    06a506a5 00420000
    00030000 00001234 deadbeef 40000005
    ffffffffffff 020000000001 0806
    0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002`);
  t.equal(dgram.length, 86, 'total length 86');
  t.equal((dgram[2] << 8) | dgram[3], 86, 'IPv4 total length field');
  t.equal(ipChecksum(dgram.subarray(0, 20)), 0, 'IPv4 header checksum a45f verifies');
  t.equal(dgram[9], 17, 'protocol UDP');
  t.equal((dgram[20] << 8) | dgram[21], 1701, 'sport');
  t.equal((dgram[22] << 8) | dgram[23], 1701, 'dport');
  t.equal((dgram[24] << 8) | dgram[25], 66, 'UDP length 66');
  t.equal((dgram[26] << 8) | dgram[27], 0, 'UDP checksum 0');
  // The UDP socket hands over the payload: decode the window [28, 86) in place.
  const pool = inPool(dgram, 10);
  const out = new DecodeResult();
  t.equal(UDP_WIRE.decodeCommon(pool, 38, 58, false, out), DropReason.None);
  t.equal(out.sessionId, 0x1234);
  t.equal(decodeSession(pool, out, makeRxContext({ peerCookie: hex('deadbeef'), l2spec: L2SpecKind.Default, peerOffset: 0 }), 96), DropReason.None);
  t.equal(out.hasSeq, 1);
  t.equal(out.seq, 5);
  t.equal(out.frameStart, 10 + 44);
  t.equal(out.frameLength, 42);
  t.equal(toHex(pool.subarray(out.frameStart, out.frameStart + 6)), 'ffffffffffff', 'DA broadcast');
  t.equal((pool[out.frameStart + 12] << 8) | pool[out.frameStart + 13], 0x0806, 'ethertype ARP');
  // Encode: the template + frame reproduce the L2TP part exactly.
  const tpl = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x1234, cookie: hex('deadbeef'), l2spec: 'default', offset: 0 });
  const tx = new Uint8Array(200);
  tx.set(arp, 120);
  const hs = writeHeader(tx, 120, tpl, 5);
  t.equal(toHex(tx.subarray(hs, 162)), toHex(dgram.subarray(28)));
});

/** IPv4 header for protocol 115 with `optWords` 32-bit option words. */
function ipv4Header(payloadLen: number, optWords = 0, src = 0xc0000201): Uint8Array {
  const ihl = 5 + optWords;
  const h = new Uint8Array(ihl * 4);
  h[0] = 0x40 | ihl;
  const tot = ihl * 4 + payloadLen;
  h[2] = tot >> 8; h[3] = tot & 0xff;
  h[6] = 0x40; h[8] = 64; h[9] = 115;
  h[12] = src >>> 24; h[13] = (src >>> 16) & 0xff; h[14] = (src >>> 8) & 0xff; h[15] = src & 0xff;
  h.set([192, 0, 2, 2], 16);
  for (let i = 20; i < h.length; i++) h[i] = i === h.length - 1 ? 0 : 1; // NOP … EOL
  const c = ipChecksum(h);
  h[10] = c >> 8; h[11] = c & 0xff;
  return h;
}

t.test('raw IPv4 receive: header length read from IHL (20, 24 and 60 bytes)', async (t) => {
  for (const opt of [0, 1, 10]) {
    const l2tp = hex(`00001234 0102030405060708 40000007 ${ARP}`);
    const ip = ipv4Header(l2tp.length, opt, 0xc6336401);
    const d = new Uint8Array(ip.length + l2tp.length);
    d.set(ip); d.set(l2tp, ip.length);
    const pool = inPool(d, 33);
    const out = new DecodeResult();
    t.equal(IP_WIRE.decodeCommon(pool, 33, d.length, true, out), DropReason.None, `IHL ${5 + opt}`);
    t.equal(out.ipHeaderLength, 20 + 4 * opt);
    t.equal(out.ipv4Src, 0xc6336401, 'source 198.51.100.1');
    t.equal(out.l2tpStart, 33 + ip.length);
    t.equal(out.sessionId, 0x1234);
    t.equal(decodeSession(pool, out, makeRxContext({ peerCookie: hex('0102030405060708'), l2spec: 'default', peerOffset: 0 }), 33 + d.length), DropReason.None);
    t.equal(out.seq, 7);
    t.equal(out.frameStart, 33 + ip.length + 16);
    t.equal(out.frameLength, 42);
  }
});

t.test('every decode drop reason is reachable', async (t) => {
  const out = new DecodeResult();
  const rx4: RxParams = { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 };
  const cases: Array<[string, () => DropReason, DropReason]> = [
    ['UDP 7 bytes', () => UDP_WIRE.decodeCommon(hex('00030000 000012'), 0, 7, false, out), DropReason.ShortPacket],
    ['UDP 0 bytes', () => UDP_WIRE.decodeCommon(new Uint8Array(4), 2, 0, false, out), DropReason.ShortPacket],
    ['IP 3 bytes', () => IP_WIRE.decodeCommon(hex('000012'), 0, 3, false, out), DropReason.ShortPacket],
    ['window beyond the pool', () => UDP_WIRE.decodeCommon(new Uint8Array(10), 4, 8, false, out), DropReason.ShortPacket],
    ['negative start', () => UDP_WIRE.decodeCommon(new Uint8Array(10), -1, 9, false, out), DropReason.ShortPacket],
    ['IPv4 header < 20 bytes', () => IP_WIRE.decodeCommon(new Uint8Array(19).fill(0x45), 0, 19, true, out), DropReason.BadIpHeader],
    ['IHL 4', () => { const h = ipv4Header(4); h[0] = 0x44; return IP_WIRE.decodeCommon(concat(h, hex('00001234')), 0, 24, true, out); }, DropReason.BadIpHeader],
    ['IP version 6', () => { const h = ipv4Header(4); h[0] = 0x65; return IP_WIRE.decodeCommon(concat(h, hex('00001234')), 0, 24, true, out); }, DropReason.BadIpHeader],
    ['IHL 15 > length', () => { const h = ipv4Header(4); h[0] = 0x4f; return IP_WIRE.decodeCommon(concat(h, hex('00001234')), 0, 24, true, out); }, DropReason.BadIpHeader],
    ['raw IPv4, short L2TP', () => IP_WIRE.decodeCommon(concat(ipv4Header(3), hex('000012')), 0, 23, true, out), DropReason.ShortPacket],
    ['UDP version 2', () => UDP_WIRE.decodeCommon(hex('00020000 00001234'), 0, 8, false, out), DropReason.BadVersion],
    ['UDP T bit', () => UDP_WIRE.decodeCommon(hex('c803000c 0000abcd 00000000'), 0, 12, false, out), DropReason.Control],
    ['IP session 0', () => IP_WIRE.decodeCommon(hex('00000000 c803000c'), 0, 8, false, out), DropReason.Control],
    ['UDP session 0', () => UDP_WIRE.decodeCommon(hex(`00030000 00000000 ${ARP}`), 0, 50, false, out), DropReason.UnknownSession],
  ];
  for (const [name, f, want] of cases) t.equal(f(), want, name);

  const sess = (l2tp: string, rx: RxParams): DropReason => {
    const b = hex(l2tp);
    const pool = inPool(b, 5);
    t.equal(UDP_WIRE.decodeCommon(pool, 5, b.length, false, out), DropReason.None);
    return decodeSession(pool, out, makeRxContext(rx), 5 + b.length);
  };
  t.equal(sess('00030000 00001234 deadbe', rx4), DropReason.ShortPacket, 'cookie cut short');
  t.equal(sess('00030000 00001234 deadbeef 400000', rx4), DropReason.ShortPacket, 'L2SS cut short');
  t.equal(sess(`00030000 00001234 deadbeef 40000000 ${'00'.repeat(10)}`, { ...rx4, peerOffset: 11 }), DropReason.ShortPacket, 'offset cut short');
  t.equal(sess(`00030000 00001234 deadbeef 40000000 ${ARP}`, { ...rx4, peerCookie: hex('deadbeef00000000') }), DropReason.CookieMismatch, '8-byte cookie expected, 4 sent');
  t.equal(sess(`00030000 00001234 0eadbeef 40000000 ${ARP}`, rx4), DropReason.CookieMismatch, 'first cookie byte');
  t.equal(sess(`00030000 00001234 deadbeef 40000000 ${'11'.repeat(13)}`, rx4), DropReason.ShortFrame, '13-byte frame');
  t.equal(sess(`00030000 00001234 deadbeef 40000000 ${'11'.repeat(14)}`, rx4), DropReason.None, '14-byte frame accepted');
  t.equal(out.frameLength, 14);
  t.equal(sess('00030000 00001234 deadbeef 40000000', rx4), DropReason.ShortFrame, 'no frame at all');
  // Sequencing reasons are produced by SequenceState (sequence.test.ts): SeqDiscard, Window, Flushed.
  // ForeignSource, Oversize and the control-message reasons belong to the data plane; they are
  // distinct values all the same.
  const all = [DropReason.None, DropReason.ShortPacket, DropReason.BadIpHeader, DropReason.BadVersion, DropReason.Control,
    DropReason.UnknownSession, DropReason.ForeignSource, DropReason.CookieMismatch, DropReason.ShortFrame,
    DropReason.Oversize, DropReason.SeqDiscard, DropReason.Window, DropReason.Flushed, DropReason.ControlMalformed,
    DropReason.ControlWrongId];
  t.equal(new Set(all).size, all.length, 'drop reasons are distinct');
  // The list above names every reason: as many as DROP_REASON_COUNT, numbered 0..COUNT-1 (the
  // per-reason tables are sized by it; dataplane/counters.ts DROPS says where each is counted).
  t.equal(all.length, DROP_REASON_COUNT, `all ${DROP_REASON_COUNT} drop reasons listed`);
  t.same([...all].sort((x, y) => x - y), Array.from({ length: DROP_REASON_COUNT }, (_, i) => i), 'drop reasons are 0..DROP_REASON_COUNT-1');
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const r = new Uint8Array(a.length + b.length);
  r.set(a); r.set(b, a.length);
  return r;
}

t.test('transmit: templates, sequence words, headroom', async (t) => {
  const tpl = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0xfedcba98, cookie: hex('0102030405060708'), l2spec: 'default', offset: 256 });
  t.equal(tpl.length, MAX_HEADER_LEN, 'largest header: 8 + 8 + 4 + 256');
  t.equal(tpl.l2ssOffset, 16);
  const pool = new Uint8Array(600).fill(0xff);
  const hs = writeHeader(pool, 300, tpl, 0x123456);
  t.equal(hs, 300 - 276);
  t.equal(toHex(pool.subarray(hs, hs + 20)), '00030000fedcba98010203040506070840123456');
  t.ok(pool.subarray(hs + 20, 300).every((x) => x === 0), 'offset padding is zeros');
  t.equal(writeHeader(pool, 275, tpl, 0), -1, 'not enough headroom → -1');
  t.equal(pool[0], 0xff, 'nothing written then');
  const ipNone = buildTxTemplate({ encap: IP_WIRE, peerSessionId: 1, cookie: NO_COOKIE, l2spec: 'none', offset: 0 });
  t.equal(ipNone.length, 4);
  t.equal(ipNone.l2ssOffset, -1);
  t.equal(writeHeader(pool, 10, ipNone, 99), 6, 'seq ignored without a sublayer');
  t.equal(toHex(pool.subarray(6, 10)), '00000001');
  t.equal(nextSeq(0), 1);
  t.equal(nextSeq(0xfffffe), 0xffffff);
  t.equal(nextSeq(0xffffff), 0, 'wraps to 0');
  t.equal(l2ssWord(5), 0x40000005);
  t.equal(l2ssWord(-1), 0);
  t.throws(() => buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0, cookie: NO_COOKIE, l2spec: 'default', offset: 0 }), RangeError);
  t.throws(() => buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 1, cookie: new Uint8Array(5), l2spec: 'default', offset: 0 }), RangeError);
  t.throws(() => buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 1, cookie: NO_COOKIE, l2spec: 'default', offset: 257 }), RangeError);
  t.throws(() => makeRxContext({ peerCookie: new Uint8Array(2), l2spec: 'none', peerOffset: 0 }), RangeError);
  t.throws(() => makeRxContext({ peerCookie: NO_COOKIE, l2spec: 'none', peerOffset: -1 }), RangeError);
});

t.test('decode reads only its window: guard bytes do not change results', async (t) => {
  const b = hex(`00030000 00001234 deadbeef 40000005 ${ARP}`);
  const rx: RxParams = { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 };
  for (let cut = 0; cut <= b.length; cut++) {
    const results: string[] = [];
    for (const fill of [0x00, 0xff, 0x40]) {
      const pool = new Uint8Array(200).fill(fill);
      pool.set(b.subarray(0, cut), 50);
      const out = new DecodeResult();
      let r = UDP_WIRE.decodeCommon(pool, 50, cut, false, out);
      if (r === DropReason.None) r = decodeSession(pool, out, makeRxContext(rx), 50 + cut);
      results.push(`${r} ${JSON.stringify({ ...out })}`);
    }
    t.equal(new Set(results).size, 1, `cut at ${cut}`);
  }
});
