/**
 * Fuzz: ≥ 1,000,000 random and mutated packets (the docs/protocol.md test vectors with bit flips, truncation,
 * extension, byte stamping, and plain random bytes) through decodeCommon + decodeSession under
 * several session configs. Asserts for every packet: never throws; each result is either a frame
 * inside the input window or exactly one decode drop reason; the bytes around the window are never
 * written. For every 4th packet also: the result agrees with a slow reference decoder, and a
 * different guard fill does not change it (so nothing outside the window is read). Accepted
 * frames go through SequenceState too.
 * Seeded: the seed is printed; rerun with FUZZ_SEED=<seed>. FUZZ_ITERATIONS overrides the count.
 */
import t from 'tap';
import {
  DecodeResult, DropReason, EncapKind, IP_WIRE, SequenceState, UDP_WIRE, decodeSession, makeRxContext,
  type RxParams,
} from '../../src/protocol/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const ARP = 'ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002';
const IPV4 = (len: number, opts = 0): string => {
  const ihl = 5 + opts;
  const tot = (ihl * 4 + len).toString(16).padStart(4, '0');
  return `4${ihl.toString(16)}00${tot} 12344000 4073 0000 c0000201 c0000202 ${'01010100'.repeat(opts)}`;
};

const UDP_SEEDS = [
  `00030000 000003e8 00000000 ${ARP}`,
  `00030000 00001234 deadbeef 40000005 ${ARP}`,
  `00030000 00001234 deadbeee 40000005 ${ARP}`,
  `00030000 00001234 40ffffff ${ARP}`,
  `00030000 00001234 40000000 ${ARP}`,
  `00030000 00001234 00000001 ${ARP}`,
  `00030000 00001234 00000001 097f0000 ${ARP}`,
  `00030000 00001234 0102030405060708 40000009 ${ARP}`,
  'c803000c 0000abcd 00000000',
  `00030000 00000000 00000000 ${ARP}`,
  `00020000 00001234 00000000 ${ARP}`,
  `00050000 00001234 00000000 ${ARP}`,
].map(hex);
const IP_SEEDS = [
  `00001234 ${ARP}`,
  `00001234 0102030405060708 00000000 ${ARP}`,
  `00001234 deadbeef 40000007 ${ARP}`,
  '00000000 c803000c 0000abcd 00000000',
].map(hex);
const RAW_SEEDS = IP_SEEDS.flatMap((p) => [0, 1, 3].map((o) => {
  const h = hex(IPV4(p.length, o));
  const d = new Uint8Array(h.length + p.length);
  d.set(h); d.set(p, h.length);
  return d;
}));

interface Cfg { name: string; encap: EncapKind; raw: boolean; seeds: Uint8Array[]; rx: RxParams }
const wireOf = (c: Cfg) => (c.encap === EncapKind.Udp ? UDP_WIRE : IP_WIRE);
const CONFIGS: Cfg[] = [
  { name: 'udp/no-cookie/default', encap: EncapKind.Udp, raw: false, seeds: UDP_SEEDS, rx: { peerCookie: new Uint8Array(0), l2spec: 'default', peerOffset: 0 } },
  { name: 'udp/cookie4/default', encap: EncapKind.Udp, raw: false, seeds: UDP_SEEDS, rx: { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 } },
  { name: 'udp/cookie8/default', encap: EncapKind.Udp, raw: false, seeds: UDP_SEEDS, rx: { peerCookie: hex('0102030405060708'), l2spec: 'default', peerOffset: 0 } },
  { name: 'udp/none/offset4', encap: EncapKind.Udp, raw: false, seeds: UDP_SEEDS, rx: { peerCookie: new Uint8Array(0), l2spec: 'none', peerOffset: 4 } },
  { name: 'udp/cookie4/offset256', encap: EncapKind.Udp, raw: false, seeds: UDP_SEEDS, rx: { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 256 } },
  { name: 'ip/none', encap: EncapKind.Ip, raw: false, seeds: IP_SEEDS, rx: { peerCookie: new Uint8Array(0), l2spec: 'none', peerOffset: 0 } },
  { name: 'ip/cookie8/default', encap: EncapKind.Ip, raw: false, seeds: IP_SEEDS, rx: { peerCookie: hex('0102030405060708'), l2spec: 'default', peerOffset: 0 } },
  { name: 'raw-ipv4/cookie4/default', encap: EncapKind.Ip, raw: true, seeds: RAW_SEEDS, rx: { peerCookie: hex('deadbeef'), l2spec: 'default', peerOffset: 0 } },
  { name: 'raw-ipv4/none', encap: EncapKind.Ip, raw: true, seeds: RAW_SEEDS, rx: { peerCookie: new Uint8Array(0), l2spec: 'none', peerOffset: 0 } },
];

