// Hot-path batch calls. They never throw for I/O errors: count >= 0, or -errno.
// Every offset/length is checked against the attached pool before any syscall.
// No allocation per call: scratch arrays live in the instance (grown only for a larger batch).
#include "addon.h"
#include "offload.h"

#include <arpa/inet.h>
#include <sys/uio.h>
#include <unistd.h>

#include <time.h>

#include <cerrno>
#include <cstring>

namespace l2tpd {

namespace {

template <typename T>
struct Array {
  T* data = nullptr;
  size_t length = 0;
};

// Typed-array argument of the expected element type; TypeError (pending) otherwise.
template <typename T>
bool ArrayArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, const char* what,
              Array<T>* out) {
  napi_env env = info.Env();
  bool is_ta = false;
  if (i < info.Length()) napi_is_typedarray(env, info[i], &is_ta);
  napi_typedarray_type type;
  void* data = nullptr;
  if (!is_ta ||
      napi_get_typedarray_info(env, info[i], &type, &out->length, &data, nullptr, nullptr) != napi_ok ||
      type != want) {
    Napi::TypeError::New(info.Env(), std::string(what) + " has the wrong type")
        .ThrowAsJavaScriptException();
    return false;
  }
  out->data = static_cast<T*>(data);
  return true;
}

inline bool InPool(uint64_t offset, uint64_t len, size_t pool_len) {
  return offset <= pool_len && len <= pool_len - offset;
}

inline void FillSource(const sockaddr_storage& ss, uint32_t* w) {
  if (ss.ss_family == AF_INET) {
    auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    w[0] = (4u << 16) | ntohs(sin.sin_port);
    w[1] = ntohl(sin.sin_addr.s_addr);
    w[2] = w[3] = w[4] = 0;
  } else if (ss.ss_family == AF_INET6) {
    auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    w[0] = (6u << 16) | ntohs(sin6.sin6_port);
    for (int k = 0; k < 4; k++) {
      uint32_t be;
      std::memcpy(&be, &sin6.sin6_addr.s6_addr[k * 4], 4);
      w[1 + k] = ntohl(be);
    }
  } else {
    w[0] = w[1] = w[2] = w[3] = w[4] = 0;
  }
}

inline Napi::Value Result(Napi::Env env, int64_t n) { return Napi::Number::New(env, static_cast<double>(n)); }

}  // namespace

