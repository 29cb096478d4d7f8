// bastion/detail/fiber_context.hpp: the machinery under stackful procs: a Boost.Context fiber
// with its own stack (fiber_context), the type-erased "await this for me" request a fiber
// hands to the coroutine that drives it (fiber_request), and that driving coroutine
// (fiber_main).
//
// Internal. The public API is bastion/lightproc/fiber.hpp.
//
// Design. A stackful proc is an ordinary lightproc (proc_impl<R>) whose body is the coroutine
// fiber_main(). fiber_main owns a fiber_context and switches into the fiber; when the fiber
// has to wait (this_fiber::await, yield, sleep_for), it leaves a fiber_request pointing at an
// awaiter that lives on the fiber's stack and switches back; fiber_main then co_awaits that
// awaiter on the fiber's behalf, exactly as a coroutine body would (the awaiter calls
// set_resume_point and publishes a waker as usual), and switches into the fiber again when
// it resumes. So a fiber reuses every awaiter of the library unchanged, its join handle is a
// plain join_handle<R>, and cancellation destroys fiber_main's frame, whose fiber_context
// unwinds the fiber's stack (its locals' destructors run). The fiber is always switched out
// before any waker is published, so a wake can never find it half-suspended.
#pragma once

#include <bastion/config.hpp>

#include <bastion/lightproc/task.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace bastion::detail {

class proc_header;

/// Thrown inside a fiber whose proc is being destroyed (cancellation, runtime shutdown), from
/// the suspension point it was parked at; caught where the fiber began. Not a
/// std::exception: `catch (const std::exception&)` lets it pass. A `catch (...)` that swallows
/// it only delays the unwinding to the fiber's next suspension point.
struct fiber_unwind {};

/// Storage for what an awaited expression (or a fiber body) produced: a value, a reference
/// (kept as an address) or nothing. Filled once, taken once.
template <class T>
class await_slot {
public:
  template <class F>
  void fill(F&& f) {
    value_.emplace(std::invoke(std::forward<F>(f)));
  }
  T take() {
    return std::move(*value_); // NOLINT(bugprone-unchecked-optional-access): @pre filled
  }

private:
  std::optional<T> value_;
};

template <class T>
class await_slot<T&> {
public:
  template <class F>
  void fill(F&& f) {
    p_ = std::addressof(std::invoke(std::forward<F>(f)));
  }
  T& take() noexcept { return *p_; }

private:
  T* p_ = nullptr;
};

template <class T>
class await_slot<T&&> {
public:
  template <class F>
  void fill(F&& f) {
    p_ = std::addressof(std::invoke(std::forward<F>(f)));
  }
  T&& take() noexcept { return std::move(*p_); }

private:
  T* p_ = nullptr;
};

template <>
class await_slot<void> {
public:
  template <class F>
  void fill(F&& f) {
    std::invoke(std::forward<F>(f));
  }
  void take() noexcept {}
};

/// What a suspended fiber asks its driver to co_await: await_suspend and await_resume of an
/// awaiter that lives on the fiber's stack, behind two function pointers. Neither call
/// throws: an exception is kept and rethrown inside the fiber.
class fiber_request {
public:
  fiber_request(const fiber_request&) = delete;
  fiber_request& operator=(const fiber_request&) = delete;

  /// The awaiter's await_suspend(h), normalised to symmetric transfer: noop_coroutine() when
  /// it suspended, `h` when it did not (or threw), else the handle it returned.
  std::coroutine_handle<> suspend(std::coroutine_handle<> h) noexcept {
    return suspend_fn_(this, h);
  }
  /// The awaiter's await_resume(), its result or exception kept for the fiber.
  void resume() noexcept { resume_fn_(this); }

protected:
  using suspend_fn = std::coroutine_handle<> (*)(fiber_request*, std::coroutine_handle<>) noexcept;
  using resume_fn = void (*)(fiber_request*) noexcept;

  fiber_request(suspend_fn s, resume_fn r) noexcept
      : suspend_fn_(s)
      , resume_fn_(r) {}
  ~fiber_request() = default;

private:
  suspend_fn suspend_fn_;
  resume_fn resume_fn_;
};

