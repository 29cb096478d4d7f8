// src/executor/blocking_pool.cpp: the adaptive blocking pool (see the header for the design).
#include <bastion/detail/blocking_pool.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#if defined(__linux__)
#  include <pthread.h>
#  include <sched.h>
#  include <unistd.h>
#endif

namespace bastion::detail {

namespace {

// Names the calling thread (visible in top -H, gdb, /proc); best effort, Linux only.
void name_this_thread([[maybe_unused]] const char* name) noexcept {
#if defined(__linux__)
  ::pthread_setname_np(::pthread_self(), name); // <= 15 characters
#endif
}

// A thread inherits its creator's CPU affinity. Pool threads are created by whoever
// submits, often a worker pinned to one PU: without this, every blocking thread would crowd
// that one PU. They take the process's (main thread's) affinity instead. Best effort.
void unpin_this_thread() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(::getpid(), sizeof set, &set) == 0) {
    ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
  }
#endif
}

} // namespace

// ---------------------------------------------------------------------------------------------
// load_predictor

load_predictor::load_predictor(std::size_t window)
    : alpha_(0.0) {
  if (window == 0) {
    throw std::invalid_argument("load_predictor: window must be >= 1 sample");
  }
  alpha_ = 2.0 / (static_cast<double>(window) + 1.0);
}

double load_predictor::sample(std::uint64_t arrivals) noexcept {
  previous_ = average_;
  average_ = alpha_ * static_cast<double>(arrivals) + (1.0 - alpha_) * average_;
  return predicted();
}

void load_predictor::skip(std::uint64_t periods) noexcept {
  if (periods == 0) {
    return;
  }
  // k zero samples: e_k = (1 - a)^k e_0 and e_{k-1} = (1 - a)^(k-1) e_0.
  const double keep = 1.0 - alpha_;
  previous_ = average_ * std::pow(keep, static_cast<double>(periods - 1));
  average_ = previous_ * keep;
}

double load_predictor::predicted() const noexcept {
  return std::max(0.0, average_ + (average_ - previous_));
}

std::size_t load_predictor::threads_to_add(const load& now) const noexcept {
  const std::size_t room = now.cap > now.threads ? now.cap - now.threads : 0;
  if (room == 0) {
    return 0;
  }
  std::size_t want = 0;

  // Predictive head-room: busy threads scale with the predicted rise of the arrival rate.
  const double rise = predicted() - previous_;
  if (rise > 0.0 && now.busy > 0) {
    const double ratio = previous_ > 0.0 ? std::min(1.0, rise / previous_) : 1.0;
    const auto spares =
        static_cast<std::size_t>(std::floor(static_cast<double>(now.busy) * ratio + 0.5));
    want = spares > now.idle ? spares - now.idle : 0;
  }

  // Stall: jobs wait that no idle thread will take, and nothing completed during the period
  // (every thread is hogged by a long job), or there is no thread at all.
  const std::size_t uncovered = now.queued > now.idle ? now.queued - now.idle : 0;
  if (uncovered > 0 && (now.completed == 0 || now.threads == 0)) {
    want = std::max(want, uncovered);
  }
  return std::min(want, room);
}

// ---------------------------------------------------------------------------------------------
// blocking_pool

// A worker's handle. `thread` is written once by the creating thread outside the lock, before
// `registered` is set under the lock; it is joined only by whoever takes the slot from the
// join chain. `registered` and `exited` are guarded by mutex_.
struct blocking_pool::worker_slot {
  std::thread thread;
  bool registered = false; // creator has stored `thread`
  bool exited = false;     // worker left before registration: the creator retires the slot
};

namespace {

void join_if_joinable(std::thread& thread) noexcept {
  if (thread.joinable()) {
    thread.join();
  }
}

} // namespace

blocking_pool::blocking_pool(blocking_pool_config config)
    : config_(config)
    , predictor_(config.window == 0 ? 1 : config.window) {
  if (config_.max_threads == 0) {
    throw std::invalid_argument("blocking_pool_config: max_threads must be >= 1");
  }
  if (config_.sample_period.count() <= 0) {
    throw std::invalid_argument("blocking_pool_config: sample_period must be > 0 ms");
  }
  if (config_.keep_alive.count() < 0) {
    throw std::invalid_argument("blocking_pool_config: keep_alive must be >= 0 ms");
  }
  if (config_.window == 0) {
    throw std::invalid_argument("blocking_pool_config: window must be >= 1 sample");
  }
}

blocking_pool::~blocking_pool() {
  shutdown();
}

