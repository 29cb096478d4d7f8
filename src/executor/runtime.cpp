// src/executor/runtime.cpp: workers, parking, stealing, timers and shutdown of the executor.
//
// The scheduling design follows Tokio's multi-threaded scheduler (local ring + LIFO slot +
// injector checked every 61 ticks, steal half, at most half the workers searching, the last
// searcher re-checks before parking) and the Go runtime (findrunnable / runqsteal).
#include <bastion/executor/runtime.hpp>
#include <bastion/log.hpp>

#include "runtime_impl.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace bastion::detail {

namespace {
thread_local worker* tl_worker = nullptr;
thread_local runtime_impl* tl_runtime = nullptr;

/// The injector is checked first every this many polls, so that a worker whose local queue
/// never empties still serves tasks spawned from outside (Tokio uses 61).
constexpr std::uint64_t global_queue_interval = 61;
/// Consecutive polls from the LIFO slot before it yields to the queue (Tokio: 3), so a
/// ping-pong pair of tasks waking each other cannot starve the rest.
constexpr unsigned max_lifo_polls = 3;
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

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

constexpr std::uint32_t searching_one = 1;
constexpr std::uint32_t unparked_one = 1U << 16;
std::uint32_t searching_of(std::uint32_t s) {
  return s & 0xFFFFU;
}
std::uint32_t unparked_of(std::uint32_t s) {
  return s >> 16;
}

std::int64_t to_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
std::chrono::steady_clock::time_point from_ns(std::int64_t ns) {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::nanoseconds(ns)));
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

void parker::unpark() {
  if (state_.exchange(notified, std::memory_order_release) == parked) {
    std::lock_guard lk(mu_); // the sleeper is inside wait (or about to be): sync with it
    cv_.notify_one();
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
  if (runnable* prev = std::exchange(lifo_, r)) {
    push_back(prev);
  }
}

void worker::flush_lifo() {
  if (runnable* prev = std::exchange(lifo_, nullptr)) {
    push_back(prev);
  }
}

runnable* worker::next_local_task() {
  if (lifo_ != nullptr) {
    if (lifo_streak_ < max_lifo_polls) {
      ++lifo_streak_;
      lifo_hits_.inc();
      return std::exchange(lifo_, nullptr);
    }
    flush_lifo(); // fairness: the LIFO task waits its turn in the queue
  }
  lifo_streak_ = 0;
  const bool injector_first = (tick_ % global_queue_interval == 0) || congested_ > 0;
  if (congested_ > 0) {
    --congested_;
  }
  if (tick_ % global_queue_interval == 0) {
    const auto ns = rt_.next_deadline_ns_.load(std::memory_order_relaxed);
    if (ns != INT64_MAX && to_ns(std::chrono::steady_clock::now()) >= ns) {
      timers_fired_.inc(rt_.fire_timers(std::chrono::steady_clock::now()));
      if (lifo_ != nullptr) {
        lifo_hits_.inc();
        return std::exchange(lifo_, nullptr);
      }
    }
  }
  if (injector_first) {
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
  }
  return got.task;
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
  t->run();
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
      if (searching_) {
        searching_ = false;
        rt_.transition_from_searching();
      }
      run_task(t);
      continue;
    }
    if (!searching_) {
      searching_ = rt_.transition_to_searching();
    }
    if (searching_) {
      runnable* t = steal_work();
      // Spin briefly before parking (Go's spinning Ms): a producer that sees a searcher
      // does not pay for a futex wake, and a burst of spawns is picked up without a
      // park/unpark round trip per task. Bounded (~tens of µs), so an idle runtime
      // still parks at once and uses no CPU.
      for (unsigned round = 0; t == nullptr && round < spin_rounds; ++round) {
        for (unsigned k = 0; k < 64; ++k) {
          cpu_relax();
        }
        if (rt_.shutdown_.load(std::memory_order_relaxed)) {
          break;
        }
        t = steal_work();
      }
      if (t != nullptr) {
        searching_ = false;
        rt_.transition_from_searching();
        run_task(t);
        continue;
      }
    }
    if (const auto fired = rt_.fire_timers(std::chrono::steady_clock::now()); fired > 0) {
      timers_fired_.inc(fired);
      continue;
    }
    // Park.
    const std::size_t me = place_.worker;
    const bool last_searcher = rt_.transition_to_parked(me, searching_);
    searching_ = false;
    if (last_searcher && rt_.has_pending_work()) {
      rt_.notify_parked(); // may pick this very worker: its park then returns at once
    }
    std::optional<std::chrono::steady_clock::time_point> until;
    bool driver = false;
    if (rt_.next_deadline_ns_.load(std::memory_order_seq_cst) != INT64_MAX) {
      std::int64_t none = runtime_impl::no_driver;
      driver = rt_.timer_driver_.compare_exchange_strong(
          none, static_cast<std::int64_t>(me), std::memory_order_seq_cst);
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
      park_.park(until);
    }
    if (driver) {
      rt_.timer_driver_.store(runtime_impl::no_driver, std::memory_order_seq_cst);
    }
    searching_ = rt_.transition_from_parked(me);
  }
  tl_worker = nullptr;
  tl_runtime = nullptr;
}

