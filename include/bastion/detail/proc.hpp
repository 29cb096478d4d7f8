// bastion/detail/proc.hpp: the lightproc object (header + body), its state word, and wakers.
//
// Internal. Public entry points (spawn, run, join_handle, sleep_for, ...) are built on it.
#pragma once

#include <bastion/config.hpp>

#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/runnable.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <utility>

namespace bastion::detail {

class runtime_impl;
class inline_driver;
class proc_header;

/// What a waker does with its reference: wake the target, or only let go of it.
enum class wake_mode : bool {
  wake, ///< wake the target and release the waker's reference
  drop, ///< release the waker's reference without waking
};

/// Something a waker can wake: a proc, a thread blocked in join(), a race cell, an actor's
/// exit. Each kind manages its own lifetime; a waker owns one reference to its target.
struct wake_target {
  /// Wakes the target (wake_mode::wake) or not (drop), and releases the waker's reference.
  /// Safe from any thread. One function for both keeps every proc and actor 8 bytes smaller.
  void (*wake_fn_)(wake_target*, wake_mode) noexcept = nullptr;
};

/// A one-shot, move-only permission to wake a target (Tokio's Waker, by value).
/// Thread-safety: the waker itself is not shared; wake() may run on any thread.
class waker {
public:
  waker() noexcept = default;
  /// Adopts one reference the caller already took on t.
  explicit waker(wake_target* t) noexcept
      : t_(t) {}
  waker(waker&& o) noexcept
      : t_(std::exchange(o.t_, nullptr)) {}
  waker& operator=(waker&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }
  waker(const waker&) = delete;
  waker& operator=(const waker&) = delete;
  ~waker() { reset(); }

