#include "offload.h"

#include <arpa/inet.h>

#include <cstring>

namespace l2tpd {

namespace {

constexpr uint8_t kGsoTcpV4 = 1;     // VIRTIO_NET_HDR_GSO_TCPV4
constexpr uint8_t kGsoTcpV6 = 4;     // VIRTIO_NET_HDR_GSO_TCPV6
constexpr uint8_t kGsoEcn = 0x80;    // VIRTIO_NET_HDR_GSO_ECN
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpAck = 0x10, kTcpCwr = 0x80;
constexpr size_t kTcpCheckOffset = 16;

inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline void Put16(uint8_t* p, uint16_t v) { p[0] = static_cast<uint8_t>(v >> 8); p[1] = static_cast<uint8_t>(v); }
inline uint32_t Get32(const uint8_t* p) { return static_cast<uint32_t>(Get16(p)) << 16 | Get16(p + 2); }
inline void Put32(uint8_t* p, uint32_t v) { Put16(p, static_cast<uint16_t>(v >> 16)); Put16(p + 2, static_cast<uint16_t>(v)); }
inline uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

// One's-complement sum of n bytes in host word order, 8 bytes at a time. The Internet checksum
// does not depend on byte order as long as the folded result is stored the same way (RFC 1071 §2B).
uint64_t Sum(const uint8_t* p, size_t n, uint64_t acc) {
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc += w;
    acc += acc < w;  // end-around carry
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  if (n >= 4) { uint32_t w; std::memcpy(&w, p, 4); tail += w; p += 4; n -= 4; }
  if (n >= 2) { uint16_t w; std::memcpy(&w, p, 2); tail += w; p += 2; n -= 2; }
  if (n == 1) { uint16_t w = 0; std::memcpy(&w, p, 1); tail += w; }  // pad the odd byte with zero
  acc += tail;
  acc += acc < tail;
  return acc;
}

// Folds to 16 bits and complements; the result is stored with memcpy (host order, as summed).
uint16_t Finish(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc);
}

// A 16-bit big-endian value as it sits in memory, summed like packet bytes.
uint64_t SumBe16(uint16_t v) {
  uint8_t b[2];
  Put16(b, v);
  return Sum(b, 2, 0);
}

// One's-complement sum of the TCP pseudo-header (IPv4 or IPv6) for a TCP length.
uint64_t PseudoSum(const uint8_t* ip, bool v4, size_t tcp_len) {
  const uint64_t addrs = v4 ? Sum(ip + 12, 8, 0) : Sum(ip + 8, 32, 0);
  return addrs + SumBe16(6) + SumBe16(static_cast<uint16_t>(tcp_len));
}

// Sets the IP header's length for `ip_len` bytes of IP packet; IPv4: and its header checksum.
void SetIpLength(uint8_t* ip, bool v4, size_t ip_len) {
  if (!v4) {
    Put16(ip + 4, static_cast<uint16_t>(ip_len - 40));
    return;
  }
  Put16(ip + 2, static_cast<uint16_t>(ip_len));
  ip[10] = ip[11] = 0;
  const uint16_t sum = Finish(Sum(ip, (ip[0] & 15) * 4u, 0));
  std::memcpy(ip + 10, &sum, 2);
}

void PutLe16(uint8_t* p, uint16_t v) { p[0] = static_cast<uint8_t>(v); p[1] = static_cast<uint8_t>(v >> 8); }

}  // namespace

VnetHdr ParseVnetHdr(const uint8_t* p) {
  return VnetHdr{p[0], p[1], Le16(p + 2), Le16(p + 4), Le16(p + 6), Le16(p + 8)};
}

bool CompleteChecksum(uint8_t* frame, size_t len, const VnetHdr& h) {
  const size_t start = h.csum_start, field = static_cast<size_t>(h.csum_start) + h.csum_offset;
  if (start >= len || field + 2 > len) return false;
  uint16_t c = Finish(Sum(frame + start, len - start, 0));
  if (c == 0) c = 0xffff;  // as the kernel does (CSUM_MANGLED_0): 0 means "no checksum" in UDP
  std::memcpy(frame + field, &c, 2);
  return true;
}

