// Set-up calls: tap open, UDP/raw sockets, path MTU, peer table. These throw on error.
#include "addon.h"
#include "offload.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifndef TUNSETCARRIER
#define TUNSETCARRIER _IOW('T', 226, int)
#endif

namespace l2tpd {

namespace {

constexpr int kDefaultBuf = 4 * 1024 * 1024;

bool FamilyArg(const Napi::CallbackInfo& info, size_t i, int* family) {
  int64_t f;
  if (!IntArg(info, i, "family", &f)) return false;
  if (f != 4 && f != 6) {
    Napi::TypeError::New(info.Env(), "family must be 4 or 6").ThrowAsJavaScriptException();
    return false;
  }
  *family = static_cast<int>(f);
  return true;
}

bool StringArg(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out) {
  if (i >= info.Length() || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// Reads an optional numeric / boolean option from the opts object.
int64_t NumOpt(const Napi::Value& opts, const char* key, int64_t dflt) {
  if (!opts.IsObject()) return dflt;
  Napi::Value v = opts.As<Napi::Object>().Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : dflt;
}

// One integer socket option from opts.options: {level, name, value, label}.
struct IntOption {
  int level;
  int name;
  int value;
  std::string label;
};

// opts.options as a list; false + pending TypeError when it is not an array of such objects.
bool IntOptions(Napi::Env env, const Napi::Value& opts, std::vector<IntOption>* out) {
  if (!opts.IsObject()) return true;
  Napi::Value list = opts.As<Napi::Object>().Get("options");
  if (list.IsUndefined()) return true;
  if (!list.IsArray()) {
    Napi::TypeError::New(env, "options must be an array of {level, name, value, label}").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array arr = list.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value e = arr.Get(i);
    Napi::Object o = e.IsObject() ? e.As<Napi::Object>() : Napi::Object();
    if (!e.IsObject() || !o.Get("level").IsNumber() || !o.Get("name").IsNumber() || !o.Get("value").IsNumber()) {
      Napi::TypeError::New(env, "options[" + std::to_string(i) + "] must be {level, name, value, label}")
          .ThrowAsJavaScriptException();
      return false;
    }
    Napi::Value label = o.Get("label");
    out->push_back({o.Get("level").As<Napi::Number>().Int32Value(), o.Get("name").As<Napi::Number>().Int32Value(),
                    o.Get("value").As<Napi::Number>().Int32Value(),
                    label.IsString() ? label.As<Napi::String>().Utf8Value() : "option " + std::to_string(i)});
  }
  return true;
}

int SetInt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : errno;
}

// SO_RCVBUFFORCE/SO_SNDBUFFORCE need CAP_NET_ADMIN; fall back to the capped plain option.
int SetBuffer(int fd, int force_name, int plain_name, int bytes) {
  if (SetInt(fd, SOL_SOCKET, force_name, bytes) == 0) return 0;
  return SetInt(fd, SOL_SOCKET, plain_name, bytes);
}

std::string AddrText(int family, const std::string& addr, int64_t port) {
  if (port < 0) return addr;
  return family == 6 ? "[" + addr + "]:" + std::to_string(port) : addr + ":" + std::to_string(port);
}

// TUNSETIFF on a fresh /dev/net/tun fd; -errno on failure (fd closed), else the fd.
int AttachTap(const std::string& name, short flags, ifreq* ifr, const char** failed) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { *failed = "open"; return -errno; }
  std::memset(ifr, 0, sizeof(*ifr));
  ifr->ifr_flags = flags;
  std::memcpy(ifr->ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, ifr) < 0) {
    int err = errno;
    close(fd);
    *failed = "TUNSETIFF";
    return -err;
  }
  return fd;
}

// Frames with checksums left to us and TCP super-frames (ECN-marked too), as wireguard-go asks.
constexpr unsigned kTapOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;

}  // namespace

