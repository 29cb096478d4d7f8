// src/executor/worker.cpp: one executor worker: its loop (LIFO stack, local queue, injector,
// stealing, timers), parking, and the thread-locals naming the current worker and runtime.
//
// After Tokio's multi-threaded scheduler (local ring + LIFO slot + injector checked every 61
// ticks, steal half, at most half the workers searching, the last searcher re-checks before
// parking) and the Go runtime (findrunnable / runqsteal, spinning Ms); the LIFO slot is
// deepened into a small stack, for Cilk's work-first (depth-first) order of spawn trees.
#include <bastion/detail/block_cache.hpp>

#include "runtime_impl.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <utility>

namespace bastion::detail {

namespace {
thread_local worker* tl_worker = nullptr;
thread_local runtime_impl* tl_runtime = nullptr;

/// The injector is checked first every this many polls, so that a worker whose local queue
/// never empties still serves tasks spawned from outside (Tokio uses 61).
constexpr std::uint64_t global_queue_interval = 61;
/// Consecutive polls from the LIFO stack before the queue (or the injector) gets one (Tokio
/// polls its one-task LIFO slot at most 3 times in a row), so that tasks waking each other
/// cannot starve the rest. Larger than Tokio's because the stack also carries spawn trees,
/// which run fastest depth-first: each queue poll starts the oldest queued subtree, and with
/// 16 skynet ran ~13% slower with more subtrees open at once (docs/executor.md).
constexpr unsigned max_lifo_polls = 64;
/// After a steal attempt meets another thief on the victim, take from the injector
/// instead of stealing for this many polls. This is the congestion trick of the reference
/// (Rust bastion-executor's run queue: on a contended steal it falls back to the global
/// queue rather than retrying the victim).
constexpr unsigned congestion_polls = 32;

/// A worker pushing a burst of tasks looks for a parked worker to wake once per this many
/// pushes (and whenever its queue turns non-empty).
constexpr std::uint64_t notify_interval = 16;

/// Steal attempts a searching worker makes, a short pause apart, before it parks.
constexpr unsigned spin_rounds = 32;
/// Pause instructions between two socket polls of spin_on_io: each epoll_wait takes the
/// epoll instance's lock, which the peers' sends (ep_poll_callback) take too.
constexpr unsigned io_spin_pauses = 64;
/// Pauses a parking worker waits, at most, for a poller to give the driver role back.
constexpr unsigned driver_waits = 4096;
/// Gaps of a spin that only pause; from this one on, each gap first yields the CPU.
constexpr unsigned active_spin_gaps = 4;
/// A sched_yield that returns later than this gave the CPU to another thread: the spin ends
/// and the worker parks (a yield on a CPU with nothing else to run returns in about 1 µs).
constexpr std::int64_t yield_handed_over_ns = 10'000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::uint32_t xorshift(std::uint32_t& s) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}
} // namespace

worker* current_worker() noexcept {
  return tl_worker;
}
void note_message_sent() noexcept {
  // On every send: read the thread-local here rather than through current_worker() (a
  // second out-of-line call).
  if (worker* w = tl_worker) {
    w->note_send();
  }
}
runtime_impl* current_runtime() noexcept {
  return tl_runtime;
}
runtime_impl* set_current_runtime(runtime_impl* rt) noexcept {
  auto* prev = tl_runtime;
  tl_runtime = rt;
  return prev;
}

runtime_impl* current_or_default_runtime() {
  if (auto* rt = tl_runtime) {
    return rt;
  }
  return runtime::global().impl();
}

// ------------------------------------------------------------------ parker ----

void parker::park(std::optional<std::chrono::steady_clock::time_point> deadline) {
  int expected = notified;
  if (state_.compare_exchange_strong(expected, empty, std::memory_order_acquire)) {
    return;
  }
  std::unique_lock lk(mu_);
  expected = empty;
  if (!state_.compare_exchange_strong(expected, parked, std::memory_order_acquire)) {
    state_.store(empty, std::memory_order_release); // was notified meanwhile
    return;
  }
  for (;;) {
    if (deadline) {
      if (cv_.wait_until(lk, *deadline) == std::cv_status::timeout) {
        state_.exchange(empty, std::memory_order_acquire); // consume a racing notify too
        return;
      }
    } else {
      cv_.wait(lk);
    }
    expected = notified;
    if (state_.compare_exchange_strong(expected, empty, std::memory_order_acquire)) {
      return;
    }
  }
}

void parker::park_io(std::optional<std::chrono::steady_clock::time_point> deadline) {
  int expected = notified;
  if (state_.compare_exchange_strong(expected, empty, std::memory_order_acquire)) {
    return;
  }
  expected = empty;
  if (!state_.compare_exchange_strong(expected, parked_io, std::memory_order_acquire)) {
    state_.store(empty, std::memory_order_release); // was notified meanwhile
    return;
  }
  // An unpark from here on writes the eventfd, so the wait below returns: epoll_wait
  // reports an eventfd that is readable before or during the call.
  io_->poll(deadline);
  state_.exchange(empty, std::memory_order_acquire); // consume a racing notify too
}

void parker::unpark() {
  const int prev = state_.exchange(notified, std::memory_order_acq_rel);
  if (prev == parked) {
    std::lock_guard lk(mu_); // the sleeper is inside wait (or about to be): sync with it
    cv_.notify_one();
  } else if (prev == parked_io) {
    io_->interrupt();
  }
}

// ------------------------------------------------------------------ worker ----

worker::worker(runtime_impl& rt, worker_placement place)
    : rt_(rt)
    , place_(place)
    , rng_(static_cast<std::uint32_t>(place.worker * 2654435761U + 1U)) {
}

void worker::push_back(runnable* r) {
  if (queue_.push_back_or_overflow(r, rt_.injector_) > 0) {
    overflows_.inc();
    rt_.notify_parked();
    return;
  }
  // notify_parked costs a seq_cst fence. A task in a local queue is never stranded (its
  // owner runs it), so only parallelism is at stake: look for an idle worker when the queue
  // turns non-empty and then once every notify_interval pushes, not on every push of a
  // burst of spawns.
  if (queue_.size() == 1 || (++pushes_ % notify_interval) == 0) {
    rt_.notify_parked();
  }
}

void worker::push_lifo(runnable* r) {
  if (lifo_count_ == lifo_depth) {
    push_back(take_oldest_lifo()); // spills where thieves can reach it
  }
  lifo_[(lifo_bottom_ + lifo_count_) % lifo_depth] = r;
  ++lifo_count_;
}

runnable* worker::pop_lifo() noexcept {
  if (lifo_count_ == 0) {
    return nullptr;
  }
  --lifo_count_;
  return lifo_[(lifo_bottom_ + lifo_count_) % lifo_depth];
}

runnable* worker::take_oldest_lifo() noexcept {
  runnable* oldest = lifo_[lifo_bottom_];
  lifo_bottom_ = (lifo_bottom_ + 1) % lifo_depth;
  --lifo_count_;
  return oldest;
}

bool worker::poll_io_now() {
  std::int64_t none = runtime_impl::no_driver;
  if (!rt_.timer_driver_.compare_exchange_strong(
          none,
          static_cast<std::int64_t>(place_.worker) | runtime_impl::polling_tag,
          std::memory_order_seq_cst)) {
    return false; // the driver (parked in epoll_wait) or another poller serves the sockets
  }
  rt_.reactor_->poll(std::chrono::steady_clock::time_point{}); // does not block
  rt_.timer_driver_.store(runtime_impl::no_driver, std::memory_order_seq_cst);
  return true;
}

runnable* worker::spin_on_io() {
  const auto window = rt_.cfg_.io_spin();
  if (window.count() == 0 || rt_.reactor_->registered() == 0) {
    return nullptr;
  }
  const bool can_steal = searching_ && rt_.workers_.size() > 1; // searchers are capped
  const std::int64_t until = to_ns(std::chrono::steady_clock::now() + window);
  for (unsigned gap = 0;; ++gap) {
    if (!poll_io_now()) {
      return nullptr; // another worker polls the sockets: one spinner per runtime is enough
    }
    // What the poll woke landed on this worker.
    if (runnable* t = next_local_task()) {
      return t;
    }
    if (can_steal) {
      if (runnable* t = steal_work()) {
        return t;
      }
    }
    if (rt_.shutdown_.load(std::memory_order_relaxed)) {
      return nullptr;
    }
    if (!spin_gap(gap, io_spin_pauses)) {
      return nullptr; // another thread wants this CPU: park rather than share it
    }
    // The window ends, or a timer comes due (the main loop fires it).
    const std::int64_t now = to_ns(std::chrono::steady_clock::now());
    if (now >= until || now >= rt_.next_deadline_ns_.load(std::memory_order_relaxed)) {
      return nullptr;
    }
  }
}

bool worker::spin_gap(unsigned gap, unsigned pauses) {
  if (gap >= active_spin_gaps) {
    const auto before = std::chrono::steady_clock::now();
    ::sched_yield();
    spin_yields_.inc();
    if (std::chrono::steady_clock::now() - before
        > std::chrono::nanoseconds(yield_handed_over_ns)) {
      contended_spins_.inc();
      return false;
    }
  }
  for (unsigned k = 0; k < pauses; ++k) {
    cpu_relax();
  }
  return true;
}

void worker::flush_lifo() {
  while (lifo_count_ != 0) {
    push_back(take_oldest_lifo());
  }
}

runnable* worker::next_local_task() {
  // Every global_queue_interval polls the sources outside this worker come first (the
  // injector, the timers and the sockets), however long the LIFO stack keeps being refilled.
  if (tick_ - last_global_tick_ >= global_queue_interval) {
    last_global_tick_ = tick_;
    if (rt_.reactor_->registered() > 0) {
      poll_io_now(); // sockets are served even while no worker parks
    }
    const auto ns = rt_.next_deadline_ns_.load(std::memory_order_relaxed);
    if (ns != INT64_MAX && to_ns(std::chrono::steady_clock::now()) >= ns) {
      timers_fired_.inc(rt_.fire_timers(std::chrono::steady_clock::now()));
    }
    if (runnable* r = rt_.injector_.pop()) {
      injector_pulls_.inc();
      return r;
    }
  }
  if (lifo_count_ != 0 && lifo_streak_ < max_lifo_polls) {
    ++lifo_streak_;
    lifo_hits_.inc();
    return pop_lifo();
  }
  // Fairness: the queue (or the injector) gets this poll; the stack waits for the next.
  lifo_streak_ = 0;
  if (congested_ > 0) {
    --congested_;
    if (runnable* r = rt_.injector_.pop()) {
      injector_pulls_.inc();
      return r;
    }
  }
  if (runnable* r = queue_.pop()) {
    return r;
  }
  // Pull a fair share of the injector into the local queue at once.
  const auto got = queue_.refill_from(
      rt_.injector_, rt_.injector_.fair_share(rt_.workers_.size(), decltype(queue_)::capacity / 2));
  if (got.task != nullptr) {
    injector_pulls_.inc(got.pulled);
    return got.task;
  }
  if (runnable* r = pop_lifo()) { // nothing else waits: the stack's turn again
    lifo_hits_.inc();
    return r;
  }
  return nullptr;
}

runnable* worker::steal_work() {
  if (victims_.empty()) {
    return nullptr;
  }
  // Same-node victims come first in victims_; start at a random one among them so thieves
  // spread out, then walk the rest in order.
  const std::size_t n = victims_.size();
  std::size_t same_node = 0;
  while (same_node < n && rt_.plan_[victims_[same_node]].numa_node == place_.numa_node) {
    ++same_node;
  }
  const std::size_t start = same_node > 0 ? xorshift(rng_) % same_node : 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = i < same_node ? victims_[(start + i) % same_node] : victims_[i];
    auto res = rt_.workers_[k]->queue_.steal_into(queue_);
    if (res.task != nullptr) {
      steals_.inc();
      stolen_tasks_.inc(res.stolen);
      return res.task;
    }
    if (res.contended) {
      steal_contended_.inc();
      congested_ = congestion_polls;
      if (runnable* r = rt_.injector_.pop()) {
        injector_pulls_.inc();
        return r;
      }
    }
  }
  if (runnable* r = rt_.injector_.pop()) {
    injector_pulls_.inc();
    return r;
  }
  return nullptr;
}

