// src/executor/runtime_impl.hpp: the executor's internals (workers, parking, timers).
// Private to src/: no public header includes it.
#pragma once

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/executor/topology.hpp>

#include <bastion/detail/blocking_pool.hpp>
#include <bastion/detail/injector.hpp>
#include <bastion/detail/local_queue.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_entry.hpp>
#include <bastion/detail/timer_heap.hpp>

#include "../io/reactor.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace bastion::detail {

/// Bits of runtime_impl::idle_state_: searching workers (low 16), unparked workers (high 16).
inline constexpr std::uint32_t searching_one = 1;
inline constexpr std::uint32_t unparked_one = 1U << 16;
inline std::uint32_t searching_of(std::uint32_t s) noexcept {
  return s & 0xFFFFU;
}
inline std::uint32_t unparked_of(std::uint32_t s) noexcept {
  return s >> 16;
}

/// Steady-clock time as nanoseconds since its epoch (for lock-free deadline words).
inline std::int64_t to_ns(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
inline std::chrono::steady_clock::time_point from_ns(std::int64_t ns) noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::nanoseconds(ns)));
}

/// Puts one thread to sleep until unparked or a deadline passes.
///
/// state_: empty (0) -> parked (1) by the sleeper under mu_, or -> parked_io (3) by a sleeper
/// that waits in the reactor's epoll_wait; -> notified (2) by unpark from any thread, which
/// signals the condition variable (parked) or writes the reactor's eventfd (parked_io). A
/// notification that arrives before park() makes the next park() return at once, so no
/// wake-up is lost (Tokio's park/unpark token).
class parker {
public:
  /// Sleeps on the condition variable.
  void park(std::optional<std::chrono::steady_clock::time_point> deadline);
  /// Sleeps in io_->poll (the caller holds the runtime's driver role): I/O events are
  /// dispatched before it returns.
  void park_io(std::optional<std::chrono::steady_clock::time_point> deadline);
  void unpark();

  reactor* io_ = nullptr; ///< the runtime's reactor; set before the worker starts

private:
  static constexpr int empty = 0;
  static constexpr int parked = 1;
  static constexpr int notified = 2;
  static constexpr int parked_io = 3;
  std::atomic<int> state_{empty};
  std::mutex mu_;
  std::condition_variable cv_;
};