// tapOpen(name, persist, offload): { fd, name, offload }. offload asks for IFF_VNET_HDR + TSO;
// a kernel that refuses it gets a plain tap (offload: false in the result).
Napi::Value Native::TapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!StringArg(info, 0, "name", &name)) return env.Undefined();
  bool persist = info.Length() > 1 && info[1].ToBoolean().Value();
  bool offload = info.Length() > 2 && info[2].ToBoolean().Value();
  if (name.size() >= IFNAMSIZ) return ThrowErrno(env, ENAMETOOLONG, "tapOpen", "'" + name + "'");

  ifreq ifr;
  const char* failed = nullptr;
  int fd = -1;
  if (offload) {
    fd = AttachTap(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, &ifr, &failed);
    int hdr_len = static_cast<int>(kVnetHdrLen);
    if (fd >= 0 && (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0 || ioctl(fd, TUNSETOFFLOAD, kTapOffloads) < 0)) {
      close(fd);
      fd = -1;
    }
    offload = fd >= 0;
  }
  if (fd < 0) {
    fd = AttachTap(name, IFF_TAP | IFF_NO_PI, &ifr, &failed);
    if (fd < 0) {
      const bool at_open = std::strcmp(failed, "open") == 0;
      return ThrowErrno(env, -fd, at_open ? "open" : "ioctl", at_open ? "/dev/net/tun" : "TUNSETIFF '" + name + "'");
    }
    // A persistent tap keeps the offloads an earlier run switched on: without a virtio header
    // in front, a super-frame would reach us as one oversized frame.
    ioctl(fd, TUNSETOFFLOAD, 0u);
  }
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "ioctl", "TUNSETPERSIST");
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("name", Napi::String::New(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)));
  result.Set("offload", Napi::Boolean::New(env, offload));
  return result;
}

Napi::Value Native::TapSetPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  bool persist = info.Length() > 1 && info[1].ToBoolean().Value();
  if (ioctl(static_cast<int>(fd), TUNSETPERSIST, persist ? 1 : 0) < 0)
    return ThrowErrno(env, errno, "ioctl", "TUNSETPERSIST");
  return env.Undefined();
}

// tapSetCarrier(fd, on): the tap's carrier (Linux 4.20+), so bridges, bonds and routing daemons
// see a pseudowire that is down as a link that is down.
Napi::Value Native::TapSetCarrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  int carrier = info.Length() > 1 && info[1].ToBoolean().Value() ? 1 : 0;
  if (ioctl(static_cast<int>(fd), TUNSETCARRIER, &carrier) < 0)
    return ThrowErrno(env, errno, "ioctl", "TUNSETCARRIER");
  return env.Undefined();
}

Napi::Value Native::UdpOpen(const Napi::CallbackInfo& info) { return OpenSocket(info, SOCK_DGRAM); }
Napi::Value Native::RawOpen(const Napi::CallbackInfo& info) { return OpenSocket(info, SOCK_RAW); }

