/**
 * The wire, judged by tshark: capture what l2tpd on site A sends on the underlay while a host
 * behind it pings a host behind site B, then let tshark (an independent dissector,
 * docs/protocol.md "Wireshark and tshark") decode the capture with the session's cookie size and sublayer type.
 * Asserted per packet: version 3, data message, reserved zero (UDP), the configured peer session
 * ID, the cookie, the S bit and consecutive sequence numbers from 0 (`seq send`/`both`) or S=0
 * (`seq none` with the default sublayer), and the inner Ethernet frame intact (ICMP echo requests
 * from host A's MAC/address to host B's). Covers UDP and IP encapsulation, IPv4 and IPv6
 * underlays, cookies of 0/4/8 bytes, l2spec none/default. The `seq send` case faces a `seq recv`
 * peer, which sends no numbers: it uses `seq_mirror off`, since with Linux's rule the peer's first
 * unnumbered frame would switch A's numbering off (docs/sequencing.md "Sending"). Then the outer
 * header: the tunnel words `ttl` and `tos` show in every packet's IPv4 TTL/TOS or IPv6 hop
 * limit/traffic class.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { hasCommand, linkAddress, netnsUnavailable, nsExec, stopProcess } from '../helpers/netns.js';
import { startCapture } from '../helpers/capture.js';
import { tsharkFields } from '../helpers/pcap.js';
import { Sites, UNDERLAY, sleep, tunnelWords } from '../helpers/sites.js';

const skip = netnsUnavailable()
  || (!hasCommand('ping') && 'ping (iputils-ping) is not installed')
  || (!hasCommand('tshark') && 'tshark is not installed (Debian package tshark)')
  || (!hasCommand('tcpdump') && 'tcpdump is not installed (needed to capture inside the namespace)');

interface Case {
  label: string;
  encap: 'udp' | 'ip';
  v6: boolean;
  cookie: string;
  l2spec: 'none' | 'default';
  /** Sequencing on A (the side captured) and on B. */
  seqA: 'none' | 'send' | 'both';
  seqB: 'none' | 'recv' | 'both';
  /** A's seq_mirror, when not the default. */
  mirrorA?: 'off';
}

const CASES: Case[] = [
  { label: 'udp/IPv4 cookie4 default seq both', encap: 'udp', v6: false, cookie: '0badcafe', l2spec: 'default', seqA: 'both', seqB: 'both' },
  { label: 'udp/IPv6 cookie8 default seq send seq_mirror off', encap: 'udp', v6: true, cookie: '014d3636deadbeef', l2spec: 'default', seqA: 'send', seqB: 'recv', mirrorA: 'off' },
  { label: 'udp/IPv4 cookie0 none', encap: 'udp', v6: false, cookie: '', l2spec: 'none', seqA: 'none', seqB: 'none' },
  { label: 'ip/IPv4 cookie8 default seq both', encap: 'ip', v6: false, cookie: '0102030405060708', l2spec: 'default', seqA: 'both', seqB: 'both' },
  { label: 'ip/IPv6 cookie4 none', encap: 'ip', v6: true, cookie: 'deadbeef', l2spec: 'none', seqA: 'none', seqB: 'none' },
  { label: 'ip/IPv4 cookie0 default seq none', encap: 'ip', v6: false, cookie: '', l2spec: 'default', seqA: 'none', seqB: 'none' },
];

const FIELDS = ['frame.number', 'l2tp.version', 'l2tp.type', 'l2tp.res', 'l2tp.sid', 'l2tp.cookie', 'l2tp.l2_spec_s',
  'l2tp.l2_spec_sequence', 'eth.src', 'eth.dst', 'eth.type', 'ip.src', 'ip.dst', 'icmp.type'] as const;
type Row = Record<(typeof FIELDS)[number], string>;