// recvBatch(fd, offsets: Uint32Array, capacity, count, lengths: Int32Array, sources: Uint32Array)
Napi::Value Native::RecvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, capacity, count;
  Array<uint32_t> offsets, sources;
  Array<int32_t> lengths;
  if (!IntArg(info, 0, "fd", &fd) ||
      !ArrayArg(info, 1, napi_uint32_array, "offsets", &offsets) || !IntArg(info, 2, "capacity", &capacity) ||
      !IntArg(info, 3, "count", &count) || !ArrayArg(info, 4, napi_int32_array, "lengths", &lengths) ||
      !ArrayArg(info, 5, napi_uint32_array, "sources", &sources) || !RequirePool(env))
    return env.Undefined();
  if (count <= 0) return Result(env, 0);
  if (capacity < 0 || static_cast<uint64_t>(count) > offsets.length ||
      static_cast<uint64_t>(count) > lengths.length ||
      static_cast<uint64_t>(count) * kSourceStride > sources.length || count > 65536)
    return Result(env, -EINVAL);
  for (int64_t i = 0; i < count; i++)
    if (!InPool(offsets.data[i], capacity, pool_len_)) return Result(env, -EINVAL);

  EnsureMessages(count);
  for (int64_t i = 0; i < count; i++) {
    iovs_[i].iov_base = pool_ + offsets.data[i];
    iovs_[i].iov_len = capacity;
    msghdr& h = msgs_[i].msg_hdr;
    h.msg_name = &addrs_[i];
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_iov = &iovs_[i];
    h.msg_iovlen = 1;
    h.msg_control = nullptr;
    h.msg_controllen = 0;
    h.msg_flags = 0;
    msgs_[i].msg_len = 0;
  }
  int n;
  do {
    // MSG_TRUNC: UDP and raw sockets report the datagram's real length in msg_len.
    n = recvmmsg(static_cast<int>(fd), msgs_.data(), static_cast<unsigned>(count),
                 MSG_DONTWAIT | MSG_TRUNC, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Result(env, (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno);
  for (int i = 0; i < n; i++) {
    lengths.data[i] = static_cast<int32_t>(msgs_[i].msg_len);
    FillSource(addrs_[i], &sources.data[i * kSourceStride]);
  }
  return Result(env, n);
}

// sendBatch(fd, offsets: Uint32Array, lengths: Uint32Array, peers: Uint32Array, first, count)
Napi::Value Native::SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, first, count;
  Array<uint32_t> offsets, lengths, peers;
  if (!IntArg(info, 0, "fd", &fd) || !ArrayArg(info, 1, napi_uint32_array, "offsets", &offsets) ||
      !ArrayArg(info, 2, napi_uint32_array, "lengths", &lengths) ||
      !ArrayArg(info, 3, napi_uint32_array, "peers", &peers) || !IntArg(info, 4, "first", &first) ||
      !IntArg(info, 5, "count", &count) || !RequirePool(env))
    return env.Undefined();
  if (count <= 0) return Result(env, 0);
  const uint64_t end = static_cast<uint64_t>(first) + static_cast<uint64_t>(count);
  if (first < 0 || count > 65536 || end > offsets.length || end > lengths.length || end > peers.length)
    return Result(env, -EINVAL);
  for (uint64_t j = first; j < end; j++) {
    uint32_t peer = peers.data[j];
    if (!InPool(offsets.data[j], lengths.data[j], pool_len_) || peer >= peers_.size() ||
        peers_[peer].len == 0)
      return Result(env, -EINVAL);
  }

  EnsureMessages(count);
  for (int64_t i = 0; i < count; i++) {
    const uint64_t j = first + i;
    Peer& peer = peers_[peers.data[j]];
    iovs_[i].iov_base = pool_ + offsets.data[j];
    iovs_[i].iov_len = lengths.data[j];
    msghdr& h = msgs_[i].msg_hdr;
    h.msg_name = &peer.addr;
    h.msg_namelen = peer.len;
    h.msg_iov = &iovs_[i];
    h.msg_iovlen = 1;
    h.msg_control = nullptr;
    h.msg_controllen = 0;
    h.msg_flags = 0;
  }
  int64_t sent = 0;
  while (sent < count) {
    int n = sendmmsg(static_cast<int>(fd), msgs_.data() + sent, static_cast<unsigned>(count - sent),
                     MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (sent == 0) return Result(env, -errno);
      break;  // report what went out; the failing message errors again on the next call
    }
    if (n == 0) break;
    sent += n;
  }
  return Result(env, sent);
}

// readBatch(fd, offsets: Uint32Array, capacity, count, lengths: Int32Array, offload)
Napi::Value Native::ReadBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, capacity, count;
  Array<uint32_t> offsets;
  Array<int32_t> lengths;
  if (!IntArg(info, 0, "fd", &fd) || !ArrayArg(info, 1, napi_uint32_array, "offsets", &offsets) ||
      !IntArg(info, 2, "capacity", &capacity) || !IntArg(info, 3, "count", &count) ||
      !ArrayArg(info, 4, napi_int32_array, "lengths", &lengths) || !RequirePool(env))
    return env.Undefined();
  const bool offload = info.Length() > 5 && info[5].ToBoolean().Value();
  if (count <= 0) return Result(env, 0);
  if (capacity < 0 || static_cast<uint64_t>(count) > offsets.length ||
      static_cast<uint64_t>(count) > lengths.length)
    return Result(env, -EINVAL);
  for (int64_t i = 0; i < count; i++)
    if (!InPool(offsets.data[i], capacity, pool_len_)) return Result(env, -EINVAL);

  if (offload)
    return Result(env, ReadOffloadTap(static_cast<int>(fd), offsets.data, capacity, count, lengths.data));
  int64_t i = 0;
  while (i < count) {
    ssize_t n = read(static_cast<int>(fd), pool_ + offsets.data[i], capacity);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (i == 0) return Result(env, -errno);
      break;
    }
    lengths.data[i++] = static_cast<int32_t>(n);
  }
  return Result(env, i);
}

