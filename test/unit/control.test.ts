/**
 * Control-message codec (src/protocol/control.ts): the bytes writeControl produces are checked
 * against hand-written vectors and against tshark (a pcap is built here and tshark decodes it as
 * L2TPv3 control messages: type, connection ID, Ns, Nr, message type), over UDP and over IP;
 * decodeControl reads those vectors field by field and gives a reason, never an exception, for
 * every malformed variant and for random bytes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  CONTROL_REASON_COUNT, CONTROL_REASON_NAMES, ControlMessage, ControlReason, MAX_CONTROL_MESSAGE_LEN, MessageType,
  decodeControl, messageTypeName, writeControl,
} from '../../src/protocol/index.js';
import { hasCommand } from '../helpers/netns.js';
import { gcsDuring } from '../helpers/gc.js';
import { ipv4Packet, tsharkFields, udp4Packet, writePcap } from '../helpers/pcap.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface Vec {
  name: string;
  ip: boolean;
  ccid: number;
  ns: number;
  nr: number;
  type: number;
  bytes: string;
}

// Written out by hand from RFC 3931 §3.2.1, §4.1.1.2 and §5.4.1 (not from the encoder).
const VECTORS: Vec[] = [
  { name: 'HELLO over UDP', ip: false, ccid: 4000, ns: 5, nr: 7, type: MessageType.Hello,
    bytes: 'c8030014 00000fa0 00050007 80080000 00000006' },
  { name: 'HELLO over IP', ip: true, ccid: 0xfedcba98, ns: 0xffff, nr: 0, type: MessageType.Hello,
    bytes: '00000000 c8030014 fedcba98 ffff0000 80080000 00000006' },
  { name: 'ACK over UDP', ip: false, ccid: 0xabcd, ns: 1, nr: 6, type: MessageType.Ack,
    bytes: 'c8030014 0000abcd 00010006 80080000 00000014' },
  { name: 'ACK over IP', ip: true, ccid: 1, ns: 0x1234, nr: 0x8000, type: MessageType.Ack,
    bytes: '00000000 c8030014 00000001 12348000 80080000 00000014' },
  { name: 'ZLB over UDP', ip: false, ccid: 0xabcd, ns: 0, nr: 0, type: MessageType.Zlb, bytes: 'c803000c 0000abcd 00000000' },
  { name: 'ZLB over IP', ip: true, ccid: 0xabcd, ns: 0, nr: 0, type: MessageType.Zlb, bytes: '00000000 c803000c 0000abcd 00000000' },
];

function encode(v: Vec): Uint8Array {
  const pool = new Uint8Array(64).fill(0xa5);
  const n = writeControl(pool, 3, pool.length, v.ip, v.ccid, v.ns, v.nr, v.type);
  return pool.slice(3, 3 + n);
}

t.test('writeControl produces the RFC layout', async (t) => {
  for (const v of VECTORS) t.equal(toHex(encode(v)), toHex(hex(v.bytes)), v.name);
  t.equal(MAX_CONTROL_MESSAGE_LEN, 24, 'the longest message written: IP HELLO/ACK');
  const pool = new Uint8Array(40).fill(0xa5);
  t.equal(writeControl(pool, 30, 40, true, 1, 2, 3, MessageType.Hello), -1, 'refuses a message that does not fit');
  t.ok(pool.every((b) => b === 0xa5), 'and writes nothing then');
  t.equal(writeControl(pool, 0, 41, false, 1, 2, 3, MessageType.Hello), -1, 'refuses a limit beyond the pool');
});

t.test('decodeControl reads every vector', async (t) => {
  const m = new ControlMessage();
  for (const v of VECTORS) {
    const b = hex(v.bytes);
    const pool = new Uint8Array(100).fill(0xa5);
    pool.set(b, 10);
    const start = 10 + (v.ip ? 4 : 0);
    t.equal(decodeControl(pool, start, 10 + b.length, m), ControlReason.None, `${v.name}: accepted`);
    t.same({ ccid: m.ccid, ns: m.ns, nr: m.nr, type: m.messageType, length: m.length, vendor: m.messageVendor },
      { ccid: v.ccid, ns: v.ns, nr: v.nr, type: v.type, length: b.length - (v.ip ? 4 : 0), vendor: 0 }, `${v.name}: fields`);
    t.equal(m.messageMandatory, v.type === MessageType.Zlb ? 0 : 1, `${v.name}: M bit of the Message Type AVP`);
  }
});

const tsharkSkip = !hasCommand('tshark') && 'tshark is not installed (Debian package tshark)';

t.test('tshark decodes what writeControl produces as L2TPv3 control messages', { skip: tsharkSkip }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'l2t-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'control.pcap');
  // Port 6000 is not L2TP's 1701: tshark is told to decode it as L2TP, as the integration tests do.
  writePcap(file, VECTORS.map((v) => (v.ip
    ? ipv4Packet(115, '192.0.2.1', '192.0.2.2', encode(v))
    : udp4Packet('192.0.2.1', 5000, '192.0.2.2', 6000, encode(v)))));
  const FIELDS = ['ip.proto', 'l2tp.type', 'l2tp.version', 'l2tp.length_bit', 'l2tp.seq_bit', 'l2tp.length', 'l2tp.ccid',
    'l2tp.Ns', 'l2tp.Nr', 'l2tp.avp.message_type', 'l2tp.avp.mandatory', 'l2tp.sid'] as const;
  const rows = tsharkFields(file, FIELDS, ['-d', 'udp.port==6000,l2tp']);
  t.equal(rows.length, VECTORS.length, 'one decoded packet per message');
  const truthy = (x: string): boolean => x === '1' || x === 'True';
  VECTORS.forEach((v, i) => {
    const r = Object.fromEntries(FIELDS.map((f, k) => [f, rows[i]?.[k] ?? ''])) as Record<(typeof FIELDS)[number], string>;
    t.equal(r['ip.proto'], v.ip ? '115' : '17', `${v.name}: encapsulation`);
    t.equal(r['l2tp.type'], '1', `${v.name}: T bit, a control message`);
    t.ok(truthy(r['l2tp.length_bit']) && truthy(r['l2tp.seq_bit']), `${v.name}: L and S bits`);
    t.equal(r['l2tp.version'], '3', `${v.name}: version 3`);
    t.equal(Number(r['l2tp.length']), v.type === MessageType.Zlb ? 12 : 20, `${v.name}: Length counts from the flags word`);
    t.equal(Number(r['l2tp.ccid']), v.ccid, `${v.name}: Control Connection ID`);
    t.equal(Number(r['l2tp.Ns']), v.ns, `${v.name}: Ns`);
    t.equal(Number(r['l2tp.Nr']), v.nr, `${v.name}: Nr`);
    t.equal(r['l2tp.avp.message_type'], v.type === MessageType.Zlb ? '' : String(v.type), `${v.name}: message type ${messageTypeName(v.type)}`);
    if (v.type !== MessageType.Zlb) t.ok(truthy(r['l2tp.avp.mandatory']), `${v.name}: Message Type AVP is mandatory`);
    if (v.ip) t.equal(Number(r['l2tp.sid']), 0, `${v.name}: behind the zero session ID`);
  });
});

t.test('malformed control messages are refused with a reason', async (t) => {
  const HELLO_AVP = '80080000 00000006';
  const cases: Array<[string, string, ControlReason, number?]> = [
    ['11 bytes', 'c803000c 0000abcd 000000', ControlReason.Short],
    ['L bit clear', '8803000c 0000abcd 00000000', ControlReason.BadFlags],
    ['S bit clear', 'c003000c 0000abcd 00000000', ControlReason.BadFlags],
    ['T bit clear', '4803000c 0000abcd 00000000', ControlReason.BadFlags],
    ['version 2', 'c802000c 0000abcd 00000000', ControlReason.BadVersion],
    ['Length 11', 'c803000b 0000abcd 00000000', ControlReason.BadLength],
    ['Length past the datagram', `c8030015 0000abcd 00000000 ${HELLO_AVP}`, ControlReason.BadLength],
    ['AVP shorter than its header', 'c8030011 0000abcd 00000000 8008000000', ControlReason.BadAvp],
    ['AVP length 5', 'c8030014 0000abcd 00000000 80050000 00000006', ControlReason.BadAvp],
    ['AVP length past Length', 'c8030014 0000abcd 00000000 80090000 00000006', ControlReason.BadAvp],
    ['first AVP not Message Type', 'c8030014 0000abcd 00000000 80080000 00080006', ControlReason.NoMessageType],
    ['Message Type AVP of 10 bytes', 'c8030016 0000abcd 00000000 800a0000 00000006 0000', ControlReason.BadAvp],
    ['hidden Message Type AVP', 'c8030014 0000abcd 00000000 c0080000 00000006', ControlReason.BadAvp],
    ['HELLO with an unknown mandatory AVP', `c803001a 0000abcd 00000000 ${HELLO_AVP} 80060009 0001`, ControlReason.UnknownMandatoryAvp, 0x90001],
    ['HELLO with a trailing fragment', `c8030018 0000abcd 00000000 ${HELLO_AVP} 80060000`, ControlReason.BadAvp],
    ['HELLO with an AVP running past Length', `c803001a 0000abcd 00000000 ${HELLO_AVP} 80070000 0024`, ControlReason.BadAvp],
  ];
  const m = new ControlMessage();
  for (const [name, bytes, reason, badAvp] of cases) {
    const b = hex(bytes);
    t.equal(decodeControl(b, 0, b.length, m), reason, `${name}: ${CONTROL_REASON_NAMES[reason]}`);
    if (badAvp !== undefined) t.equal(m.badAvp, badAvp, `${name}: names the AVP (vendor << 16 | type)`);
  }
  t.equal(CONTROL_REASON_NAMES.length, CONTROL_REASON_COUNT, 'every reason has a name');
  t.equal(decodeControl(new Uint8Array(20), -1, 19, m), ControlReason.Short, 'a window outside the pool is refused');
  t.equal(decodeControl(new Uint8Array(20), 0, 21, m), ControlReason.Short, 'a window past the pool is refused');
});

t.test('what decodeControl accepts beyond the minimum', async (t) => {
  const HELLO_AVP = '80080000 00000006';
  const m = new ControlMessage();
  const ok = (name: string, bytes: string, check: () => void): void => {
    const b = hex(bytes);
    t.equal(decodeControl(b, 0, b.length, m), ControlReason.None, `${name}: accepted`);
    check();
  };
  ok('HELLO with an unknown optional AVP (M clear: ignored, RFC 3931 §5.2)', `c803001a 0000abcd 00000000 ${HELLO_AVP} 00060009 0001`,
    () => t.equal(m.avpCount, 2));
  ok('HELLO with a Random Vector AVP', `c803001e 0000abcd 00000000 ${HELLO_AVP} 800a0000 00240102 0304`,
    () => t.equal(m.hasDigest, 0));
  ok('HELLO with a Message Digest AVP', `c803002b 0000abcd 00000000 ${HELLO_AVP} 80170000 003b00 ${'11'.repeat(16)}`,
    () => t.equal(m.hasDigest, 1, 'the peer authenticates control messages'));
  ok('SCCRQ with an unknown mandatory AVP (not checked: l2tpd drops SCCRQ anyway)', 'c803001a 0000abcd 00000000 80080000 00000001 80060009 0001',
    () => t.equal(m.messageType, MessageType.Sccrq));
  ok('vendor-specific message type', 'c8030014 0000abcd 00000000 00080009 00000006',
    () => t.same([m.messageVendor, m.messageType, m.messageMandatory], [9, 6, 0]));
  ok('bytes after Length are ignored', `c8030014 0000abcd 00020003 ${HELLO_AVP} deadbeef`,
    () => t.same([m.length, m.ns, m.nr], [20, 2, 3]));
  ok('x bits set (ignored on receive, RFC 3931 §3.2.1)', 'fbf3000c 0000abcd 00000000', () => t.equal(m.messageType, MessageType.Zlb));
});

t.test('random bytes never throw and give a known reason', async (t) => {
  const m = new ControlMessage();
  let seed = 0x2545f491;
  const rnd = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 0x100000000; };
  const pool = new Uint8Array(256);
  const seen = new Set<number>();
  for (let i = 0; i < 20000; i++) {
    const len = Math.floor(rnd() * 64);
    for (let k = 0; k < len; k++) pool[k] = Math.floor(rnd() * 256);
    // Bias towards plausible headers so the AVP walk is reached often.
    if (i & 1) { pool[0] = 0xc8; pool[1] = 0x03; pool[2] = 0; pool[3] = Math.min(len, 12 + Math.floor(rnd() * 40)); }
    const r = decodeControl(pool, 0, len, m);
    seen.add(r);
    if (r < 0 || r >= CONTROL_REASON_COUNT) { t.fail(`unknown reason ${r}`); break; }
    if (r === ControlReason.None && (m.length < 12 || m.length > len)) { t.fail(`accepted length ${m.length} of ${len}`); break; }
  }
  t.ok(seen.has(ControlReason.None) && seen.has(ControlReason.BadAvp) && seen.has(ControlReason.Short), `reasons reached: ${[...seen].map((r) => CONTROL_REASON_NAMES[r]).join(', ')}`);
});

t.test('writeControl and decodeControl allocate nothing', async (t) => {
  const pool = new Uint8Array(2048);
  const m = new ControlMessage();
  const acc = new Int32Array(2);
  const loop = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const at = (i & 63) * 24;
      const ip = (i & 1) === 1;
      const type = (i & 6) === 0 ? MessageType.Zlb : (i & 2) ? MessageType.Hello : MessageType.Ack;
      // CCIDs ≥ 2^31 go in as int32, as the data plane passes them (see writeControl)
      const len = writeControl(pool, at, pool.length, ip, (0x90000000 + i) | 0, i & 0xffff, (i * 3) & 0xffff, type);
      if ((i & 15) === 7) pool[at + (ip ? 4 : 0) + 3] = 200; // a bad Length now and then
      acc[0] += decodeControl(pool, at + (ip ? 4 : 0), at + len, m);
      acc[1] += m.ccid & 1;
    }
  };
  loop(1_000_000); // warm up: optimised code (on-stack replacement) allocates once while it is made
  const { gcs, ms } = await gcsDuring(() => loop(3_000_000));
  t.comment(`3M messages written and decoded in ${ms.toFixed(0)} ms`);
  t.ok(acc[0] > 0 && acc[1] > 0, 'good and bad messages were decoded');
  t.equal(gcs, 0, 'no GC');
});
