// bastion/lightproc/task.hpp: task<T>, the lazy coroutine type every bastion body is written in.
#pragma once

#include <bastion/detail/promise.hpp>

#include <coroutine>
#include <stdexcept>
#include <utility>

namespace bastion {

template <class T = void>
class task;

namespace detail {

/// The promise of task<T>: promise_base (continuation, symmetric final transfer) plus
/// the result holder for T.
template <class T>
class task_promise final
    : public promise_base
    , public promise_result<T> {
public:
  task<T> get_return_object() noexcept;
};

} // namespace detail

/// A lazily started coroutine producing a T (or void, or a reference).
///
/// Nothing runs until the task is awaited (`co_await std::move(t)` or `co_await t`) or handed
/// to `bastion::spawn` / `bastion::run`. Awaiting resumes the task's body on the awaiting
/// thread by symmetric transfer and, when the body ends, transfers back to the awaiter on the
/// thread the body finished on. An exception escaping the body is rethrown to the awaiter.
///
/// Thread-safety: a task is a unique owner of its coroutine frame: move it, never share it.
/// Destroying a task that was never awaited destroys the frame without running it.
/// Design: Lewis Baker's cppcoro::task (lazy start, symmetric transfer).
template <class T>
class [[nodiscard]] task {
public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  explicit task(handle_type h) noexcept
      : h_(h) {}
  task(task&& o) noexcept
      : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  /// True when the task owns a coroutine frame.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(h_); }
  /// True when the body has run to its end (value stored or exception captured).
  [[nodiscard]] bool done() const noexcept { return h_ && h_.done(); }

  /// Awaits the task: starts its body, resumes the awaiter with its result or exception.
  /// @pre valid() and not yet started.
  auto operator co_await() & noexcept { return awaiter{h_}; }
  /// @copydoc operator co_await()
  auto operator co_await() && noexcept { return awaiter{h_}; }

  /// The coroutine handle (for the executor). Ownership stays with the task.
  [[nodiscard]] handle_type handle() const noexcept { return h_; }

private:
  struct awaiter {
    handle_type h;
    [[nodiscard]] bool await_ready() const noexcept { return !h || h.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
      h.promise().set_continuation(awaiting);
      return h;
    }
    decltype(auto) await_resume() {
      if (!h) {
        throw std::logic_error("bastion::task: co_await on an empty (moved-from) task");
      }
      return h.promise().take();
    }
  };

  void reset() noexcept {
    if (h_) {
      h_.destroy();
      h_ = {};
    }
  }

  handle_type h_;
};

template <class T>
task<T> detail::task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise>::from_promise(*this)};
}

} // namespace bastion
