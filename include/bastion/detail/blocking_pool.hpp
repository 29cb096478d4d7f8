// bastion/detail/blocking_pool.hpp: the adaptive OS-thread pool behind spawn_blocking.
//
// Internal: the runtime owns one blocking_pool; spawn_blocking wraps the caller's callable in
// a blocking_job that lives inside the join handle's shared state and submits it here. No
// blocking job ever runs on an executor worker: every job runs on one of this pool's threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

namespace bastion::detail {

/// Default cap on the blocking pool's threads when neither the runtime config nor
/// BASTION_BLOCKING_THREADS names one.
///
/// Why 448 (measured on a 2-core Debian 12 box): a burst of n jobs that each block d ms takes
/// about ceil(n / cap) * d plus the time to create the threads, which the submitter does one
/// by one (~14 us each, ~28 us with both cores busy). For the reference burst (2,000 x 10 ms
/// beside 100k small CPU procs on 2 workers, bench blocking_mix, workers unpinned) the median
/// was 53 ms / 517 OS threads with a cap of 512, 55 ms / 453 with 448, 62 ms / 389 with 384:
/// below ~400 a sixth 10 ms round appears. 448 keeps five rounds plus room for the creation
/// ramp, within ~5% of a 512-thread pool (Tokio's default) while 64 threads smaller.
inline constexpr std::size_t default_blocking_threads = 448;

/// Intrusive job node: the submitter allocates it (e.g. inside its shared state) and keeps it
/// alive until run_fn_ has been called; the pool never allocates per job.
///
/// Thread-safety: owned by the pool from a successful submit until run_fn_ is called; while
/// queued only the pool writes `next_`.
struct blocking_job {
  /// Intrusive FIFO link, written by the pool under its lock while the job is queued.
  blocking_job* next_ = nullptr;
  /// Runs the job once on a pool thread. Must not throw (it is noexcept): a job reports its own
  /// failure through the state it lives in. The job may free itself inside run_fn_; the pool
  /// does not touch it afterwards.
  void (*run_fn_)(blocking_job*) noexcept = nullptr;

  /// Runs the job. @pre the pool took it out of its queue.
  void run() noexcept { run_fn_(this); }
};

/// Knobs of a blocking_pool. All durations are wall-clock.
struct blocking_pool_config {
  /// Hard cap on worker threads (the sampler thread is not counted); must be >= 1.
  std::size_t max_threads = default_blocking_threads;
  /// A worker that has waited this long without a job retires (the pool can shrink to zero).
  std::chrono::milliseconds keep_alive{10'000};
  /// Period of the load sampler while the pool is busy; must be > 0.
  std::chrono::milliseconds sample_period{10};
  /// Window of the exponential moving average, in samples (smoothing 2 / (window + 1)); >= 1.
  std::size_t window = 8;
  /// When true (the default), submit creates a thread at once if no idle thread can take the
  /// job and the cap allows. When false, submit never creates a worker thread on the caller's
  /// thread; the sampler grows the pool one sample period later (predictive head-room and the
  /// stall rule only). Useful where the submitter must not pay for thread creation.
  bool grow_on_submit = true;
};

/// Snapshot of a pool's counters (all read under the pool lock, consistent with each other).
struct blocking_pool_stats {
  std::size_t threads = 0;      ///< live worker threads, including ones being created
  std::size_t idle_threads = 0; ///< workers waiting for a job and not yet claimed by a submit
  std::size_t peak_threads = 0; ///< highest `threads` ever seen
  std::size_t queued = 0;       ///< jobs submitted but not started
  std::uint64_t submitted = 0;  ///< jobs accepted by submit
  std::uint64_t completed = 0;  ///< jobs whose run_fn_ has returned
  std::uint64_t threads_started = 0;
  std::uint64_t threads_retired = 0;
  double predicted_rate = 0.0; ///< predicted arrivals per second for the next sample period
};

/// The pure prediction step of the blocking pool: smooths the arrival count sampled each
/// period and turns the predicted rise into a number of threads to add.
///
/// Model (after Lee, Pham, Kim, Youn and Song, "A Novel Predictive and Self-Adaptive Dynamic
/// Thread Pool Management", ISPA 2011, doi:10.1109/ISPA.2011.61, whose trend-aware EMA
/// predicts the load one period ahead):
///  - average:   e_k = a * x_k + (1 - a) * e_{k-1}, a = 2 / (window + 1), e_0 = 0, where x_k
///                is the number of jobs submitted during period k;
///  - predicted: p_k = max(0, e_k + (e_k - e_{k-1})), the average plus its latest trend;
///  - growth:    when p_k > e_{k-1}, the busy threads are expected to rise in the same
///               proportion (Little's law at constant job length), so the pool wants
///               ceil(busy * min(1, (p_k - e_{k-1}) / e_{k-1})) spare threads (a rise from
///               e_{k-1} = 0 counts as a doubling); idle threads already count as spares;
///  - stall:     jobs are queued and none completed during the period (long jobs hogging every
///               thread): add one thread per queued job;
///  - the total is clamped to cap - threads.
/// The paper's adaptive idle timeout is not reproduced: workers retire after a fixed keep-alive.
///
/// Thread-safety: none; the pool's sampler thread is its only user. Complexity: O(1) per call.
class load_predictor {
public:
  /// What the pool looked like at the end of a sample period.
  struct load {
    std::size_t threads = 0;     ///< live worker threads
    std::size_t idle = 0;        ///< of which waiting for a job
    std::size_t busy = 0;        ///< of which running a job
    std::size_t queued = 0;      ///< jobs waiting for a thread
    std::size_t cap = 0;         ///< max_threads
    std::uint64_t completed = 0; ///< jobs completed during the period
  };