// udpOpen(family, localAddress, localPort, opts) / rawOpen(family, localAddress, protocol, opts)
Napi::Value Native::OpenSocket(const Napi::CallbackInfo& info, int type) {
  Napi::Env env = info.Env();
  const bool udp = type == SOCK_DGRAM;
  int family;
  std::string address;
  int64_t third;
  if (!FamilyArg(info, 0, &family) || !StringArg(info, 1, "localAddress", &address) ||
      !IntArg(info, 2, udp ? "localPort" : "protocol", &third))
    return env.Undefined();
  if (third < 0 || third > (udp ? 65535 : 255)) {
    Napi::RangeError::New(env, udp ? "localPort out of range" : "protocol out of range")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value opts = info.Length() > 3 ? info[3] : env.Undefined();
  std::vector<IntOption> options;
  if (!IntOptions(env, opts, &options)) return env.Undefined();
  sockaddr_storage local;
  socklen_t local_len;
  if (!ParseAddress(env, family, address, udp ? static_cast<uint16_t>(third) : 0, &local, &local_len))
    return env.Undefined();

  const int af = family == 4 ? AF_INET : AF_INET6;
  const int protocol = udp ? IPPROTO_UDP : static_cast<int>(third);
  int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return ThrowErrno(env, errno, "socket");

  const char* failed = nullptr;
  int err = 0;
  auto check = [&](int e, const char* what) {
    if (e != 0 && failed == nullptr) { failed = what; err = e; }
  };
  if (family == 6) {
    // Raw IPv6 sockets never see IPv4 and refuse IPV6_V6ONLY (EINVAL).
    if (udp) check(SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1), "setsockopt IPV6_V6ONLY");
    check(SetInt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT), "setsockopt IPV6_MTU_DISCOVER");
  } else {
    check(SetInt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT), "setsockopt IP_MTU_DISCOVER");
  }
  check(SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, static_cast<int>(NumOpt(opts, "rcvbuf", kDefaultBuf))),
        "setsockopt SO_RCVBUF");
  check(SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, static_cast<int>(NumOpt(opts, "sndbuf", kDefaultBuf))),
        "setsockopt SO_SNDBUF");
  // The caller's options, in order (TypeScript knows what they mean; src/native/sockopt.ts).
  std::string option_failed;
  for (const IntOption& o : options) {
    if (failed != nullptr) break;
    int e = SetInt(fd, o.level, o.name, o.value);
    if (e != 0) {
      option_failed = "setsockopt " + o.label;
      check(e, option_failed.c_str());
    }
  }
  if (failed == nullptr && bind(fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0)
    check(errno, "bind");
  if (failed != nullptr) {
    close(fd);
    // syscall is the bare name ('setsockopt', 'bind'); the option goes in the message.
    std::string what(failed);
    std::string syscall = what.substr(0, what.find(' '));
    std::string detail = what.size() > syscall.size() ? what.substr(syscall.size() + 1) + " " : "";
    return ThrowErrno(env, err, syscall.c_str(), detail + AddrText(family, address, udp ? third : -1));
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Native::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  StopPoll(static_cast<int>(fd));  // a closed fd must not stay registered in this loop
  if (close(static_cast<int>(fd)) != 0 && errno != EINTR) return ThrowErrno(env, errno, "close");
  return env.Undefined();
}

Napi::Value Native::PathMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family;
  std::string address;
  if (!FamilyArg(info, 0, &family) || !StringArg(info, 1, "remoteAddress", &address))
    return env.Undefined();
  sockaddr_storage remote;
  socklen_t len;
  if (!ParseAddress(env, family, address, 9, &remote, &len)) return env.Undefined();
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&remote), len) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "connect", address);
  }
  int mtu = 0;
  socklen_t optlen = sizeof(mtu);
  int rc = family == 4 ? getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &optlen)
                       : getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &optlen);
  int err = errno;
  close(fd);
  if (rc != 0) return ThrowErrno(env, err, "getsockopt", family == 4 ? "IP_MTU" : "IPV6_MTU");
  return Napi::Number::New(env, mtu);
}

Napi::Value Native::LocalPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return ThrowErrno(env, errno, "getsockname");
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  else if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return Napi::Number::New(env, port);
}

Napi::Value Native::SetPeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t id, port;
  int family;
  std::string address;
  if (!IntArg(info, 0, "peerId", &id) || !FamilyArg(info, 1, &family) ||
      !StringArg(info, 2, "address", &address) || !IntArg(info, 3, "port", &port))
    return env.Undefined();
  if (id < 0 || id >= kMaxPeerId || port < 0 || port > 65535) {
    Napi::RangeError::New(env, "peerId or port out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Peer peer;
  if (!ParseAddress(env, family, address, static_cast<uint16_t>(port), &peer.addr, &peer.len))
    return env.Undefined();
  if (peers_.size() <= static_cast<size_t>(id)) {
    size_t n = std::max<size_t>(static_cast<size_t>(id) + 1, peers_.size() * 2);
    peers_.resize(std::min<size_t>(n, kMaxPeerId), Peer{{}, 0});
  }
  peers_[id] = peer;
  return env.Undefined();
}

// setSockoptInt(fd, level, name, value): one integer setsockopt on a socket this addon did not
// open (src/netlink's monitor socket, which the netlink package owns: NETLINK_NO_ENOBUFS,
// SO_RCVBUFFORCE). Throws the usual errno Error (syscall 'setsockopt').
Napi::Value Native::SetSockoptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, level, name, value;
  if (!IntArg(info, 0, "fd", &fd) || !IntArg(info, 1, "level", &level) || !IntArg(info, 2, "name", &name) ||
      !IntArg(info, 3, "value", &value))
    return env.Undefined();
  if (fd < 0 || fd > INT32_MAX || level < 0 || level > INT32_MAX || name < 0 || name > INT32_MAX ||
      value < INT32_MIN || value > INT32_MAX) {
    Napi::RangeError::New(env, "setSockoptInt: fd, level or name out of range, or value not a 32-bit int")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int err = SetInt(static_cast<int>(fd), static_cast<int>(level), static_cast<int>(name), static_cast<int>(value));
  if (err != 0)
    return ThrowErrno(env, err, "setsockopt",
                      "level " + std::to_string(level) + " option " + std::to_string(name) + " on fd " + std::to_string(fd));
  return env.Undefined();
}

}  // namespace l2tpd
