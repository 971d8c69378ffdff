/**
 * Liveness, live: two l2tpd with hello_interval 1 and hello_retries 2 (down-detection ≤ 1 + 7 s)
 * on a UDP tunnel and an IP tunnel, one session each. tshark decodes the Hellos on the underlay
 * as L2TPv3 control messages of type HELLO (and their ACKs) with the recipient's connection ID,
 * over UDP and over IP. SIGSTOP site B: on site A both tunnels and their sessions go down within
 * the documented time (and not before the retransmissions ran out), the taps show NO-CARRIER,
 * the gauges read 0 and a warning is logged per tunnel. SIGCONT: up within one interval, carrier
 * back, gauges 1, an info line. Against QEMU (-netdev l2tpv3, which sends no Hello), peer_timeout
 * takes the session down when QEMU is stopped and up with its next frame.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { hasCommand, ipLink, netnsUnavailable, stopProcess, waitUntil } from '../helpers/netns.js';
import { startCapture } from '../helpers/capture.js';
import { tsharkFields } from '../helpers/pcap.js';
import { QEMU, startQemuPeer, type QemuPeer } from '../helpers/qemu-peer.js';
import { scrapeMetrics } from '../helpers/scrape.js';
import { Sites, UNDERLAY, sleep, type Daemon } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('curl') && 'curl is not installed')
  || (!hasCommand('tshark') && 'tshark is not installed (Debian package tshark)')
  || (!hasCommand('tcpdump') && 'tcpdump is not installed (needed to capture inside the namespace)');

const PORT = 9702;
const INTERVAL = 1;
const RETRIES = 2;
/** hello_interval + 1 + 2 + 4 s (docs/liveness.md). */
const DOWN_AFTER_S = INTERVAL + 7;
const UDP = { a: 101, b: 201, ports: [5101, 5201] as const };
const IP = { a: 102, b: 202 };

interface View { tunnel_id?: number; session_id?: number; state: string; reason?: string; since?: string }

/** Site `side`'s config file: both tunnels with Hello, a session in each (written before start: l2tpctl is slow on a busy machine). */
function configure(d: Daemon, side: 'a' | 'b'): void {
  const [local, remote] = side === 'a' ? [UNDERLAY.a4, UNDERLAY.b4] : [UNDERLAY.b4, UNDERLAY.a4];
  const other = side === 'a' ? 'b' : 'a';
  const hello = { hello_interval: INTERVAL, hello_retries: RETRIES };
  const [sport, dport] = side === 'a' ? UDP.ports : [UDP.ports[1], UDP.ports[0]];
  mkdirSync(d.dir, { recursive: true });
  writeFileSync(d.config, JSON.stringify({
    tunnels: [
      { tunnel_id: UDP[side], peer_tunnel_id: UDP[other], encap: 'udp', local, remote, udp_sport: sport, udp_dport: dport, ...hello },
      { tunnel_id: IP[side], peer_tunnel_id: IP[other], encap: 'ip', local, remote, ...hello },
    ],
    sessions: [
      { tunnel_id: UDP[side], session_id: 11, peer_session_id: 11, name: `pwu${side}` },
      { tunnel_id: IP[side], session_id: 12, peer_session_id: 12, name: `pwi${side}` },
    ],
  }));
}

