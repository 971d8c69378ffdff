/**
 * Sequencing live (RFC 3931 §4.6, docs/sequencing.md): `seq both` between two daemons carries traffic;
 * `seq recv` facing a peer that sends no numbers drops and counts every frame; and the reorder
 * queue, driven by crafted sequenced packets from a tunnel whose peer is the crafter (so source
 * address and port are right), delivers out-of-order frames in order, releases a held frame on
 * its timer with no following packet, and resyncs after a peer restart. Frames carry their index
 * (ethertype 0x88b5) and are captured with tcpdump on the session interface.
 */
import t from 'tap';
import type tap from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { hasCommand, netnsUnavailable, stopProcess, waitUntil } from '../helpers/netns.js';
import { Sites, UNDERLAY, sleep } from '../helpers/sites.js';
import { craft, diff, frameHex, l2ssHex, rawSocketUnavailable, sessionStats, udpData } from '../helpers/inject.js';

const skip = netnsUnavailable() || (!hasCommand('ping') && 'ping (iputils-ping) is not installed');

/**
 * Both daemons running, one UDP tunnel `id` (port 1600 + id) with a `seq both` session `sid`
 * bridged to a host on each side: A's host at 198.51.100.(4n+1), B's at .(4n+2).
 */
async function seqBothPair(t: tap.Test, id: number, sid: number, n: number): Promise<{ sites: Sites; hA: string; addrB: string }> {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const { a, b } = sites;
  await sites.start(a);
  await sites.start(b);
  const port = String(1600 + id);
  for (const [d, local, remote] of [[a, UNDERLAY.a4, UNDERLAY.b4], [b, UNDERLAY.b4, UNDERLAY.a4]] as const) {
    sites.ok(d, ['add', 'tunnel', 'tunnel_id', String(id), 'peer_tunnel_id', String(id), 'encap', 'udp', 'local', local, 'remote', remote, 'udp_sport', port, 'udp_dport', port]);
    sites.ok(d, ['add', 'session', 'tunnel_id', String(id), 'session_id', String(sid), 'peer_session_id', String(sid), 'seq', 'both', 'bridge', `brq${n}`]);
  }
  const hA = sites.host(a, `brq${n}`, `198.51.100.${4 * n + 1}/30`);
  sites.host(b, `brq${n}`, `198.51.100.${4 * n + 2}/30`);
  return { sites, hA, addrB: `198.51.100.${4 * n + 2}` };
}

t.test('seq both carries traffic; seq recv against seq none drops and counts everything', { skip, timeout: 300000 }, async (t) => {
  const { sites, hA } = await seqBothPair(t, 100, 11, 0);
  const { a, b } = sites;
  t.equal(sites.ping(hA, '198.51.100.2', 10, 10), 10, 'seq both: 10/10 pings');
  const sb = sessionStats(sites, b).get(11)!;
  t.ok(sb.rx_packets >= 10, `B received ${sb.rx_packets} sequenced frames`);
  t.equal(sb.rx_seq_discards, 0, 'no sequence discards');
  t.equal(sb.rx_errors, 0, 'no receive errors');

  // B insists on numbers, A sends none.
  sites.ok(a, ['del', 'session', 'tunnel_id', '100', 'session_id', '11']);
  sites.ok(b, ['del', 'session', 'tunnel_id', '100', 'session_id', '11']);
  // B first, so that every frame A sends finds the session (and is counted there).
  sites.ok(b, ['add', 'session', 'tunnel_id', '100', 'session_id', '12', 'peer_session_id', '12', 'seq', 'recv', 'bridge', 'brq0']);
  sites.ok(a, ['add', 'session', 'tunnel_id', '100', 'session_id', '12', 'peer_session_id', '12', 'seq', 'none', 'bridge', 'brq0']);
  t.equal(sites.ping(hA, '198.51.100.2', 5, 4), 0, 'seq recv facing seq none: nothing gets through');
  // Host A still sends now and then (ARP, IPv6 ND): compare at a moment when A's count did not
  // move while B's was read (bounded retries).
  let txA = -1;
  let rxB = sessionStats(sites, b).get(12)!;
  for (let tries = 0; tries < 10; tries++) {
    await sleep(300);
    const before = sessionStats(sites, a).get(12)!.tx_packets;
    rxB = sessionStats(sites, b).get(12)!;
    txA = sessionStats(sites, a).get(12)!.tx_packets;
    if (before === txA && rxB.rx_seq_discards === txA) break;
  }
  t.ok(txA >= 5, `A sent ${txA} unsequenced frames`);
  t.equal(rxB.rx_seq_discards, txA, `B counted every one in rx_seq_discards (${rxB.rx_seq_discards})`);
  t.equal(rxB.rx_packets, 0, 'B delivered none');
});

