'use strict';
/**
 * Packet crafter for integration tests, independent of the daemon's own addon: node:dgram for
 * UDP and the `raw-socket` package for IP protocol 115. Run inside a namespace:
 *
 *   ip netns exec NS node test/helpers/crafter.cjs '<json>'
 *
 * where <json> is { jobs: Job[], pauseEvery?: number, pauseMs?: number } and a Job is
 *   { proto: 'udp4' | 'udp6' | 'ip4', to, toPort?, from?, fromPort?, hdrSrc?, hex?, size?,
 *     count, gapMs? }
 * - hex: the packet bytes (hex); size: pad (0x5a) or extend the packet to this many bytes.
 * - hdrSrc (ip4): send with IP_HDRINCL and this IPv4 source address.
 * - hexList: instead of hex, an array of packets sent in order (count ignored), gapMs between.
 * Prints {"sent":[n per job],"errors":[first error per job or null]} and exits 0.
 */
const dgram = require('node:dgram');

const spec = JSON.parse(process.argv[2]);
const pauseEvery = spec.pauseEvery ?? 20;
const pauseMs = spec.pauseMs ?? 3;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function packet(hex, size) {
  const head = Buffer.from(hex ?? '', 'hex');
  if (size === undefined || size <= head.length) return head;
  const b = Buffer.alloc(size, 0x5a);
  head.copy(b);
  return b;
}

function ipv4Header(src, dst, payloadLength) {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payloadLength, 2);
  h[8] = 64;
  h[9] = 115;
  src.split('.').forEach((v, i) => { h[12 + i] = Number(v); });
  dst.split('.').forEach((v, i) => { h[16 + i] = Number(v); });
  return h; // checksum and id are filled in by the kernel (IP_HDRINCL)
}

async function openUdp(job) {
  const sock = dgram.createSocket({ type: job.proto === 'udp6' ? 'udp6' : 'udp4' });
  await new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: job.from, port: job.fromPort ?? 0, exclusive: true }, () => { sock.off('error', reject); resolve(); });
  });
  sock.on('error', () => undefined);
  return {
    send: (buf) => new Promise((resolve) => sock.send(buf, job.toPort, job.to, (err) => resolve(err))),
    close: () => sock.close(),
  };
}

function openRaw(job) {
  const raw = require('raw-socket');
  const sock = raw.createSocket({ protocol: 115, addressFamily: raw.AddressFamily.IPv4 });
  sock.on('error', () => undefined);
  if (job.hdrSrc) sock.setOption(raw.SocketLevel.IPPROTO_IP, raw.SocketOption.IP_HDRINCL, 1);
  return {
    send: (buf) => new Promise((resolve) => {
      const out = job.hdrSrc ? Buffer.concat([ipv4Header(job.hdrSrc, job.to, buf.length), buf]) : buf;
      sock.send(out, 0, out.length, job.to, null, (err) => resolve(err));
    }),
    close: () => sock.close(),
  };
}

async function main() {
  const sent = [];
  const errors = [];
  for (const job of spec.jobs) {
    const s = job.proto === 'ip4' ? openRaw(job) : await openUdp(job);
    const packets = job.hexList ? job.hexList.map((h) => packet(h, job.size)) : null;
    const count = packets ? packets.length : job.count;
    const one = packets ? null : packet(job.hex, job.size);
    let ok = 0;
    let firstErr = null;
    for (let i = 0; i < count; i++) {
      const err = await s.send(packets ? packets[i] : one);
      if (err) firstErr ??= String(err.message ?? err); else ok++;
      if (job.gapMs) await sleep(job.gapMs);
      else if ((i + 1) % pauseEvery === 0) await sleep(pauseMs);
    }
    s.close();
    sent.push(ok);
    errors.push(firstErr);
    await sleep(20);
  }
  process.stdout.write(JSON.stringify({ sent, errors }) + '\n');
}

main().then(() => process.exit(0), (err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); });