t.test('Hello on static tunnels: down when the peer stops, up when it continues', { skip }, async (t) => {
  const sites = new Sites();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'l2t-live-'));
  t.teardown(async () => {
    // A stopped daemon cannot handle SIGTERM: continue it first.
    if (sites.b.proc?.pid) spawnSync('kill', ['-CONT', String(sites.b.proc.pid)]);
    await sites.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const cap = await startCapture(sites.a.ns, path.join(dir, 'hello.pcap'));
  configure(sites.a, 'a');
  configure(sites.b, 'b');
  await Promise.all([sites.start(sites.a, ['--metrics-listen', `127.0.0.1:${PORT}`]), sites.start(sites.b)]);

  const tunnels = (): View[] => sites.api<View>(sites.a, 'tunnels');
  const sessions = (): View[] => sites.api<View>(sites.a, 'sessions');
  /** When the daemon says the last of them changed (its own clock, not this test's polling). */
  const lastChange = (): number => Math.max(...[...tunnels(), ...sessions()].map((v) => Date.parse(v.since!)));
  const allIs = (state: string): boolean => tunnels().every((v) => v.state === state) && sessions().every((v) => v.state === state);
  t.ok(await waitUntil(() => allIs('up'), 5000), 'both tunnels and both sessions up');
  t.match(tunnels()[0].reason, /Hello answered/);
  await sleep(2500); // a few Hellos each way for the capture
  await stopProcess(cap.proc, 'SIGINT', 5000);

  // ---- the wire, judged by tshark
  const FIELDS = ['ip.src', 'ip.proto', 'l2tp.type', 'l2tp.version', 'l2tp.ccid', 'l2tp.avp.message_type'] as const;
  const rows = tsharkFields(path.join(dir, 'hello.pcap'), FIELDS, ['-d', `udp.port==${UDP.ports[0]},l2tp`, '-d', `udp.port==${UDP.ports[1]},l2tp`,
    '-Y', 'l2tp.type == 1'])
    .map((r) => Object.fromEntries(FIELDS.map((f, i) => [f, r[i]])) as Record<(typeof FIELDS)[number], string>);
  const count = (src: string, proto: string, ccid: number, type: number): number => rows.filter((r) => r['ip.src'] === src
    && r['ip.proto'] === proto && r['l2tp.version'] === '3' && Number(r['l2tp.ccid']) === ccid && r['l2tp.avp.message_type'] === String(type)).length;
  for (const [label, proto, ids] of [['UDP', '17', UDP], ['IP', '115', IP]] as const) {
    t.ok(count(UNDERLAY.a4, proto, ids.b, 6) >= 2, `${label}: A's HELLOs to connection ID ${ids.b} (B's tunnel_id): ${count(UNDERLAY.a4, proto, ids.b, 6)}`);
    t.ok(count(UNDERLAY.b4, proto, ids.a, 6) >= 2, `${label}: B's HELLOs to connection ID ${ids.a}: ${count(UNDERLAY.b4, proto, ids.a, 6)}`);
    t.ok(count(UNDERLAY.a4, proto, ids.b, 20) >= 2, `${label}: A acknowledges B's HELLOs with ACKs`);
    t.ok(count(UNDERLAY.b4, proto, ids.a, 20) >= 2, `${label}: and B A's`);
  }
  const wrong = rows.filter((r) => ![UDP.a, UDP.b, IP.a, IP.b].includes(Number(r['l2tp.ccid'])));
  t.same(wrong, [], 'no control message carries any other connection ID');

  const metric = (name: string, labels: string): number | undefined => scrapeMetrics(sites.a.ns, PORT).samples.get(`${name}{${labels}}`);
  t.equal(metric('l2tp_tunnel_up', `tunnel_id="${UDP.a}"`), 1, 'l2tp_tunnel_up 1');
  t.ok((metric('l2tp_tunnel_hello_rtt_seconds', `tunnel_id="${UDP.a}"`) ?? -1) >= 0, 'a Hello round-trip time');

  // ---- SIGSTOP the peer (B was configured after A: A may have seen it down once at start)
  const logged = (level: number, msg: string): number => sites.a.log.filter((l) => l.includes(`"level":${level},`) && l.includes(`"msg":"${msg}"`)).length;
  const before = { warns: logged(40, 'tunnel down'), infos: logged(30, 'tunnel up'), transitions: metric('l2tp_tunnel_transitions_total', `tunnel_id="${UDP.a}"`)! };
  const pid = String(sites.b.proc!.pid);
  const stoppedAt = Date.now();
  spawnSync('kill', ['-STOP', pid]);
  const down = await waitUntil(() => allIs('down'), (DOWN_AFTER_S + 10) * 1000, 100);
  t.ok(down, 'everything down');
  const downAfter = (lastChange() - stoppedAt) / 1000;
  t.ok(downAfter <= DOWN_AFTER_S + 0.3, `down ${downAfter.toFixed(1)} s after SIGSTOP: within the documented ${DOWN_AFTER_S} s`);
  t.ok(downAfter >= 1 + 2 + 4 - INTERVAL, 'and not before the retransmissions ran out');
  for (const v of tunnels()) t.match(v.reason, /no answer to Hello from 192\.0\.2\.2/, `tunnel ${v.tunnel_id}: why`);
  for (const v of sessions()) t.match(v.reason, /tunnel \d+ is down/, `session ${v.session_id}: why`);
  for (const tap of ['pwua', 'pwia']) t.ok(ipLink(sites.a.ns, tap)?.flags.includes('NO-CARRIER'), `${tap}: NO-CARRIER`);
  const m = scrapeMetrics(sites.a.ns, PORT).samples;
  t.equal(m.get(`l2tp_tunnel_up{tunnel_id="${UDP.a}"}`), 0, 'l2tp_tunnel_up 0 (UDP)');
  t.equal(m.get(`l2tp_tunnel_up{tunnel_id="${IP.a}"}`), 0, 'l2tp_tunnel_up 0 (IP)');
  t.equal(m.get(`l2tp_session_up{tunnel_id="${UDP.a}",session_id="11",interface="pwua"}`), 0, 'l2tp_session_up 0');
  await sleep(300);
  t.equal(logged(40, 'tunnel down') - before.warns, 2, 'one warning per tunnel');

  // ---- SIGCONT
  const continuedAt = Date.now();
  spawnSync('kill', ['-CONT', pid]);
  const up = await waitUntil(() => allIs('up'), 10000, 100);
  t.ok(up, 'up again');
  const upAfter = (lastChange() - continuedAt) / 1000;
  t.ok(upAfter <= INTERVAL, `up ${upAfter.toFixed(2)} s after SIGCONT: within one interval`);
  for (const tap of ['pwua', 'pwia']) t.ok(ipLink(sites.a.ns, tap)?.flags.includes('LOWER_UP'), `${tap}: carrier back`);
  t.equal(metric('l2tp_tunnel_up', `tunnel_id="${IP.a}"`), 1, 'l2tp_tunnel_up 1 again');
  t.equal(metric('l2tp_tunnel_transitions_total', `tunnel_id="${UDP.a}"`)! - before.transitions, 2, 'two transitions: down, up');
  await sleep(300); // let the daemon's stdout reach this process (the checks above block its loop)
  t.equal(logged(30, 'tunnel up') - before.infos, 2, 'an info line per tunnel');
});