void blocking_pool::reserve_threads_locked(std::size_t n) noexcept {
  threads_ += n;
  spawning_ += n;
  peak_threads_ = std::max(peak_threads_, threads_);
}

blocking_pool::worker_slot* blocking_pool::retire_slot_locked(worker_slot* slot) noexcept {
  return std::exchange(last_retired_, slot);
}

bool blocking_pool::submit(blocking_job* job) noexcept {
  bool wake_worker = false;
  bool spawn = false;
  bool start = false;
  bool wake_sampler = false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      return false;
    }
    job->next_ = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ = job;
    } else {
      head_ = job;
    }
    tail_ = job;
    ++queued_;
    ++submitted_;

    if (idle_ > 0) {
      --idle_; // claim one waiting worker for this job (see the header)
      ++wakeups_;
      wake_worker = true;
    } else if (config_.grow_on_submit && threads_ < config_.max_threads) {
      reserve_threads_locked(1);
      spawn = true;
    }

    if (sampler_state_ == sampler_state::not_started) {
      sampler_state_ = sampler_state::active;
      ++spawning_;
      start = true;
    } else if (sampler_state_ == sampler_state::asleep) {
      sampler_state_ = sampler_state::active;
      wake_sampler = true;
    }
  }
  // Notifying after unlocking: the woken thread does not block on the mutex we still hold.
  if (wake_worker) {
    work_cv_.notify_one();
  }
  if (spawn) {
    spawn_worker();
  }
  if (start) {
    start_sampler();
  }
  if (wake_sampler) {
    sampler_cv_.notify_one();
  }
  return true;
}

void blocking_pool::spawn_worker() noexcept {
  auto* slot = new (std::nothrow) worker_slot;
  bool created = false;
  if (slot != nullptr) {
    try {
      slot->thread = std::thread([this, slot] { worker_main(slot); });
      created = true;
    } catch (...) {
      // std::system_error (EAGAIN: out of threads) or bad_alloc: give the reservation back;
      // the job stays queued and the sampler's stall rule retries next period.
    }
  }
  worker_slot* to_join = nullptr;
  {
    std::lock_guard lock(mutex_);
    --spawning_;
    if (created) {
      ++threads_started_;
      if (slot->exited) {
        to_join = retire_slot_locked(slot);
      } else {
        slot->registered = true;
      }
    } else {
      --threads_;
    }
    if (stopping_ && drained_locked()) {
      drained_cv_.notify_all();
    }
  }
  if (!created) {
    delete slot;
  }
  if (to_join != nullptr) {
    join_if_joinable(to_join->thread);
    delete to_join;
  }
}

void blocking_pool::start_sampler() noexcept {
  std::thread sampler;
  bool created = false;
  try {
    sampler = std::thread([this] { sampler_main(); });
    created = true;
  } catch (...) {
    // Out of threads: the next submit tries again.
  }
  std::lock_guard lock(mutex_);
  --spawning_;
  if (created) {
    sampler_ = std::move(sampler);
  } else {
    sampler_state_ = sampler_state::not_started;
  }
  if (stopping_ && drained_locked()) {
    drained_cv_.notify_all();
  }
}

void blocking_pool::worker_main(worker_slot* self) noexcept {
  name_this_thread("bastion-blk");
  unpin_this_thread();
  std::unique_lock lock(mutex_);
  for (;;) {
    if (head_ != nullptr) {
      blocking_job* job = head_;
      head_ = job->next_;
      if (head_ == nullptr) {
        tail_ = nullptr;
      }
      --queued_;
      ++running_;
      lock.unlock();
      job->run(); // may free the job: not touched afterwards
      lock.lock();
      --running_;
      ++completed_;
      continue; // completion and the next pop share one critical section
    }
    if (stopping_) {
      break;
    }

    // Idle: wait for a claim, a job, shutdown, or the keep-alive to run out.
    ++idle_;
    const auto deadline = std::chrono::steady_clock::now() + config_.keep_alive;
    bool timed_out = false;
    bool retire = false;
    for (;;) {
      if (wakeups_ > 0) {
        --wakeups_; // a submit already took us out of idle_
        break;
      }
      if (stopping_ || head_ != nullptr) {
        --idle_;
        break;
      }
      if (timed_out) {
        --idle_;
        retire = true;
        break;
      }
      timed_out = work_cv_.wait_until(lock, deadline) == std::cv_status::timeout;
    }
    if (retire) {
      break;
    }
  }

  --threads_;
  ++threads_retired_;
  worker_slot* to_join = nullptr;
  if (self->registered) {
    to_join = retire_slot_locked(self);
  } else {
    self->exited = true; // the creator retires the slot when it registers it
  }
  if (stopping_ && drained_locked()) {
    drained_cv_.notify_all();
  }
  lock.unlock();
  // `this` may be destroyed from here on (shutdown joins us through the chain).
  if (to_join != nullptr) {
    join_if_joinable(to_join->thread);
    delete to_join;
  }
}

