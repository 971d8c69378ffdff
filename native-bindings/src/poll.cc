// Readiness: every polled fd goes into one epoll set per instance, and libuv watches that set
// with a single uv_poll_t. Each libuv turn costs the JS heap an object (Node's CheckImmediate
// makes one per turn), so with a slice set (pollSlice) the callback keeps waiting on the set
// itself — until a libuv timer is due, the wake fd fires, or the slice ends — instead of
// returning to libuv after every batch. JS callback: (fd, events, ready), ready = how many fds
// that epoll_wait reported; pollEnd's callback runs after them.
#include "addon.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace l2tpd {

namespace {

uint32_t ToEpoll(int events) {
  return ((events & kPollReadable) ? uint32_t{EPOLLIN} : 0u) | ((events & kPollWritable) ? uint32_t{EPOLLOUT} : 0u);
}

// What to report for the kernel's epoll bits, given the mask JS asked for. On an error or hangup
// report the whole mask, so JS tries the I/O and gets the real errno.
int FromEpoll(uint32_t ready, int asked) {
  if (ready & (EPOLLERR | EPOLLHUP)) return asked;
  return asked & (((ready & EPOLLIN) ? kPollReadable : 0) | ((ready & EPOLLOUT) ? kPollWritable : 0));
}

}  // namespace

struct EpollWatch {
  uv_poll_t poll;
  int epfd;
};

bool Native::EnsureEpoll(Napi::Env env) {
  if (epoll_ != nullptr) return true;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    ThrowErrno(env, errno, "epoll_create1");
    return false;
  }
  auto* w = new EpollWatch();
  w->epfd = epfd;
  int rc = uv_poll_init(loop_, &w->poll, epfd);
  if (rc != 0) {
    close(epfd);
    delete w;
    ThrowErrno(env, -rc, "uv_poll_init");
    return false;
  }
  w->poll.data = this;
  epoll_ = w;
  return true;
}

// Puts h in the set with `events` (0: takes it out: epoll reports errors and hangups even for an
// empty mask). libuv watches the set only while something in it is armed: a paused or empty set
// must not keep the loop (and so the thread) alive, as separate uv_poll handles would not.
// Returns 0 or the errno of epoll_ctl (h unchanged then).
int Native::Arm(PollHandle* h, int events) {
  const bool was = h->events != 0;
  const bool now = events != 0;
  if (now) {
    epoll_event ev{};
    ev.events = ToEpoll(events);
    ev.data.fd = h->fd;
    int rc = epoll_ctl(epoll_->epfd, was ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, h->fd, &ev);
    // ENOENT: the fd was closed behind our back (the kernel dropped it from the set) and reused.
    if (rc != 0 && errno == ENOENT) rc = epoll_ctl(epoll_->epfd, EPOLL_CTL_ADD, h->fd, &ev);
    if (rc != 0) return errno;
  } else if (was) {
    epoll_ctl(epoll_->epfd, EPOLL_CTL_DEL, h->fd, nullptr);
  }
  h->events = events;
  if (was == now) return 0;
  armed_count_ += now ? 1 : -1;
  if (now && armed_count_ == 1) uv_poll_start(&epoll_->poll, UV_READABLE, OnEpollReady);
  if (!now && armed_count_ == 0) uv_poll_stop(&epoll_->poll);
  return 0;
}

// pollStart(fd, events, callback)
Napi::Value Native::PollStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "pollStart(fd: number, events: number, callback: function)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int events = info[1].As<Napi::Number>().Int32Value() & (kPollReadable | kPollWritable);
  if (fd < 0 || events == 0 || fd == wake_fd_) {
    Napi::RangeError::New(env, "pollStart: bad fd or empty events mask").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!EnsureEpoll(env)) return env.Undefined();

  auto it = polls_.find(fd);
  const bool fresh = it == polls_.end();
  PollHandle* h = fresh ? new PollHandle() : it->second;
  h->fd = fd;
  if (int err = Arm(h, events)) {
    if (fresh) delete h;
    else StopPoll(fd);
    return ThrowErrno(env, err, "epoll_ctl");
  }
  if (fresh) polls_[fd] = h;
  // Re-arming with the same callback (after pollPause, or a new mask) keeps the reference.
  if (h->callback.IsEmpty() || !h->callback.Value().StrictEquals(info[2]))
    h->callback = Napi::Persistent(info[2].As<Napi::Function>());
  return env.Undefined();
}

