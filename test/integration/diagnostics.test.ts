/**
 * Mismatch diagnostics, live: site A's l2tpd against peers configured wrong on purpose — l2tpd
 * on site B and QEMU -netdev l2tpv3 forwarders — and `show tunnel -s` / `show session -s`
 * (and -j) must name each mismatch with the value the peer sent and the word to change:
 * - l2tpd peers: a session ID that matches no session, a peer that numbers its frames while A
 *   sends none (seq_mirror off), one that does not number them while A requires numbers, Hellos to a tunnel
 *   without hello_interval (and, on B, nothing ever answering its Hellos), Hellos for another
 *   connection ID; and the pairing the README recommends (A seq none with seq_mirror on, the
 *   peer seq both as on Linux), which is no mismatch: A numbers its frames once the peer does;
 * - QEMU peers: a wrong cookie, a source port other than udp_dport, no sublayer where A expects
 *   one, and a 4-byte counter where A expects none.
 * Traffic: a host behind each of B's sessions and QEMU taps pings the subnet's broadcast address
 * every 0.2 s (Ethernet broadcasts, no ARP needed), for a bounded time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { hasCommand, netnsUnavailable, nsExec, stopProcess, waitUntil } from '../helpers/netns.js';
import { QEMU, startQemuPeer, type QemuPeer } from '../helpers/qemu-peer.js';
import { Sites, UNDERLAY } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand(QEMU) && `${QEMU} is not installed (Debian package qemu-system-x86)`);

interface Diagnostic { kind: string; word: string; seen: string; count: number; message: string }
interface View { tunnel_id: number; session_id?: number; tx_seq?: string; diagnostics?: Diagnostic[] }

/** A pair of UDP tunnels (A: id, B: id) on ports 6000+2n / 6001+2n, with words for each side. */
interface L2tpdCase {
  label: string;
  tunnelA?: string[];
  tunnelB?: string[];
  sessionA: string[];
  sessionB: string[];
  /** Where to look on A ('tunnel' or 'session') and what must be there. */
  on: 'tunnel' | 'session';
  kind: string;
  word: string;
  seen: string | RegExp;
  message: RegExp;
}

const L2TPD: L2tpdCase[] = [
  { label: 'unknown session ID', sessionA: ['session_id', '4001', 'peer_session_id', '4002'],
    sessionB: ['session_id', '4002', 'peer_session_id', '4011'],
    on: 'tunnel', kind: 'unknown_session', word: 'peer_session_id', seen: '4011', message: /did you mean peer_session_id 4001 on the peer/ },
  { label: 'the peer numbers its frames, A sends none',
    sessionA: ['session_id', '4021', 'peer_session_id', '4021', 'seq', 'none', 'seq_mirror', 'off'],
    // seq both, as Linux: B keeps numbering (with seq send, A's unnumbered frames would turn it off).
    sessionB: ['session_id', '4021', 'peer_session_id', '4021', 'seq', 'both'],
    on: 'session', kind: 'peer_numbers_frames', word: 'seq', seen: /^sequence numbers/, message: /set seq both \(or seq_mirror on\) here/ },
  { label: 'A requires numbers, the peer sends none', sessionA: ['session_id', '4031', 'peer_session_id', '4031', 'seq', 'recv'],
    sessionB: ['session_id', '4031', 'peer_session_id', '4031'],
    on: 'session', kind: 'peer_does_not_number_frames', word: 'seq', seen: 'no sequence numbers', message: /set seq none here/ },
  { label: 'Hellos to a tunnel without hello_interval', tunnelB: ['hello_interval', '1', 'hello_retries', '1'],
    sessionA: ['session_id', '4041', 'peer_session_id', '4041'], sessionB: ['session_id', '4041', 'peer_session_id', '4041'],
    on: 'tunnel', kind: 'hello_not_enabled', word: 'hello_interval', seen: 'HELLO', message: /set hello_interval here/ },
  { label: 'Hellos for another connection ID', tunnelA: ['hello_interval', '1'], tunnelB: ['hello_interval', '1', 'peer_tunnel_id', '499'],
    sessionA: ['session_id', '4051', 'peer_session_id', '4051'], sessionB: ['session_id', '4051', 'peer_session_id', '4051'],
    on: 'tunnel', kind: 'connection_id', word: 'peer_tunnel_id', seen: '499', message: /set peer_tunnel_id 405 on the peer/ },
];

/** No mismatch: A seq none follows the peer's numbering (seq_mirror on), B requires numbers (seq both). */
const MIRRORED = {
  sessionA: ['session_id', '4061', 'peer_session_id', '4061', 'seq', 'none'],
  sessionB: ['session_id', '4061', 'peer_session_id', '4061', 'seq', 'both'],
};

interface QemuCase {
  label: string;
  sessionA: string[];
  qemu: string[];
  /** QEMU's source port, when not the one A expects. */
  srcport?: number;
  on: 'tunnel' | 'session';
  kind: string;
  word: string;
  seen: string | RegExp;
  message: RegExp;
}