bool PlanTcpSplit(const uint8_t* frame, size_t len, const VnetHdr& h, TcpSplit* out) {
  const uint8_t type = h.gso_type & ~kGsoEcn;
  if ((type != kGsoTcpV4 && type != kGsoTcpV6) || h.gso_size == 0) return false;
  size_t off = 12;
  if (len < off + 2) return false;
  uint16_t ethertype = Get16(frame + off);
  for (int tags = 0; tags < 2 && (ethertype == 0x8100 || ethertype == 0x88a8); tags++) {
    off += 4;
    if (len < off + 2) return false;
    ethertype = Get16(frame + off);
  }
  TcpSplit s;
  s.l3 = off + 2;
  s.v4 = type == kGsoTcpV4;
  const uint8_t* ip = frame + s.l3;
  if (s.v4) {
    if (ethertype != 0x0800 || len < s.l3 + 20 || (ip[0] >> 4) != 4 || (ip[0] & 15) < 5 || ip[9] != 6) return false;
    s.l4 = s.l3 + (ip[0] & 15) * 4u;
  } else {
    // Extension headers may sit between IPv6 and TCP: the kernel's csum_start says where TCP is.
    if (ethertype != 0x86dd || len < s.l3 + 40 || (ip[0] >> 4) != 6 || h.csum_start < s.l3 + 40) return false;
    s.l4 = h.csum_start;
  }
  if ((h.flags & kVnetNeedsCsum) && (h.csum_start != s.l4 || h.csum_offset != kTcpCheckOffset)) return false;
  if (len < s.l4 + 20) return false;
  s.hdr_end = s.l4 + (frame[s.l4 + 12] >> 4) * 4u;
  if ((frame[s.l4 + 12] >> 4) < 5 || s.hdr_end >= len) return false;
  s.payload = len - s.hdr_end;
  s.mss = h.gso_size;
  s.segments = (s.payload + s.mss - 1) / s.mss;
  *out = s;
  return true;
}

size_t WriteTcpSegment(const uint8_t* frame, const TcpSplit& s, size_t k, uint8_t* dst) {
  const size_t first = k * s.mss;
  const size_t chunk = s.payload - first < s.mss ? s.payload - first : s.mss;
  std::memcpy(dst, frame, s.hdr_end);
  std::memcpy(dst + s.hdr_end, frame + s.hdr_end + first, chunk);
  const size_t len = s.hdr_end + chunk;

  uint8_t* ip = dst + s.l3;
  if (s.v4) Put16(ip + 4, static_cast<uint16_t>(Get16(ip + 4) + k));  // ids count up, as the kernel's GSO does
  SetIpLength(ip, s.v4, len - s.l3);
  const size_t tcp_len = len - s.l4;
  const uint64_t pseudo = PseudoSum(ip, s.v4, tcp_len);

  uint8_t* tcp = dst + s.l4;
  Put32(tcp + 4, static_cast<uint32_t>(Get32(tcp + 4) + first));
  uint8_t flags = tcp[13];
  if (k > 0) flags &= ~kTcpCwr;
  if (k + 1 < s.segments) flags &= ~(kTcpFin | kTcpPsh);
  tcp[13] = flags;
  tcp[kTcpCheckOffset] = tcp[kTcpCheckOffset + 1] = 0;
  const uint16_t tcpsum = Finish(Sum(tcp, tcp_len, pseudo));
  std::memcpy(tcp + kTcpCheckOffset, &tcpsum, 2);
  return len;
}

