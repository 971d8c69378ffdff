/**
 * Build a pcap of IPv4 packets in a test, so tshark (an independent dissector) can judge bytes
 * the project's codec produced without a network: LINKTYPE_RAW (101), one IPv4 packet per record.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

/** An IPv4 header (no options, header checksum filled in) in front of `payload`. */
export function ipv4Packet(proto: number, src: string, dst: string, payload: Uint8Array): Buffer {
  const total = 20 + payload.length;
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(total, 2);
  h.writeUInt16BE(0x4000, 6); // DF
  h[8] = 64;
  h[9] = proto;
  src.split('.').forEach((o, i) => { h[12 + i] = Number(o); });
  dst.split('.').forEach((o, i) => { h[16 + i] = Number(o); });
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  h.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([h, Buffer.from(payload)]);
}

/** A UDP datagram (checksum 0, as Linux sends L2TP over IPv4 by default) inside an IPv4 packet. */
export function udp4Packet(src: string, sport: number, dst: string, dport: number, payload: Uint8Array): Buffer {
  const u = Buffer.alloc(8);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(8 + payload.length, 4);
  return ipv4Packet(17, src, dst, Buffer.concat([u, Buffer.from(payload)]));
}

/** Write `packets` (raw IPv4) to a pcap file, one second apart. */
export function writePcap(file: string, packets: Buffer[]): void {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16);
  head.writeUInt32LE(101, 20); // LINKTYPE_RAW
  const parts: Buffer[] = [head];
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    parts.push(rec, p);
  });
  writeFileSync(file, Buffer.concat(parts));
}

/** tshark -T fields over `file`: one array of field values per packet, in `fields` order. */
export function tsharkFields(file: string, fields: readonly string[], extra: string[] = []): string[][] {
  const r = spawnSync('tshark', ['-r', file, '-n', ...extra, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])],
    { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`tshark failed (${r.status}): ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((line) => line.split('|'));
}
