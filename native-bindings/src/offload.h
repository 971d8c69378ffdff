// Tap offload (IFF_VNET_HDR + TSO): the kernel hands the tap up to 64 KiB TCP super-frames and
// frames whose checksum is left to us. Before such a frame may go on the wire it is cut into
// MSS-sized frames with complete checksums, as the kernel's own TCP segmentation would.
// Pure byte work: no syscalls, no allocation. Ethernet/IP/TCP only; nothing L2TP here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace l2tpd {

constexpr size_t kEthHdrLen = 14;
// Longest Ethernet + IPv6 + TCP header with options that a merged super-frame copies.
constexpr size_t kMaxTcpHeaders = kEthHdrLen + 40 + 60;
// struct virtio_net_hdr (10 bytes, little-endian on every host we build for).
constexpr size_t kVnetHdrLen = 10;
// Most frames one super-frame may become; the tap's gso_max_segs is set to this
// (GSO_MAX_SEGS in src/dataplane/layout.ts) so the kernel segments anything larger itself.
constexpr size_t kGsoMaxSegs = 64;

constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM

struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};

VnetHdr ParseVnetHdr(const uint8_t* p);

// VIRTIO_NET_HDR_F_NEEDS_CSUM: fold the checksum over [csum_start, len) into
// csum_start + csum_offset, which holds the pseudo-header sum. false when it points outside.
bool CompleteChecksum(uint8_t* frame, size_t len, const VnetHdr& h);

// A TCP super-frame (gso_type TCPV4 or TCPV6, ECN bit allowed) and how it splits.
struct TcpSplit {
  size_t l3 = 0;       // IP header offset (after Ethernet and up to two VLAN tags)
  size_t l4 = 0;       // TCP header offset
  size_t hdr_end = 0;  // end of the TCP header: bytes copied in front of every segment
  size_t payload = 0;  // TCP payload bytes in the super-frame
  size_t mss = 0;      // payload bytes per segment (gso_size); the last one may be shorter
  size_t segments = 0;
  bool v4 = false;
};

// Checks the headers the split relies on; false (frame must be dropped) when they are not sound.
bool PlanTcpSplit(const uint8_t* frame, size_t len, const VnetHdr& h, TcpSplit* out);

// Writes segment k (0 <= k < segments) of `frame` into dst as a complete Ethernet frame:
// IP length, IPv4 id and header checksum, TCP sequence, flags (CWR on the first segment only,
// FIN and PSH on the last only) and TCP checksum fixed. Returns its length.
size_t WriteTcpSegment(const uint8_t* frame, const TcpSplit& s, size_t k, uint8_t* dst);

// Receive-side coalescing (the reverse of the split, as the kernel's GRO does): consecutive
// segments of one TCP flow that the peer sent back to back become one super-frame written to the
// tap with one virtio_net_hdr, so the stack behind it handles one packet instead of dozens.
struct TcpSegment {
  size_t l4 = 0;
  size_t hdr_end = 0;
  size_t payload = 0;
  uint32_t seq = 0;
  bool v4 = false;
  bool psh = false;
};

// An untagged IPv4 (no options, not a fragment) or IPv6 (TCP right after the fixed header)
// frame carrying a TCP segment with payload and only ACK (and PSH) set, lengths consistent.
// Header checks only; ChecksumsValid is the expensive part, done when merging is on the table.
bool ParseTcpSegment(const uint8_t* frame, size_t len, TcpSegment* out);
// IPv4 header checksum (if any) and TCP checksum both verify: a merged frame is handed to the
// stack as already checked (checksum left to offload), so a damaged segment must not get in.
bool ChecksumsValid(const uint8_t* frame, size_t len, const TcpSegment& s);
// `next` may follow `head` in one super-frame: same Ethernet and IP header fields (but lengths,
// id and checksum), same ports, ack, window, flags (but PSH) and options. Sequence not checked.
bool SameFlow(const uint8_t* head, const TcpSegment& h, const uint8_t* next, const TcpSegment& n);
// Writes the super-frame's headers (head's, with lengths for `payload` bytes, PSH if `psh`, the
// IPv4 checksum and the TCP pseudo-header sum the offload completes) to hdrs (h.hdr_end bytes)
// and its virtio_net_hdr to vnet (kVnetHdrLen bytes).
void WriteSuperHeaders(const uint8_t* head, const TcpSegment& h, size_t payload, bool psh,
                       uint8_t* hdrs, uint8_t* vnet);

}  // namespace l2tpd
