// bastion/lightproc/task.hpp: task<T>, the lazy coroutine type every bastion body is written in.
#pragma once

#include <bastion/detail/block_cache.hpp>
#include <bastion/detail/promise.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>

namespace bastion {

template <class T = void>
class task;

namespace detail {

/// Bytes reserved in front of every task frame. When a task is spawned, its lightproc is
/// built in this space, so a proc costs one allocation (frame + proc) instead of two.
inline constexpr std::size_t proc_prefix_size = 128;
/// Tag word (the last 8 bytes of the prefix): the prefix is unused.
inline constexpr std::uint64_t prefix_unused = 0x62617374696F6E30ULL;
/// Tag word: a proc lives in the prefix and owns the whole block; the frame's deallocation
/// leaves the block to the proc.
inline constexpr std::uint64_t prefix_owned_by_proc = 0x62617374696F6E31ULL;

/// The tag word in front of a frame allocated by task_promise.
inline std::uint64_t& frame_prefix_tag(void* frame) noexcept {
  return *reinterpret_cast<std::uint64_t*>(static_cast<std::byte*>(frame) - sizeof(std::uint64_t));
}
/// The size word (the 8 bytes before the tag): the whole block's size in bytes (prefix
/// included), which cached_deallocate needs. A proc built in the prefix ends before it.
inline std::uint64_t& frame_block_size(void* frame) noexcept {
  return *reinterpret_cast<std::uint64_t*>(
      static_cast<std::byte*>(frame) - 2 * sizeof(std::uint64_t));
}

/// The promise of task<T>: promise_base (continuation, symmetric final transfer) plus
/// the result holder for T. Frames are allocated with proc_prefix_size bytes in front.
template <class T>
class task_promise final
    : public promise_base
    , public promise_result<T> {
public:
  task<T> get_return_object() noexcept;

  /// Frames come from the per-thread block caches (detail/block_cache.hpp).
  static void* operator new(std::size_t n) {
    const std::size_t total = n + proc_prefix_size;
    auto* block = static_cast<std::byte*>(cached_allocate(total));
    void* frame = block + proc_prefix_size;
    frame_prefix_tag(frame) = prefix_unused;
    frame_block_size(frame) = total;
    return frame;
  }
  static void operator delete(void* frame) noexcept {
    if (frame_prefix_tag(frame) == prefix_owned_by_proc) {
      return; // the proc in the prefix frees the block when its last reference goes
    }
    cached_deallocate(
        static_cast<std::byte*>(frame) - proc_prefix_size,
        static_cast<std::size_t>(frame_block_size(frame)));
  }
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
