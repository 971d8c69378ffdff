// l2tpd_native: syscalls and loops only (tap, UDP/raw sockets, batched I/O, readiness, service
// notifications, thread names, and rtnetlink requests sent from a pool thread).
// No L2TP knowledge lives here. One instance per Node environment (main thread, each worker):
// all state is in this class, nothing is static.
#pragma once

#include <napi.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <uv.h>

#include <sys/socket.h>
#include <netinet/in.h>

#include "offload.h"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace l2tpd {

constexpr int kPollReadable = 1;  // POLL_READABLE in src/native/types.ts
constexpr int kPollWritable = 2;  // POLL_WRITABLE
constexpr int kSourceStride = 5;  // SOURCE_STRIDE
constexpr uint32_t kMaxPeerId = 1u << 20;

class Native;

// A polled fd: its callback and the mask JS asked for (0: paused, out of the epoll set).
struct PollHandle {
  int fd = -1;
  int events = 0;
  Napi::FunctionReference callback;
};

struct EpollWatch;

struct Peer {
  sockaddr_storage addr;
  socklen_t len;  // 0 = not set
};

class Native : public Napi::Addon<Native> {
 public:
  Native(Napi::Env env, Napi::Object exports);
  ~Native();

 private:
  // setup.cc
  Napi::Value AttachPool(const Napi::CallbackInfo& info);
  Napi::Value TapOpen(const Napi::CallbackInfo& info);
  Napi::Value TapSetPersist(const Napi::CallbackInfo& info);
  Napi::Value TapSetCarrier(const Napi::CallbackInfo& info);
  Napi::Value UdpOpen(const Napi::CallbackInfo& info);
  Napi::Value RawOpen(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value PathMtu(const Napi::CallbackInfo& info);
  Napi::Value LocalPort(const Napi::CallbackInfo& info);
  Napi::Value SetPeer(const Napi::CallbackInfo& info);
  Napi::Value SetSockoptInt(const Napi::CallbackInfo& info);
  // io.cc
  Napi::Value RecvBatch(const Napi::CallbackInfo& info);
  Napi::Value SendBatch(const Napi::CallbackInfo& info);
  Napi::Value ReadBatch(const Napi::CallbackInfo& info);
  Napi::Value WriteBatch(const Napi::CallbackInfo& info);
  Napi::Value ReadClock(const Napi::CallbackInfo& info);
  // poll.cc
  Napi::Value PollStart(const Napi::CallbackInfo& info);
  Napi::Value PollStop(const Napi::CallbackInfo& info);
  Napi::Value PollPause(const Napi::CallbackInfo& info);
  Napi::Value PollSlice(const Napi::CallbackInfo& info);
  Napi::Value PollWake(const Napi::CallbackInfo& info);
  Napi::Value PollEnd(const Napi::CallbackInfo& info);
  Napi::Value WakeOpen(const Napi::CallbackInfo& info);
  Napi::Value WakeSignal(const Napi::CallbackInfo& info);
  // service.cc
  Napi::Value NotifySend(const Napi::CallbackInfo& info);
  Napi::Value SetThreadName(const Napi::CallbackInfo& info);

  Napi::Value NetlinkAck(const Napi::CallbackInfo& info);

  Napi::Value OpenSocket(const Napi::CallbackInfo& info, int type);
  bool RequirePool(Napi::Env env);
  void EnsureMessages(size_t n);
  int64_t WriteTap(int fd, const uint32_t* offsets, int32_t* lengths, uint64_t first, uint64_t end, bool offload);
  int64_t ReadOffloadTap(int fd, const uint32_t* offsets, size_t capacity, int64_t count, int32_t* lengths);
  void StopPoll(int fd);
  void StopAllPolls();
  bool EnsureEpoll(Napi::Env env);
  int Arm(PollHandle* h, int events);
  void ServeReady();
  bool CallJs(Napi::Env env, napi_value fn, size_t argc, const napi_value* argv);
  static void OnEpollReady(uv_poll_t* handle, int status, int events);
  static void Cleanup(void* arg);

  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  bool cleaned_up_ = false;
  std::unique_ptr<Napi::AsyncContext> async_context_;

  Napi::Reference<Napi::Value> pool_ref_;
  uint8_t* pool_ = nullptr;
  size_t pool_len_ = 0;

  // Preallocated batch scratch (grown, never shrunk; no allocation per call once sized).
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
  std::vector<sockaddr_storage> addrs_;

  std::vector<Peer> peers_;
  std::unordered_map<int, PollHandle*> polls_;
  EpollWatch* epoll_ = nullptr;  // the set every polled fd is in; created on first use
  int armed_count_ = 0;
  int wake_fd_ = -1;
  int slice_ms_ = 0;
  bool dispatching_ = false;
  bool after_wake_ = false;
  std::vector<PollHandle*> retired_;  // stopped during a dispatch; freed after it
  Napi::FunctionReference end_callback_;  // pollEnd: after the callbacks of each epoll_wait
  static constexpr int kMaxReady = 64;
  epoll_event ready_[kMaxReady];
  // Offload taps: the buffer a super-frame is read into before it is cut into slots (sized on first use).
  std::vector<uint8_t> super_frame_;
  // Scratch for one merged write to an offload tap.
  iovec gro_iovs_[kGsoMaxSegs + 2];
  uint8_t gro_headers_[kMaxTcpHeaders];
  uint8_t gro_vnet_[kVnetHdrLen];
};

// Number argument i as int64; false + pending TypeError naming `what` otherwise.
bool IntArg(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t* out);
// An Error with code (errno name), errno and syscall set, for a promise to reject with.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");
// Throws (as a pending JS exception) an Error with code/errno/syscall. Returns undefined.
Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail = "");
// Parses an address for `family` (4 or 6; IPv6 may carry %scope). false + pending exception on error.
bool ParseAddress(Napi::Env env, int family, const std::string& address, uint16_t port,
                  sockaddr_storage* out, socklen_t* len);

}  // namespace l2tpd