bool ParseTcpSegment(const uint8_t* frame, size_t len, TcpSegment* out) {
  if (len < kEthHdrLen + 40) return false;
  const uint16_t ethertype = Get16(frame + 12);
  const uint8_t* ip = frame + kEthHdrLen;
  TcpSegment s;
  if (ethertype == 0x0800) {
    if (ip[0] != 0x45 || ip[9] != 6 || (Get16(ip + 6) & 0x3fff) != 0 || Get16(ip + 2) != len - kEthHdrLen) return false;
    s.v4 = true;
    s.l4 = kEthHdrLen + 20;
  } else if (ethertype == 0x86dd) {
    if ((ip[0] >> 4) != 6 || ip[6] != 6 || Get16(ip + 4) != len - kEthHdrLen - 40 || len < kEthHdrLen + 60) return false;
    s.l4 = kEthHdrLen + 40;
  } else {
    return false;
  }
  const uint8_t* tcp = frame + s.l4;
  const size_t doff = tcp[12] >> 4;
  s.hdr_end = s.l4 + doff * 4;
  if (doff < 5 || s.hdr_end >= len) return false;
  const uint8_t flags = tcp[13];
  if ((flags & ~(kTcpAck | kTcpPsh)) != 0 || !(flags & kTcpAck)) return false;
  s.payload = len - s.hdr_end;
  s.seq = Get32(tcp + 4);
  s.psh = (flags & kTcpPsh) != 0;
  *out = s;
  return true;
}

bool ChecksumsValid(const uint8_t* frame, size_t len, const TcpSegment& s) {
  const uint8_t* ip = frame + kEthHdrLen;
  if (s.v4 && Finish(Sum(ip, 20, 0)) != 0) return false;
  const size_t tcp_len = len - s.l4;
  return Finish(Sum(frame + s.l4, tcp_len, PseudoSum(ip, s.v4, tcp_len))) == 0;
}

bool SameFlow(const uint8_t* head, const TcpSegment& h, const uint8_t* next, const TcpSegment& n) {
  if (h.v4 != n.v4 || h.hdr_end != n.hdr_end) return false;
  if (std::memcmp(head, next, kEthHdrLen) != 0) return false;
  const uint8_t* a = head + kEthHdrLen;
  const uint8_t* b = next + kEthHdrLen;
  if (h.v4) {
    // version/IHL and TOS; flags and fragment offset (DF); TTL and protocol; addresses.
    if (std::memcmp(a, b, 2) != 0 || std::memcmp(a + 6, b + 6, 4) != 0 || std::memcmp(a + 12, b + 12, 8) != 0) return false;
  } else {
    // version, traffic class, flow label; next header and hop limit; addresses.
    if (std::memcmp(a, b, 4) != 0 || std::memcmp(a + 6, b + 6, 34) != 0) return false;
  }
  const uint8_t* ta = head + h.l4;
  const uint8_t* tb = next + n.l4;
  // ports; ack; offset; window; options. Flags may differ in PSH only.
  return std::memcmp(ta, tb, 4) == 0 && std::memcmp(ta + 8, tb + 8, 5) == 0 &&
         ((ta[13] ^ tb[13]) & ~kTcpPsh) == 0 && std::memcmp(ta + 14, tb + 14, 2) == 0 &&
         std::memcmp(ta + 20, tb + 20, h.hdr_end - h.l4 - 20) == 0;
}

void WriteSuperHeaders(const uint8_t* head, const TcpSegment& h, size_t payload, bool psh,
                       uint8_t* hdrs, uint8_t* vnet) {
  std::memcpy(hdrs, head, h.hdr_end);
  uint8_t* ip = hdrs + kEthHdrLen;
  const size_t tcp_len = h.hdr_end - h.l4 + payload;
  SetIpLength(ip, h.v4, h.hdr_end - kEthHdrLen + payload);
  uint8_t* tcp = hdrs + h.l4;
  if (psh) tcp[13] |= kTcpPsh;
  // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum, not complemented.
  const uint16_t partial = static_cast<uint16_t>(~Finish(PseudoSum(ip, h.v4, tcp_len)));
  std::memcpy(tcp + kTcpCheckOffset, &partial, 2);
  vnet[0] = kVnetNeedsCsum;
  vnet[1] = h.v4 ? kGsoTcpV4 : kGsoTcpV6;
  PutLe16(vnet + 2, static_cast<uint16_t>(h.hdr_end));
  PutLe16(vnet + 4, static_cast<uint16_t>(h.payload));
  PutLe16(vnet + 6, static_cast<uint16_t>(h.l4));
  PutLe16(vnet + 8, static_cast<uint16_t>(kTcpCheckOffset));
}

}  // namespace l2tpd
