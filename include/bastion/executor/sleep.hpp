// bastion/executor/sleep.hpp: timers for procs: sleep_for, sleep_until, and the timeout
// combinator for any awaitable.
#pragma once

#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/deadline_race.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_entry.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace bastion {

/// The clock every bastion timer uses.
using clock = std::chrono::steady_clock;

/// Awaiter of sleep_until / sleep_for: suspends the proc until `deadline`.
///
/// The proc resumes on the worker that fires the timer (or the one that steals it next).
/// Destroying the awaiter while it waits (the proc was cancelled) disarms the timer.
/// Immovable once awaited (the runtime's timer heap points into it).
class [[nodiscard]] sleep_operation {
public:
  explicit sleep_operation(clock::time_point deadline) noexcept
      : deadline_(deadline) {}
  sleep_operation(sleep_operation&& o) noexcept
      : deadline_(o.deadline_) {}
  sleep_operation(const sleep_operation&) = delete;
  sleep_operation& operator=(const sleep_operation&) = delete;
  sleep_operation& operator=(sleep_operation&&) = delete;
  ~sleep_operation() {
    if (rt_ != nullptr) {
      detail::timer_remove(rt_, &entry_);
    }
  }

  [[nodiscard]] bool await_ready() const noexcept { return deadline_ <= clock::now(); }
  void await_suspend(std::coroutine_handle<> h) {
    auto* cur = detail::current_proc();
    if (cur == nullptr) {
      throw std::logic_error("bastion::sleep_for/sleep_until: awaited outside a bastion proc");
    }
    cur->set_resume_point(h);
    entry_.deadline = deadline_;
    entry_.w = cur->make_waker();
    rt_ = cur->rt_;
    detail::timer_insert(rt_, &entry_);
  }
  void await_resume() const noexcept {}

private:
  clock::time_point deadline_;
  detail::timer_entry entry_;
  detail::runtime_impl* rt_ = nullptr;
};

/// Suspends the awaiting proc until `deadline` (steady clock). A deadline already passed
/// does not suspend. Throws std::logic_error when awaited outside a bastion proc.
/// Timers fire in deadline order; equal deadlines in the order they were armed.
inline sleep_operation sleep_until(clock::time_point deadline) noexcept {
  return sleep_operation{deadline};
}

/// Suspends the awaiting proc for at least `d` (any std::chrono duration; zero or negative
/// does not suspend). See sleep_until.
template <class Rep, class Period>
sleep_operation sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return sleep_operation{clock::now() + std::chrono::duration_cast<clock::duration>(d)};
}

namespace detail {

/// Awaits `h`'s completion or `deadline`, whichever comes first; yields true when the proc
/// finished in time.
template <class T>
class join_or_deadline {
public:
  join_or_deadline(join_handle<T>& h, clock::time_point deadline) noexcept
      : h_(h)
      , deadline_(deadline) {}
  join_or_deadline(const join_or_deadline&) = delete;
  join_or_deadline& operator=(const join_or_deadline&) = delete;

  [[nodiscard]] bool await_ready() const noexcept { return h_.is_finished(); }
  bool await_suspend(std::coroutine_handle<> h) {
    auto* cur = current_proc();
    if (cur == nullptr) {
      throw std::logic_error("bastion::timeout: awaited outside a bastion proc");
    }
    cur->set_resume_point(h);
    race_.start(cur);
    if (!h_.proc()->register_join_waiter(race_.event_waker())) {
      return false; // finished meanwhile
    }
    race_.arm_timer(cur->rt_, deadline_);
    return true;
  }
  bool await_resume() noexcept {
    race_.finish();
    return h_.is_finished();
  }

private:
  join_handle<T>& h_;
  clock::time_point deadline_;
  deadline_race race_;
};

template <class A>
using await_result_t = decltype(std::declval<A>().await_resume());

template <class A>
auto as_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else {
    return std::forward<A>(a);
  }
}

} // namespace detail

/// Awaits `t` for at most `limit`: yields its value (or rethrows its exception) when it ends
/// in time, else cancels it and throws bastion::timed_out.
///
/// `t` runs as a proc of its own on the current runtime, so the caller is free to be woken
/// by the timer. Throws std::logic_error outside a bastion proc.
template <class T, class Rep, class Period>
task<T> timeout(task<T> t, std::chrono::duration<Rep, Period> limit) {
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(limit);
  auto h = spawn(std::move(t));
  const bool in_time = co_await detail::join_or_deadline<T>(h, deadline);
  if (!in_time) {
    h.cancel();
    throw timed_out{};
  }
  co_return co_await std::move(h);
}

/// Awaits any awaitable (an object with await_ready/suspend/resume or operator co_await)
/// for at most `limit`; see timeout(task<T>, ...). The awaitable is moved into a task.
template <class Awaitable, class Rep, class Period>
auto timeout(Awaitable a, std::chrono::duration<Rep, Period> limit)
    -> task<detail::await_result_t<decltype(detail::as_awaiter(std::move(a)))>> {
  using R = detail::await_result_t<decltype(detail::as_awaiter(std::move(a)))>;
  auto wrap = [](Awaitable aw) -> task<R> {
    co_return co_await std::move(aw);
  };
  co_return co_await timeout(wrap(std::move(a)), limit);
}

} // namespace bastion
