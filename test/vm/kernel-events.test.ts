/**
 * The Linux kernel as a live peer while things happen mid-stream (test/helpers/kernel-peer.ts):
 * pings flow both ways every 100 ms while the kernel's session is deleted and re-created, l2tpd
 * re-creates a session on reload, repairs a deleted tap, restarts, and crashes. And the two
 * pairings where Linux's sequencing rule matters: a static Linux session copies the peer's S bit
 * onto its own sending (l2tp_recv_common, docs/sequencing.md), so
 *  - l2tpd `seq none` against a kernel `seq both` carries traffic once the kernel's numbered
 *    frames turn l2tpd's numbering on (before l2tpd did this, the kernel dropped everything);
 *  - l2tpd `seq recv` against a kernel `seq send` too (before, l2tpd's unnumbered frames turned
 *    the kernel's numbering off, and l2tpd then dropped everything);
 *  - l2tpd `seq send` against a kernel `seq none` that speaks first stops numbering, as Linux does;
 *  - l2tpd `seq send seq_mirror off` keeps numbering, so a kernel `seq recv` that speaks first
 *    (unnumbered) gets numbers, starts numbering itself, and traffic flows (with the mirror on,
 *    l2tpd would stop numbering and the kernel drop everything, as between two Linux nodes).
 * Judged by traffic both ways after each event, the kernel's per-session rx_errors (window and
 * sequence drops count there), l2tpd's counters, and l2tpd's sequence numbers on the wire: they
 * continue across reload, repair and restart, and after a crash jump ahead by what the kernel's
 * window accepts (it drops exactly 5 frames, then follows).
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { startCapture } from '../helpers/capture.js';
import {
  GUEST_IP, GUEST_PING, ifL2tpd, openLab, inner, kernelBatch, kernelLinkBatch, kernelPeerUnavailable, portKernel, portL2tpd,
  streamPings, tunnelId, type KernelSession, type L2tpdSessionView, type PeerCase,
} from '../helpers/kernel-peer.js';
import { decodeL2tp, type L2tpPacket } from '../helpers/l2tp-wire.js';
import { nsExec, sleep, stopProcess, waitUntil } from '../helpers/netns.js';
import { l2tpctlOk } from '../helpers/sites.js';

const skip = kernelPeerUnavailable();
const SEQ_SPACE = 0x1000000;

type CaseInit = Pick<PeerCase, 'label' | 'encap' | 'v6' | 'seqL2tpd' | 'seqKernel' | 'seqMirror'>;
const CASES: Record<string, CaseInit> = {
  mirrorOn: { label: 'l2tpd seq none, kernel seq both', encap: 'udp', v6: false, seqL2tpd: 'none', seqKernel: 'both' },
  mirrorRecv: { label: 'l2tpd seq recv, kernel seq send', encap: 'ip', v6: true, seqL2tpd: 'recv', seqKernel: 'send' },
  mirrorOff: { label: 'l2tpd seq send, kernel seq none speaking first', encap: 'udp', v6: true, seqL2tpd: 'send', seqKernel: 'none' },
  pinned: { label: 'l2tpd seq send seq_mirror off, kernel seq recv speaking first', encap: 'ip', v6: false, seqL2tpd: 'send', seqKernel: 'recv', seqMirror: 'off' },
  recreatePlain: { label: 'kernel session re-created, no sequencing', encap: 'udp', v6: false, seqL2tpd: 'none', seqKernel: 'none' },
  recreateSeq: { label: 'kernel session re-created, seq both', encap: 'ip', v6: false, seqL2tpd: 'both', seqKernel: 'both' },
  reload: { label: 'l2tpd reload re-creates the session, seq both', encap: 'udp', v6: true, seqL2tpd: 'both', seqKernel: 'both' },
  repair: { label: 'l2tpd repairs a deleted tap, seq both', encap: 'ip', v6: true, seqL2tpd: 'both', seqKernel: 'both' },
  restartUdp: { label: 'udp/IPv4 seq both', encap: 'udp', v6: false, seqL2tpd: 'both', seqKernel: 'both' },
  restartIp: { label: 'ip/IPv4 seq both', encap: 'ip', v6: false, seqL2tpd: 'both', seqKernel: 'both' },
  restartPlain: { label: 'udp/IPv6 no sequencing', encap: 'udp', v6: true, seqL2tpd: 'none', seqKernel: 'none' },
};
type Name = keyof typeof CASES;

function buildCases(): Record<Name, PeerCase> {
  const out = {} as Record<Name, PeerCase>;
  Object.entries(CASES).forEach(([name, c], i) => {
    const n = i + 1;
    out[name as Name] = { ...c, n, cookieL2tpd: '', cookieKernel: '', l2spec: 'default', sidL2tpd: 0x80000000 + n, sidKernel: 3000 + n };
  });
  return out;
}

interface Phase {
  /** l2tpd's packets to the kernel, by case number, in capture order. */
  fromL2tpd: Map<number, L2tpPacket[]>;
  fromKernel: Map<number, L2tpPacket[]>;
  kernelBefore: Map<number, KernelSession>;
  kernelAfter: Map<number, KernelSession>;
  l2tpdBefore: Map<number, L2tpdSessionView>;
  l2tpdAfter: Map<number, L2tpdSessionView>;
  /** Pings both ways once the stream stopped: [l2tpd side -> kernel, kernel -> l2tpd side]. */
  after: Map<number, [number, number]>;
}

