// Readiness: one uv_poll_t per fd on the calling thread's loop; JS callback (fd, events).
#include "addon.h"

namespace l2tpd {

namespace {

int ToUv(int events) {
  return ((events & kPollReadable) ? UV_READABLE : 0) | ((events & kPollWritable) ? UV_WRITABLE : 0);
}

int FromUv(int events) {
  return ((events & (UV_READABLE | UV_DISCONNECT)) ? kPollReadable : 0) |
         ((events & UV_WRITABLE) ? kPollWritable : 0);
}

}  // namespace

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
  if (fd < 0 || events == 0) {
    Napi::RangeError::New(env, "pollStart: bad fd or empty events mask").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  PollHandle* h;
  auto it = polls_.find(fd);
  if (it != polls_.end()) {
    h = it->second;
  } else {
    h = new PollHandle();
    h->owner = this;
    h->fd = fd;
    h->closing = false;
    int rc = uv_poll_init(loop_, &h->poll, fd);
    if (rc != 0) {
      delete h;  // never registered with the loop
      return ThrowErrno(env, -rc, "uv_poll_init");
    }
    h->poll.data = h;
    polls_[fd] = h;
  }
  h->events = events;
  // Re-arming with the same callback (after pollPause, or a new mask) keeps the reference.
  if (h->callback.IsEmpty() || !h->callback.Value().StrictEquals(info[2]))
    h->callback = Napi::Persistent(info[2].As<Napi::Function>());
  int rc = uv_poll_start(&h->poll, ToUv(events), OnPoll);
  if (rc != 0) {
    StopPoll(fd);
    return ThrowErrno(env, -rc, "uv_poll_start");
  }
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
  if (it != polls_.end()) {
    it->second->events = 0;
    uv_poll_stop(&it->second->poll);
  }
  return env.Undefined();
}

// Safe from inside the handle's own callback: the memory is freed in OnClosed, later.
void Native::StopPoll(int fd) {
  auto it = polls_.find(fd);
  if (it == polls_.end()) return;
  PollHandle* h = it->second;
  polls_.erase(it);
  h->closing = true;
  h->callback.Reset();
  uv_poll_stop(&h->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnClosed);
}

void Native::StopAllPolls() {
  while (!polls_.empty()) StopPoll(polls_.begin()->first);
}

void Native::OnClosed(uv_handle_t* handle) {
  delete static_cast<PollHandle*>(handle->data);
}

void Native::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* h = static_cast<PollHandle*>(handle->data);
  if (h->closing || h->callback.IsEmpty()) return;
  Native* self = h->owner;
  Napi::Env env(self->env_);
  Napi::HandleScope scope(env);
  // On a poll error report what was asked for, so JS tries the I/O and gets the real errno.
  int ev = status < 0 ? h->events : FromUv(events);
  napi_value argv[2] = {Napi::Number::New(env, h->fd), Napi::Number::New(env, ev)};
  napi_value result;
  // Plain napi_make_callback: it fails without a pending exception while a worker is being
  // terminated (JS can no longer run); that is ignored rather than turned into a fatal error.
  napi_status st = napi_make_callback(env, *self->async_context_, env.Global(), h->callback.Value(),
                                      2, argv, &result);
  bool pending = false;
  if (st != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);  // -> process 'uncaughtException', like any callback
  }
}

}  // namespace l2tpd