const qemuSkip = skip || (!hasCommand(QEMU) && `${QEMU} is not installed (Debian package qemu-system-x86)`)
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed');

t.test('peer_timeout against QEMU (no Hello): down when QEMU stops, up when it continues', { skip: qemuSkip }, async (t) => {
  const sites = new Sites();
  let qemu: QemuPeer | undefined;
  t.teardown(async () => {
    if (qemu?.proc.pid) spawnSync('kill', ['-CONT', String(qemu.proc.pid)]);
    await qemu?.stop();
    await sites.close();
  });
  const TIMEOUT = 2;
  mkdirSync(sites.a.dir, { recursive: true });
  writeFileSync(sites.a.config, JSON.stringify({
    tunnels: [{ tunnel_id: 301, peer_tunnel_id: 301, encap: 'udp', local: UNDERLAY.a4, remote: UNDERLAY.b4, udp_sport: 5301, udp_dport: 5302 }],
    sessions: [{ name: 'pwpt', tunnel_id: 301, session_id: 3001, peer_session_id: 3002, l2spec_type: 'none', bridge: 'brpt', peer_timeout: TIMEOUT }],
  }));
  await sites.start(sites.a, ['--metrics-listen', `127.0.0.1:${PORT}`]);
  const hostA = sites.host(sites.a, 'brpt', '198.51.100.1/24');
  const hostB = sites.host(sites.b, 'brq', '198.51.100.2/24');
  qemu = await startQemuPeer(sites.b.ns, {
    tap: 'tqpt', local: UNDERLAY.b4, remote: UNDERLAY.a4, udp: true, srcport: 5302, dstport: 5301, txsession: 3001, rxsession: 3002,
  });
  spawnSync('ip', ['-n', sites.b.ns, 'link', 'set', 'tqpt', 'master', 'brq', 'up']);
  // Frames from QEMU's side, every 0.2 s for the whole test (bounded by count and deadline).
  const pinger = spawn('ip', ['netns', 'exec', hostB, 'ping', '-q', '-i', '0.2', '-c', '150', '-w', '40', '198.51.100.1'], { stdio: 'ignore' });
  t.teardown(() => stopProcess(pinger, 'SIGINT', 2000));
  const session = (): { state: string; reason: string; since: string } => sites.api<{ state: string; reason: string; since: string }>(
    sites.a, 'sessions?tunnel_id=301')[0];
  t.ok(await waitUntil(() => session().state === 'up', 10000, 200), 'up with frames from QEMU');
  t.match(session().reason, /frames from the peer/);
  t.ok(sites.ping(hostA, '198.51.100.2', 2, 5) >= 1, 'and the pseudowire carries them both ways');

  const pid = String(qemu.proc.pid);
  const stoppedAt = Date.now();
  spawnSync('kill', ['-STOP', pid]);
  t.ok(await waitUntil(() => session().state === 'down', (TIMEOUT + 6) * 1000, 200), 'down once QEMU stopped');
  const s = session();
  const downAfter = (Date.parse(s.since) - stoppedAt) / 1000;
  t.ok(downAfter >= TIMEOUT - 0.3 && downAfter <= TIMEOUT + 0.6, `${downAfter.toFixed(2)} s after SIGSTOP: peer_timeout ${TIMEOUT} s (+ the 0.25 s check)`);
  t.match(s.reason, /no frame from the peer for 2 s \(peer_timeout\)/);
  t.ok(ipLink(sites.a.ns, 'pwpt')?.flags.includes('NO-CARRIER'), 'the tap shows NO-CARRIER');
  t.equal(scrapeMetrics(sites.a.ns, PORT).samples.get('l2tp_session_up{tunnel_id="301",session_id="3001",interface="pwpt"}'), 0,
    'l2tp_session_up 0');

  const continuedAt = Date.now();
  spawnSync('kill', ['-CONT', pid]);
  t.ok(await waitUntil(() => session().state === 'up', 5000, 200), 'up again when QEMU continues');
  const upAfter = (Date.parse(session().since) - continuedAt) / 1000;
  t.ok(upAfter <= 1, `${upAfter.toFixed(2)} s after SIGCONT: with the next frame (pings every 0.2 s, checked every 0.25 s)`);
  t.ok(ipLink(sites.a.ns, 'pwpt')?.flags.includes('LOWER_UP'), 'carrier back');
  t.equal(scrapeMetrics(sites.a.ns, PORT).samples.get('l2tp_session_up{tunnel_id="301",session_id="3001",interface="pwpt"}'), 1,
    'l2tp_session_up 1');
  await sleep(300);
  t.ok(sites.a.log.some((l) => l.includes('"level":40,') && l.includes('"msg":"session down"')), 'a warning when it went down');
});