function decode(file: string, c: Case, port: number, src: string): { rows: Row[]; stderr: string } {
  const args = ['-r', file, '-n',
    '-o', `l2tp.cookie_size:cookie${c.cookie.length / 2}`,
    '-o', `l2tp.l2_specific:${c.l2spec}`,
    '-d', 'l2tp.pw_type==0,eth',
    ...(c.encap === 'udp' ? ['-d', `udp.port==${port},l2tp`] : []),
    '-Y', `l2tp && ${c.v6 ? 'ipv6' : 'ip'}.src == ${src}`,
    // Outer and inner headers share field names (eth.*, ip.* on an IPv4 underlay): take the last
    // occurrence, which is the frame inside the pseudowire.
    '-T', 'fields', '-E', 'occurrence=l', '-E', 'separator=|', ...FIELDS.flatMap((f) => ['-e', f])];
  const r = spawnSync('tshark', args, { encoding: 'utf8', timeout: 60000 });
  const rows = (r.stdout ?? '').split('\n').filter(Boolean).map((line) => {
    const v = line.split('|');
    return Object.fromEntries(FIELDS.map((f, i) => [f, v[i] ?? ''])) as Row;
  });
  return { rows, stderr: `${r.error ?? ''}${r.stderr ?? ''}` };
}

const truthy = (v: string) => v === '1' || v.toLowerCase() === 'true';

/** Two running sites, a temporary directory for captures, and a teardown that stops both. */
async function capturingSites(t: tap.Test, prefix: string): Promise<{ sites: Sites; tmp: string; captures: ChildProcess[] }> {
  const sites = new Sites();
  const tmp = mkdtempSync(path.join(os.tmpdir(), prefix));
  const captures: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of captures) await stopProcess(p, 'SIGINT');
    await sites.close();
    if (!process.env.L2TPD_KEEP_PCAP) rmSync(tmp, { recursive: true, force: true });
  });
  await sites.start(sites.a);
  await sites.start(sites.b);
  return { sites, tmp, captures };
}