/// The fiber_request for an awaiter of type Awaiter (a reference to it; the awaiter stays
/// where the fiber put it). Lives on the fiber's stack for the duration of one suspension.
template <class Awaiter>
class fiber_await_request final : public fiber_request {
public:
  using result_type = decltype(std::declval<Awaiter&>().await_resume());

  explicit fiber_await_request(Awaiter& a) noexcept
      : fiber_request(&do_suspend, &do_resume)
      , a_(a) {}

  /// The awaited result, or rethrows what await_suspend / await_resume threw.
  result_type take() {
    if (error_) {
      std::rethrow_exception(error_);
    }
    return slot_.take();
  }

private:
  static std::coroutine_handle<> do_suspend(fiber_request* r, std::coroutine_handle<> h) noexcept {
    auto* self = static_cast<fiber_await_request*>(r);
    try {
      using suspend_result = decltype(self->a_.await_suspend(h));
      if constexpr (std::is_void_v<suspend_result>) {
        self->a_.await_suspend(h);
        return std::noop_coroutine();
      } else if constexpr (std::is_same_v<suspend_result, bool>) {
        return self->a_.await_suspend(h) ? std::noop_coroutine() : h;
      } else {
        return self->a_.await_suspend(h);
      }
    } catch (...) {
      self->error_ = std::current_exception();
      return h; // resume at once: the fiber rethrows
    }
  }
  static void do_resume(fiber_request* r) noexcept {
    auto* self = static_cast<fiber_await_request*>(r);
    if (self->error_) {
      return;
    }
    try {
      self->slot_.fill([self]() -> result_type { return self->a_.await_resume(); });
    } catch (...) {
      self->error_ = std::current_exception();
    }
  }

  Awaiter& a_;
  await_slot<result_type> slot_;
  std::exception_ptr error_;
};

/// One fiber: a Boost.Context fiber (boost::context::fiber) on a stack of its own, and the
/// switches in and out of it, annotated for AddressSanitizer and ThreadSanitizer.
///
/// Lifecycle (state_): created -> running <-> suspended -> finished -> (stack freed).
/// `running` while the fiber executes, `suspended` while it waits on request(),
/// `finished` once its body returned or unwound. Only the thread that currently owns the
/// proc (its poller, or the thread destroying it) touches a fiber_context; the proc's state
/// word orders one owner after the next, and the fiber switches are annotated as
/// synchronising for TSan.
///
/// Boost.Context is kept out of this header: the two boost::context::fiber objects (the
/// fiber's continuation while it is switched out, the resumer's while it runs) live in
/// raw storage that src/lightproc/fiber.cpp constructs and checks.
class fiber_context {
public:
  fiber_context(const fiber_context&) = delete;
  fiber_context& operator=(const fiber_context&) = delete;

  /// The fiber running on this thread (set while a resumer is switched into it), or null.
  /// Out of line: a fiber may continue on another thread after any switch.
  BASTION_NOINLINE static fiber_context* current() noexcept;

  /// True when the calling code runs on this fiber's stack as the body of its own proc
  /// (false inside a proc polled by a nested scheduling loop on that stack).
  [[nodiscard]] bool is_current_body() const noexcept;

  /// Resumer side: switches into the fiber until it suspends or finishes. @pre not running,
  /// not finished. Runs on the calling thread; afterwards either request() is set or
  /// finished() is true.
  void resume() noexcept;
  /// Fiber side: records `r`, switches back to the resumer, and returns when resumed.
  /// Throws fiber_unwind (without switching, or after being resumed) when the fiber is being
  /// destroyed.
  void suspend(fiber_request* r);

  /// True once the body returned (or unwound).
  [[nodiscard]] bool finished() const noexcept { return state_ == state::finished; }
  /// What the suspended fiber waits for. @pre resume() returned and !finished().
  [[nodiscard]] fiber_request* request() const noexcept { return request_; }

  /// Frees the stack now: a fiber still suspended is unwound first (fiber_unwind is thrown
  /// at its suspension point, so its locals' destructors run, on the calling thread).
  /// Idempotent.
  void release() noexcept;

protected:
  /// Allocates the stack (`stack_size` bytes, rounded up to pages; plus a PROT_NONE guard
  /// page below it when `guard_page`). Throws std::bad_alloc (or std::system_error) when the
  /// stack cannot be mapped.
  fiber_context(std::size_t stack_size, bool guard_page);
  /// Calls release().
  ~fiber_context();

