/**
 * Tap offload end to end (l2tpd --offload, on by default): hosts behind two l2tpd send TCP through
 * the pseudowire. Site A's tap is handed the host's TCP super-frames (TSO) and cuts them into
 * segments; site B merges what arrives back into super-frames for its tap. Judged by the byte
 * stream (SHA-256 at both ends), by tshark on the underlay (every segment within the MTU, every
 * inner TCP checksum correct) and by a capture on the tap (super-frames reach it only with offload).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startCapture } from '../helpers/capture.js';
import { hasCommand, netnsUnavailable, nsExec, nsRun, stopProcess } from '../helpers/netns.js';
import { Sites, UNDERLAY, tunnelWords } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand('tshark') && 'tshark is not installed (Debian package tshark)')
  || (!hasCommand('tcpdump') && 'tcpdump is not installed (needed to capture inside the namespace)');

const PORT = 1701;
const MIB = 4;

// Receives one connection and prints its length and SHA-256. Bounded by a 30 s timer.
const SERVER = `const net = require('net'), crypto = require('crypto');
const [addr, port] = process.argv.slice(1);
const h = crypto.createHash('sha256'); let bytes = 0;
net.createServer((c) => {
  c.on('data', (d) => { h.update(d); bytes += d.length; });
  c.on('end', () => { console.log(JSON.stringify({ bytes, sha: h.digest('hex') })); process.exit(0); });
}).listen(Number(port), addr, () => console.log('listening'));
setTimeout(() => { console.log(JSON.stringify({ timeout: true, bytes })); process.exit(1); }, 30000);`;
// Sends MiB random bytes and prints their length and SHA-256.
const CLIENT = `const net = require('net'), crypto = require('crypto');
const [addr, port, mib] = process.argv.slice(1);
const data = crypto.randomBytes(Number(mib) * 1048576);
const c = net.connect(Number(port), addr, () => c.end(data));
c.on('close', () => console.log(JSON.stringify({ bytes: data.length, sha: crypto.createHash('sha256').update(data).digest('hex') })));
c.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
setTimeout(() => process.exit(1), 30000).unref();`;

/** One TCP transfer from host `from` to `to` (listening on addr); both ends' length and hash. */
async function transfer(from: string, to: string, addr: string, port: number): Promise<{ sent: unknown; received: unknown }> {
  const server = spawn('ip', ['netns', 'exec', to, process.execPath, '-e', SERVER, addr, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  const deadline = Date.now() + 10000;
  while (!out.includes('listening') && Date.now() < deadline && server.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  const client = nsRun(from, process.execPath, ['-e', CLIENT, addr, String(port), String(MIB)], 40000);
  const exited = new Promise((r) => server.once('exit', r));
  if (server.exitCode === null) await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
  await stopProcess(server);
  const last = (s: string) => { try { return JSON.parse(s.trim().split('\n').pop() ?? ''); } catch { return s; } };
  return { sent: last(client.stdout ?? ''), received: last(out) };
}

/** Inner TCP segments with payload in an underlay capture: frame length and tshark's checksum verdict. */
function innerSegments(file: string): Array<{ frameLen: number; checksum: string }> {
  const r = spawnSync('tshark', ['-r', file, '-n', '-d', `udp.port==${PORT},l2tp`, '-o', 'l2tp.cookie_size:cookie0',
    '-o', 'l2tp.l2_specific:default', '-d', 'l2tp.pw_type==0,eth', '-o', 'tcp.check_checksum:TRUE',
    '-Y', 'l2tp && tcp.len > 0', '-T', 'fields', '-E', 'separator=|', '-e', 'frame.len', '-e', 'tcp.checksum.status'],
  { encoding: 'utf8', timeout: 120000 });
  return (r.stdout ?? '').split('\n').filter(Boolean).map((l) => {
    const [len, status] = l.split('|');
    return { frameLen: Number(len), checksum: status };
  });
}

/** Frames longer than any MTU-sized Ethernet frame in a capture (tcpdump sees a super-frame whole). */
function superFrames(file: string): number {
  const r = spawnSync('tshark', ['-r', file, '-n', '-Y', 'frame.len > 3000', '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', timeout: 60000 });
  return (r.stdout ?? '').split('\n').filter(Boolean).length;
}

t.test('TCP through offload taps: intact byte stream, MTU-sized segments with valid checksums on the wire', { skip, timeout: 240000 }, async (t) => {
  const sites = new Sites();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'l2tpd-offload-'));
  t.teardown(async () => {
    await sites.close();
    rmSync(tmp, { recursive: true, force: true });
  });
  await sites.start(sites.a);
  await sites.start(sites.b);
  sites.ok(sites.a, tunnelWords(1, 'udp', UNDERLAY.a4, UNDERLAY.b4, [PORT, PORT]));
  sites.ok(sites.b, tunnelWords(1, 'udp', UNDERLAY.b4, UNDERLAY.a4, [PORT, PORT]));
  for (const d of [sites.a, sites.b]) {
    sites.ok(d, ['add', 'session', 'name', 'pwo0', 'tunnel_id', '1', 'session_id', '1', 'peer_session_id', '1', 'bridge', 'bro']);
  }
  const hostA = sites.host(sites.a, 'bro', '203.0.113.1/24');
  const hostB = sites.host(sites.b, 'bro', '203.0.113.2/24');
  nsExec(hostA, 'ip', ['-6', 'addr', 'add', '2001:db8:5::1/64', 'dev', 'eth0', 'nodad']);
  nsExec(hostB, 'ip', ['-6', 'addr', 'add', '2001:db8:5::2/64', 'dev', 'eth0', 'nodad']);
  t.match(nsExec(sites.a.ns, 'ip', ['-d', 'link', 'show', 'pwo0']), /gso_max_segs 64 /, 'the session tap is capped at 64 segments per super-frame');
  t.ok(sites.ping(hostA, '203.0.113.2') >= 2, 'ping through the pseudowire');

  const wire = path.join(tmp, 'underlay.pcap');
  const tap = path.join(tmp, 'tap.pcap');
  const wireCap = await startCapture(sites.a.ns, wire);
  const tapCap = await startCapture(sites.a.ns, tap, 'pwo0');
  const tapB = path.join(tmp, 'tap-b.pcap');
  const tapBCap = await startCapture(sites.b.ns, tapB, 'pwo0');
  const runs: Array<[string, string, string, string, number]> = [
    ['IPv4, A to B', hostA, hostB, '203.0.113.2', 5301],
    ['IPv6, A to B', hostA, hostB, '2001:db8:5::2', 5302],
    ['IPv4, B to A', hostB, hostA, '203.0.113.1', 5303],
  ];
  for (const [label, from, to, addr, port] of runs) {
    const r = await transfer(from, to, addr, port);
    t.match(r.sent, { bytes: MIB * 1048576 }, `${label}: ${MIB} MiB sent`);
    t.same(r.received, r.sent, `${label}: received the same bytes (length and SHA-256)`);
  }
  await stopProcess(wireCap.proc, 'SIGINT');
  await stopProcess(tapCap.proc, 'SIGINT');
  await stopProcess(tapBCap.proc, 'SIGINT');

  t.ok(superFrames(tap) > 0, 'the host\'s TCP super-frames reached site A\'s tap (TSO in use)');
  t.ok(superFrames(tapB) > 0, 'site B wrote merged super-frames to its tap');
  const segs = innerSegments(wire);
  t.ok(segs.length > 1000, `tshark found ${segs.length} inner TCP segments with payload on the underlay`);
  t.same(segs.filter((s) => s.frameLen > 1514), [], 'every encapsulated segment fits the underlay MTU (1500)');
  t.same(segs.filter((s) => s.checksum !== '1'), [], 'tshark verified every inner TCP checksum as good');

  // The switch: restarted with --offload off, the daemons re-attach the same taps without offload.
  for (const d of [sites.a, sites.b]) {
    await sites.stop(d);
    await sites.start(d, ['--offload', 'off']);
  }
  t.ok(sites.ping(hostA, '203.0.113.2', 5, 10) >= 2, '--offload off: ping through the pseudowire');
  const tapOff = path.join(tmp, 'tap-off.pcap');
  const tapOffB = path.join(tmp, 'tap-off-b.pcap');
  const offCap = await startCapture(sites.a.ns, tapOff, 'pwo0');
  const offCapB = await startCapture(sites.b.ns, tapOffB, 'pwo0');
  const r = await transfer(hostA, hostB, '203.0.113.2', 5304);
  t.match(r.sent, { bytes: MIB * 1048576 }, `--offload off: ${MIB} MiB sent`);
  await stopProcess(offCap.proc, 'SIGINT');
  await stopProcess(offCapB.proc, 'SIGINT');
  t.same(r.received, r.sent, '--offload off: the same bytes arrive');
  t.equal(superFrames(tapOff), 0, '--offload off: the kernel segments before the tap (offloads cleared on the re-attached tap)');
  t.equal(superFrames(tapOffB), 0, '--offload off: site B writes segments one by one');
});