interface Captured { index: number; ts: number }

/** tcpdump on an interface in a namespace, collecting frames of ethertype 0x88b5 with their index. */
async function capture(ns: string, ifname: string): Promise<{ frames: Captured[]; stop: () => Promise<void> }> {
  const frames: Captured[] = [];
  const p: ChildProcess = spawn('ip', ['netns', 'exec', ns, 'timeout', '120', 'tcpdump', '-i', ifname, '-nn', '-l', '-tt', '-x', '-U',
    'ether', 'proto', '0x88b5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  let ts = 0;
  let ready = false;
  p.stderr!.on('data', (b: Buffer) => { if (/listening on/.test(b.toString())) ready = true; });
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) {
      const head = /^(\d+\.\d+) /.exec(line);
      if (head) { ts = Number(head[1]) * 1000; continue; }
      const hex = /^\s+0x0000:\s+([0-9a-f]{4}) ([0-9a-f]{4})/.exec(line);
      if (hex) frames.push({ index: parseInt(hex[1] + hex[2], 16), ts });
    }
  });
  if (!(await waitUntil(() => ready))) throw new Error('tcpdump did not start');
  return { frames, stop: async () => { await sleep(300); await stopProcess(p, 'SIGINT'); } };
}

t.test('reorder_timeout live: crafted out-of-order packets, timer release, peer restart resync', {
  skip: skip || (!hasCommand('tcpdump') && 'tcpdump is not installed') || rawSocketUnavailable(), timeout: 300000,
}, async (t) => {
  const sites = new Sites();
  t.teardown(() => sites.close());
  const { a, b } = sites;
  await sites.start(b);
  const TIMEOUT = 400;
  // Tunnel on B whose peer is the crafter in A's namespace at 192.0.2.1:1799.
  sites.ok(b, ['add', 'tunnel', 'tunnel_id', '150', 'peer_tunnel_id', '150', 'encap', 'udp', 'local', UNDERLAY.b4, 'remote', UNDERLAY.a4,
    'udp_sport', '1750', 'udp_dport', '1799']);
  sites.ok(b, ['add', 'session', 'name', 'l2tpseq0', 'tunnel_id', '150', 'session_id', '151', 'peer_session_id', '151',
    'seq', 'recv', 'reorder_timeout', String(TIMEOUT)]);
  const cap = await capture(b.ns, 'l2tpseq0');
  const send = (pairs: Array<[number, number]>, gapMs = 15) => craft(a.ns, [{
    proto: 'udp4', from: UNDERLAY.a4, fromPort: 1799, to: UNDERLAY.b4, toPort: 1750, gapMs,
    hexList: pairs.map(([ns, idx]) => udpData(151, '', l2ssHex(ns), frameHex(idx))),
  }]);
  const stats = () => sessionStats(sites, b).get(151)!;
  const s0 = stats();

  // 1. ns 0,2,1,3: delivered 0,1,2,3.
  send([[0, 100], [2, 102], [1, 101], [3, 103]]);
  await sleep(TIMEOUT + 600);
  const s1 = diff(stats(), s0);
  t.same(cap.frames.map((f) => f.index), [100, 101, 102, 103], 'ns 0,2,1,3 delivered in order 0,1,2,3');
  t.equal(s1.rx_packets, 4, 'four frames delivered');
  t.ok(s1.rx_oos_packets >= 1, `rx_oos_packets counted the reordering (${s1.rx_oos_packets})`);
  t.equal(s1.rx_seq_discards, 0, 'nothing discarded');

  // 2. ns 4,6,7 (5 lost): 6 and 7 are held, then released by the timer with no following packet.
  const n1 = cap.frames.length;
  send([[4, 104], [6, 106], [7, 107]]);
  await sleep(TIMEOUT + 1000);
  const got2 = cap.frames.slice(n1);
  t.same(got2.map((f) => f.index), [104, 106, 107], 'ns 4,6,7: all delivered in order after the gap is given up on');
  if (got2.length === 3) {
    const held = got2[1].ts - got2[0].ts;
    t.ok(held >= TIMEOUT * 0.8 && held <= TIMEOUT + 1000, `frame 6 held ${held.toFixed(0)} ms (reorder_timeout ${TIMEOUT} ms) and released by the timer`);
  }
  const s2 = diff(stats(), s0);
  t.equal(s2.rx_packets, 7, 'seven frames delivered in total');
  t.equal(s2.rx_seq_discards, 0, 'timer release loses nothing that arrived');

  // 3. ns 8,10,11 (9 lost): the same rule checked once more, further along the numbering.
  const n2 = cap.frames.length;
  send([[8, 108], [10, 110], [11, 111]]);
  await sleep(TIMEOUT + 1000);
  t.same(cap.frames.slice(n2).map((f) => f.index), [108, 110, 111], 'ns 8,10,11 (9 lost): delivered in order after the timeout');

  // 4. Peer restart: numbering jumps back to 0. After a bounded number of drops it resyncs.
  const n3 = cap.frames.length;
  const sBefore = stats();
  send(Array.from({ length: 12 }, (_, i) => [i, 200 + i] as [number, number]));
  await sleep(TIMEOUT + 1000);
  const got4 = cap.frames.slice(n3).map((f) => f.index);
  const s4 = diff(stats(), sBefore);
  // docs/sequencing.md: five old-looking numbers in a row are dropped, the sixth resyncs (S9).
  t.same(got4, [205, 206, 207, 208, 209, 210, 211], `after the restart ns 0..4 are dropped and 5..11 delivered in order: ${got4.join(',')}`);
  t.equal(s4.rx_errors, 5, 'the 5 old-looking frames are counted as receive errors');
  await cap.stop();
  t.equal(b.proc?.exitCode ?? null, null, 'daemon still running');
});