  /// Wakes the target once; the waker is empty afterwards. No-op when empty.
  void wake() noexcept {
    if (auto* t = std::exchange(t_, nullptr)) {
      t->wake_fn_(t, wake_mode::wake);
    }
  }
  /// Drops the reference without waking.
  void reset() noexcept {
    if (auto* t = std::exchange(t_, nullptr)) {
      t->wake_fn_(t, wake_mode::drop);
    }
  }
  [[nodiscard]] explicit operator bool() const noexcept { return t_ != nullptr; }

private:
  wake_target* t_ = nullptr;
};

/// A check the poller runs before it resumes a body parked in an awaiter whose waker can fire
/// late: a notifier that took the waker published for an earlier wait of the same awaiter
/// kind (its item already consumed without parking) wakes the proc while nothing is ready.
/// Without the check such a wake would resume the body with nothing to return (an awaiter
/// cannot suspend again from await_resume). With it, a poll re-parks the proc instead: the
/// model of Rust futures, where a spurious wake is only a poll that returns Pending; here it is
/// paid for only by awaiters that install a guard. The awaiter holds the guard (it lives in the
/// suspended frame) and sets it from await_suspend through proc_header::set_resume_guard.
struct resume_guard {
  /// Called by the poller (on the polling thread, with `running` held) before resuming `p`.
  /// True: resume the body now (the guard is cleared). False: stay parked; the function has
  /// published a waker again, so the next wake polls (and calls it) again.
  bool (*ready)(resume_guard* self, proc_header* p) noexcept = nullptr;
};

/// The type-erased part of every lightproc: what the executor schedules, wakes and joins.
///
/// State word (state_), one atomic 64-bit value:
///   bits 0..15 flags, bits 16..63 reference count (ref_one per reference).
///   scheduled  — in exactly one run queue (or handed to an inline driver); set by whoever
///                makes it runnable (spawn, wake, cancel) with a CAS from idle.
///   running    — a worker (or run()'s thread) is polling it; set by the poller on
///                scheduled -> running (acquire: sees resume_point_ written by the last poll).
///   notified   — woken (or yield_now) while running: the poller reschedules it afterwards.
///   complete   — the body ended or was destroyed; result published (release).
///   closed     — with complete: it produced nothing (cancelled or rejected).
///   rejected   — with closed: it never ran (spawned on a shut-down runtime).
///   cancel_req — cancel() asked: the next poll destroys the body instead of resuming it.
///   join_interest — a join handle exists.
///   join_waiter   — join_waker_ holds a waker (written before the flag, release; read by
///                   the completer after it sees the flag, acquire).
///   started    — polled at least once (before_start ran); set with `running` by the poller.
/// References: the body holds one until it completes; the join handle one; each waker one.
/// The object is deleted when the count reaches zero.
/// Only the poller (the thread that owns `running`) touches the body and resume_point_.
class proc_header
    : public runnable
    , public wake_target {
public:
  static constexpr std::uint64_t scheduled = 1U << 0;
  static constexpr std::uint64_t running = 1U << 1;
  static constexpr std::uint64_t notified = 1U << 2;
  static constexpr std::uint64_t complete = 1U << 3;
  static constexpr std::uint64_t closed = 1U << 4;
  static constexpr std::uint64_t rejected = 1U << 5;
  static constexpr std::uint64_t cancel_req = 1U << 6;
  static constexpr std::uint64_t join_interest = 1U << 7;
  static constexpr std::uint64_t join_waiter = 1U << 8;
  static constexpr std::uint64_t started = 1U << 9;
  static constexpr std::uint64_t ref_one = std::uint64_t{1} << 16;

  proc_header(const proc_header&) = delete;
  proc_header& operator=(const proc_header&) = delete;

  /// Procs live either on a block of their own (proc_prefix_size bytes) or at the start of
  /// their frame's block (make_proc); either way the pointer is the start of a
  /// cached_allocate block whose size word sits where a frame's would (frame_block_size).
  static void* operator new(std::size_t n) {
    static_assert(proc_prefix_size >= 2 * sizeof(std::uint64_t));
    if (n > proc_prefix_size - 2 * sizeof(std::uint64_t)) {
      throw std::bad_alloc(); // cannot happen: make_proc checks the size statically
    }
    auto* block = static_cast<std::byte*>(cached_allocate(proc_prefix_size));
    frame_block_size(block + proc_prefix_size) = proc_prefix_size;
    return block;
  }
  static void operator delete(void* p) noexcept {
    auto* block = static_cast<std::byte*>(p);
    cached_deallocate(block, static_cast<std::size_t>(frame_block_size(block + proc_prefix_size)));
  }

  /// The proc's stack (pid, user state, callbacks). Only the proc's own body and callbacks
  /// may use it while it runs.
  proc_stack& stack() noexcept { return stack_; }
  /// The pid.
  [[nodiscard]] std::uint64_t pid() const noexcept { return stack_.pid(); }

  /// Takes a new reference and returns a waker for this proc.
  waker make_waker() noexcept {
    add_ref();
    return waker{static_cast<wake_target*>(this)};
  }
  /// Records where the next poll resumes. Called by an awaiter's await_suspend, on the
  /// polling thread, before it publishes a waker.
  void set_resume_point(std::coroutine_handle<> h) noexcept { resume_point_ = h; }
  /// Installs `g` to be consulted before the next resume (see resume_guard); cleared when it
  /// lets the body resume. Called from await_suspend, on the polling thread, when suspending.
  void set_resume_guard(resume_guard* g) noexcept { guard_ = g; }

  void add_ref() noexcept { state_.fetch_add(ref_one, std::memory_order_relaxed); }
  void release() noexcept {
    if (state_.fetch_sub(ref_one, std::memory_order_acq_rel) < 2 * ref_one) {
      delete this;
    }
  }
  /// Current state word (for join handles and tests).
  [[nodiscard]] std::uint64_t
  load_state(std::memory_order o = std::memory_order_acquire) const noexcept {
    return state_.load(o);
  }

  // ---- executor entry points (implemented in src/lightproc/proc.cpp) ----
  /// The runnable entry point: polls once (run_mode::poll; @pre the caller took it from a
  /// queue, so the state has `scheduled`) or completes it as cancelled at shutdown.
  static void enter(runnable* r, run_mode m) noexcept;
  /// Shutdown path: destroys the body and completes it as cancelled.
  static void cancel_queued(runnable* r) noexcept;
  /// The waker entry point: wake_mode::wake schedules it unless running, scheduled or
  /// complete; either way it consumes one reference.
  static void wake_entry(wake_target* t, wake_mode m) noexcept;
  /// Requests cancellation (join_handle::cancel). Safe from any thread.
  void request_cancel() noexcept;
  /// Completes a proc that could not be submitted: closed + rejected; drops the body ref.
  void reject() noexcept;
  /// Registers `w` to be woken on completion. Returns false (and drops w) when the proc is
  /// already complete. At most one waiter at a time.
  bool register_join_waiter(waker w) noexcept;
  /// Detaches the join handle: drops join_interest and the handle's reference.
  void drop_join_handle() noexcept;
  /// True when the body ended by throwing (its exception is kept for the joiner).
  /// @pre complete and not closed.
  [[nodiscard]] bool ended_by_exception() const noexcept { return body_exception() != nullptr; }
  /// Marks that yield_now was awaited: the poller reschedules it at the back of a queue.
  void request_yield() noexcept { state_.fetch_or(notified, std::memory_order_relaxed); }

  runtime_impl* rt_ = nullptr;      ///< the runtime it belongs to (timers, blocking pool)
  inline_driver* driver_ = nullptr; ///< set for run()'s own proc: schedule goes there

protected:
  proc_header() noexcept {
    entry_ = &enter;
    wake_fn_ = &wake_entry;
  }
  virtual ~proc_header() = default;

  /// Resumes the body where it stopped. Called with `running` held.
  virtual void resume_body() noexcept { resume_point_.resume(); }
  /// True when the body ran to its end.
  [[nodiscard]] virtual bool body_done() const noexcept = 0;
  /// The exception that escaped the body, if it ended by throwing.
  [[nodiscard]] virtual std::exception_ptr body_exception() const noexcept = 0;
  /// Destroys a body that did not end (cancellation): frames and their locals unwind.
  virtual void destroy_body() noexcept = 0;

  std::coroutine_handle<> resume_point_;
  resume_guard* guard_ = nullptr; ///< consulted before the next resume; poller only

private:
  friend void complete_proc(proc_header*, std::uint64_t) noexcept;
  friend void poll_proc(proc_header*) noexcept;

  proc_stack stack_;
  waker join_waker_;
  std::atomic<std::uint64_t> state_{0};

  template <class T>
  friend class proc_impl;
  friend class proc_access;
};

/// A lightproc whose body is a task<T>. make_proc builds it in the prefix of the task's frame
/// allocation, so header, stack, frame and result share one allocation.
template <class T>
class proc_impl final : public proc_header {
public:
  /// Takes the body and the stack; state starts scheduled with the body's reference and,
  /// when `with_handle`, the join handle's reference.
  proc_impl(task<T> body, proc_stack stack, bool with_handle) noexcept
      : body_(std::move(body)) {
    stack_ = std::move(stack);
    stack_.assign_pid();
    resume_point_ = body_.handle();
    state_.store(
        scheduled | (with_handle ? join_interest | 2 * ref_one : ref_one),
        std::memory_order_relaxed);
  }