void blocking_pool::sampler_main() noexcept {
  name_this_thread("bastion-blk-smp");
  unpin_this_thread();
  using clock = std::chrono::steady_clock;
  const auto period = std::chrono::duration_cast<clock::duration>(config_.sample_period);
  std::uint64_t last_submitted = 0;
  std::uint64_t last_completed = 0;

  std::unique_lock lock(mutex_);
  auto next_tick = clock::now() + period;
  while (!stopping_) {
    if (queued_ == 0 && running_ == 0) {
      // Nothing to watch: sleep with no timeout until a submit (or shutdown) wakes us.
      sampler_state_ = sampler_state::asleep;
      const auto slept_at = clock::now();
      sampler_cv_.wait(lock, [this] { return stopping_ || queued_ > 0 || running_ > 0; });
      sampler_state_ = sampler_state::active;
      const auto now = clock::now();
      predictor_.skip(static_cast<std::uint64_t>((now - slept_at) / period));
      next_tick = now + period;
      continue;
    }

    if (sampler_cv_.wait_until(lock, next_tick, [this] { return stopping_; })) {
      break;
    }
    const auto now = clock::now();
    next_tick += period;
    if (next_tick <= now) {
      next_tick = now + period; // we fell behind: do not burst to catch up
    }

    const std::uint64_t arrivals = submitted_ - last_submitted;
    const std::uint64_t completions = completed_ - last_completed;
    last_submitted = submitted_;
    last_completed = completed_;
    predictor_.sample(arrivals);
    predicted_rate_ =
        predictor_.predicted() * 1000.0 / static_cast<double>(config_.sample_period.count());

    const std::size_t add = predictor_.threads_to_add(load_predictor::load{
        .threads = threads_,
        .idle = idle_,
        .busy = running_,
        .queued = queued_,
        .cap = config_.max_threads,
        .completed = completions});
    if (add > 0) {
      reserve_threads_locked(add);
      lock.unlock();
      for (std::size_t i = 0; i < add; ++i) {
        spawn_worker();
      }
      lock.lock();
    }
  }
  sampler_state_ = sampler_state::stopped;
}

void blocking_pool::shutdown() {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    drained_cv_.wait(lock, [this] { return stopped_; });
    return;
  }
  stopping_ = true;
  lock.unlock();
  work_cv_.notify_all();
  sampler_cv_.notify_all();
  lock.lock();

  // Workers drain the queue, then exit; creations in flight finish first.
  drained_cv_.wait(lock, [this] { return drained_locked(); });
  std::thread sampler = std::move(sampler_);
  worker_slot* last = std::exchange(last_retired_, nullptr);
  blocking_job* leftovers = std::exchange(head_, nullptr);
  tail_ = nullptr;
  const std::size_t leftover_count = std::exchange(queued_, 0);
  lock.unlock();

  if (sampler.joinable()) {
    sampler.join();
  }
  if (last != nullptr) {
    join_if_joinable(last->thread); // joins the whole chain: each joined its predecessor
    delete last;
  }
  // Only when no worker thread could be created: run what is left here rather than lose it.
  while (leftovers != nullptr) {
    blocking_job* job = leftovers;
    leftovers = job->next_;
    job->run();
  }

  lock.lock();
  completed_ += leftover_count;
  stopped_ = true;
  drained_cv_.notify_all();
}

blocking_pool_stats blocking_pool::stats() const {
  std::lock_guard lock(mutex_);
  return blocking_pool_stats{
      .threads = threads_,
      .idle_threads = idle_,
      .peak_threads = peak_threads_,
      .queued = queued_,
      .submitted = submitted_,
      .completed = completed_,
      .threads_started = threads_started_,
      .threads_retired = threads_retired_,
      .predicted_rate = predicted_rate_};
}

std::size_t blocking_threads_from_env(std::size_t fallback) {
  const char* raw = std::getenv("BASTION_BLOCKING_THREADS");
  if (raw == nullptr) {
    return fallback;
  }
  const std::string_view text(raw);
  std::size_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || stop != end || value == 0) {
    throw std::invalid_argument(
        "BASTION_BLOCKING_THREADS must be a positive integer, got \"" + std::string(text) + "\"");
  }
  return value;
}

} // namespace bastion::detail
