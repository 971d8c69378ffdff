/**
 * The per-packet functions allocate nothing: 3 million rounds of writeHeader → decodeCommon (UDP_WIRE / IP_WIRE) →
 * decodeSession (UDP, and raw IPv4 with a source ≥ 2^31) → SequenceState (reorder and no-reorder,
 * with swapped pairs, duplicates and drops) run without a single garbage collection. Any object,
 * string, closure or boxed number per packet would trigger scavenges within this many rounds.
 */
import t from 'tap';
import {
  DecodeResult, DropReason, IP_WIRE, SequenceState, UDP_WIRE, buildTxTemplate, decodeSession, makeRxContext, nextSeq,
  writeHeader,
} from '../../src/protocol/index.js';
import { gcsDuring } from '../helpers/gc.js';

t.test('hot path: no garbage collection in 3M packets', async (t) => {
  const pool = new Uint8Array(4096);
  const FRAME = 400;
  const LEN = 100;
  const udp = buildTxTemplate({ encap: UDP_WIRE, peerSessionId: 0x91234567, cookie: Uint8Array.of(1, 2, 3, 4), l2spec: 'default', offset: 0 });
  const ip = buildTxTemplate({ encap: IP_WIRE, peerSessionId: 0x1234, cookie: new Uint8Array(0), l2spec: 'default', offset: 2 });
  const rxUdp = makeRxContext({ peerCookie: Uint8Array.of(1, 2, 3, 4), l2spec: 'default', peerOffset: 0 });
  const rxIp = makeRxContext({ peerCookie: new Uint8Array(0), l2spec: 'default', peerOffset: 2 });
  // a fixed IPv4 header (IHL 6, source 192.0.2.1) in front of the IP-encap header
  const IPH = 24;
  const out = new DecodeResult();
  const reorder = new SequenceState({ recvSeq: false, reorderTimeoutMs: 10, capacity: 64 });
  const inOrder = new SequenceState({ recvSeq: true, reorderTimeoutMs: 0, capacity: 64 });
  const acc = new Int32Array(4);
  let ns = 0;
  const loop = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const useIp = (i & 1) === 1;
      const tpl = useIp ? ip : udp;
      const hs = writeHeader(pool, FRAME, tpl, ns);
      ns = nextSeq(ns);
      let r: DropReason;
      if (useIp) {
        const s0 = hs - IPH;
        pool[s0] = 0x46; pool[s0 + 12] = 192; pool[s0 + 13] = 0; pool[s0 + 14] = 2; pool[s0 + 15] = 1;
        r = IP_WIRE.decodeCommon(pool, s0, LEN + IPH, true, out);
        if (r === DropReason.None) r = decodeSession(pool, out, rxIp, s0 + LEN + IPH);
      } else {
        r = UDP_WIRE.decodeCommon(pool, hs, LEN, false, out);
        if (r === DropReason.None) r = decodeSession(pool, out, rxUdp, hs + LEN);
      }
      acc[0] += r;
      const m = i & 15;
      const seq = m === 3 ? out.seq + 1 : m === 4 ? out.seq - 1 : m === 9 ? out.seq - 3 : out.seq;
      const st = (i & 2) === 0 ? reorder : inOrder;
      st.onPacket(m === 11 ? 0 : out.hasSeq, seq & 0xffffff, i & 0xffff, i >>> 4);
      for (let k = st.takeDeliverable(); k >= 0; k = st.takeDeliverable()) acc[1]++;
      for (let k = st.takeDropped(); k >= 0; k = st.takeDropped()) acc[2] += st.lastDropReason;
      if (st.nextDeadline() >= 0) acc[3]++;
      if ((i & 255) === 0) reorder.expire(i >>> 4);
    }
  };
  loop(300_000); // warm up (feedback, optimisation)
  const { gcs: during, ms } = await gcsDuring(() => loop(3_000_000));
  t.comment(`3M packets in ${ms.toFixed(0)} ms; delivered ${acc[1]}, drop reasons sum ${acc[2]}, oos ${reorder.oosPackets}, seq discards ${inOrder.seqDiscards}`);
  t.equal(acc[0], 0, 'every packet decoded');
  t.ok(acc[2] > 0 && reorder.oosPackets > 0, 'drops and reordering were exercised');
  t.equal(during, 0, 'no GC while the hot path ran');
});
