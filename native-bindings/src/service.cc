// Process-level calls for running as a service: sd_notify(3) datagrams to the service manager and
// thread names (comm, as ps, top -H and journald show them). These throw on error.
#include "addon.h"

#include <sys/prctl.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace l2tpd {

// notifySend(socket, message): one datagram on a fresh AF_UNIX socket, as sd_notify() does. A
// socket name starting with '@' is in the abstract namespace (the '@' stands for the leading NUL).
// Non-blocking: a service manager that is not reading must not stall the event loop.
Napi::Value Native::NotifySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "notifySend(socket: string, message: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (name.size() < 2 || (name[0] != '/' && name[0] != '@')) {
    return ThrowErrno(env, EAFNOSUPPORT, "notifySend", "socket '" + name + "': expected an absolute path or an @abstract name");
  }
  if (name.size() >= sizeof(addr.sun_path)) {
    return ThrowErrno(env, ENAMETOOLONG, "notifySend", "socket '" + name + "'");
  }
  std::memcpy(addr.sun_path, name.data(), name.size());
  socklen_t len = offsetof(sockaddr_un, sun_path) + name.size();
  if (name[0] == '@') addr.sun_path[0] = '\0';  // abstract: exact length, no terminating NUL
  else len += 1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket", "AF_UNIX SOCK_DGRAM");
  ssize_t n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (n < 0) return ThrowErrno(env, err, "sendto", "socket '" + name + "'");
  return env.Undefined();
}

// setThreadName(name): PR_SET_NAME for the calling thread (at most 15 bytes; the kernel would cut
// a longer name silently, so it is refused instead).
Napi::Value Native::SetThreadName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "setThreadName(name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() > 15) {
    return ThrowErrno(env, EINVAL, "prctl", "PR_SET_NAME '" + name + "': 1 to 15 bytes");
  }
  if (prctl(PR_SET_NAME, name.c_str(), 0, 0, 0) != 0) return ThrowErrno(env, errno, "prctl", "PR_SET_NAME");
  return env.Undefined();
}

}  // namespace l2tpd
