// bastion/executor/blocking.hpp: spawn_blocking, which runs a blocking callable on the
// runtime's adaptive blocking pool and hands back an awaitable handle.
#pragma once

#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/blocking_pool.hpp>
#include <bastion/detail/proc.hpp>

#include <atomic>
#include <coroutine>
#include <exception>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace bastion {

namespace detail {

/// Hands `job` to `rt`'s blocking pool; false when the runtime is shut down.
bool submit_blocking(runtime_impl* rt, blocking_job* job) noexcept;

/// Shared state of one spawn_blocking call: the job the pool runs, its result, and the
/// waiter. flags_: done (result published, release) and has_waiter (waiter_ written before,
/// release); whoever sets the second of the two flags decides whether the waiter is woken.
/// Two references: the handle's and the job's.
template <class R>
class blocking_cell : public blocking_job {
public:
  using stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
  static constexpr std::uint32_t done = 1;
  static constexpr std::uint32_t has_waiter = 2;

  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      destroy_(this);
    }
  }
  [[nodiscard]] bool is_done() const noexcept {
    return (flags_.load(std::memory_order_acquire) & done) != 0;
  }
  /// Publishes the result (set by run) and wakes the waiter; drops the job's reference.
  void finish() noexcept {
    if (flags_.fetch_or(done, std::memory_order_acq_rel) & has_waiter) {
      waiter_.wake();
    }
    release();
  }
  /// Registers `w`; false (w dropped) when the job already finished.
  bool register_waiter(waker w) noexcept {
    waiter_ = std::move(w);
    if (flags_.fetch_or(has_waiter, std::memory_order_acq_rel) & done) {
      waiter_.reset();
      return false;
    }
    return true;
  }
  R take() {
    if (result_.index() == 2) {
      std::rethrow_exception(std::exchange(std::get<2>(result_), nullptr));
    }
    if constexpr (!std::is_void_v<R>) {
      return std::move(std::get<1>(result_));
    }
  }
  void set_exception(std::exception_ptr e) noexcept { result_.template emplace<2>(std::move(e)); }

protected:
  explicit blocking_cell(void (*destroy)(blocking_cell*) noexcept) noexcept
      : destroy_(destroy) {}
  ~blocking_cell() = default;

  std::variant<std::monostate, stored, std::exception_ptr> result_;

private:
  std::atomic<std::uint32_t> refs_{2};
  std::atomic<std::uint32_t> flags_{0};
  waker waiter_;
  void (*destroy_)(blocking_cell*) noexcept;
};

template <class R, class F>
class blocking_call final : public blocking_cell<R> {
public:
  explicit blocking_call(F f)
      : blocking_cell<R>(
            [](blocking_cell<R>* c) noexcept { delete static_cast<blocking_call*>(c); })
      , fn_(std::move(f)) {
    this->run_fn_ = [](blocking_job* j) noexcept {
      auto* self = static_cast<blocking_call*>(j);
      try {
        if constexpr (std::is_void_v<R>) {
          std::invoke(self->fn_);
          self->result_.template emplace<1>();
        } else {
          self->result_.template emplace<1>(std::invoke(self->fn_));
        }
      } catch (...) {
        self->result_.template emplace<2>(std::current_exception());
      }
      self->finish();
    };
  }

private:
  F fn_;
};

} // namespace detail

/// The handle spawn_blocking returns. `co_await std::move(h)` suspends the awaiting proc
/// until the call returned on a blocking thread, then yields its value or rethrows what it
/// threw (proc_rejected when the runtime was shut down before the call could be queued).
/// `std::move(h).join()` blocks the calling thread instead. Dropping the handle detaches:
/// the call still runs, its result is discarded.
/// Thread-safety: one owner; is_finished() is safe from any thread.
template <class R>
class [[nodiscard]] blocking_handle {
public:
  explicit blocking_handle(detail::blocking_cell<R>* c) noexcept
      : c_(c) {}
  blocking_handle(blocking_handle&& o) noexcept
      : c_(std::exchange(o.c_, nullptr)) {}
  blocking_handle& operator=(blocking_handle&& o) noexcept {
    if (this != &o) {
      reset();
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }
  blocking_handle(const blocking_handle&) = delete;
  blocking_handle& operator=(const blocking_handle&) = delete;
  ~blocking_handle() { reset(); }

  /// True once the call returned (or was rejected).
  [[nodiscard]] bool is_finished() const noexcept { return c_ && c_->is_done(); }

  /// Awaits the call; resumes on the worker that picks the proc up after the blocking
  /// thread woke it. Throws std::logic_error outside a bastion proc.
  auto operator co_await() && { return wait_operation{std::move(*this)}; }

  /// Blocks the calling thread until the call returned; value or rethrow.
  R join() && {
    auto run_join = [](blocking_handle h) -> task<R> {
      co_return co_await std::move(h);
    };
    return detail::block_on(run_join(std::move(*this)), detail::current_or_default_runtime());
  }

private:
  class wait_operation {
  public:
    explicit wait_operation(blocking_handle h) noexcept
        : h_(std::move(h)) {}
    [[nodiscard]] bool await_ready() const noexcept { return h_.is_finished(); }
    bool await_suspend(std::coroutine_handle<> h) {
      auto* cur = detail::current_proc();
      if (cur == nullptr) {
        throw std::logic_error("bastion::spawn_blocking: awaited outside a bastion proc");
      }
      cur->set_resume_point(h);
      return h_.c_->register_waiter(cur->make_waker());
    }
    R await_resume() { return h_.c_->take(); }

  private:
    blocking_handle h_;
  };

  void reset() noexcept {
    if (auto* c = std::exchange(c_, nullptr)) {
      c->release();
    }
  }

  detail::blocking_cell<R>* c_;
};

/// Runs `f()` on the current runtime's blocking pool (never on an executor worker) and
/// returns a handle to await its result.
///
/// The pool creates threads on demand up to its cap (runtime_config::blocking_threads or
/// BASTION_BLOCKING_THREADS), grows ahead of a rising load and retires idle threads (see
/// detail::blocking_pool). Safe from any thread. After the runtime shut down, the handle
/// reports proc_rejected. Complexity: one allocation, one lock acquisition.
template <class F>
  requires std::is_invocable_v<std::decay_t<F>&>
auto spawn_blocking(F&& f) -> blocking_handle<std::invoke_result_t<std::decay_t<F>&>> {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  auto* call = new detail::blocking_call<R, std::decay_t<F>>(std::forward<F>(f));
  if (!detail::submit_blocking(detail::current_or_default_runtime(), call)) {
    call->set_exception(std::make_exception_ptr(proc_rejected(0)));
    call->finish();
  }
  return blocking_handle<R>{call};
}

} // namespace bastion
