/**
 * L2TPv3 data packets in a capture, as tshark (an independent dissector) decodes them. Outer and
 * inner headers share field names (ip.src on an IPv4 underlay, eth.type), so every field is read
 * with all its occurrences: the first is the outer header, the last the innermost.
 */
import { spawnSync } from 'node:child_process';

const FIELDS = [
  'frame.number', 'ip.src', 'ipv6.src', 'udp.srcport', 'udp.dstport', 'udp.checksum', 'udp.checksum.status',
  'ip.fragment.count', 'ipv6.fragment.count',
  'l2tp.version', 'l2tp.res', 'l2tp.sid', 'l2tp.cookie', 'l2tp.l2_spec_s', 'l2tp.l2_spec_sequence',
  'eth.type', 'ip.dst', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4',
] as const;
type Field = (typeof FIELDS)[number];

export interface L2tpPacket {
  frame: number;
  /** Outer source address. */
  src: string;
  udp?: { sport: number; dport: number; checksum: number; checksumGood: boolean };
  /** Fragments the outer packet was reassembled from (0 when it was not fragmented). */
  fragments: number;
  version?: number;
  reserved?: number;
  sessionId: number;
  /** Hex, no separators; '' when the cookie size decoded is 0. */
  cookie: string;
  /** Present with the default sublayer. */
  l2spec?: { s: boolean; seq: number };
  /** Innermost ethertype, and the inner IPv4 or ARP addresses. */
  innerType: number;
  innerSrc: string;
  innerDst: string;
}

export interface DecodeAs {
  cookieBytes: 0 | 4 | 8;
  l2spec: 'none' | 'default';
  /** UDP ports to decode as L2TP (tshark only knows 1701 by itself). */
  udpPorts: number[];
  /** Display filter selecting the packets to decode, e.g. `l2tp.sid in {1 2}`. */
  filter: string;
}

const all = (v: string | undefined) => (v ? v.split(',') : []);
const first = (v: string | undefined) => all(v)[0];
const last = (v: string | undefined) => all(v).slice(-1)[0];
const num = (v: string | undefined) => (v === undefined || v === '' ? NaN : Number(v));
const truthy = (v: string | undefined) => v === '1' || v?.toLowerCase() === 'true';

export function decodeL2tp(file: string, d: DecodeAs): L2tpPacket[] {
  const args = ['-r', file, '-n',
    '-o', `l2tp.cookie_size:cookie${d.cookieBytes}`, '-o', `l2tp.l2_specific:${d.l2spec}`,
    '-o', 'udp.check_checksum:TRUE', '-o', 'ip.defragment:TRUE', '-o', 'ipv6.defragment:TRUE',
    '-d', 'l2tp.pw_type==0,eth', ...d.udpPorts.flatMap((p) => ['-d', `udp.port==${p},l2tp`]),
    '-Y', `l2tp && (${d.filter})`,
    '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'separator=|', ...FIELDS.flatMap((f) => ['-e', f])];
  const r = spawnSync('tshark', args, { encoding: 'utf8', timeout: 120000, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`tshark ${args.join(' ')}: ${r.error ?? ''}${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((line) => {
    const v = Object.fromEntries(FIELDS.map((f, i) => [f, line.split('|')[i]])) as Record<Field, string>;
    const v6 = !!v['ipv6.src'];
    const sport = num(first(v['udp.srcport']));
    const innerType = num(last(v['eth.type']));
    return {
      frame: num(v['frame.number']),
      src: v6 ? first(v['ipv6.src'])! : first(v['ip.src'])!,
      ...(Number.isNaN(sport) ? {} : {
        udp: {
          sport, dport: num(first(v['udp.dstport'])), checksum: num(first(v['udp.checksum'])),
          checksumGood: first(v['udp.checksum.status']) === '1',
        },
      }),
      fragments: num(first(v6 ? v['ipv6.fragment.count'] : v['ip.fragment.count'])) || 0,
      ...(v['l2tp.version'] ? { version: num(first(v['l2tp.version'])) } : {}),
      ...(v['l2tp.res'] ? { reserved: num(first(v['l2tp.res'])) } : {}),
      sessionId: num(first(v['l2tp.sid'])),
      cookie: (first(v['l2tp.cookie']) ?? '').replace(/:/g, ''),
      ...(v['l2tp.l2_spec_s'] ? { l2spec: { s: truthy(first(v['l2tp.l2_spec_s'])), seq: num(first(v['l2tp.l2_spec_sequence'])) } } : {}),
      innerType,
      innerSrc: innerType === 0x0806 ? last(v['arp.src.proto_ipv4']) ?? '' : (v6 ? first(v['ip.src']) : last(v['ip.src'])) ?? '',
      innerDst: innerType === 0x0806 ? last(v['arp.dst.proto_ipv4']) ?? '' : last(v['ip.dst']) ?? '',
    };
  });
}