// Tap drain for an offload tap: each read brings a virtio_net_hdr and a frame, or a TCP
// super-frame that is cut here into MSS-sized frames, one slot each. Another read starts only
// while kGsoMaxSegs slots are left, so a super-frame (at most that many segments: the tap's
// gso_max_segs) always fits. lengths[i] < 0 marks a frame read but not deliverable (-EINVAL:
// headers not as the offload said; -EMSGSIZE: more segments than slots); its slot is unused.
int64_t Native::ReadOffloadTap(int fd, const uint32_t* offsets, size_t capacity, int64_t count, int32_t* lengths) {
  if (super_frame_.empty()) super_frame_.resize(kVnetHdrLen + 65536 + 16384);  // once per thread
  uint8_t* buf = super_frame_.data();
  const size_t room = super_frame_.size();
  int64_t i = 0;
  while (i < count && (i == 0 || count - i >= static_cast<int64_t>(kGsoMaxSegs))) {
    ssize_t n = read(fd, buf, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (i == 0) return -errno;
      break;
    }
    if (static_cast<size_t>(n) < kVnetHdrLen || static_cast<size_t>(n) == room) {
      lengths[i++] = static_cast<size_t>(n) == room ? -EMSGSIZE : -EINVAL;
      continue;
    }
    const VnetHdr h = ParseVnetHdr(buf);
    uint8_t* frame = buf + kVnetHdrLen;
    const size_t len = n - kVnetHdrLen;
    if (h.gso_type == 0) {
      if (len <= capacity) {
        if ((h.flags & kVnetNeedsCsum) && !CompleteChecksum(frame, len, h)) {
          lengths[i++] = -EINVAL;
          continue;
        }
        std::memcpy(pool_ + offsets[i], frame, len);
      }
      lengths[i++] = static_cast<int32_t>(len);  // longer than capacity: the caller counts it oversize
      continue;
    }
    TcpSplit split;
    if (!PlanTcpSplit(frame, len, h, &split)) {
      lengths[i++] = -EINVAL;
      continue;
    }
    if (split.hdr_end + split.mss > capacity) {
      lengths[i++] = static_cast<int32_t>(split.hdr_end + split.mss);  // segments too big for a slot
      continue;
    }
    if (split.segments > static_cast<size_t>(count - i)) {
      lengths[i++] = -EMSGSIZE;
      continue;
    }
    for (size_t k = 0; k < split.segments; k++, i++)
      lengths[i] = static_cast<int32_t>(WriteTcpSegment(frame, split, k, pool_ + offsets[i]));
  }
  return i;
}

