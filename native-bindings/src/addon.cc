// Instance lifecycle, errors, the packet pool.
#include "addon.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cerrno>
#include <cstring>

namespace l2tpd {

Native::Native(Napi::Env env, Napi::Object exports) : env_(env) {
  napi_get_uv_event_loop(env, &loop_);
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "l2tpd:poll");
  EnsureMessages(64);
  napi_add_env_cleanup_hook(env, Cleanup, this);

  DefineAddon(exports, {
      InstanceMethod("attachPool", &Native::AttachPool, napi_enumerable),
      InstanceMethod("tapOpen", &Native::TapOpen, napi_enumerable),
      InstanceMethod("tapSetPersist", &Native::TapSetPersist, napi_enumerable),
      InstanceMethod("tapSetCarrier", &Native::TapSetCarrier, napi_enumerable),
      InstanceMethod("udpOpen", &Native::UdpOpen, napi_enumerable),
      InstanceMethod("rawOpen", &Native::RawOpen, napi_enumerable),
      InstanceMethod("close", &Native::Close, napi_enumerable),
      InstanceMethod("pathMtu", &Native::PathMtu, napi_enumerable),
      InstanceMethod("localPort", &Native::LocalPort, napi_enumerable),
      InstanceMethod("setPeer", &Native::SetPeer, napi_enumerable),
      InstanceMethod("setSockoptInt", &Native::SetSockoptInt, napi_enumerable),
      InstanceMethod("recvBatch", &Native::RecvBatch, napi_enumerable),
      InstanceMethod("sendBatch", &Native::SendBatch, napi_enumerable),
      InstanceMethod("readBatch", &Native::ReadBatch, napi_enumerable),
      InstanceMethod("writeBatch", &Native::WriteBatch, napi_enumerable),
      InstanceMethod("readClock", &Native::ReadClock, napi_enumerable),
      InstanceMethod("pollStart", &Native::PollStart, napi_enumerable),
      InstanceMethod("pollStop", &Native::PollStop, napi_enumerable),
      InstanceMethod("pollPause", &Native::PollPause, napi_enumerable),
      InstanceMethod("pollSlice", &Native::PollSlice, napi_enumerable),
      InstanceMethod("pollWake", &Native::PollWake, napi_enumerable),
      InstanceMethod("pollEnd", &Native::PollEnd, napi_enumerable),
      InstanceMethod("wakeOpen", &Native::WakeOpen, napi_enumerable),
      InstanceMethod("wakeSignal", &Native::WakeSignal, napi_enumerable),
      InstanceMethod("notifySend", &Native::NotifySend, napi_enumerable),
      InstanceMethod("setThreadName", &Native::SetThreadName, napi_enumerable),
      InstanceMethod("netlinkAck", &Native::NetlinkAck, napi_enumerable),
  });
}

// Environment teardown (process exit or worker exit): stop every poll and close the epoll set
// while the loop still exists.
void Native::Cleanup(void* arg) {
  auto* self = static_cast<Native*>(arg);
  self->StopAllPolls();
  self->async_context_.reset();
  self->pool_ref_.Reset();
  self->pool_ = nullptr;
  self->pool_len_ = 0;
  self->cleaned_up_ = true;
}

Native::~Native() {
  if (!cleaned_up_) {
    napi_remove_env_cleanup_hook(env_, Cleanup, this);
    Cleanup(this);
  }
}

void Native::EnsureMessages(size_t n) {
  if (msgs_.size() >= n) return;
  msgs_.resize(n);
  iovs_.resize(n);
  addrs_.resize(n);
}

bool Native::RequirePool(Napi::Env env) {
  if (pool_ != nullptr) return true;
  Napi::Error::New(env, "attachPool() must be called before batch I/O in this thread")
      .ThrowAsJavaScriptException();
  return false;
}

Napi::Value Native::AttachPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "attachPool(pool: SharedArrayBuffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  napi_value value = info[0];
  void* data = nullptr;
  size_t len = 0;
  bool is_ab = false;
  napi_is_arraybuffer(env, value, &is_ab);  // false for a SharedArrayBuffer on Node 20
  if (is_ab) {
    if (napi_get_arraybuffer_info(env, value, &data, &len) != napi_ok) data = nullptr;
  } else {
    // A SharedArrayBuffer (N-API on Node 20 has no direct accessor): take the pointer
    // through a Uint8Array view over it.
    napi_value global, sab_ctor, u8_ctor, view;
    bool is_sab = false;
    napi_get_global(env, &global);
    napi_get_named_property(env, global, "SharedArrayBuffer", &sab_ctor);
    napi_get_named_property(env, global, "Uint8Array", &u8_ctor);
    if (napi_instanceof(env, value, sab_ctor, &is_sab) != napi_ok || !is_sab ||
        napi_new_instance(env, u8_ctor, 1, &value, &view) != napi_ok) {
      if (!env.IsExceptionPending())
        Napi::TypeError::New(env, "attachPool: not a SharedArrayBuffer or ArrayBuffer")
            .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    napi_typedarray_type type;
    napi_value ab;
    size_t offset;
    if (napi_get_typedarray_info(env, view, &type, &len, &data, &ab, &offset) != napi_ok)
      data = nullptr;
  }
  if (data == nullptr || len == 0) {
    Napi::TypeError::New(env, "attachPool: empty pool or no usable memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  pool_ref_ = Napi::Persistent(info[0]);
  pool_ = static_cast<uint8_t*>(data);
  pool_len_ = len;
  return env.Undefined();
}

bool IntArg(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Int64Value();
  return true;
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  const char* code = uv_err_name(-err);
  std::string code_str = (code && std::strncmp(code, "Unknown", 7) != 0)
                             ? std::string(code) : "E" + std::to_string(err);
  std::string msg = std::string(syscall) + " " + code_str + " (" + std::strerror(err) + ")";
  if (!detail.empty()) msg += " " + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code_str));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  ErrnoError(env, err, syscall, detail).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ParseAddress(Napi::Env env, int family, const std::string& address, uint16_t port,
                  sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  if (family == 4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    if (inet_pton(AF_INET, address.c_str(), &sin->sin_addr) != 1) {
      ThrowErrno(env, EINVAL, "inet_pton", "invalid IPv4 address '" + address + "'");
      return false;
    }
    *len = sizeof(sockaddr_in);
    return true;
  }
  if (family == 6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::string host = address;
    size_t pct = host.find('%');
    if (pct != std::string::npos) {
      std::string scope = host.substr(pct + 1);
      host.resize(pct);
      unsigned idx = if_nametoindex(scope.c_str());
      if (idx == 0) idx = static_cast<unsigned>(std::strtoul(scope.c_str(), nullptr, 10));
      if (idx == 0) {
        ThrowErrno(env, ENODEV, "if_nametoindex", "unknown scope '" + scope + "'");
        return false;
      }
      sin6->sin6_scope_id = idx;
    }
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
      ThrowErrno(env, EINVAL, "inet_pton", "invalid IPv6 address '" + address + "'");
      return false;
    }
    *len = sizeof(sockaddr_in6);
    return true;
  }
  Napi::TypeError::New(env, "family must be 4 or 6").ThrowAsJavaScriptException();
  return false;
}

}  // namespace l2tpd

using l2tpd::Native;
NODE_API_ADDON(Native)
