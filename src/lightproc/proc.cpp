// src/lightproc/proc.cpp: the lightproc state machine (poll, wake, cancel, join) and run().
#include <bastion/log.hpp>

#include <bastion/detail/proc.hpp>

#include "../executor/runtime_impl.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>

namespace bastion::detail {

namespace {
thread_local proc_header* tl_proc = nullptr;

using h = proc_header;

template <class F>
void call_callback(const char* which, std::uint64_t pid, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    logger().error("proc {}: {} callback threw: {}", pid, which, e.what());
  } catch (...) {
    logger().error("proc {}: {} callback threw a non-std exception", pid, which);
  }
}
} // namespace

proc_header* current_proc() noexcept {
  return tl_proc;
}
proc_header* set_current_proc(proc_header* p) noexcept {
  proc_header* prev = tl_proc;
  tl_proc = p;
  return prev;
}

/// Publishes completion: clears running/scheduled/notified, sets complete (+ `extra`), wakes
/// the joiner, drops the body's reference. Called by the poller only.
///
/// Each CAS attempt decides afresh from the state it read: a joiner replacing its waker clears
/// join_waiter (register_join_waiter) and then owns join_waker_, so the completer may touch
/// join_waker_ only after a CAS that saw join_waiter set succeeded.
void complete_proc(proc_header* p, std::uint64_t extra) noexcept {
  auto s = p->state_.load(std::memory_order_relaxed);
  for (;;) {
    const auto done = (s & ~(h::running | h::scheduled | h::notified)) | h::complete | extra;
    if (s & h::join_waiter) {
      // Someone waits: publish first, wake, then drop the body's reference.
      if (p->state_.compare_exchange_weak(
              s, done, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        p->join_waker_.wake();
        p->release();
        return;
      }
      continue;
    }
    // Common case: publish completion and drop the body's reference in one CAS. A joiner
    // that registers meanwhile makes the CAS fail, and the next round takes the waking path.
    const auto next = done - h::ref_one;
    if (p->state_.compare_exchange_weak(
            s, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      if (next < h::ref_one) {
        delete p;
      }
      return;
    }
  }
}

void poll_proc(proc_header* p) noexcept {
  auto s = p->state_.load(std::memory_order_relaxed);
  while (!p->state_.compare_exchange_weak(
      s,
      (s & ~h::scheduled) | h::running | h::started,
      std::memory_order_acquire,
      std::memory_order_relaxed)) {
  }
  if (s & h::cancel_req) {
    p->destroy_body();
    complete_proc(p, h::closed);
    return;
  }
  const auto* cb = p->stack_.callbacks();
  if (!(s & h::started)) {
    if (cb != nullptr && cb->before_start) {
      call_callback("before_start", p->pid(), [&] { cb->before_start(p->pid()); });
    }
  }
  proc_header* prev = set_current_proc(p);
  if (p->guard_ == nullptr) {
    p->resume_body();
  } else if (p->guard_->ready(p->guard_, p)) {
    p->guard_ = nullptr;
    p->resume_body();
  }
  // Else a late wake: the guard parked it again (body not done; the state loop below applies).
  set_current_proc(prev);

  if (p->body_done()) {
    if (cb != nullptr) {
      if (auto e = p->body_exception(); e && cb->after_panic) {
        call_callback("after_panic", p->pid(), [&] { cb->after_panic(p->pid(), e); });
      }
      if (cb->after_complete) {
        call_callback("after_complete", p->pid(), [&] { cb->after_complete(p->pid()); });
      }
    }
    complete_proc(p, 0);
    return;
  }
  s = p->state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & h::cancel_req) {
      p->destroy_body();
      complete_proc(p, h::closed);
      return;
    }
    if (s & h::notified) {
      const auto next = (s & ~(h::running | h::notified)) | h::scheduled;
      if (p->state_.compare_exchange_weak(
              s, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        schedule(p, true);
        return;
      }
      continue;
    }
    if (p->state_.compare_exchange_weak(
            s, s & ~h::running, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
  }
}

void proc_header::enter(runnable* r, run_mode m) noexcept {
  if (m == run_mode::poll) {
    poll_proc(static_cast<proc_header*>(r));
  } else {
    cancel_queued(r);
  }
}

void proc_header::cancel_queued(runnable* r) noexcept {
  auto* p = static_cast<proc_header*>(r);
  p->destroy_body();
  complete_proc(p, closed);
}

void proc_header::wake_entry(wake_target* t, wake_mode m) noexcept {
  auto* p = static_cast<proc_header*>(t);
  if (m == wake_mode::drop) {
    p->release();
    return;
  }
  // One CAS both updates the flags and drops the waker's reference.
  auto s = p->state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & (complete | scheduled)) {
      // Nothing to do but let go; this may be the last reference.
      if (p->state_.fetch_sub(ref_one, std::memory_order_acq_rel) < 2 * ref_one) {
        delete p;
      }
      return;
    }
    // Not complete: the body's own reference keeps the proc alive past this CAS.
    const auto next = ((s & running) ? (s | notified) : (s | scheduled)) - ref_one;
    if (p->state_.compare_exchange_weak(
            s, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      if (!(s & running)) {
        schedule(p, false);
      }
      return;
    }
  }
}

void proc_header::request_cancel() noexcept {
  auto s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & complete) {
      return;
    }
    if (s & (running | scheduled)) {
      if (state_.compare_exchange_weak(
              s, s | cancel_req, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        return;
      }
      continue;
    }
    if (state_.compare_exchange_weak(
            s, s | cancel_req | scheduled, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      schedule(this, false);
      return;
    }
  }
}

void proc_header::reject() noexcept {
  auto s = state_.load(std::memory_order_relaxed);
  std::uint64_t next = 0;
  do {
    next = (s & ~(scheduled | running)) | complete | closed | rejected;
  } while (
      !state_.compare_exchange_weak(s, next, std::memory_order_acq_rel, std::memory_order_relaxed));
  destroy_body();
  if (s & join_waiter) {
    join_waker_.wake();
  }
  release();
}

bool proc_header::register_join_waiter(waker w) noexcept {
  auto s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (s & complete) {
      return false; // w dropped
    }
    if (!(s & join_waiter)) {
      break;
    }
    // Replace an earlier registration: take it back first so the completer cannot race.
    if (state_.compare_exchange_weak(
            s, s & ~join_waiter, std::memory_order_acq_rel, std::memory_order_acquire)) {
      join_waker_.reset();
      s &= ~join_waiter;
    }
  }
  join_waker_ = std::move(w);
  s = state_.fetch_or(join_waiter, std::memory_order_acq_rel);
  if (s & complete) {
    join_waker_.reset();
    return false;
  }
  return true;
}

void proc_header::drop_join_handle() noexcept {
  // join_interest is set while the handle lives, so one subtraction clears it and drops
  // the handle's reference together.
  if (state_.fetch_sub(join_interest + ref_one, std::memory_order_acq_rel) < 2 * ref_one) {
    delete this;
  }
}

// ---------------------------------------------------------------- run() ----

/// Where run()'s own proc goes when woken: a flag and a condition variable on the caller's
/// thread.
class inline_driver {
public:
  void notify() {
    std::lock_guard lk(mu_);
    ready_ = true;
    cv_.notify_one();
  }
  /// Waits for a notification; true when one arrived (false after `timeout`).
  bool wait(std::optional<std::chrono::milliseconds> timeout) {
    std::unique_lock lk(mu_);
    if (timeout) {
      if (!cv_.wait_for(lk, *timeout, [&] { return ready_; })) {
        return false;
      }
    } else {
      cv_.wait(lk, [&] { return ready_; });
    }
    ready_ = false;
    return true;
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool ready_ = false;
};

std::unique_ptr<inline_driver, void (*)(inline_driver*)> make_inline_driver() {
  return {new inline_driver, [](inline_driver* d) {
            delete d;
          }};
}

void run_inline(proc_header* p, inline_driver& drv) {
  runtime_impl* prev_rt = set_current_runtime(p->rt_);
  worker* w = current_worker();
  if (w != nullptr) {
    w->flush_lifo(); // let thieves reach what this worker had queued
  }
  for (;;) {
    poll_proc(p);
    if (p->load_state() & proc_header::complete) {
      break;
    }
    if (w == nullptr) {
      drv.wait(std::nullopt);
      continue;
    }
    // On a worker: keep its other tasks moving while this one waits (no deadlock).
    for (;;) {
      if (drv.wait(std::chrono::milliseconds(0))) {
        break;
      }
      if (w->run_one_nested()) {
        continue;
      }
      // This worker is not parked, so it is not the timer driver: fire due timers here.
      if (const auto n = w->rt_.fire_timers(std::chrono::steady_clock::now()); n > 0) {
        w->timers_fired_.inc(n);
        continue;
      }
      if (drv.wait(std::chrono::milliseconds(1))) {
        break;
      }
    }
  }
  set_current_runtime(prev_rt);
}

void schedule(proc_header* p, bool is_yield) noexcept {
  if (p->driver_ != nullptr) {
    p->driver_->notify();
    return;
  }
  runtime_impl* rt = p->rt_;
  worker* w = current_worker();
  if (w != nullptr && &w->rt_ == rt && !rt->shutdown_.load(std::memory_order_relaxed)) {
    // The LIFO stack is for a proc woken by the proc running now (message ping-pong
    // locality). Wakes from the worker itself (timers) keep their order in the queue.
    // A long poll (a producer) keeps this worker: what it wakes must be stealable.
    if (is_yield || current_proc() == nullptr || w->long_poll()) {
      w->push_back(p);
    } else {
      w->push_lifo(p);
    }
    return;
  }
  rt->inject(p);
}

void submit(runtime_impl* rt, proc_header* p, bool lifo) noexcept {
  worker* w = current_worker();
  if (w != nullptr && &w->rt_ == rt && !rt->shutdown_.load(std::memory_order_relaxed)) {
    w->spawned_.inc();
    if (lifo) {
      w->push_lifo(p);
    } else {
      w->push_back(p);
    }
    return;
  }
  rt->spawned_outside_.fetch_add(1, std::memory_order_relaxed);
  if (!rt->injector_.push(p)) {
    p->reject();
    return;
  }
  rt->notify_parked();
}

} // namespace bastion::detail