  /// @param window EMA window in samples. @throws std::invalid_argument if window is 0.
  explicit load_predictor(std::size_t window);

  /// Feeds the arrivals of one period; returns the predicted arrivals for the next one.
  double sample(std::uint64_t arrivals) noexcept;
  /// Feeds `periods` periods without arrivals (the pool slept through them), in O(1).
  void skip(std::uint64_t periods) noexcept;

  /// Threads to add now for `now`, given the last sample. Never more than cap - threads.
  [[nodiscard]] std::size_t threads_to_add(const load& now) const noexcept;

  [[nodiscard]] double smoothing() const noexcept { return alpha_; }
  [[nodiscard]] double average() const noexcept { return average_; }
  [[nodiscard]] double previous_average() const noexcept { return previous_; }
  [[nodiscard]] double predicted() const noexcept;

private:
  double alpha_;        // 2 / (window + 1)
  double average_ = 0;  // e_k
  double previous_ = 0; // e_{k-1}
};

/// Adaptive pool of OS threads that runs blocking jobs (file I/O, blocking syscalls, CPU-heavy
/// FFI) away from the executor's workers.
///
/// Sizing:
///  - on demand: a submit that finds no idle thread creates one at once while under the cap,
///    so a burst of long jobs gets as many threads as it needs, as fast as the submitter can
///    create them (no thread is created up front);
///  - predictive: a sampler thread counts arrivals every sample_period, smooths them and adds
///    head-room ahead of a predicted rise, plus threads when jobs are queued but none completes
///    (see load_predictor; after Lee et al., ISPA 2011);
///  - shrink: a worker idle for keep_alive retires; an idle pool shrinks to zero threads.
/// The sampler starts on the first submit and, whenever no job is queued or running, sleeps on
/// a condition variable with no timeout: an idle pool costs no CPU.
///
/// Thread-safety: submit and stats are safe from any thread; shutdown from any thread but a
/// pool thread (it joins them). Resumes: nothing here resumes coroutines; a job's run_fn_ runs
/// on a pool thread and wakes whoever waits on it.
class blocking_pool {
public:
  /// @throws std::invalid_argument naming the field if max_threads is 0, sample_period is not
  /// positive, keep_alive is negative or window is 0. Creates no thread.
  explicit blocking_pool(blocking_pool_config config);
  /// Calls shutdown() if it has not run.
  ~blocking_pool();

  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;

  /// Queues `job` to run once on a pool thread, never on the caller's.
  /// @pre job != nullptr, job->run_fn_ set, job not queued elsewhere.
  /// @return false, leaving the job untouched, once shutdown has begun (report "rejected").
  /// Thread-safety: any thread. Cost: one lock, a push and a notify; when no idle thread can
  /// take the job, also the creation of one thread (tens of microseconds) on the caller's
  /// thread (unless grow_on_submit is false); the first submit also starts the sampler.
  [[nodiscard]] bool submit(blocking_job* job) noexcept;