const QEMUS: QemuCase[] = [
  { label: 'wrong cookie (QEMU)', sessionA: ['l2spec_type', 'none', 'cookie', '11223344', 'peer_cookie', 'cafef00d'],
    qemu: ['txcookie=0xdeadbeef', 'rxcookie=0x11223344'],
    on: 'session', kind: 'cookie', word: 'peer_cookie', seen: 'deadbeef', message: /set peer_cookie deadbeef here, or cookie cafef00d on the peer/ },
  { label: 'another source port (QEMU)', sessionA: ['l2spec_type', 'none'], qemu: [], srcport: 6999,
    on: 'tunnel', kind: 'foreign_source', word: 'udp_dport', seen: `${UNDERLAY.b4}:6999`, message: /set udp_dport 6999/ },
  { label: 'no sublayer where A expects one (QEMU)', sessionA: ['l2spec_type', 'default'], qemu: [],
    on: 'session', kind: 'sublayer', word: 'l2spec_type', seen: 'frames 4 bytes earlier', message: /set l2spec_type none here/ },
  { label: 'a 4-byte counter where A expects no sublayer (QEMU)', sessionA: ['l2spec_type', 'none'], qemu: ['counter=on'],
    on: 'session', kind: 'sublayer', word: 'l2spec_type', seen: 'frames 4 bytes later', message: /set l2spec_type default here/ },
];