  /// The body, run on the fiber's stack. Must not let anything but fiber_unwind escape.
  virtual void run() = 0;

private:
  enum class state : unsigned char { created, running, suspended, finished };
  struct entry;
  friend struct entry;
  struct stack_allocator;
  friend struct stack_allocator;

  void* fiber_storage() noexcept { return static_cast<void*>(fiber_buf_); }
  void* caller_storage() noexcept { return static_cast<void*>(caller_buf_); }
  void destroy_parked_fiber() noexcept;

  alignas(void*) std::byte fiber_buf_[sizeof(void*)];  ///< boost fiber: the fiber's continuation
  alignas(void*) std::byte caller_buf_[sizeof(void*)]; ///< boost fiber: the resumer's continuation
  fiber_request* request_ = nullptr;
  proc_header* owner_ = nullptr; ///< the proc polling this fiber (current_proc() at resume)
  state state_ = state::created;
  bool unwinding_ = false; ///< release() asked the body to unwind
  bool has_fiber_ = false; ///< fiber_buf_ holds a constructed boost fiber
  // Sanitizer bookkeeping (unused without sanitizers).
  [[maybe_unused]] const void* stack_bottom_ = nullptr; ///< lowest address of the fiber's stack
  [[maybe_unused]] std::size_t stack_size_ = 0;
  [[maybe_unused]] const void* caller_bottom_ = nullptr; ///< the current resumer's stack (ASan)
  [[maybe_unused]] std::size_t caller_size_ = 0;
  [[maybe_unused]] void* tsan_fiber_ = nullptr;  ///< this fiber's TSan context
  [[maybe_unused]] void* tsan_caller_ = nullptr; ///< the current resumer's TSan context
};

/// A fiber running `F` (called once, as an rvalue) and keeping what it returned or threw.
template <class R, class F>
class fiber_body final : public fiber_context {
public:
  fiber_body(F f, std::size_t stack_size, bool guard_page)
      : fiber_context(stack_size, guard_page)
      , f_(std::move(f)) {}
  fiber_body(const fiber_body&) = delete;
  fiber_body& operator=(const fiber_body&) = delete;
  ~fiber_body() {
    release(); // unwind before f_ and the result go away
  }

  /// The body's value, or rethrows the exception that escaped it (and lets go of it, so that
  /// the thread that ends up catching it is the one that frees it). @pre finished().
  R take() {
    if (error_) {
      std::rethrow_exception(std::exchange(error_, nullptr));
    }
    return result_.take();
  }

private:
  void run() override {
    try {
      result_.fill([this]() -> R { return std::invoke(std::move(*f_)); });
      f_.reset(); // captures die on the fiber, as soon as the body is done
    } catch (const fiber_unwind&) {
      throw;
    } catch (...) {
      error_ = std::current_exception();
    }
  }

  std::optional<F> f_;
  await_slot<R> result_;
  std::exception_ptr error_;
};

/// Awaiter fiber_main co_awaits on behalf of its suspended fiber.
class fiber_wait {
public:
  explicit fiber_wait(fiber_context& c) noexcept
      : c_(c) {}
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) noexcept {
    return c_.request()->suspend(h);
  }
  void await_resume() const noexcept { c_.request()->resume(); }

private:
  fiber_context& c_;
};

/// The body of a stackful proc: runs `f` on a fiber of its own, co_awaiting whatever the
/// fiber asks for, and ends with its value or exception. The fiber's stack is allocated at
/// the first poll and freed as soon as `f` returns (or, on cancellation, when this frame is
/// destroyed, after the fiber's stack has been unwound).
template <class R, class F>
task<R> fiber_main(F f, std::size_t stack_size, bool guard_page) {
  fiber_body<R, F> body(std::move(f), stack_size, guard_page);
  body.resume();
  while (!body.finished()) {
    co_await fiber_wait{body};
    body.resume();
  }
  body.release();
  if constexpr (std::is_void_v<R>) {
    body.take();
    co_return;
  } else {
    co_return body.take();
  }
}

} // namespace bastion::detail