t.test('tshark decodes what l2tpd sends', { skip }, async (t) => {
  const { sites, tmp, captures } = await capturingSites(t, 'l2tpd-wire-');

  let n = 0;
  for (const c of CASES) {
    n++;
    const id = 700 + n;
    const port = 5000 + n;
    const sidA = 0x2000 + n; // A's own session id
    const sidB = 0x3000 + n; // B's session id = what A writes on the wire
    const [a, b] = c.v6 ? [UNDERLAY.a6, UNDERLAY.b6] : [UNDERLAY.a4, UNDERLAY.b4];
    sites.ok(sites.a, tunnelWords(id, c.encap, a, b, [port, port]));
    sites.ok(sites.b, tunnelWords(id, c.encap, b, a, [port, port]));

    const file = path.join(tmp, `case${n}.pcap`);
    const cap = await startCapture(sites.a.ns, file);
    captures.push(cap.proc);

    const bridge = `brw${n}`;
    const addrA = `203.0.113.${n * 4 + 1}`;
    const addrB = `203.0.113.${n * 4 + 2}`;
    const hostA = sites.host(sites.a, bridge, `${addrA}/30`);
    const hostB = sites.host(sites.b, bridge, `${addrB}/30`);
    const cookie = c.cookie ? ['cookie', c.cookie, 'peer_cookie', c.cookie] : [];
    sites.ok(sites.a, ['add', 'session', 'name', `pww${n}`, 'tunnel_id', String(id), 'session_id', String(sidA),
      'peer_session_id', String(sidB), 'l2spec_type', c.l2spec, 'seq', c.seqA, ...(c.mirrorA ? ['seq_mirror', c.mirrorA] : []), ...cookie, 'bridge', bridge]);
    sites.ok(sites.b, ['add', 'session', 'name', `pww${n}`, 'tunnel_id', String(id), 'session_id', String(sidB),
      'peer_session_id', String(sidA), 'l2spec_type', c.l2spec, 'seq', c.seqB, ...cookie, 'bridge', bridge]);

    const got = sites.ping(hostA, addrB, 4, 8);
    t.ok(got >= 3, `${c.label}: ping through the pseudowire (${got}/4)`);
    await sleep(500);
    await stopProcess(cap.proc, 'SIGINT');
    t.ok(statSync(file).size > 24, `${c.label}: capture written`);

    const { rows, stderr } = decode(file, c, port, a);
    t.ok(rows.length >= got, `${c.label}: tshark decoded ${rows.length} L2TP packets from l2tpd`);
    if (rows.length === 0) { t.comment(stderr); continue; }
    const bad = (pred: (r: Row) => boolean) => rows.filter((r) => !pred(r)).map((r) => r['frame.number']);
    if (c.encap === 'udp') {
      t.same(bad((r) => r['l2tp.version'] === '3'), [], `${c.label}: version 3 in every packet`);
      t.same(bad((r) => Number(r['l2tp.type']) === 0), [], `${c.label}: every packet a data message (T=0)`);
      t.same(bad((r) => Number(r['l2tp.res']) === 0), [], `${c.label}: reserved field zero`);
    }
    t.same(bad((r) => Number(r['l2tp.sid']) === sidB), [], `${c.label}: session ID ${sidB} (the peer's) in every packet`);
    // tshark is told the cookie size and sublayer type, so whether a cookie or sublayer is
    // decoded only echoes that; a wrong size on the wire shows as misaligned Ethernet below.
    if (c.cookie) {
      t.same(bad((r) => r['l2tp.cookie'].replace(/:/g, '').toLowerCase() === c.cookie), [],
        `${c.label}: cookie ${c.cookie} in every packet`);
    }
    if (c.l2spec === 'default') {
      const sequenced = c.seqA !== 'none';
      t.same(bad((r) => truthy(r['l2tp.l2_spec_s']) === sequenced), [], `${c.label}: S bit ${sequenced ? 'set' : 'clear'}`);
      const seqs = rows.map((r) => Number(r['l2tp.l2_spec_sequence']));
      if (sequenced) {
        t.same(seqs, seqs.map((_, i) => i), `${c.label}: sequence numbers 0..${seqs.length - 1}, consecutive`);
      } else {
        t.ok(seqs.every((s) => s === 0), `${c.label}: sequence field zero when not sequencing`);
      }
    }
    // Every payload is an Ethernet frame from host A; the echo requests carry the right addresses.
    const macA = linkAddress(hostA, 'eth0');
    const macB = linkAddress(hostB, 'eth0');
    // Payloads are host A's frames plus the site bridge's own IPv6 ND/MLD: all must decode as
    // Ethernet with a known EtherType (a 4-byte misalignment would give garbage here).
    t.same(bad((r) => ['0x0800', '0x0806', '0x86dd'].includes(r['eth.type'].toLowerCase())), [],
      `${c.label}: every payload is an Ethernet frame (IPv4, ARP or IPv6)`);
    const echoes = rows.filter((r) => r['icmp.type'] === '8');
    t.ok(echoes.length >= got, `${c.label}: ${echoes.length} ICMP echo requests decoded inside`);
    t.ok(echoes.every((r) => r['eth.src'].toLowerCase() === macA && r['eth.dst'].toLowerCase() === macB && r['eth.type'].toLowerCase() === '0x0800'
      && r['ip.src'] === addrA && r['ip.dst'] === addrB),
    `${c.label}: echo requests ${addrA} -> ${addrB}, host A's MAC -> host B's, EtherType IPv4`);

    // Remove this case's sessions and tunnel so the next capture sees only its own traffic.
    sites.ok(sites.a, ['del', 'session', 'tunnel_id', String(id), 'session_id', String(sidA)]);
    sites.ok(sites.b, ['del', 'session', 'tunnel_id', String(id), 'session_id', String(sidB)]);
    for (const d of [sites.a, sites.b]) sites.ok(d, ['del', 'tunnel', 'tunnel_id', String(id)]);
  }
});

interface OuterCase { label: string; encap: 'udp' | 'ip'; v6: boolean; ttl: number; tos: number }

const OUTER_CASES: OuterCase[] = [
  { label: 'udp/IPv4', encap: 'udp', v6: false, ttl: 33, tos: 0xb8 },
  { label: 'udp/IPv6', encap: 'udp', v6: true, ttl: 200, tos: 0x28 },
  { label: 'ip/IPv4', encap: 'ip', v6: false, ttl: 7, tos: 0x48 },
  { label: 'ip/IPv6', encap: 'ip', v6: true, ttl: 99, tos: 0x10 },
];