  /// Moves the value out or rethrows the body's exception. @pre complete and not closed.
  decltype(auto) take_result() { return body_.handle().promise().take(); }

private:
  [[nodiscard]] bool body_done() const noexcept override { return body_.done(); }
  [[nodiscard]] std::exception_ptr body_exception() const noexcept override {
    return body_.handle().promise().exception();
  }
  void destroy_body() noexcept override { body_ = task<T>{}; }

  task<T> body_;
};

/// Builds the lightproc for `body`: inside the prefix of the body's frame when it has one
/// (one allocation per proc), else on the heap. Throws std::invalid_argument for an empty
/// task.
template <class T>
proc_impl<T>* make_proc(task<T> body, proc_stack stack, bool with_handle) {
  static_assert(sizeof(proc_impl<T>) <= proc_prefix_size - 2 * sizeof(std::uint64_t));
  static_assert(alignof(proc_impl<T>) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  if (!body.valid()) {
    throw std::invalid_argument("bastion::spawn: the task is empty (moved-from)");
  }
  void* frame = body.handle().address();
  if (frame_prefix_tag(frame) == prefix_unused) {
    frame_prefix_tag(frame) = prefix_owned_by_proc;
    void* at = static_cast<std::byte*>(frame) - proc_prefix_size;
    return ::new (at) proc_impl<T>(std::move(body), std::move(stack), with_handle);
  }
  return new proc_impl<T>(std::move(body), std::move(stack), with_handle);
}

/// The proc being polled on this thread, or null. Out of line: never cached across a
/// suspension (a coroutine may resume on another thread).
BASTION_NOINLINE proc_header* current_proc() noexcept;

/// Makes `p` runnable: onto the current worker's LIFO stack when `p` belongs to this
/// worker's runtime (a wake), else into the injector, or to its inline driver.
void schedule(proc_header* p, bool is_yield) noexcept;

/// Tells the current worker (if any) that the proc it is polling sent one more message.
/// A proc that sends worker::long_poll_sends messages in one poll is a producer that will
/// keep its worker busy: the procs it woke (on the worker's LIFO stack, which thieves cannot
/// reach) move to its stealable queue, and what it wakes later in that poll goes there too,
/// so other workers run the consumers meanwhile (Go lets thieves take a busy P's runnext
/// for the same reason). Safe from any thread (a no-op off the workers). O(1); once per
/// poll, O(LIFO depth).
void note_message_sent() noexcept;

} // namespace bastion::detail
