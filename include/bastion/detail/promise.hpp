// bastion/detail/promise.hpp: the promise shape shared by every bastion coroutine type.
//
// One promise_base owns the continuation and a final_awaitable that transfers to it
// symmetrically (Lewis Baker's cppcoro task design); thin result holders sit on top.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

namespace bastion::detail {

/// State every bastion coroutine promise carries: who to resume when the body ends.
class promise_base {
public:
  /// Resumes the continuation (the awaiting coroutine) by symmetric transfer, so a chain of
  /// nested tasks unwinds without growing the stack.
  struct final_awaitable {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
      return h.promise().continuation_;
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaitable final_suspend() const noexcept { return {}; }

  /// Sets who resumes when this coroutine finishes. A root coroutine (one a proc polls
  /// directly) keeps std::noop_coroutine(), so finishing returns control to the worker.
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

private:
  std::coroutine_handle<> continuation_ = std::noop_coroutine();
};

/// Result storage of a coroutine returning T: empty until the body ends, then a value or
/// the exception that escaped the body.
template <class T>
class promise_result {
public:
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    result_.template emplace<1>(std::forward<U>(v));
  }
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

  /// True when the body ended by throwing.
  [[nodiscard]] bool failed() const noexcept { return result_.index() == 2; }
  /// The exception that escaped the body, or null.
  [[nodiscard]] std::exception_ptr exception() const noexcept {
    return failed() ? std::get<2>(result_) : nullptr;
  }
  /// Moves the value out, or rethrows the body's exception. @pre the body ended.
  T take() {
    if (failed()) {
      // Move the exception out: the frame may be freed on another thread later, and the
      // exception object must then be owned by the thread handling it.
      std::rethrow_exception(std::exchange(std::get<2>(result_), nullptr));
    }
    return std::move(std::get<1>(result_));
  }

private:
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

/// Result storage of a coroutine returning a reference: stores the address.
template <class T>
class promise_result<T&> {
public:
  void return_value(T& v) noexcept { result_.template emplace<1>(std::addressof(v)); }
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
  [[nodiscard]] bool failed() const noexcept { return result_.index() == 2; }
  [[nodiscard]] std::exception_ptr exception() const noexcept {
    return failed() ? std::get<2>(result_) : nullptr;
  }
  T& take() {
    if (failed()) {
      // Move the exception out: the frame may be freed on another thread later, and the
      // exception object must then be owned by the thread handling it.
      std::rethrow_exception(std::exchange(std::get<2>(result_), nullptr));
    }
    return *std::get<1>(result_);
  }

private:
  std::variant<std::monostate, T*, std::exception_ptr> result_;
};

/// Result storage of a coroutine returning nothing: only the escaped exception, if any.
template <>
class promise_result<void> {
public:
  void return_void() noexcept {}
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  [[nodiscard]] bool failed() const noexcept { return exception_ != nullptr; }
  [[nodiscard]] std::exception_ptr exception() const noexcept { return exception_; }
  void take() {
    if (exception_) {
      std::rethrow_exception(std::exchange(exception_, nullptr));
    }
  }

private:
  std::exception_ptr exception_;
};

} // namespace bastion::detail