Napi::Value Native::PollStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "pollStop(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  StopPoll(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

// pollPause(fd): stop reporting readiness but keep the handle and callback, so the next
// pollStart on this fd only re-arms it (backpressure pauses taps often; rebuilding is waste).
Napi::Value Native::PollPause(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  auto it = polls_.find(static_cast<int>(fd));
  if (it != polls_.end()) Arm(it->second, 0);
  return env.Undefined();
}

// pollSlice(ms): how long one readiness callback may keep serving the set (0: one batch).
Napi::Value Native::PollSlice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ms;
  if (!IntArg(info, 0, "ms", &ms)) return env.Undefined();
  if (ms < 0 || ms > 1000) {
    Napi::RangeError::New(env, "pollSlice: ms must be 0..1000").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  slice_ms_ = static_cast<int>(ms);
  return env.Undefined();
}

// pollWake(fd): an eventfd (from wakeOpen) that ends the slice when signalled, so messages from
// other threads are not left waiting behind traffic. Not counted as armed.
Napi::Value Native::PollWake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  if (wake_fd_ >= 0 || polls_.count(static_cast<int>(fd)) != 0) {
    Napi::Error::New(env, "pollWake: a wake fd is already set, or fd is polled").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!EnsureEpoll(env)) return env.Undefined();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = static_cast<int>(fd);
  if (epoll_ctl(epoll_->epfd, EPOLL_CTL_ADD, static_cast<int>(fd), &ev) != 0)
    return ThrowErrno(env, errno, "epoll_ctl");
  wake_fd_ = static_cast<int>(fd);
  return env.Undefined();
}