  /// Stops accepting jobs, runs every job already submitted, then joins every worker and the
  /// sampler. Idempotent; a concurrent second caller waits for the first to finish.
  /// If no thread could ever be created, leftover jobs run on the calling thread so none is
  /// lost. @pre not called from a job.
  void shutdown();

  /// Consistent snapshot of the counters. Thread-safety: any thread.
  [[nodiscard]] blocking_pool_stats stats() const;

private:
  struct worker_slot; // a worker's std::thread handle; defined in the .cpp

  void worker_main(worker_slot* self) noexcept;
  void sampler_main() noexcept;
  // Creates one worker thread for a slot already reserved (threads_ and spawning_ counted).
  void spawn_worker() noexcept;
  void start_sampler() noexcept;
  // Hands a finished worker's slot to the join chain. Returns the previous tail, which the
  // caller joins and deletes after unlocking. @pre mutex_ held.
  worker_slot* retire_slot_locked(worker_slot* slot) noexcept;
  void reserve_threads_locked(std::size_t n) noexcept;
  [[nodiscard]] bool drained_locked() const noexcept { return threads_ == 0 && spawning_ == 0; }

  // Concurrency design: a single mutex guards everything below except config_ (immutable) and
  // predictor_ (touched only by the sampler thread). Jobs are long (they block), so one lock
  // acquisition per submit and one per job on the worker side (completion of one job and
  // pop of the next share a critical section) is cheap next to the job; no atomics needed.
  //
  // Worker accounting: threads_ counts workers from reservation (before the OS thread exists)
  // to retirement. Of these, idle_ wait on work_cv_ unclaimed; a submit that finds idle_ > 0
  // moves one from idle_ to wakeups_ (a claim) and notifies; any waking worker consumes a
  // claim if there is one. So idle_ + wakeups_ == workers inside the wait loop, a claimed
  // worker never retires, and a job is never left with only a retiring worker for it.
  //
  // Thread creation happens outside the lock (spawning_ counts creations in flight, workers
  // and sampler). A worker can finish before its creator stores the std::thread handle in its
  // slot; worker_slot::registered / exited (under the lock) decide who hands the slot to the
  // join chain: the last of the two. Retired workers are joined in a chain: each retiring
  // worker joins the previous one (last_retired_), and shutdown joins the last, so at most
  // one exited-but-unjoined thread exists and every thread is joined.
  //
  // Sampler: sampler_state_ goes not_started -> active (first submit) <-> asleep (no job
  // queued or running; waits on sampler_cv_ with no timeout; a submit wakes it) -> stopped.
  const blocking_pool_config config_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;    // idle workers wait here for a job, a claim or stop
  std::condition_variable sampler_cv_; // the sampler waits here (period tick, wake, stop)
  std::condition_variable drained_cv_; // shutdown waits here for threads_ == spawning_ == 0

  blocking_job* head_ = nullptr; // FIFO of submitted, not yet started jobs
  blocking_job* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t running_ = 0;  // jobs inside run_fn_
  std::size_t threads_ = 0;  // reserved or live workers
  std::size_t idle_ = 0;     // waiting workers not yet claimed
  std::size_t wakeups_ = 0;  // claims made by submit, not yet consumed by a worker
  std::size_t spawning_ = 0; // thread creations in flight, outside the lock
  std::size_t peak_threads_ = 0;
  std::uint64_t submitted_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t threads_started_ = 0;
  std::uint64_t threads_retired_ = 0;
  double predicted_rate_ = 0.0;
  bool stopping_ = false; // shutdown began: submit refuses, workers drain then exit
  bool stopped_ = false;  // shutdown finished

  enum class sampler_state : unsigned char { not_started, active, asleep, stopped };
  sampler_state sampler_state_ = sampler_state::not_started;
  std::thread sampler_; // written once by the submit that starts it, under the lock

  worker_slot* last_retired_ = nullptr; // tail of the join chain (exited, not yet joined)

  load_predictor predictor_; // sampler thread only
};

/// Reads the blocking-pool cap from BASTION_BLOCKING_THREADS.
/// @return `fallback` when the variable is unset; its value when it is a positive decimal
/// integer. @throws std::invalid_argument naming BASTION_BLOCKING_THREADS and the bad value
/// for anything else (empty, signs, spaces, 0, overflow).
/// Thread-safety: reads the environment; do not race it with setenv.
[[nodiscard]] std::size_t blocking_threads_from_env(std::size_t fallback);

} // namespace bastion::detail
