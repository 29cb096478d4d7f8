// bastion/executor/runtime.hpp: runtime, the work-stealing executor that runs lightprocs:
// pinned workers, run queues, injector, parking, timers and the blocking pool.
#pragma once

#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/executor/topology.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/proc.hpp>

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace bastion {

namespace detail {
/// Queues a freshly built proc on `rt`; a proc that cannot be queued (runtime shut down)
/// is completed as rejected. `lifo`: from one of rt's workers, the proc goes on top of that
/// worker's LIFO stack (runs next; when the stack is full its oldest entry moves to the
/// queue's back): a creator's newest child runs first, so trees grow depth-first.
void submit(runtime_impl* rt, proc_header* p, bool lifo = false) noexcept;
} // namespace detail

/// A multi-threaded work-stealing executor.
///
/// Design (after Tokio's multi-threaded scheduler and the Go runtime): one worker thread per
/// PU, pinned with hwloc; each worker owns a bounded lock-free run queue (256 slots) and a
/// small LIFO stack for the tasks it just woke (polled first, at most 64 times in a row;
/// depth-first for spawn trees, after Cilk's work-first order); tasks spawned from outside
/// go through a global injector, checked every 61 polls so it cannot starve; an idle worker
/// steals half of a victim's queue, same-NUMA-node victims first; at most half the workers
/// search at once, and the rest park on a condition variable (an idle runtime uses no CPU).
/// Timers live in a heap serviced by the workers themselves: one parked worker sleeps until
/// the earliest deadline. Blocking calls (spawn_blocking) run on a separate adaptive pool.
///
/// Thread-safety: every member is safe from any thread. Destruction shuts down (see
/// shutdown()) and joins the workers; it must not run on one of this runtime's workers.
class runtime {
public:
  /// Builds and starts the runtime. Throws std::invalid_argument naming the bad field of
  /// `cfg` ("workers", "cpu_set", "blocking_threads", ...), std::runtime_error when threads
  /// cannot be created.
  explicit runtime(runtime_config cfg = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Spawns `t` as a new lightproc with `stack`; returns its join handle. After shutdown the
  /// handle reports proc_rejected (nothing runs, nothing leaks). Safe from any thread.
  /// From one of this runtime's workers the proc goes to that worker's local queue, else to
  /// the injector. Complexity: O(1) amortised; allocates the proc.
  template <class T>
  join_handle<T> spawn(task<T> t, proc_stack stack = {}) {
    auto* p = detail::make_proc(std::move(t), std::move(stack), true);
    p->rt_ = impl_.get();
    detail::submit(impl_.get(), p);
    return join_handle<T>{p};
  }

  /// Runs `t` on the calling thread until it ends and returns its value or rethrows (see
  /// bastion::run). Procs it spawns run on this runtime.
  template <class T>
  T run(task<T> t) {
    return detail::block_on(std::move(t), impl_.get());
  }

  /// Stops the runtime: new spawns are rejected, workers finish the poll in progress and
  /// exit, blocking jobs already submitted still run, and every proc still queued or
  /// sleeping on a timer is cancelled (its handle reports proc_cancelled): none vanishes.
  /// Idempotent; blocks until the workers have exited. Must not be called from one of this
  /// runtime's workers (throws std::logic_error).
  void shutdown();

  /// True once shutdown() began.
  [[nodiscard]] bool is_shut_down() const noexcept;

  /// Number of workers.
  [[nodiscard]] std::size_t worker_count() const noexcept;
  /// Where each worker was placed (PU, core, NUMA node).
  [[nodiscard]] const std::vector<worker_placement>& placement() const noexcept;
  /// Snapshot of the counters; O(workers).
  [[nodiscard]] runtime_stats stats() const;

  /// The process-wide default runtime behind the free functions (bastion::spawn, run, ...),
  /// created with a default runtime_config on first use and shut down at exit.
  static runtime& global();
  /// The runtime whose worker (or run() call) is on this thread, or nullptr.
  static runtime* current() noexcept;

  /// Internal.
  [[nodiscard]] detail::runtime_impl* impl() const noexcept { return impl_.get(); }

private:
  std::unique_ptr<detail::runtime_impl> impl_;
};

} // namespace bastion