// ------------------------------------------------------------ runtime_impl ----

runtime_impl::runtime_impl(runtime& owner, runtime_config cfg)
    : owner_(owner)
    , cfg_(std::move(cfg)) {
  cfg_.validate();
  const bool synthetic = cfg_.synthetic_topology().has_value();
  topology topo = synthetic ? topology::synthetic(*cfg_.synthetic_topology()) : topology::host();
  std::size_t n = cfg_.workers().value_or(0);
  if (n == 0) {
    n = cfg_.cpu_set().empty() ? topo.pu_count() : cfg_.cpu_set().size();
  }
  plan_ = topo.place(n, cfg_.cpu_set()); // throws invalid_argument naming "cpu_set"
  for (const auto& p : plan_) {
    workers_.push_back(std::make_unique<worker>(*this, p));
  }
  for (auto& w : workers_) {
    w->victims_ = topo.steal_order(plan_, w->place_.worker);
  }
  idle_state_.store(static_cast<std::uint32_t>(n) * unparked_one, std::memory_order_relaxed);

  blocking_pool_config bcfg;
  bcfg.max_threads = cfg_.blocking_threads() ? *cfg_.blocking_threads()
                                             : blocking_threads_from_env(bcfg.max_threads);
  bcfg.keep_alive = cfg_.blocking_keep_alive();
  blocking_ = std::make_unique<blocking_pool>(bcfg);

  const bool pin = cfg_.pin_workers() && !synthetic;
  for (auto& w : workers_) {
    worker* wp = w.get();
    wp->thread_ = std::thread([wp, pin, topo] {
      const std::string name = "bastion-w" + std::to_string(wp->place_.worker);
      pthread_setname_np(pthread_self(), name.c_str());
      if (pin) {
        const bool ok = topo.pin_current_thread(wp->place_);
        wp->pinned_.store(ok, std::memory_order_relaxed);
        if (!ok) {
          logger().warn(
              "worker {} could not be pinned to PU {}", wp->place_.worker, wp->place_.pu_os);
        }
      }
      wp->main_loop();
    });
  }
}

runtime_impl::~runtime_impl() {
  shutdown();
}

void runtime_impl::inject(runnable* r) noexcept {
  if (!injector_.push(r)) {
    r->cancel(); // shut down: report it cancelled rather than lose it
    return;
  }
  notify_parked();
}

void runtime_impl::notify_parked() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto s = idle_state_.load(std::memory_order_seq_cst);
  if (searching_of(s) != 0 || unparked_of(s) >= workers_.size()) {
    return;
  }
  std::size_t idx = 0;
  {
    std::lock_guard lk(sleepers_mu_);
    s = idle_state_.load(std::memory_order_seq_cst);
    if (searching_of(s) != 0 || sleepers_.empty()) {
      return;
    }
    idle_state_.fetch_add(unparked_one + searching_one, std::memory_order_seq_cst);
    idx = sleepers_.back();
    sleepers_.pop_back();
  }
  workers_[idx]->park_.unpark();
}

bool runtime_impl::transition_to_searching() noexcept {
  const auto s = idle_state_.load(std::memory_order_seq_cst);
  if (2 * searching_of(s) >= workers_.size()) {
    return false;
  }
  idle_state_.fetch_add(searching_one, std::memory_order_seq_cst);
  return true;
}

bool runtime_impl::transition_from_searching() noexcept {
  const auto prev = idle_state_.fetch_sub(searching_one, std::memory_order_seq_cst);
  const bool last = searching_of(prev) == 1;
  if (last) {
    notify_parked(); // a searcher that found work wakes the next one
  }
  return last;
}

