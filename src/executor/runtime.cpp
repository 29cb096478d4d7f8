// src/executor/runtime.cpp: the executor as a whole: start-up and placement, idle
// coordination between workers, timers, shutdown, stats, and the public runtime class.
//
// The scheduling design follows Tokio's multi-threaded scheduler (local ring + LIFO stack +
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
  reactor_ = std::make_shared<reactor>();
  reactor_->on_first_registration_arg_ = this;
  reactor_->on_first_registration_ = [](void* self) noexcept {
    static_cast<runtime_impl*>(self)->wake_driver();
  };
  for (auto& w : workers_) {
    w->park_.io_ = reactor_.get();
  }

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
  reactor_->on_first_registration_ = nullptr; // sockets may outlive the runtime, not it
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

runtime_impl::park_transition
runtime_impl::transition_to_parked(std::size_t w, bool was_searching) noexcept {
  std::lock_guard lk(sleepers_mu_);
  const auto prev = idle_state_.fetch_sub(
      unparked_one + (was_searching ? searching_one : 0), std::memory_order_seq_cst);
  sleepers_.push_back(w);
  return {was_searching && searching_of(prev) == 1, unparked_of(prev) == 1};
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
  wake_driver();
}

void runtime_impl::wake_driver() noexcept {
  if (const auto d = timer_driver_.load(std::memory_order_seq_cst); d != no_driver) {
    // A worker that only polls is awake: the unpark makes its next park return at once.
    workers_[static_cast<std::size_t>(d & ~polling_tag)]->park_.unpark();
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

void runtime_impl::shutdown() {
  if (current_worker() != nullptr && &current_worker()->rt_ == this) {
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
      while (runnable* r = w->pop_lifo()) {
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
    n += reactor_->wake_all(); // procs waiting on sockets: cancelled too (sockets close)
    if (n == 0) {
      break;
    }
  }
  reactor_->free_retired(); // no poller is left
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
    s.spin_yields = w->spin_yields_.get();
    s.contended_spins = w->contended_spins_.get();
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
  if (io_spin_.count() < 0 || io_spin_ > std::chrono::seconds(1)) {
    throw std::invalid_argument(
        "bastion::runtime_config: io_spin must be within 0 µs and 1 s, not "
        + std::to_string(io_spin_.count()) + " µs");
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