t.test('l2tpd and the Linux kernel, mid-stream', { skip, timeout: 290000 }, async (t) => {
  const { lab, tmp, started } = await openLab(t, 'events');
  const c = buildCases();
  const all = Object.values(c);
  await lab.guestIp(all.flatMap(kernelBatch));
  lab.writeConfig(all);
  await lab.startL2tpd();
  lab.addressL2tpdSide(all);

  const decode = (pcap: string, sids: number[]) => {
    const bySid = new Map<number, L2tpPacket[]>();
    for (const p of decodeL2tp(pcap, { cookieBytes: 0, l2spec: 'default', udpPorts: all.filter((x) => x.encap === 'udp').flatMap((x) => [portL2tpd(x), portKernel(x)]),
      filter: `l2tp.sid in {${sids.join(', ')}}` })) bySid.set(p.sessionId, [...(bySid.get(p.sessionId) ?? []), p]);
    return bySid;
  };
  const guestPing = async (cases: PeerCase[]) => {
    const out = await lab.guest.ok(cases.map((x) => `${GUEST_PING} -q -c 3 -i 0.2 -W 3 -w 15 ${inner(x).l2tpd} >/tmp/p${x.n} 2>&1 &`).join('\n')
      + `\nwait\nfor n in ${cases.map((x) => x.n).join(' ')}; do echo "$n $(grep -o '[0-9]* received' /tmp/p$n)"; done`, { timeoutMs: 60000 });
    return new Map(out.trim().split('\n').map((l) => { const m = /^(\d+) (\d+)/.exec(l); return [Number(m?.[1]), Number(m?.[2] ?? 0)] as const; }));
  };

  /** A stream over `cases` with `event` in the middle, captured, counters before and after. */
  let phases = 0;
  const phase = async (cases: PeerCase[], event: () => Promise<void>): Promise<Phase> => {
    const pcap = path.join(tmp, `phase${++phases}.pcap`);
    const cap = await startCapture(lab.ns, pcap, 'kt0');
    const stream = await streamPings(lab, cases);
    await sleep(2500);
    const kernelBefore = await lab.kernelSessions();
    const l2tpdBefore = lab.l2tpdSessions();
    await event();
    await sleep(3000);
    await stream.stop();
    await sleep(800);
    const afterGuest = await guestPing(cases);
    const after = new Map(cases.map((x) => [x.n, [lab.hostPing(inner(x).kernel, ['-w', '15']), afterGuest.get(x.n) ?? 0] as [number, number]]));
    await sleep(500);
    await stopProcess(cap.proc, 'SIGINT');
    const kernelAfter = await lab.kernelSessions();
    const l2tpdAfter = lab.l2tpdSessions();
    const fromL2tpd = decode(pcap, cases.map((x) => x.sidKernel));
    const fromKernel = decode(pcap, cases.map((x) => x.sidL2tpd));
    return {
      fromL2tpd: new Map(cases.map((x) => [x.n, fromL2tpd.get(x.sidKernel) ?? []])),
      fromKernel: new Map(cases.map((x) => [x.n, fromKernel.get(x.sidL2tpd) ?? []])),
      kernelBefore, kernelAfter, l2tpdBefore, l2tpdAfter, after,
    };
  };
  const resumed = (t: tap.Test, p: Phase, x: PeerCase) => {
    const [h, g] = p.after.get(x.n)!;
    t.ok(h >= 3 && g >= 3, `traffic both ways afterwards: l2tpd side -> kernel ${h}/3, kernel -> l2tpd side ${g}/3`);
  };
  const kernelRxErrors = (p: Phase, x: PeerCase) => p.kernelAfter.get(x.sidKernel)!.rxErrors - (p.kernelBefore.get(x.sidKernel)?.rxErrors ?? 0);
  const l2tpdDelta = (p: Phase, x: PeerCase, name: string) => p.l2tpdAfter.get(x.sidL2tpd)!.stats[name] - p.l2tpdBefore.get(x.sidL2tpd)!.stats[name];

  await t.test("the peer's S bit, as Linux follows it", async (t) => {
    const cases = [c.mirrorOn, c.mirrorRecv, c.mirrorOff, c.pinned];
    const pcap = path.join(tmp, 'mirror.pcap');
    const cap = await startCapture(lab.ns, pcap, 'kt0');
    // The kernel speaks first (its ARP request), as in each pairing's working order between two Linux nodes.
    const fromGuest = await guestPing(cases);
    const fromHost = cases.map((x) => lab.hostPing(inner(x).kernel, ['-w', '15']));
    await sleep(500);
    await stopProcess(cap.proc, 'SIGINT');
    const kernel = await lab.kernelSessions();
    const l2tpd = lab.l2tpdSessions();
    const fromL2tpd = decode(pcap, cases.map((x) => x.sidKernel));
    const switchLines = (x: PeerCase) => lab.daemon.log.filter((l) => l.includes(`"session_id":${x.sidL2tpd}`) && /sequence numbers/.test(l));
    // l2tpd reports switches once a second.
    await waitUntil(() => switchLines(c.mirrorOn).length > 0 && switchLines(c.mirrorOff).length > 0, 5000);
    cases.forEach((x, i) => {
      t.ok((fromGuest.get(x.n) ?? 0) >= 3 && fromHost[i] >= 3, `${x.label}: pings both ways (kernel first ${fromGuest.get(x.n)}/3, then l2tpd side ${fromHost[i]}/3)`);
      const k = kernel.get(x.sidKernel)!;
      t.equal(k.rxErrors, 0, `${x.label}: the kernel dropped nothing`);
      const s = l2tpd.get(x.sidL2tpd)!;
      t.same(['rx_errors', 'rx_seq_discards'].map((n) => s.stats[n]), [0, 0], `${x.label}: l2tpd dropped nothing`);
      // Numbered when the kernel numbers (the mirror follows it), or pinned to `seq send`.
      const numbered = x.seqMirror === 'off' ? x.seqL2tpd === 'send' || x.seqL2tpd === 'both' : x.seqKernel === 'send' || x.seqKernel === 'both';
      t.equal(s.tx_seq, numbered ? 'on' : 'off', `${x.label}: show session reports tx_seq ${numbered ? 'on' : 'off'}`);
      const pkts = fromL2tpd.get(x.sidKernel) ?? [];
      t.ok(pkts.length >= 4 && pkts.every((p) => p.l2spec?.s === numbered), `${x.label}: all ${pkts.length} frames l2tpd sent were ${numbered ? '' : 'un'}numbered`);
      if (numbered) t.ok(pkts.every((p, j) => p.l2spec!.seq === j), `${x.label}: numbered from 0`);
      // The kernel mirrors l2tpd as l2tpd mirrors it: both end up numbering, or neither.
      t.equal(k.sendSeq, numbered, `${x.label}: the kernel ${numbered ? 'sends' : 'does not send'} numbers`);
      const logged = switchLines(x);
      const changed = (x.seqL2tpd === 'send' || x.seqL2tpd === 'both') !== numbered;
      t.equal(logged.length, changed ? 1 : 0, `${x.label}: ${changed ? 'one log line for the change' : 'nothing logged'}`);
    });
    const text = l2tpctlOk(lab.daemon, ['show', 'session', 'tunnel_id', String(tunnelId(c.mirrorOn))]);
    t.match(text, /^ {2}tx sequencing: on \(the peer's numbered frames turned it on\)$/m, 'show session says why');
  });

  await t.test('the kernel deletes and re-creates its session mid-stream', async (t) => {
    const cases = [c.recreatePlain, c.recreateSeq];
    const p = await phase(cases, async () => {
      await lab.guest.ok(cases.map((x) => `${GUEST_IP} l2tp del session tunnel_id ${tunnelId(x)} session_id ${x.sidKernel}`).join('\n'));
      await sleep(1000);
      await lab.guestIp(cases.flatMap((x) => [kernelBatch(x)[1], ...kernelLinkBatch(x)]));
    });
    for (const x of cases) {
      resumed(t, p, x);
      t.equal(p.kernelAfter.get(x.sidKernel)!.rxErrors, 0, `${x.label}: the new kernel session dropped nothing`);
      if (x.seqKernel === 'both') {
        // The kernel's numbers restart at 0, behind what l2tpd expects: l2tpd resynchronises on the 6th.
        t.equal(l2tpdDelta(p, x, 'rx_window_drops'), 5, `${x.label}: l2tpd dropped 5 frames of the new numbering as old`);
        t.equal(l2tpdDelta(p, x, 'rx_seq_resyncs'), 1, `${x.label}: then resynchronised once`);
      } else {
        t.equal(l2tpdDelta(p, x, 'rx_errors'), 0, `${x.label}: l2tpd dropped nothing`);
      }
    }
  });

  /** l2tpd's numbers to the kernel: where consecutive captured frames are not n, n+1. */
  const jumps = (pkts: L2tpPacket[]) => pkts.flatMap((pk, i) => {
    if (i === 0) return [];
    const d = (pk.l2spec!.seq - pkts[i - 1].l2spec!.seq + SEQ_SPACE) % SEQ_SPACE;
    return d === 1 ? [] : [{ from: pkts[i - 1].l2spec!.seq, to: pk.l2spec!.seq, d }];
  });
  const continues = (t: tap.Test, p: Phase, x: PeerCase, what: string) => {
    resumed(t, p, x);
    const pkts = p.fromL2tpd.get(x.n)!;
    t.ok(pkts.length > 40 && pkts.every((pk) => pk.l2spec?.s), `${x.label}: ${pkts.length} numbered frames to the kernel captured`);
    t.same(jumps(pkts), [], `${x.label}: l2tpd's numbering continues across the ${what}`);
    t.equal(kernelRxErrors(p, x), 0, `${x.label}: the kernel dropped nothing`);
  };

  await t.test('l2tpd re-creates a session on reload', async (t) => {
    const x = c.reload;
    const p = await phase([x], async () => {
      const cfg = JSON.parse(fs.readFileSync(lab.daemon.config, 'utf8')) as { sessions: { session_id: number; reorder_timeout?: number }[] };
      cfg.sessions.find((s) => s.session_id === x.sidL2tpd)!.reorder_timeout = 50;
      fs.writeFileSync(lab.daemon.config, JSON.stringify(cfg));
      t.match(l2tpctlOk(lab.daemon, ['reload']), /changed: 1/, 'reload changed the session');
    });
    continues(t, p, x, 'reload');
  });

  await t.test('l2tpd repairs a tap deleted behind its back', async (t) => {
    const x = c.repair;
    const p = await phase([x], async () => {
      nsExec(lab.ns, 'ip', ['link', 'del', ifL2tpd(x)]);
      const back = await waitUntil(() => (lab.l2tpdSessions().get(x.sidL2tpd)?.restored ?? 0) > 0, 10000, 200);
      t.ok(back, 'l2tpd restored the tap');
      lab.addressL2tpdSide([x]);
    });
    continues(t, p, x, 'repair');
  });

  const restartCases = [c.restartUdp, c.restartIp, c.restartPlain];
  await t.test('l2tpd restarted mid-stream', async (t) => {
    const p = await phase(restartCases, async () => {
      await lab.stopL2tpd();
      await lab.startL2tpd();
    });
    for (const x of restartCases) {
      if (x.seqL2tpd === 'both') continues(t, p, x, 'restart');
      else {
        resumed(t, p, x);
        t.equal(kernelRxErrors(p, x), 0, `${x.label}: the kernel dropped nothing`);
        t.ok(p.fromL2tpd.get(x.n)!.every((pk) => pk.l2spec && !pk.l2spec.s), `${x.label}: unnumbered throughout`);
      }
    }
  });

  await t.test('l2tpd killed (SIGKILL) mid-stream and started again', async (t) => {
    const p = await phase(restartCases, async () => {
      await lab.stopL2tpd('SIGKILL');
      await lab.startL2tpd();
    });
    for (const x of restartCases.filter((y) => y.seqL2tpd === 'both')) {
      resumed(t, p, x);
      const j = jumps(p.fromL2tpd.get(x.n)!);
      t.equal(j.length, 1, `${x.label}: one jump in l2tpd's numbering, at the crash: ${JSON.stringify(j)}`);
      // Ahead of everything sent before, and inside the kernel's window (less than 2^23 - 1 ahead).
      t.ok(j.length === 1 && j[0].d > 1 && j[0].d < 0x7fffff, `${x.label}: ahead by ${j[0]?.d}, within the kernel's window`);
      t.equal(kernelRxErrors(p, x), 5, `${x.label}: the kernel dropped 5 frames (out of sequence), then followed`);
    }
  });
  t.comment(`suite wall time ${Math.round((Date.now() - started) / 1000)} s`);
});