bool runtime_impl::transition_to_parked(std::size_t w, bool was_searching) noexcept {
  std::lock_guard lk(sleepers_mu_);
  const auto prev = idle_state_.fetch_sub(
      unparked_one + (was_searching ? searching_one : 0), std::memory_order_seq_cst);
  sleepers_.push_back(w);
  return was_searching && searching_of(prev) == 1;
}

bool runtime_impl::transition_from_parked(std::size_t w) noexcept {
  std::lock_guard lk(sleepers_mu_);
  auto it = std::find(sleepers_.begin(), sleepers_.end(), w);
  if (it == sleepers_.end()) {
    return true; // notify_parked took it out and counted it as searching
  }
  sleepers_.erase(it);
  idle_state_.fetch_add(unparked_one, std::memory_order_seq_cst);
  return false;
}

bool runtime_impl::has_pending_work() const noexcept {
  // Pairs with the fence in notify_parked: a producer that pushed before our parked state
  // was published is seen here, or it saw us parked and woke someone.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!injector_.empty()) {
    return true;
  }
  return std::any_of(
      workers_.begin(), workers_.end(), [](const auto& w) { return !w->queue_.empty(); });
}

void runtime_impl::timer_insert(timer_entry* e) {
  bool earliest = false;
  {
    std::lock_guard lk(timer_mu_);
    if (e->fire_fn_ == nullptr) {
      e->fire_fn_ = [](timer_node*) noexcept {
      };
    }
    timers_.insert(e);
    const auto ns = to_ns(e->deadline);
    if (ns < next_deadline_ns_.load(std::memory_order_relaxed)) {
      next_deadline_ns_.store(ns, std::memory_order_seq_cst);
      earliest = true;
    }
  }
  if (!earliest || shutdown_.load(std::memory_order_relaxed)) {
    return;
  }
  if (const auto d = timer_driver_.load(std::memory_order_seq_cst); d != no_driver) {
    workers_[static_cast<std::size_t>(d)]->park_.unpark();
    return;
  }
  // No driver: wake any parked worker so one becomes the driver.
  std::size_t idx = 0;
  {
    std::lock_guard lk(sleepers_mu_);
    if (sleepers_.empty()) {
      return; // every worker is awake and checks the deadline before parking
    }
    idx = sleepers_.back();
    sleepers_.pop_back();
    // Counted as a searcher, like notify_parked: transition_from_parked will report it so.
    idle_state_.fetch_add(unparked_one + searching_one, std::memory_order_seq_cst);
  }
  workers_[idx]->park_.unpark();
}

bool runtime_impl::timer_remove(timer_entry* e) noexcept {
  waker dropped;
  {
    std::lock_guard lk(timer_mu_);
    if (!timers_.remove(e)) {
      return false;
    }
    dropped = std::move(e->w);
    const auto next = timers_.next_deadline();
    next_deadline_ns_.store(next ? to_ns(*next) : INT64_MAX, std::memory_order_seq_cst);
  }
  return true; // `dropped` releases its reference outside the lock
}

std::size_t runtime_impl::fire_timers(std::chrono::steady_clock::time_point now) {
  if (next_deadline_ns_.load(std::memory_order_acquire) > to_ns(now)) {
    return 0;
  }
  std::vector<waker> due;
  {
    std::lock_guard lk(timer_mu_);
    while (timer_node* n = timers_.pop_expired(now)) {
      due.push_back(std::move(static_cast<timer_entry*>(n)->w));
    }
    const auto next = timers_.next_deadline();
    next_deadline_ns_.store(next ? to_ns(*next) : INT64_MAX, std::memory_order_seq_cst);
  }
  for (auto& w : due) {
    w.wake();
  }
  return due.size();
}

std::optional<std::chrono::steady_clock::time_point> runtime_impl::next_deadline() const noexcept {
  const auto ns = next_deadline_ns_.load(std::memory_order_acquire);
  if (ns == INT64_MAX) {
    return std::nullopt;
  }
  return from_ns(ns);
}

