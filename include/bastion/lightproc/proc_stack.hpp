// bastion/lightproc/proc_stack.hpp: proc_stack, the identity (pid), typed user state and
// lifecycle callbacks that travel with every lightproc.
#pragma once

#include <bastion/detail/unique_id.hpp>

#include <any>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

namespace bastion {

/// The lifecycle a lightproc goes through, as seen from outside.
enum class proc_state : std::uint8_t {
  scheduled, ///< in a run queue, waiting for a worker
  running,   ///< a worker is polling it
  suspended, ///< waiting on something (a timer, a join, a message) to wake it
  completed, ///< the body ended: a value, or an exception (then after_panic ran)
  closed,    ///< cancelled or rejected: the body was destroyed without ending
};

/// Callbacks run by the executor around a proc's life. Each runs on the worker that polls
/// the proc, at the moment named, and must not throw (an exception is caught and logged).
struct proc_callbacks {
  /// Before the first poll of the body.
  std::function<void(std::uint64_t pid)> before_start;
  /// After the body ended, whether with a value or an exception, before joiners are woken.
  std::function<void(std::uint64_t pid)> after_complete;
  /// Right when an exception escapes the body (not when someone joins), before
  /// after_complete; receives the exception.
  std::function<void(std::uint64_t pid, std::exception_ptr)> after_panic;
};

/// Thrown by proc_stack::state<T>() when the slot holds another type (or nothing).
class bad_proc_state : public std::logic_error {
public:
  using std::logic_error::logic_error;
};

/// What travels with a proc: its pid, a type-checked user state slot and its callbacks.
///
/// Build one before spawning (`proc_stack{}.with_state(42).on_panic(...)`) and pass it to
/// `bastion::spawn(task, stack)`. The pid is assigned at spawn. Inside a proc,
/// `bastion::this_proc::stack()` gives access to it.
/// Thread-safety: not synchronised; the proc's body and its callbacks run one at a time, so
/// they may use it freely; other threads must not touch it while the proc lives.
class proc_stack {
public:
  proc_stack() = default;

  /// The unique 64-bit id of the proc; 0 before spawn. Pids are never reused in a process.
  [[nodiscard]] std::uint64_t pid() const noexcept { return pid_; }

  /// Stores a user value in the state slot, replacing what was there.
  template <class T>
  proc_stack& with_state(T value) & {
    extras().state = std::move(value);
    return *this;
  }
  /// @copydoc with_state (for building a temporary: `proc_stack{}.with_state(1)`)
  template <class T>
  proc_stack&& with_state(T value) && {
    return std::move(with_state(std::move(value)));
  }
  /// The state as a T. Throws bad_proc_state naming both types when the slot holds
  /// something else or is empty (the reference casts unchecked; we check).
  template <class T>
  [[nodiscard]] T& state() {
    if (auto* p = extras_ ? std::any_cast<T>(&extras_->state) : nullptr) {
      return *p;
    }
    throw bad_proc_state(
        std::string("bastion::proc_stack::state: asked for ") + typeid(T).name()
        + " but the slot holds "
        + (extras_ && extras_->state.has_value() ? extras_->state.type().name() : "nothing"));
  }
  /// True when the slot holds a T.
  template <class T>
  [[nodiscard]] bool has_state() const noexcept {
    return extras_ && std::any_cast<T>(&extras_->state) != nullptr;
  }

  /// Sets the before_start callback (see proc_callbacks).
  proc_stack& before_start(std::function<void(std::uint64_t)> f) & {
    extras().callbacks.before_start = std::move(f);
    return *this;
  }
  /// @copydoc before_start (for building a temporary)
  proc_stack&& before_start(std::function<void(std::uint64_t)> f) && {
    return std::move(this->before_start(std::move(f)));
  }
  /// Sets the after_complete callback (see proc_callbacks).
  proc_stack& after_complete(std::function<void(std::uint64_t)> f) & {
    extras().callbacks.after_complete = std::move(f);
    return *this;
  }
  /// @copydoc after_complete (for building a temporary)
  proc_stack&& after_complete(std::function<void(std::uint64_t)> f) && {
    return std::move(this->after_complete(std::move(f)));
  }
  /// Sets the after_panic callback (see proc_callbacks).
  proc_stack& after_panic(std::function<void(std::uint64_t, std::exception_ptr)> f) & {
    extras().callbacks.after_panic = std::move(f);
    return *this;
  }
  /// @copydoc after_panic (for building a temporary)
  proc_stack&& after_panic(std::function<void(std::uint64_t, std::exception_ptr)> f) && {
    return std::move(this->after_panic(std::move(f)));
  }

  /// The callbacks (some may be empty), or null when none was set (the common case).
  [[nodiscard]] const proc_callbacks* callbacks() const noexcept {
    if (!extras_) {
      return nullptr;
    }
    const auto& cb = extras_->callbacks;
    return cb.before_start || cb.after_complete || cb.after_panic ? &cb : nullptr;
  }

  /// Assigns a fresh pid. Called once by spawn. Safe from any thread: each thread takes
  /// blocks of 1024 pids from a shared counter, so spawning touches no shared cache line.
  void assign_pid() noexcept { pid_ = detail::next_unique_id<proc_stack, pid_block>(); }

private:
  static constexpr std::uint64_t pid_block = 1024;

  /// The user state and the callbacks: most procs have neither, so they live in a block
  /// allocated on first use and every proc (in its frame's prefix) stays 16 bytes smaller.
  struct extra_fields {
    std::any state;
    proc_callbacks callbacks;
  };
  extra_fields& extras() {
    if (!extras_) {
      extras_ = std::make_unique<extra_fields>();
    }
    return *extras_;
  }

  std::uint64_t pid_ = 0;
  std::unique_ptr<extra_fields> extras_;
};

} // namespace bastion