t.test('send numbering across a restart and a crash of the sender (docs/sequencing.md "Across restarts")', { skip, timeout: 300000 }, async (t) => {
  const { sites, hA, addrB } = await seqBothPair(t, 160, 161, 2);
  const { a, b } = sites;
  t.equal(sites.ping(hA, addrB, 20, 10), 20, 'before: 20/20 pings');
  const atB = () => sessionStats(sites, b).get(161)!;

  // A stops cleanly and starts again: its first frame carries the number after its last.
  const s0 = atB();
  await sites.stop(a);
  await sites.start(a);
  t.equal(sites.ping(hA, addrB, 10, 10), 10, 'after a restart: 10/10 pings');
  const d1 = diff(atB(), s0);
  t.same([d1.rx_window_drops, d1.rx_seq_discards, d1.rx_seq_resyncs], [0, 0, 0], 'B saw A\'s numbering continue: nothing dropped, no resync');

  // A is killed: its last numbers were not saved exactly, so it resumes ahead, where B's window takes it.
  const s1 = atB();
  await sites.stop(a, 'SIGKILL');
  await sites.start(a);
  // The daemon's output reaches the test asynchronously.
  t.ok(await waitUntil(() => a.log.some((l) => /did not stop cleanly/.test(l)), 5000), 'A says it resumes ahead');
  t.ok(sites.ping(hA, addrB, 10, 10) >= 8, 'after a crash: pings pass (B drops the first 5 frames, then follows)');
  const d2 = diff(atB(), s1);
  t.same([d2.rx_window_drops, d2.rx_seq_discards, d2.rx_seq_resyncs], [0, 5, 1], 'B: 5 out-of-sequence drops, then one resync (as Linux would)');
});