/** Slow, obviously-correct reference: [reason, sid, hasSeq, seq, frameOff, frameLen] relative to the packet. */
function reference(p: Uint8Array, c: Cfg): number[] {
  let o = 0;
  if (c.raw) {
    if (p.length < 20) return [DropReason.BadIpHeader];
    const ihl = (p[0] & 15) * 4;
    if (p[0] >> 4 !== 4 || ihl < 20 || ihl > p.length) return [DropReason.BadIpHeader];
    o = ihl;
  }
  const u32 = (i: number): number => ((p[i] * 2 ** 24) + (p[i + 1] << 16) + (p[i + 2] << 8) + p[i + 3]);
  let sid: number;
  if (c.encap === EncapKind.Udp) {
    if (p.length - o < 8) return [DropReason.ShortPacket];
    if (p[o] & 0x80) return [DropReason.Control];
    if ((p[o + 1] & 15) !== 3) return [DropReason.BadVersion];
    sid = u32(o + 4);
    o += 8;
    if (sid === 0) return [DropReason.UnknownSession];
  } else {
    if (p.length - o < 4) return [DropReason.ShortPacket];
    sid = u32(o);
    o += 4;
    if (sid === 0) return [DropReason.Control];
  }
  const ck = c.rx.peerCookie;
  const l2 = c.rx.l2spec === 'default' ? 4 : 0;
  if (p.length - o < ck.length + l2 + c.rx.peerOffset) return [DropReason.ShortPacket, sid];
  if (!ck.every((b, i) => p[o + i] === b)) return [DropReason.CookieMismatch, sid];
  o += ck.length;
  let hasSeq = 0, seq = 0;
  if (l2) {
    const w = u32(o);
    if (w & 0x40000000) { hasSeq = 1; seq = w % 2 ** 24; }
    o += 4;
  }
  o += c.rx.peerOffset;
  if (p.length - o < 14) return [DropReason.ShortFrame, sid];
  return [DropReason.None, sid, hasSeq, seq, o, p.length - o];
}