// One write per frame, frames[first, end) of a tap. An offload tap takes a virtio_net_hdr in
// front of each: runs of segments of one TCP flow, in sequence, with equal payload sizes (the
// last may be shorter) and valid checksums go out as one super-frame (at most kGsoMaxSegs
// segments, 64 KiB of IP), gathered with writev straight from their slots; everything else goes
// out alone behind an all-zero header. A frame the tap refuses gets lengths[j] = -errno.
// Returns frames processed, as WriteBatch.
int64_t Native::WriteTap(int fd, const uint32_t* offsets, int32_t* lengths, uint64_t first, uint64_t end, bool offload) {
  iovec* iov = gro_iovs_;  // kGsoMaxSegs + 2 entries
  uint64_t j = first;
  while (j < end) {
    uint8_t* f = pool_ + offsets[j];
    const size_t len = lengths[j];
    uint64_t frames = 1;
    TcpSegment head, next;
    if (offload && j + 1 < end && ParseTcpSegment(f, len, &head) && !head.psh) {
      // Merged: [vnet header][head's headers, rewritten][head's payload][next payloads...]
      size_t payload = head.payload;
      bool psh = false;
      while (j + frames < end && frames < kGsoMaxSegs) {
        uint8_t* g = pool_ + offsets[j + frames];
        const size_t glen = lengths[j + frames];
        // Cheap header checks first; the head's checksum only once something could join it.
        if (!ParseTcpSegment(g, glen, &next) || next.seq != head.seq + static_cast<uint32_t>(payload) ||
            next.payload > head.payload || head.hdr_end - kEthHdrLen + payload + next.payload > 65535 ||
            !SameFlow(f, head, g, next) || (frames == 1 && !ChecksumsValid(f, len, head)) ||
            !ChecksumsValid(g, glen, next))
          break;
        iov[2 + frames] = {g + next.hdr_end, next.payload};
        payload += next.payload;
        frames++;
        if (next.psh || next.payload < head.payload) { psh = next.psh; break; }
      }
      if (frames > 1) {
        WriteSuperHeaders(f, head, payload, psh, gro_headers_, gro_vnet_);
        iov[0] = {gro_vnet_, kVnetHdrLen};
        iov[1] = {gro_headers_, head.hdr_end};
        iov[2] = {f + head.hdr_end, head.payload};
      }
    }
    ssize_t n;
    if (!offload) {
      n = write(fd, f, len);
    } else if (frames == 1) {
      // The header goes in the scratch bytes in front of the frame: one plain write is cheaper
      // for the kernel to copy from than a two-part writev (small frames pay for it per packet).
      memset(f - kVnetHdrLen, 0, kVnetHdrLen);
      n = write(fd, f - kVnetHdrLen, len + kVnetHdrLen);
    } else {
      n = writev(fd, iov, static_cast<int>(frames) + 2);  // vnet header, headers, payloads
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EBADF) return j == first ? -EBADF : static_cast<int64_t>(j - first);
      // e.g. EIO (tap down), EINVAL (bad frame): mark them dropped and go on
      const int err = errno;
      for (uint64_t k = j; k < j + frames; k++) lengths[k] = -err;
    }
    j += frames;
  }
  return static_cast<int64_t>(j - first);
}

// writeBatch(fd, offsets: Uint32Array, lengths: Int32Array, first, count, offload)
// Returns frames processed (written, or refused and marked lengths[j] = -errno); stops at EAGAIN.
Napi::Value Native::WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, first, count;
  Array<uint32_t> offsets;
  Array<int32_t> lengths;
  if (!IntArg(info, 0, "fd", &fd) || !ArrayArg(info, 1, napi_uint32_array, "offsets", &offsets) ||
      !ArrayArg(info, 2, napi_int32_array, "lengths", &lengths) || !IntArg(info, 3, "first", &first) ||
      !IntArg(info, 4, "count", &count) || !RequirePool(env))
    return env.Undefined();
  const bool offload = info.Length() > 5 && info[5].ToBoolean().Value();
  if (count <= 0) return Result(env, 0);
  const uint64_t end = static_cast<uint64_t>(first) + static_cast<uint64_t>(count);
  if (first < 0 || end > offsets.length || end > lengths.length) return Result(env, -EINVAL);
  for (uint64_t j = first; j < end; j++)
    if (lengths.data[j] < 0 || !InPool(offsets.data[j], lengths.data[j], pool_len_) ||
        (offload && offsets.data[j] < kVnetHdrLen))
      return Result(env, -EINVAL);

  return Result(env, WriteTap(static_cast<int>(fd), offsets.data, lengths.data, first, end, offload));
}

// readClock(out: Float64Array): out[0] = wall clock, out[1] = monotonic clock, both in ms.
// Written into the caller's array because Date.now() and performance.now() return a fresh heap
// number per call: once per batch, that alone makes the data plane collect garbage.
Napi::Value Native::ReadClock(const Napi::CallbackInfo& info) {
  Array<double> out;
  if (!ArrayArg(info, 0, napi_float64_array, "out", &out)) return info.Env().Undefined();
  if (out.length < 2) {
    Napi::RangeError::New(info.Env(), "readClock: out needs 2 elements").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  timespec wall, mono;
  clock_gettime(CLOCK_REALTIME, &wall);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  out.data[0] = static_cast<double>(wall.tv_sec) * 1e3 + static_cast<double>(wall.tv_nsec) / 1e6;
  out.data[1] = static_cast<double>(mono.tv_sec) * 1e3 + static_cast<double>(mono.tv_nsec) / 1e6;
  return info.Env().Undefined();
}

}  // namespace l2tpd