/// Relaxed single-writer counter: written only by its worker, read by stats().
struct counter {
  std::atomic<std::uint64_t> v{0};
  void inc(std::uint64_t n = 1) noexcept {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

class runtime_impl;

/// One executor worker: its run queue, LIFO stack, parker and counters.
/// All fields but `queue` (stealable), `park` and the counters are owner-only.
class worker {
public:
  worker(runtime_impl& rt, worker_placement place);

  void main_loop();
  /// Next task for this worker (LIFO stack, local queue, injector, timers), or null.
  runnable* next_local_task();
  /// Tries the other workers' queues, nearest first; null when nothing was stolen.
  runnable* steal_work();
  /// Polls `t` once (what it wakes goes on the LIFO stack, polled by next_local_task).
  void run_task(runnable* t);
  /// Leaves the searching state (if in it), then run_task(t): what the main loop does with
  /// a task it found.
  void run_found(runnable* t);
  void push_back(runnable* r);
  /// Puts `r` on top of the LIFO stack; when the stack is full its oldest entry moves to the
  /// local queue, where thieves can reach it.
  void push_lifo(runnable* r);
  /// Polls the reactor without blocking when no worker holds the driver role (holding it,
  /// tagged polling_tag, for the poll); false when another worker held it (nothing was
  /// polled). The worker's own thread only.
  bool poll_io_now();
  /// Before a park, while sockets are registered: polls them and the local queues (and,
  /// while searching, the other workers' queues) for up to runtime_config::io_spin, and no
  /// later than the next timer's deadline. Returns the first task found, or null when the
  /// window passed (or a timer came due, or the runtime shuts down) with nothing to run, or
  /// another worker holds the driver role (at most one worker spins on the sockets). The
  /// worker's own thread only; the caller leaves the searching state when a task is found.
  runnable* spin_on_io();
  /// Gap number `gap` (0, 1, ...) of a spin before parking: `pauses` pause instructions,
  /// preceded from gap active_spin_gaps on by sched_yield() (counted in spin_yields_).
  /// Returns false, without pausing, when the yield handed the CPU to another thread (it
  /// returned after more than yield_handed_over_ns; counted in contended_spins_): the caller
  /// then ends its spin and parks, leaving the CPU to whoever has work (another process,
  /// such as a server's clients, or another worker of an oversubscribed runtime) rather
  /// than taking half of it, and leaving the searching state, so producers wake a worker
  /// instead of counting on one that is off its CPU. With the CPU to itself, a yield
  /// costs a system call. Active, then passive spinning (a few pause-only gaps, then
  /// yields), after crossbeam's Backoff::snooze, which yields once its pauses are spent and
  /// then tells the caller to block; the Go runtime's futex lock yields once before it
  /// sleeps. This spin yields in every later gap, and stops at the first yield that
  /// lost the CPU.
  bool spin_gap(unsigned gap, unsigned pauses);
  /// Moves the LIFO stack, oldest first, to the local queue (so thieves can reach it).
  void flush_lifo();
  /// Takes the top of the LIFO stack, or null when it is empty.
  runnable* pop_lifo() noexcept;
  /// Takes the bottom (oldest entry) of the LIFO stack. @pre not empty.
  runnable* take_oldest_lifo() noexcept;
  /// Polls one available task without parking; false when none was found.
  bool run_one_nested();
  /// The proc being polled sent a message (see detail::note_message_sent).
  void note_send() {
    if (++sends_this_poll_ == long_poll_sends) {
      flush_lifo();
    }
  }
  /// True once the proc being polled has sent long_poll_sends messages: what it wakes goes
  /// to the stealable queue, not the LIFO stack.
  [[nodiscard]] bool long_poll() const noexcept { return sends_this_poll_ >= long_poll_sends; }

  /// Messages one poll sends before its wakes become stealable (see note_message_sent).
  static constexpr unsigned long_poll_sends = 64;

  runtime_impl& rt_;
  worker_placement place_;
  local_queue<256> queue_;
  /// The LIFO stack: procs woken by the running proc and procs it spawned in a burst
  /// (prestarted groups), newest on top; a ring of lifo_depth slots, owner-only and not
  /// stealable (its oldest entry spills into queue_ when it is full). The newest work runs
  /// first, while what its creator wrote is still in this core's cache, and a spawn tree is
  /// walked depth-first (Cilk's work-first order) while thieves take the oldest, biggest
  /// pieces from queue_. A depth of 1 is Tokio's LIFO slot.
  static constexpr unsigned lifo_depth = 32;
  runnable* lifo_[lifo_depth] = {};
  unsigned lifo_bottom_ = 0; ///< ring index of the oldest entry
  unsigned lifo_count_ = 0;
  unsigned lifo_streak_ = 0;
  unsigned sends_this_poll_ = 0; ///< messages sent by the proc being polled, this poll
  parker park_;
  std::vector<std::size_t> victims_;
  std::uint32_t rng_;
  bool searching_ = false;
  unsigned congested_ = 0;
  std::uint64_t tick_ = 0;
  std::uint64_t last_global_tick_ = 0; ///< tick_ when the injector last came first
  std::uint64_t pushes_ = 0;
  std::atomic<bool> pinned_{false};
  std::thread thread_;

  counter spawned_, polls_, lifo_hits_, steals_, stolen_tasks_, steal_contended_, injector_pulls_,
      overflows_, parks_, spin_yields_, contended_spins_, timers_fired_;
};

/// The executor behind bastion::runtime.
class runtime_impl {
public:
  runtime_impl(runtime& owner, runtime_config cfg);
  ~runtime_impl();

  void start();
  void shutdown();
  runtime_stats stats() const;

  /// Queues `r` from outside the workers (or cancels it when shut down).
  void inject(runnable* r) noexcept;
  /// Wakes a parked worker if no worker is searching and one is parked (Tokio's
  /// notify_parked). Safe from any thread.
  void notify_parked() noexcept;

  // ---- idle coordination (Tokio's idle.rs): at most half the workers search. ----
  bool transition_to_searching() noexcept;
  /// Returns true when the caller was the last searcher.
  bool transition_from_searching() noexcept;
  /// What transition_to_parked saw.
  struct park_transition {
    bool last_searcher; ///< the caller was the last searching worker
    bool last_awake;    ///< every other worker was parked already: the runtime is idle
  };
  /// Registers `w` as parked.
  park_transition transition_to_parked(std::size_t w, bool was_searching) noexcept;
  /// After waking: true when the waker made it a searcher.
  bool transition_from_parked(std::size_t w) noexcept;
  /// True when any queue or the injector holds work.
  bool has_pending_work() const noexcept;

  // ---- timers ----
  void timer_insert(timer_entry* e);
  bool timer_remove(timer_entry* e) noexcept;
  /// Fires every expired timer; returns how many.
  std::size_t fire_timers(std::chrono::steady_clock::time_point now);

  blocking_pool& blocking() { return *blocking_; }

  /// Wakes the driver (or, when there is none, a parked worker so that one takes the role):
  /// a new earliest timer or the first I/O registration needs someone waiting on it.
  void wake_driver() noexcept;

  runtime& owner_;
  runtime_config cfg_;
  std::vector<worker_placement> plan_;
  std::vector<std::unique_ptr<worker>> workers_;
  injector injector_;
  // Read by every worker on every loop: kept on a cache line of its own so that no hot
  // write (a counter, the idle state) invalidates it.
  alignas(64) std::atomic<bool> shutdown_{false};
  alignas(64) std::atomic<bool> stopped_{false};
  std::mutex shutdown_mu_;
  std::atomic<std::uint64_t> spawned_outside_{0}; // spawns from non-worker threads

  // idle_state_: low 16 bits = searching workers, high 16 bits = unparked workers.
  // Read and written with seq_cst so that a producer's "push, then read state" and a
  // worker's "publish parked, then re-check queues" cannot both miss each other.
  alignas(64) std::atomic<std::uint32_t> idle_state_{0};
  std::mutex sleepers_mu_;
  std::vector<std::size_t> sleepers_; // parked workers, guarded by sleepers_mu_

  // Timers: heap guarded by timer_mu_; next_deadline_ns_ mirrors its earliest deadline
  // (INT64_MAX when none) for lock-free checks. At most one parked worker is the driver
  // (timer_driver_): it sleeps until the earliest deadline, in the reactor's epoll_wait while
  // sockets are registered (a busy worker takes the role for a non-blocking poll every 61
  // ticks); an insert that becomes the earliest (or the first I/O registration) unparks it (seq_cst
  // pairs: insert stores next_deadline then reads timer_driver_; a driver CASes its index in, then
  // re-reads next_deadline).
  alignas(64) mutable std::mutex timer_mu_;
  timer_heap timers_;
  std::atomic<std::int64_t> next_deadline_ns_{INT64_MAX};
  static constexpr std::int64_t no_driver = -1;
  /// Or-ed into timer_driver_ by a worker that holds the role only for a non-blocking poll
  /// (poll_io_now): a worker about to park waits for it to let go rather than park without
  /// the role.
  static constexpr std::int64_t polling_tag = std::int64_t{1} << 32;
  // Index of the driver (| polling_tag while it only polls), or no_driver.
  std::atomic<std::int64_t> timer_driver_{no_driver};

  std::unique_ptr<blocking_pool> blocking_;
  // The epoll reactor. The parked driver waits in it whenever a source is registered.
  std::shared_ptr<reactor> reactor_;
};

/// The worker running on this thread, or null.
BASTION_NOINLINE worker* current_worker() noexcept;
/// Sets the current proc; returns the previous one.
BASTION_NOINLINE proc_header* set_current_proc(proc_header* p) noexcept;
/// The runtime whose worker or run() call is on this thread (or null); settable.
BASTION_NOINLINE runtime_impl* current_runtime() noexcept;
BASTION_NOINLINE runtime_impl* set_current_runtime(runtime_impl* rt) noexcept;
/// Polls a proc (shared by workers and run()).
void poll_proc(proc_header* p) noexcept;

} // namespace bastion::detail