// pollEnd(callback | null): called once after the fd callbacks of each epoll_wait (one wake),
// before the next wait: work the callbacks gathered (sends to flush) goes out once per wake.
Napi::Value Native::PollEnd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !(info[0].IsFunction() || info[0].IsNull())) {
    Napi::TypeError::New(env, "pollEnd(callback: function | null)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info[0].IsNull()) end_callback_.Reset();
  else end_callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

// wakeOpen() -> fd: a non-blocking eventfd for pollWake; any thread's instance may signal it.
Napi::Value Native::WakeOpen(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return ThrowErrno(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// wakeSignal(fd): make the eventfd readable (a full counter is still readable: EAGAIN is fine).
Napi::Value Native::WakeSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  uint64_t one = 1;
  if (write(static_cast<int>(fd), &one, sizeof one) < 0 && errno != EAGAIN) return ThrowErrno(env, errno, "write");
  return env.Undefined();
}

// The handle is freed after the current dispatch (a callback may stop its own fd, or another
// one whose event is still to come in the same epoll batch).
void Native::StopPoll(int fd) {
  auto it = polls_.find(fd);
  if (it == polls_.end()) return;
  PollHandle* h = it->second;
  polls_.erase(it);
  Arm(h, 0);
  h->callback.Reset();
  if (dispatching_) retired_.push_back(h);
  else delete h;
}

void Native::StopAllPolls() {
  while (!polls_.empty()) StopPoll(polls_.begin()->first);
  for (PollHandle* h : retired_) delete h;
  retired_.clear();
  if (epoll_ != nullptr) {
    // uv_poll_stop takes the set out of libuv's epoll at once, so it can be closed now. The
    // handle's memory must outlive the close, which completes after this addon may have been
    // unloaded (a worker's environment closes its addons first): no close callback, and the
    // few bytes are left to the thread's end.
    uv_poll_stop(&epoll_->poll);
    close(epoll_->epfd);
    uv_close(reinterpret_cast<uv_handle_t*>(&epoll_->poll), nullptr);
    epoll_ = nullptr;
  }
  wake_fd_ = -1;
  end_callback_.Reset();
}

void Native::OnEpollReady(uv_poll_t* handle, int status, int events) {
  static_cast<Native*>(handle->data)->ServeReady();
}

void Native::ServeReady() {
  Napi::Env env(env_);
  dispatching_ = true;
  // Right after a wake, one batch only: the message that came with it waits in libuv (its async
  // event may be reported after ours in the next turn), so do not start a slice ahead of it.
  const int slice_ms = after_wake_ ? 0 : slice_ms_;
  after_wake_ = false;
  const uint64_t start = uv_now(loop_);
  int timeout = 0;  // libuv just saw the set readable
  bool more = true;
  while (more) {
    int n = epoll_wait(epoll_->epfd, ready_, kMaxReady, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    uv_update_time(loop_);  // timers the callbacks set count from now, not from the turn's start
    {
      // One callback scope per epoll_wait: the fds' callbacks and pollEnd's are plain calls in
      // it, so the per-call cost of napi_make_callback (its scope, the microtask and tick
      // checkpoint on leaving it) is paid once per wake, not once per ready fd.
      // (Not Napi::CallbackScope: it makes a fresh resource object per scope, garbage per wake;
      // the global object is the resource, as napi_make_callback's receiver was.)
      Napi::HandleScope scope(env);
      napi_callback_scope cb_scope;
      if (napi_open_callback_scope(env, env.Global(), *async_context_, &cb_scope) != napi_ok) break;
      napi_value argv[3] = {nullptr, nullptr, Napi::Number::New(env, n)};
      bool js_ok = true;
      for (int i = 0; i < n; i++) {
        int fd = ready_[i].data.fd;
        if (fd == wake_fd_) {
          uint64_t count;
          while (read(fd, &count, sizeof count) > 0) {
          }
          more = false;
          after_wake_ = true;
          continue;
        }
        auto it = polls_.find(fd);
        if (it == polls_.end()) continue;  // stopped earlier in this batch
        PollHandle* h = it->second;
        int ev = FromEpoll(ready_[i].events, h->events);  // 0 if paused earlier in this batch
        if (ev == 0) continue;
        Napi::HandleScope per_call(env);  // a slice makes thousands of calls
        argv[0] = Napi::Number::New(env, h->fd);
        argv[1] = Napi::Number::New(env, ev);
        if (!CallJs(env, h->callback.Value(), 3, argv)) {
          js_ok = more = false;  // JS can no longer run (worker terminating)
          break;
        }
      }
      if (js_ok && !end_callback_.IsEmpty() && !CallJs(env, end_callback_.Value(), 0, nullptr)) more = false;
      napi_close_callback_scope(env, cb_scope);
    }
    if (!more || slice_ms == 0 || armed_count_ == 0) break;
    int due = uv_backend_timeout(loop_);  // ms to the next libuv timer; 0: something is pending
    uint64_t elapsed = uv_now(loop_) - start;
    if (due == 0 || elapsed >= static_cast<uint64_t>(slice_ms)) break;
    int left = slice_ms - static_cast<int>(elapsed);
    timeout = due < 0 || due > left ? left : due;
  }
  dispatching_ = false;
  for (PollHandle* h : retired_) delete h;
  retired_.clear();
}

// false: JS can no longer run (a worker being terminated: the call fails without a pending
// exception); that ends the slice rather than becoming a fatal error. A JS exception goes to
// process 'uncaughtException', as from any callback, and the dispatch goes on.
bool Native::CallJs(Napi::Env env, napi_value fn, size_t argc, const napi_value* argv) {
  napi_value result;
  napi_status st = napi_call_function(env, env.Global(), fn, argc, argv, &result);
  if (st == napi_ok) return true;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
    return true;
  }
  return false;
}

}  // namespace l2tpd