/** The outer header's TTL/hop limit and TOS/traffic class of each L2TP packet from `src` in `file`. */
function outerHeaders(file: string, c: OuterCase, port: number, src: string): Array<{ ttl: number; tos: number }> {
  const [ttl, tos] = c.v6 ? ['ipv6.hlim', 'ipv6.tclass'] : ['ip.ttl', 'ip.dsfield'];
  const rows = tsharkFields(file, [ttl, tos], [...(c.encap === 'udp' ? ['-d', `udp.port==${port},l2tp`] : []),
    '-Y', `l2tp && ${c.v6 ? 'ipv6' : 'ip'}.src == ${src}`,
    // The first occurrence is the outer header (an IPv4 underlay also has the inner ping's).
    '-E', 'occurrence=f']);
  return rows.map(([a, b]) => ({ ttl: Number(a), tos: Number(b) }));
}

t.test('the outer header carries the tunnel\'s ttl and tos', { skip }, async (t) => {
  const { sites, tmp, captures } = await capturingSites(t, 'l2tpd-outer-');

  let n = 0;
  for (const c of OUTER_CASES) {
    n++;
    const id = 800 + n;
    const port = 5100 + n;
    const [a, b] = c.v6 ? [UNDERLAY.a6, UNDERLAY.b6] : [UNDERLAY.a4, UNDERLAY.b4];
    // A sets both words; B sets neither, so its packets show what the kernel writes by default.
    sites.ok(sites.a, [...tunnelWords(id, c.encap, a, b, [port, port]), 'ttl', String(c.ttl), 'tos', `0x${c.tos.toString(16)}`]);
    sites.ok(sites.b, tunnelWords(id, c.encap, b, a, [port, port]));
    t.match(sites.ok(sites.a, ['show', 'tunnel', 'tunnel_id', String(id)]), `outer header: ttl ${c.ttl}, tos 0x${c.tos.toString(16)}`,
      `${c.label}: show prints them`);

    const file = path.join(tmp, `outer${n}.pcap`);
    const cap = await startCapture(sites.a.ns, file);
    captures.push(cap.proc);
    const bridge = `bro${n}`;
    const addrA = `203.0.113.${n * 4 + 1}`;
    const addrB = `203.0.113.${n * 4 + 2}`;
    sites.host(sites.a, bridge, `${addrA}/30`);
    const hostB = sites.host(sites.b, bridge, `${addrB}/30`);
    const sid = 0x4000 + n;
    for (const d of [sites.a, sites.b]) {
      sites.ok(d, ['add', 'session', 'name', `pwo${n}`, 'tunnel_id', String(id), 'session_id', String(sid), 'peer_session_id', String(sid),
        'bridge', bridge]);
    }
    const got = sites.ping(hostB, addrA, 4, 8);
    t.ok(got >= 3, `${c.label}: ping through the pseudowire (${got}/4)`);
    await sleep(500);
    await stopProcess(cap.proc, 'SIGINT');

    const fromA = outerHeaders(file, c, port, a);
    const fromB = outerHeaders(file, c, port, b);
    t.ok(fromA.length >= got, `${c.label}: ${fromA.length} packets from l2tpd with ttl/tos`);
    t.ok(fromB.length >= got, `${c.label}: ${fromB.length} packets from l2tpd without`);
    t.same(fromA.filter((h) => h.ttl !== c.ttl || h.tos !== c.tos), [], `${c.label}: every packet has ttl ${c.ttl}, tos 0x${c.tos.toString(16)}`);
    t.same(fromB.filter((h) => h.ttl !== 64 || h.tos !== 0), [], `${c.label}: the peer's packets have the kernel's ttl 64, tos 0`);

    for (const d of [sites.a, sites.b]) {
      sites.ok(d, ['del', 'session', 'tunnel_id', String(id), 'session_id', String(sid)]);
      sites.ok(d, ['del', 'tunnel', 'tunnel_id', String(id)]);
    }
  }
});
