// An rtnetlink request that must not hold up the event loop. The kernel carries out a request
// inside the sendmsg() that delivers it: deleting a group of a few hundred links takes tens of
// milliseconds there. This sends one request from a libuv pool thread, on a socket of its own, and
// waits there for its acknowledgement. What the request says is built in TypeScript.
#include "addon.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace l2tpd {

namespace {

// Longest wait for the acknowledgement: the kernel always answers a request that asks for one,
// so this only bounds a pool thread's wait should it not.
constexpr int kAckTimeoutSeconds = 60;

class NetlinkAckWorker : public Napi::AsyncWorker {
 public:
  NetlinkAckWorker(Napi::Env env, Napi::Buffer<uint8_t> message)
      : Napi::AsyncWorker(env, "l2tpd:netlinkAck"),
        deferred_(Napi::Promise::Deferred::New(env)),
        message_(message.Data(), message.Data() + message.Length()) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return Fail(errno, "socket");
    timeval tv{kAckTimeoutSeconds, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
      Fail(errno, "setsockopt");
      close(fd);
      return;
    }
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    iovec iov{message_.data(), message_.size()};
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof(kernel);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n;
    do {
      n = sendmsg(fd, &msg, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      Fail(errno, "sendmsg");
      close(fd);
      return;
    }
    const uint32_t seq = reinterpret_cast<const nlmsghdr*>(message_.data())->nlmsg_seq;
    std::vector<uint8_t> reply(65536);
    for (;;) {
      do {
        n = recv(fd, reply.data(), reply.size(), 0);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        Fail(errno == EAGAIN ? ETIMEDOUT : errno, "recv");
        break;
      }
      int len = static_cast<int>(n);
      bool answered = false;
      for (auto* h = reinterpret_cast<nlmsghdr*>(reply.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq) continue;
        if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
          result_ = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        } else if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) {
          Fail(EPROTO, "recv");  // an end that is not an acknowledgement: nothing more will come
        } else {
          continue;  // a reply the request asked for (a GET), before its acknowledgement
        }
        answered = true;
        break;
      }
      if (answered) break;
    }
    close(fd);
  }

  void OnOK() override {
    if (syscall_ != nullptr) {
      deferred_.Reject(ErrnoError(Env(), errno_, syscall_, "rtnetlink request off the event loop").Value());
    } else {
      deferred_.Resolve(Napi::Number::New(Env(), result_));
    }
  }

 private:
  void Fail(int err, const char* syscall) {
    errno_ = err;
    syscall_ = syscall;
  }

  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> message_;  // copied: the caller's buffer may be reused meanwhile
  int result_ = 0;
  int errno_ = 0;
  const char* syscall_ = nullptr;
};

}  // namespace

// netlinkAck(message) -> Promise<number>: send one complete rtnetlink message (nlmsghdr with
// NLM_F_REQUEST|NLM_F_ACK) from a pool thread and resolve with its acknowledgement's error field:
// 0, or a negative errno. A failing socket call rejects with an errno error.
Napi::Value Native::NetlinkAck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    Napi::TypeError::New(env, "netlinkAck(message: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto message = info[0].As<Napi::Buffer<uint8_t>>();
  if (message.Length() < NLMSG_HDRLEN ||
      reinterpret_cast<const nlmsghdr*>(message.Data())->nlmsg_len != message.Length()) {
    return ThrowErrno(env, EINVAL, "netlinkAck", "message: one netlink message whose nlmsg_len is its length");
  }
  // Without NLM_F_ACK a success is not answered, and a dump ends without one: either would hold a
  // pool thread until the timeout.
  const uint16_t flags = reinterpret_cast<const nlmsghdr*>(message.Data())->nlmsg_flags;
  if ((flags & (NLM_F_REQUEST | NLM_F_ACK)) != (NLM_F_REQUEST | NLM_F_ACK) || (flags & NLM_F_DUMP) == NLM_F_DUMP) {
    return ThrowErrno(env, EINVAL, "netlinkAck", "message: nlmsg_flags must have NLM_F_REQUEST and NLM_F_ACK, and not NLM_F_DUMP");
  }
  auto* worker = new NetlinkAckWorker(env, message);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace l2tpd
