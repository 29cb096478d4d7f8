// bastion/lightproc/fiber.hpp: stackful procs. spawn_fiber runs ordinary (non-coroutine) code
// on a Boost.Context fiber with a stack of its own, as a lightproc on the same workers, with
// the same proc_stack and join_handle as a spawned task; inside it, the functions of
// bastion::this_fiber (yield, sleep_for, sleep_until, await) suspend the fiber, not the
// worker thread.
#pragma once

#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/fiber_context.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace bastion {

/// How a fiber's stack is made.
struct fiber_options {
  /// Usable stack, in bytes (rounded up to whole pages); at least min_stack_size. Code built
  /// with AddressSanitizer uses several times more stack than an optimised build.
  std::size_t stack_size = std::size_t{64} * 1024;
  /// Adds a PROT_NONE page below the stack, so that an overflow faults instead of silently
  /// corrupting memory. Costs an mprotect per fiber.
  bool guard_page = true;

  /// The smallest stack_size accepted, in bytes.
  static constexpr std::size_t min_stack_size = std::size_t{16} * 1024;
};

/// What a fiber running F returns (F is called once, as an rvalue, with no arguments).
template <class F>
using fiber_result_t = std::invoke_result_t<std::decay_t<F>>;

/// A callable spawn_fiber accepts: movable, invocable as an rvalue with no arguments, and not
/// returning an rvalue reference.
template <class F>
concept fiber_function = std::move_constructible<std::decay_t<F>> && std::invocable<std::decay_t<F>>
                         && !std::is_rvalue_reference_v<fiber_result_t<F>>;

namespace detail {

/// Throws std::invalid_argument naming the bad field of `o`.
inline void validate(const fiber_options& o) {
  if (o.stack_size < fiber_options::min_stack_size) {
    throw std::invalid_argument(
        "bastion::fiber_options: stack_size must be at least "
        + std::to_string(fiber_options::min_stack_size) + " bytes (got "
        + std::to_string(o.stack_size) + ")");
  }
}

/// The task body of a stackful proc running `f`.
template <class F>
task<fiber_result_t<F>> make_fiber_task(F&& f, const fiber_options& o) {
  validate(o);
  return fiber_main<fiber_result_t<F>, std::decay_t<F>>(
      std::forward<F>(f), o.stack_size, o.guard_page);
}

/// The awaiter `co_await a` would use: a.operator co_await(), operator co_await(a), or `a`
/// itself (by reference: awaiters such as sleep_operation must not move once awaited).
template <class A>
decltype(auto) awaiter_of(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

} // namespace detail

/// Spawns `f` as a stackful proc on the current runtime (the one whose worker runs this code),
/// else on runtime::global(), and returns its join handle.
///
/// `f` runs on a fiber with a stack of its own (see fiber_options; allocated at its first
/// poll, freed as soon as `f` returns) and may call bastion::this_fiber functions to suspend.
/// Like a task proc it is polled by the runtime's workers, and it may continue on another
/// worker thread after each suspension. Its value, exception (after_panic runs first),
/// cancellation and rejection reach the handle exactly as for bastion::spawn; cancelling it
/// unwinds the fiber's stack at its suspension point (its locals' destructors run).
/// Throws std::invalid_argument for bad `opts`; the stack allocation failing later shows up
/// as std::bad_alloc from the handle. Safe from any thread. Cost: a proc, a coroutine frame,
/// and an mmap'ed stack; a switch in or out costs a Boost.Context jump (a few ns).
///
/// Design: a stackful coroutine (Boost.Context's fiber, the continuation model of WG21 P0876)
/// driven by a stackless one (detail::fiber_main), so that each suspension of the fiber is a
/// co_await of the library's own awaiters; see bastion/detail/fiber_context.hpp.
template <class F>
  requires fiber_function<F>
join_handle<fiber_result_t<F>> spawn_fiber(F&& f, fiber_options opts = {}, proc_stack stack = {}) {
  return spawn(detail::make_fiber_task(std::forward<F>(f), opts), std::move(stack));
}

/// Spawns `f` as a stackful proc on `rt`; see spawn_fiber(F, fiber_options, proc_stack).
template <class F>
  requires fiber_function<F>
join_handle<fiber_result_t<F>>
spawn_fiber(runtime& rt, F&& f, fiber_options opts = {}, proc_stack stack = {}) {
  return rt.spawn(detail::make_fiber_task(std::forward<F>(f), opts), std::move(stack));
}

/// What code running on a fiber may call to suspend it. Each function suspends only the
/// calling fiber: the worker thread goes on polling other procs meanwhile.
///
/// Every function here throws std::logic_error when called outside the body of a fiber
/// proc (in_fiber() is false). After any of them returns, the fiber may be on another worker
/// thread: do not keep thread-local addresses across a call, and do not call them from
/// a catch handler or from a destructor (the C++ runtime's per-thread exception state would
/// be left on the old thread). When the proc is cancelled while suspended, the call does not
/// return: it throws an internal unwinding exception (not a std::exception) that must be
/// allowed to propagate; a `catch (...)` that swallows it only delays the unwinding to the
/// next suspension.
namespace this_fiber {

/// True when called from the body of a fiber proc (not from a coroutine proc, nor from a
/// proc polled by a nested scheduling loop on a fiber's stack). Safe from any thread.
[[nodiscard]] inline bool in_fiber() noexcept {
  const auto* f = detail::fiber_context::current();
  return f != nullptr && f->is_current_body();
}

/// Suspends the fiber on `a`, anything `co_await` accepts (a task, a join_handle, its
/// recover(), a sleep, timeout(...)), and returns what `co_await a` would, or throws what it
/// would throw.
///
/// The awaiter is driven exactly as in a coroutine: await_ready() on the fiber; when it must
/// wait, await_suspend/await_resume run on the worker polling the proc, while the fiber is
/// switched out, and the fiber resumes on the worker that polls the proc after the wake
/// (see each awaitable's own documentation). A task<T> runs as part of this proc (not as a
/// proc of its own), as with co_await: await(spawn(t)) runs it concurrently instead.
template <class Awaitable>
decltype(auto) await(Awaitable&& a) {
  detail::fiber_context* self = detail::fiber_context::current();
  if (self == nullptr || !self->is_current_body()) {
    throw std::logic_error("bastion::this_fiber::await: called outside a fiber proc");
  }
  auto&& aw = detail::awaiter_of(std::forward<Awaitable>(a));
  if (aw.await_ready()) {
    return aw.await_resume();
  }
  detail::fiber_await_request<std::remove_reference_t<decltype(aw)>> req{aw};
  self->suspend(&req);
  return req.take();
}

/// Gives other procs a turn: puts this fiber's proc at the back of its worker's run queue
/// (like co_await yield_now()). Resumes on whichever worker polls it next.
inline void yield() {
  this_fiber::await(bastion::yield_now());
}

/// Suspends the fiber until `deadline` (steady clock); a deadline already passed does not
/// suspend. Resumes on the worker that fires the timer (or the one that steals it next).
/// Cancellation while asleep disarms the timer.
inline void sleep_until(clock::time_point deadline) {
  this_fiber::await(bastion::sleep_until(deadline));
}

/// Suspends the fiber for at least `d` (any std::chrono duration; zero or negative does not
/// suspend). See sleep_until.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  this_fiber::await(bastion::sleep_for(d));
}

} // namespace this_fiber

} // namespace bastion
