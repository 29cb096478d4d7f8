// bastion/executor/spawn.hpp: the free entry points of the executor: spawn, run and
// yield_now, on the current runtime (or the process-wide default one).
#pragma once

#include <bastion/executor/runtime.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/proc.hpp>

#include <coroutine>
#include <stdexcept>
#include <utility>

namespace bastion {

/// Spawns `t` as a lightproc on the current runtime (the one whose worker runs this code),
/// else on runtime::global(). Returns its join handle (drop it to detach). After shutdown
/// the handle reports proc_rejected. Safe from any thread. O(1) amortised.
template <class T>
join_handle<T> spawn(task<T> t, proc_stack stack = {}) {
  auto* rt = detail::current_or_default_runtime();
  auto* p = detail::make_proc(std::move(t), std::move(stack), true);
  p->rt_ = rt;
  detail::submit(rt, p);
  return join_handle<T>{p};
}

/// Runs `t` to completion on the calling thread and returns its value, or rethrows the
/// exception that escaped it.
///
/// The body runs on this thread; procs it spawns, its timers and its blocking calls use the
/// current runtime (else runtime::global()). Safe from many threads at once. Called on a
/// worker thread it does not deadlock: while `t` waits, the worker keeps polling its other
/// tasks (a nested scheduling loop), so a task `t` waits for can still run there.
template <class T>
T run(task<T> t) {
  return detail::block_on(std::move(t), detail::current_or_default_runtime());
}

/// Awaiter of yield_now(): reschedules the awaiting proc at the back of a run queue.
class yield_operation {
public:
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const {
    auto* cur = detail::current_proc();
    if (cur == nullptr) {
      throw std::logic_error("bastion::yield_now: awaited outside a bastion proc");
    }
    cur->set_resume_point(h);
    cur->request_yield();
  }
  void await_resume() const noexcept {}
};

/// Gives other tasks a turn: `co_await bastion::yield_now();` puts the awaiting proc at the
/// back of its worker's queue (not on its LIFO stack). Resumes on whichever worker polls it
/// next. Throws std::logic_error outside a bastion proc.
[[nodiscard]] inline yield_operation yield_now() noexcept {
  return {};
}

} // namespace bastion