void worker::run_task(runnable* t) {
  ++tick_;
  polls_.inc();
  const unsigned outer_sends = sends_this_poll_; // a nested poll (block_on) resumes the count
  sends_this_poll_ = 0;
  t->run();
  sends_this_poll_ = outer_sends;
}

void worker::run_found(runnable* t) {
  if (searching_) {
    searching_ = false;
    rt_.transition_from_searching(); // the last searcher wakes a parked worker
  }
  run_task(t);
}

bool worker::run_one_nested() {
  runnable* t = next_local_task();
  if (t == nullptr) {
    t = steal_work();
  }
  if (t == nullptr) {
    return false;
  }
  run_task(t);
  return true;
}

void worker::main_loop() {
  tl_worker = this;
  tl_runtime = &rt_;
  while (!rt_.shutdown_.load(std::memory_order_acquire)) {
    if (runnable* t = next_local_task()) {
      run_found(t);
      continue;
    }
    bool handed_over = false; // a spin's yield gave the CPU away: park without spinning more
    if (!searching_) {
      searching_ = rt_.transition_to_searching();
    }
    if (searching_) {
      runnable* t = steal_work();
      // Spin briefly before parking (Go's spinning Ms): a producer that sees a searcher
      // does not pay for a futex wake, and a burst of spawns is picked up without a
      // park/unpark round trip per task. Bounded (32 gaps of 64 pauses, tens of µs), so an
      // idle runtime still parks at once and uses no CPU; a gap whose yield handed the CPU
      // to another thread ends it, and the worker parks (also skipping the socket spin):
      // a searcher that is off its CPU would keep producers from waking anyone.
      // With one worker there is nobody to steal from: spinning would only take CPU from
      // other processes (e.g. the clients of a server). Sockets get their own, timed spin
      // (spin_on_io) below.
      const unsigned rounds = rt_.workers_.size() > 1 ? spin_rounds : 0;
      for (unsigned round = 0; t == nullptr && round < rounds; ++round) {
        if (!spin_gap(round, 64)) {
          handed_over = true;
          break;
        }
        if (rt_.shutdown_.load(std::memory_order_relaxed)) {
          break;
        }
        t = steal_work();
      }
      if (t != nullptr) {
        run_found(t);
        continue;
      }
    }
    if (runnable* t = handed_over ? nullptr : spin_on_io()) {
      run_found(t);
      continue;
    }
    if (const auto fired = rt_.fire_timers(std::chrono::steady_clock::now()); fired > 0) {
      timers_fired_.inc(fired);
      continue;
    }
    // Park.
    const std::size_t me = place_.worker;
    const auto [last_searcher, last_awake] = rt_.transition_to_parked(me, searching_);
    searching_ = false;
    if (last_searcher && rt_.has_pending_work()) {
      rt_.notify_parked(); // may pick this very worker: its park then returns at once
    }
    if (last_awake) {
      // The runtime goes idle: the block caches' depots give a burst's surplus back (an
      // unpark meanwhile only makes the park below return at once).
      trim_block_caches();
    }
    std::optional<std::chrono::steady_clock::time_point> until;
    bool driver = false;
    if (rt_.next_deadline_ns_.load(std::memory_order_seq_cst) != INT64_MAX
        || rt_.reactor_->registered() > 0) {
      // A worker that holds the role only for a non-blocking poll lets go within
      // microseconds: wait for it rather than park without the role (the sockets would then
      // be served only by busy workers' periodic polls).
      for (unsigned tries = 0;; ++tries) {
        std::int64_t holder = runtime_impl::no_driver;
        driver = rt_.timer_driver_.compare_exchange_strong(
            holder, static_cast<std::int64_t>(me), std::memory_order_seq_cst);
        if (driver || (holder & runtime_impl::polling_tag) == 0 || tries == driver_waits) {
          break;
        }
        cpu_relax();
      }
      if (driver) {
        // Re-read after publishing the role: an insert that raced with us either sees
        // this worker as the driver (and unparks it) or is visible here.
        const auto ns = rt_.next_deadline_ns_.load(std::memory_order_seq_cst);
        if (ns != INT64_MAX) {
          until = from_ns(ns);
        }
      }
    }
    parks_.inc();
    if (!rt_.shutdown_.load(std::memory_order_acquire)) {
      // The driver waits in epoll_wait while sockets are registered (a registration that
      // races with this check wakes the driver, see runtime_impl::wake_driver).
      if (driver && rt_.reactor_->registered() > 0) {
        park_.park_io(until);
      } else {
        park_.park(until);
      }
    }
    if (driver) {
      rt_.timer_driver_.store(runtime_impl::no_driver, std::memory_order_seq_cst);
    }
    searching_ = rt_.transition_from_parked(me);
  }
  tl_worker = nullptr;
  tl_runtime = nullptr;
}

} // namespace bastion::detail