void runtime_impl::shutdown() {
  if (tl_worker != nullptr && &tl_worker->rt_ == this) {
    throw std::logic_error("bastion::runtime::shutdown: called from one of its own workers");
  }
  std::lock_guard guard(shutdown_mu_);
  if (stopped_.load(std::memory_order_acquire)) {
    return;
  }
  shutdown_.store(true, std::memory_order_seq_cst);
  injector_.close();
  for (auto& w : workers_) {
    w->park_.unpark();
  }
  for (auto& w : workers_) {
    if (w->thread_.joinable()) {
      w->thread_.join();
    }
  }
  // Workers are gone: from here on this thread is the only one touching their queues.
  blocking_->shutdown(); // jobs already submitted still run; their wakes cancel their procs
  for (;;) {
    std::size_t n = 0;
    for (auto& w : workers_) {
      if (runnable* r = std::exchange(w->lifo_, nullptr)) {
        r->cancel();
        ++n;
      }
      w->queue_.drain([&](runnable* r) {
        r->cancel();
        ++n;
      });
    }
    injector_.drain([&](runnable* r) {
      r->cancel();
      ++n;
    });
    std::vector<waker> due;
    {
      std::lock_guard lk(timer_mu_);
      while (timer_node* t = timers_.pop_expired(std::chrono::steady_clock::time_point::max())) {
        due.push_back(std::move(static_cast<timer_entry*>(t)->w));
      }
      next_deadline_ns_.store(INT64_MAX, std::memory_order_seq_cst);
    }
    n += due.size();
    for (auto& w : due) {
      w.wake(); // the proc is scheduled on a closed runtime, so it is cancelled
    }
    if (n == 0) {
      break;
    }
  }
  stopped_.store(true, std::memory_order_release);
}

runtime_stats runtime_impl::stats() const {
  runtime_stats out;
  for (const auto& w : workers_) {
    worker_stats s;
    s.worker = w->place_.worker;
    s.pu_os = w->place_.pu_os;
    s.numa_node = w->place_.numa_node;
    s.pinned = w->pinned_.load(std::memory_order_relaxed);
    s.polls = w->polls_.get();
    s.lifo_hits = w->lifo_hits_.get();
    s.steals = w->steals_.get();
    s.stolen_tasks = w->stolen_tasks_.get();
    s.steal_contended = w->steal_contended_.get();
    s.injector_pulls = w->injector_pulls_.get();
    s.overflows = w->overflows_.get();
    s.parks = w->parks_.get();
    s.timers_fired = w->timers_fired_.get();
    s.queue_depth = w->queue_.size();
    out.workers.push_back(s);
  }
  const auto b = blocking_->stats();
  out.blocking.threads = b.threads;
  out.blocking.idle_threads = b.idle_threads;
  out.blocking.peak_threads = b.peak_threads;
  out.blocking.queued = b.queued;
  out.blocking.completed = b.completed;
  out.injector_depth = injector_.size();
  {
    std::lock_guard lk(timer_mu_);
    out.timers_pending = timers_.size();
  }
  out.procs_spawned = spawned_outside_.load(std::memory_order_relaxed);
  for (const auto& w : workers_) {
    out.procs_spawned += w->spawned_.get();
  }
  return out;
}

void timer_insert(runtime_impl* rt, timer_entry* e) {
  rt->timer_insert(e);
}
bool timer_remove(runtime_impl* rt, timer_entry* e) noexcept {
  return rt->timer_remove(e);
}

} // namespace bastion::detail

namespace bastion {

void runtime_config::validate() const {
  if (workers_ && *workers_ == 0) {
    throw std::invalid_argument("bastion::runtime_config: workers must be at least 1 (got 0)");
  }
  if (blocking_threads_ && *blocking_threads_ == 0) {
    throw std::invalid_argument(
        "bastion::runtime_config: blocking_threads must be at least 1 (got 0)");
  }
  if (blocking_keep_alive_.count() < 0) {
    throw std::invalid_argument("bastion::runtime_config: blocking_keep_alive is negative");
  }
}

runtime::runtime(runtime_config cfg)
    : impl_(std::make_unique<detail::runtime_impl>(*this, std::move(cfg))) {
}

runtime::~runtime() {
  if (impl_) {
    impl_->shutdown();
  }
}

void runtime::shutdown() {
  impl_->shutdown();
}
bool runtime::is_shut_down() const noexcept {
  return impl_->shutdown_.load(std::memory_order_acquire);
}
std::size_t runtime::worker_count() const noexcept {
  return impl_->workers_.size();
}
const std::vector<worker_placement>& runtime::placement() const noexcept {
  return impl_->plan_;
}
runtime_stats runtime::stats() const {
  return impl_->stats();
}

runtime& runtime::global() {
  static runtime instance{runtime_config{}};
  return instance;
}

runtime* runtime::current() noexcept {
  auto* rt = detail::current_runtime();
  return rt != nullptr ? &rt->owner_ : nullptr;
}

} // namespace bastion

namespace bastion::detail {
bool submit_blocking(runtime_impl* rt, blocking_job* job) noexcept {
  return rt->blocking().submit(job);
}
} // namespace bastion::detail