/** xorshift32, seeded. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

const COMMON_REASONS = new Set([DropReason.ShortPacket, DropReason.BadIpHeader, DropReason.BadVersion, DropReason.Control, DropReason.UnknownSession]);
const SESSION_REASONS = new Set([DropReason.ShortPacket, DropReason.CookieMismatch, DropReason.ShortFrame]);

t.test('fuzz decodeCommon + decodeSession', async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? (Date.now() ^ (process.pid << 16)) >>> 0);
  const iterations = Number(process.env.FUZZ_ITERATIONS ?? 1_000_000);
  t.comment(`fuzz seed ${seed}, ${iterations} packets (rerun with FUZZ_SEED=${seed})`);
  const next = rng(seed);
  const GUARD = 64;
  const MAXLEN = 700;
  const SPAN = GUARD + 32 + MAXLEN + GUARD;
  const pool = new Uint8Array(SPAN);
  const pkt = new Uint8Array(MAXLEN);
  const out = new DecodeResult();
  const counts = new Map<string, number>();
  const seqs = CONFIGS.map(() => new SequenceState({ recvSeq: false, reorderTimeoutMs: 3, capacity: 16 }));
  const rxOf = CONFIGS.map((c) => makeRxContext(c.rx));
  const seqOut = new Uint32Array(CONFIGS.length);
  const seqIn = new Uint32Array(CONFIGS.length);
  const started = Date.now();
  let failures = 0;
  const fail = (i: number, msg: string): void => {
    if (failures++ < 10) t.fail(`seed ${seed} packet ${i}: ${msg}`);
  };

  for (let i = 0; i < iterations && failures < 10; i++) {
    const ci = next() % CONFIGS.length;
    const c = CONFIGS[ci];
    // ---- build the packet ----
    let len: number;
    const kind = next() % 16;
    if (kind === 0) {
      len = next() % MAXLEN;
      for (let k = 0; k < len; k++) pkt[k] = next() & 0xff;
    } else {
      const src = c.seeds[next() % c.seeds.length];
      pkt.set(src);
      len = src.length;
      const muts = 1 + (next() % 4);
      for (let m = 0; m < muts; m++) {
        const op = next() % 6;
        if (op <= 1 && len > 0) { // bit flips, biased to the header
          const flips = 1 + (next() % 4);
          for (let f = 0; f < flips; f++) {
            const at = next() % 2 === 0 ? next() % Math.min(len, 40) : next() % len;
            pkt[at] ^= 1 << (next() % 8);
          }
        } else if (op === 2) { // truncate
          len = next() % (len + 1);
        } else if (op === 3) { // extend with random bytes
          const add = next() % Math.min(300, MAXLEN - len + 1);
          for (let k = 0; k < add; k++) pkt[len + k] = next() & 0xff;
          len += add;
        } else if (op === 4 && len > 0) { // stamp an interesting byte
          pkt[next() % Math.min(len, 48)] = [0x00, 0xff, 0x40, 0x80, 0x03, 0x45, 0x4f, 0xc8][next() % 8];
        } else { // random length, content kept
          len = next() % MAXLEN;
        }
      }
    }
    // ---- place it in the window with a guard fill around it ----
    const start = GUARD + (next() % 32);
    const fillA = next() & 0xff;
    pool.fill(fillA, 0, start);
    pool.set(pkt.subarray(0, len), start);
    pool.fill(fillA, start + len);
    const end = start + len;

    // ---- decode ----
    let r: DropReason;
    let stage = 1;
    try {
      r = wireOf(c).decodeCommon(pool, start, len, c.raw, out);
      if (r === DropReason.None) {
        stage = 2;
        if (out.pos < start || out.pos > end || out.sessionId === 0) fail(i, `bad pos/sid after common: ${out.pos} ${out.sessionId}`);
        r = decodeSession(pool, out, rxOf[ci], end);
      }
    } catch (e) {
      fail(i, `threw ${String(e)}`);
      continue;
    }
    if (r === DropReason.None) {
      if (!(out.frameStart >= start && out.frameLength >= 14 && out.frameStart + out.frameLength <= end)) {
        fail(i, `frame [${out.frameStart}, +${out.frameLength}) outside [${start}, ${end})`);
      }
    } else if (!(stage === 1 ? COMMON_REASONS : SESSION_REASONS).has(r)) {
      fail(i, `stage ${stage} gave reason ${r}`);
    }
    const key = `${c.name} ${r}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);

    // ---- guard never written ----
    for (let k = start - GUARD; k < start; k++) if (pool[k] !== fillA) { fail(i, `wrote before the window at ${k}`); break; }
    for (let k = end; k < Math.min(end + GUARD, SPAN); k++) if (pool[k] !== fillA) { fail(i, `wrote after the window at ${k}`); break; }

    // ---- agrees with the reference, and reads nothing outside the window ----
    if ((i & 3) === 0) {
      const ref = reference(pkt.subarray(0, len), c);
      const got = r === DropReason.None
        ? [r, out.sessionId, out.hasSeq, out.seq, out.frameStart - start, out.frameLength]
        : stage === 2 ? [r, out.sessionId] : [r];
      if (ref.join() !== got.join()) fail(i, `reference ${ref.join()} vs ${got.join()} (${Buffer.from(pkt.subarray(0, len)).toString('hex')})`);
      const fillB = fillA ^ 0xff;
      pool.fill(fillB, 0, start);
      pool.fill(fillB, end);
      const o2 = new DecodeResult();
      let r2 = wireOf(c).decodeCommon(pool, start, len, c.raw, o2);
      if (r2 === DropReason.None) r2 = decodeSession(pool, o2, rxOf[ci], end);
      if (r2 !== r || JSON.stringify({ ...o2 }) !== JSON.stringify({ ...out })) fail(i, 'result depends on bytes outside the window');
    }

    // ---- accepted frames through sequencing: every token comes back exactly once ----
    if (r === DropReason.None) {
      const s = seqs[ci];
      s.onPacket(out.hasSeq, out.seq, i, i >>> 6);
      seqIn[ci]++;
      for (let tok = s.takeDeliverable(); tok >= 0; tok = s.takeDeliverable()) seqOut[ci]++;
      for (let tok = s.takeDropped(); tok >= 0; tok = s.takeDropped()) seqOut[ci]++;
    }
  }
  for (let ci = 0; ci < CONFIGS.length; ci++) {
    seqs[ci].expire(Infinity);
    for (let tok = seqs[ci].takeDeliverable(); tok >= 0; tok = seqs[ci].takeDeliverable()) seqOut[ci]++;
    t.equal(seqOut[ci], seqIn[ci], `${CONFIGS[ci].name}: sequencing returned every token`);
  }
  const ms = Date.now() - started;
  t.equal(failures, 0, `no failures in ${iterations} packets (${ms} ms)`);
  const reasons = new Set([...counts.keys()].map((k) => Number(k.split(' ')[1])));
  const wanted: Array<[DropReason, string]> = [[DropReason.None, 'None'], [DropReason.ShortPacket, 'ShortPacket'],
    [DropReason.BadIpHeader, 'BadIpHeader'], [DropReason.BadVersion, 'BadVersion'], [DropReason.Control, 'Control'],
    [DropReason.UnknownSession, 'UnknownSession'], [DropReason.CookieMismatch, 'CookieMismatch'], [DropReason.ShortFrame, 'ShortFrame']];
  for (const [want, name] of wanted) t.ok(reasons.has(want), `outcome ${name} was produced`);
  t.comment([...counts.entries()].sort().map(([k, v]) => `${k}: ${v}`).join('\n'));
});