t.test('mismatches are named with the value seen and the word to change', { skip }, async (t) => {
  const sites = new Sites();
  const qemus: QemuPeer[] = [];
  const pingers: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of pingers) await stopProcess(p, 'SIGINT', 2000);
    for (const q of qemus) await q.stop();
    await sites.close();
  });
  // Both daemons start from config files (l2tpctl, a node process per call, is slow on a busy
  // machine); the words are the same.
  const cfg = { a: { tunnels: [] as object[], sessions: [] as object[] }, b: { tunnels: [] as object[], sessions: [] as object[] } };
  const fields = (words: string[] = []): Record<string, string> => Object.fromEntries(words.flatMap((w, k) => (k % 2 ? [] : [[w, words[k + 1]]])));
  const tunnel = (id: number, local: string, remote: string, sport: number, dport: number, words?: string[]): object => ({
    tunnel_id: id, peer_tunnel_id: id, encap: 'udp', local, remote, udp_sport: sport, udp_dport: dport, ...fields(words),
  });
  const where: Array<{ label: string; tunnel: number; c: L2tpdCase | QemuCase }> = [];
  const talkers: string[] = [];
  let n = 0;
  for (const c of L2TPD) {
    n++;
    const id = 400 + n;
    const [pa, pb] = [6000 + 2 * n, 6001 + 2 * n];
    cfg.a.tunnels.push(tunnel(id, UNDERLAY.a4, UNDERLAY.b4, pa, pb, c.tunnelA));
    cfg.b.tunnels.push(tunnel(id, UNDERLAY.b4, UNDERLAY.a4, pb, pa, c.tunnelB));
    cfg.a.sessions.push({ name: `pda${n}`, tunnel_id: id, ...fields(c.sessionA) });
    cfg.b.sessions.push({ name: `pdb${n}`, tunnel_id: id, ...fields(c.sessionB), bridge: `brd${n}` });
    talkers[n] = `brd${n}`;
    where.push({ label: c.label, tunnel: id, c });
  }
  const mirrored = ++n;
  {
    const [id, pa, pb] = [400 + n, 6000 + 2 * n, 6001 + 2 * n];
    cfg.a.tunnels.push(tunnel(id, UNDERLAY.a4, UNDERLAY.b4, pa, pb));
    cfg.b.tunnels.push(tunnel(id, UNDERLAY.b4, UNDERLAY.a4, pb, pa));
    cfg.a.sessions.push({ name: `pda${n}`, tunnel_id: id, ...fields(MIRRORED.sessionA), bridge: `bra${n}` });
    cfg.b.sessions.push({ name: `pdb${n}`, tunnel_id: id, ...fields(MIRRORED.sessionB), bridge: `brd${n}` });
    talkers[n] = `brd${n}`;
  }
  const firstQemu = n + 1;
  for (const c of QEMUS) {
    n++;
    const id = 400 + n;
    const sid = 0x4000 + n;
    cfg.a.tunnels.push(tunnel(id, UNDERLAY.a4, UNDERLAY.b4, 6000 + 2 * n, 6001 + 2 * n));
    cfg.a.sessions.push({ name: `pda${n}`, tunnel_id: id, session_id: sid, peer_session_id: sid + 0x100, ...fields(c.sessionA) });
    talkers[n] = `brd${n}`;
    where.push({ label: c.label, tunnel: id, c });
  }
  for (const side of ['a', 'b'] as const) {
    mkdirSync(sites[side].dir, { recursive: true });
    writeFileSync(sites[side].config, JSON.stringify(cfg[side]));
  }
  await Promise.all([sites.start(sites.a), sites.start(sites.b)]);
  for (let q = firstQemu; q <= n; q++) {
    const c = QEMUS[q - firstQemu];
    const sid = 0x4000 + q;
    const tap = `tqd${q}`;
    qemus.push(await startQemuPeer(sites.b.ns, {
      tap, local: UNDERLAY.b4, remote: UNDERLAY.a4, udp: true, srcport: c.srcport ?? 6001 + 2 * q, dstport: 6000 + 2 * q,
      txsession: sid, rxsession: sid + 0x100, extra: c.qemu,
    }));
    nsExec(sites.b.ns, 'ip', ['link', 'add', talkers[q], 'type', 'bridge']);
    nsExec(sites.b.ns, 'ip', ['link', 'set', talkers[q], 'up']);
    nsExec(sites.b.ns, 'ip', ['link', 'set', tap, 'master', talkers[q], 'up']);
  }
  // A host behind each of B's bridges; then all of them send an Ethernet broadcast every 0.2 s, for at most 30 s.
  const hosts = talkers.map((bridge, k) => (bridge ? sites.host(sites.b, bridge, `198.51.100.${k * 4 + 2}/30`) : ''));
  const mirroredHostA = sites.host(sites.a, `bra${mirrored}`, `198.51.100.${mirrored * 4 + 1}/30`);
  hosts.forEach((h, k) => {
    if (!h) return;
    pingers.push(spawn('ip', ['netns', 'exec', h, 'ping', '-q', '-b', '-i', '0.2', '-c', '150', '-w', '30', `198.51.100.${k * 4 + 3}`],
      { stdio: 'ignore' }));
  });

  /** What A shows now: `show tunnel -s -j` and `show session -s -j`, all of them at once. */
  let views: Record<'tunnel' | 'session', View[]> = { tunnel: [], session: [] };
  const look = (): void => {
    views = { tunnel: sites.json<View[]>(sites.a, ['show', 'tunnel', '-s']), session: sites.json<View[]>(sites.a, ['show', 'session', '-s']) };
  };
  const found = (w: (typeof where)[number]): Diagnostic | undefined => views[w.c.on].filter((v) => v.tunnel_id === w.tunnel)
    .flatMap((v) => v.diagnostics ?? []).find((d) => d.kind === w.c.kind);
  // Sample-based findings need three samples a second apart; the rest appear at the first packet.
  const all = await waitUntil(() => { look(); return where.every((w) => found(w) !== undefined); }, 25000, 1000);
  t.ok(all, 'every mismatch found');
  for (const w of where) {
    const d = found(w);
    if (!d) { t.fail(`${w.label}: not reported`); continue; }
    t.equal(d.word, w.c.word, `${w.label}: the word to change is ${w.c.word}`);
    if (typeof w.c.seen === 'string') t.equal(d.seen, w.c.seen, `${w.label}: seen ${w.c.seen}`);
    else t.match(d.seen, w.c.seen, `${w.label}: seen ${d.seen}`);
    t.match(d.message, w.c.message, `${w.label}: ${d.message}`);
    t.ok(d.count > 0, `${w.label}: from ${d.count} packets or samples`);
  }
  // seq_mirror on: B's numbered frames turned A's numbering on, so B (seq both) takes A's frames.
  t.ok(sites.ping(mirroredHostA, `198.51.100.${mirrored * 4 + 2}`) > 0, 'seq_mirror on: traffic flows to a peer that requires numbers');
  look();
  const m = views.session.find((v) => v.tunnel_id === 400 + mirrored);
  t.equal(m?.tx_seq, 'on', 'seq_mirror on: A numbers its frames since the peer does');
  t.same((m?.diagnostics ?? []).map((d) => d.kind), [], 'seq_mirror on: no mismatch reported');
  // The text form: `show tunnel -s` of the unknown-session case.
  const text = sites.ok(sites.a, ['show', 'tunnel', 'tunnel_id', '401', '-s']);
  t.match(text, /^ {2}diagnostics:\n {4}unknown_session: .*session ID 4011.*peer_session_id 4001.*\(seen 4011; \d+×, last /m, 'show tunnel -s prints it');
  const plain = sites.ok(sites.a, ['show', 'tunnel', 'tunnel_id', '401']);
  t.notMatch(plain, /diagnostics:/, 'show without -s does not');
  // B's side of the Hello case: nothing ever answers its Hellos.
  const b = sites.json<View[]>(sites.b, ['show', 'tunnel', 'tunnel_id', '404', '-s'])[0];
  const none = (b.diagnostics ?? []).find((d) => d.kind === 'no_hello_answer');
  t.ok(none, "B: nothing answers its Hellos (A has no hello_interval)");
  t.match(none?.message, /use peer_timeout on the sessions instead/);
});
