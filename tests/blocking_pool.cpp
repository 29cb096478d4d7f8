// tests/blocking_pool.cpp: the adaptive blocking pool and its load predictor.
#include <bastion/detail/blocking_pool.hpp>

#include <catch2/catch.hpp>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bastion::detail::blocking_job;
using bastion::detail::blocking_pool;
using bastion::detail::blocking_pool_config;
using bastion::detail::load_predictor;

// A gate jobs can block on until the test opens it.
class gate {
public:
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Shared by the jobs of one test: how many run at once, at most.
struct concurrency_meter {
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
};

struct test_job : blocking_job {
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  std::chrono::milliseconds sleep{0};
  gate* wait_for = nullptr;
  concurrency_meter* meter = nullptr;

  test_job() { run_fn_ = &test_job::execute; }

  static void execute(blocking_job* base) noexcept {
    auto* self = static_cast<test_job*>(base);
    if (self->meter != nullptr) {
      const int now = self->meter->running.fetch_add(1) + 1;
      int seen = self->meter->max_running.load();
      while (now > seen && !self->meter->max_running.compare_exchange_weak(seen, now)) {
      }
    }
    self->ran_on = std::this_thread::get_id();
    if (self->wait_for != nullptr) {
      self->wait_for->wait();
    }
    if (self->sleep.count() > 0) {
      std::this_thread::sleep_for(self->sleep);
    }
    if (self->meter != nullptr) {
      self->meter->running.fetch_sub(1);
    }
    self->runs.fetch_add(1);
  }
};

// Polls `done` every millisecond until it holds or `limit` passes; returns its last value.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return done();
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

bool all_completed(const blocking_pool& pool, std::uint64_t n) {
  return eventually([&] { return pool.stats().completed == n; });
}

double cpu_ms_of_process() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto ms = [](const timeval& t) {
    return t.tv_sec * 1e3 + t.tv_usec / 1e3;
  };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// Sets or unsets BASTION_BLOCKING_THREADS for one scope, restoring the old value after.
class env_override {
public:
  explicit env_override(const char* value) {
    if (const char* old = std::getenv(name_)) {
      had_ = true;
      old_ = old;
    }
    if (value != nullptr) {
      ::setenv(name_, value, 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ~env_override() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  env_override(const env_override&) = delete;
  env_override& operator=(const env_override&) = delete;

private:
  static constexpr const char* name_ = "BASTION_BLOCKING_THREADS";
  bool had_ = false;
  std::string old_;
};

} // namespace

// ---------------------------------------------------------------------------------------------
// load_predictor: deterministic

TEST_CASE("load_predictor smooths arrivals with an EMA plus trend", "[blocking_pool][predictor]") {
  load_predictor p(3); // smoothing 2 / (3 + 1) = 0.5
  CHECK(p.smoothing() == Approx(0.5));
  CHECK(p.average() == 0.0);

  CHECK(p.sample(8) == Approx(8.0)); // e = 4, trend +4
  CHECK(p.average() == Approx(4.0));
  CHECK(p.previous_average() == Approx(0.0));

  CHECK(p.sample(8) == Approx(8.0)); // e = 6, trend +2
  CHECK(p.average() == Approx(6.0));
  CHECK(p.previous_average() == Approx(4.0));

  CHECK(p.sample(0) == Approx(0.0)); // e = 3, trend -3: clamped at zero
  CHECK(p.average() == Approx(3.0));

  load_predictor q(8);
  CHECK(q.smoothing() == Approx(2.0 / 9.0));
  CHECK_THROWS_AS(load_predictor(0), std::invalid_argument);
}

TEST_CASE("load_predictor::skip equals that many empty samples", "[blocking_pool][predictor]") {
  load_predictor a(4);
  load_predictor b(4);
  for (int arrivals : {12, 30, 7}) {
    a.sample(static_cast<std::uint64_t>(arrivals));
    b.sample(static_cast<std::uint64_t>(arrivals));
  }
  a.skip(5);
  for (int i = 0; i < 5; ++i) {
    b.sample(0);
  }
  CHECK(a.average() == Approx(b.average()));
  CHECK(a.previous_average() == Approx(b.previous_average()));
  CHECK(a.predicted() == Approx(b.predicted()));

  const double before = a.average();
  a.skip(0);
  CHECK(a.average() == before);
}

TEST_CASE(
    "load_predictor grows in proportion to the predicted rise", "[blocking_pool][predictor]") {
  using load = load_predictor::load;
  load_predictor p(3);

  // From nothing, any rise counts as a doubling of the busy threads.
  p.sample(10); // e: 0 -> 5, predicted 10
  CHECK(
      p.threads_to_add(load{.threads = 4, .idle = 0, .busy = 4, .cap = 100, .completed = 1}) == 4);
  // Idle threads already count as head-room.
  CHECK(
      p.threads_to_add(load{.threads = 5, .idle = 1, .busy = 4, .cap = 100, .completed = 1}) == 3);
  // Never past the cap.
  CHECK(p.threads_to_add(load{.threads = 9, .idle = 0, .busy = 9, .cap = 10, .completed = 1}) == 1);
  CHECK(
      p.threads_to_add(load{.threads = 10, .idle = 0, .busy = 10, .cap = 10, .completed = 0}) == 0);
  // No busy thread: nothing to scale (short jobs need no head-room).
  CHECK(
      p.threads_to_add(load{.threads = 2, .idle = 2, .busy = 0, .cap = 100, .completed = 5}) == 0);

  p.sample(10); // e: 5 -> 7.5, predicted 10: rise 5 over 5, capped at a doubling
  CHECK(
      p.threads_to_add(load{.threads = 6, .idle = 0, .busy = 6, .cap = 100, .completed = 1}) == 6);

  p.sample(10); // e: 7.5 -> 8.75, predicted 10: rise 2.5 over 7.5 = one third
  CHECK(
      p.threads_to_add(load{.threads = 9, .idle = 0, .busy = 9, .cap = 100, .completed = 1}) == 3);
  CHECK(
      p.threads_to_add(load{.threads = 10, .idle = 1, .busy = 9, .cap = 100, .completed = 1}) == 2);

  // Falling load: no growth.
  p.sample(2);
  CHECK(
      p.threads_to_add(load{.threads = 9, .idle = 0, .busy = 9, .cap = 100, .completed = 1}) == 0);

  // Steady load: the trend vanishes and so does the head-room.
  load_predictor steady(3);
  for (int i = 0; i < 40; ++i) {
    steady.sample(10);
  }
  CHECK(steady.predicted() == Approx(10.0));
  CHECK(
      steady.threads_to_add(load{.threads = 4, .idle = 0, .busy = 4, .cap = 100, .completed = 9})
      == 0);
}

TEST_CASE(
    "load_predictor adds threads when jobs wait and none completes", "[blocking_pool][predictor]") {
  using load = load_predictor::load;
  const load_predictor p(8); // no samples: flat load, no predictive growth

  // Every thread hogged, five jobs waiting, nothing completed this period.
  CHECK(
      p.threads_to_add(load{.threads = 4, .busy = 4, .queued = 5, .cap = 100, .completed = 0})
      == 5);
  // Jobs completed: the pool is making progress, let it drain.
  CHECK(
      p.threads_to_add(load{.threads = 4, .busy = 4, .queued = 5, .cap = 100, .completed = 1})
      == 0);
  // Idle threads will take some of the waiting jobs.
  CHECK(
      p.threads_to_add(
          load{.threads = 6, .idle = 2, .busy = 4, .queued = 5, .cap = 100, .completed = 0})
      == 3);
  // No thread at all: always grow, whatever completed before.
  CHECK(p.threads_to_add(load{.threads = 0, .queued = 3, .cap = 100, .completed = 7}) == 3);
  // Clamped at the cap.
  CHECK(
      p.threads_to_add(load{.threads = 4, .busy = 4, .queued = 50, .cap = 6, .completed = 0}) == 2);
}

// ---------------------------------------------------------------------------------------------
// blocking_pool

TEST_CASE("every submitted job runs exactly once, never on the submitter", "[blocking_pool]") {
  constexpr std::size_t per_submitter = 500;
  constexpr std::size_t submitters = 4;
  blocking_pool pool({.max_threads = 8});
  std::vector<test_job> jobs(per_submitter * submitters);
  std::vector<std::thread::id> submitter_ids(submitters);

  std::atomic<int> rejected{0}; // Catch2 assertions are for the test's thread only
  std::vector<std::thread> threads;
  for (std::size_t s = 0; s < submitters; ++s) {
    threads.emplace_back([&, s] {
      submitter_ids[s] = std::this_thread::get_id();
      for (std::size_t i = 0; i < per_submitter; ++i) {
        if (!pool.submit(&jobs[s * per_submitter + i])) {
          rejected.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  REQUIRE(rejected.load() == 0);
  REQUIRE(all_completed(pool, jobs.size()));

  for (std::size_t i = 0; i < jobs.size(); ++i) {
    REQUIRE(jobs[i].runs.load() == 1);
    REQUIRE(jobs[i].ran_on != submitter_ids[i / per_submitter]);
    REQUIRE(jobs[i].ran_on != std::this_thread::get_id());
  }
  const auto stats = pool.stats();
  CHECK(stats.submitted == jobs.size());
  CHECK(stats.queued == 0);
  CHECK(stats.peak_threads >= 1);
  CHECK(stats.peak_threads <= 8);
}

TEST_CASE("the pool grows under a burst of sleeping jobs, up to the cap", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 32});
  CHECK(pool.stats().threads == 0); // nothing is created up front

  std::vector<test_job> jobs(64);
  for (auto& job : jobs) {
    job.sleep = 50ms;
    REQUIRE(pool.submit(&job));
  }
  REQUIRE(all_completed(pool, jobs.size()));
  for (auto& job : jobs) {
    REQUIRE(job.runs.load() == 1);
  }
  const auto stats = pool.stats();
  CHECK(stats.peak_threads > 1);
  CHECK(stats.peak_threads <= 32);
  CHECK(stats.threads_started <= 32);
}

TEST_CASE("idle threads retire after the keep-alive, down to zero", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 16, .keep_alive = 50ms, .sample_period = 5ms});
  std::vector<test_job> jobs(16);
  for (auto& job : jobs) {
    job.sleep = 20ms;
    REQUIRE(pool.submit(&job));
  }
  REQUIRE(all_completed(pool, jobs.size()));
  CHECK(pool.stats().peak_threads > 1);

  REQUIRE(eventually([&] { return pool.stats().threads == 0; }));
  const auto stats = pool.stats();
  CHECK(stats.idle_threads == 0);
  CHECK(stats.threads_retired == stats.threads_started);

  // A retired pool grows again on demand.
  test_job again;
  REQUIRE(pool.submit(&again));
  REQUIRE(all_completed(pool, jobs.size() + 1));
  CHECK(again.runs.load() == 1);
}

TEST_CASE("the cap holds under a burst of 1,000 jobs", "[blocking_pool]") {
  constexpr std::size_t cap = 16;
  blocking_pool pool({.max_threads = cap});
  concurrency_meter meter;
  std::vector<test_job> jobs(1000);
  for (auto& job : jobs) {
    job.sleep = 1ms;
    job.meter = &meter;
    REQUIRE(pool.submit(&job));
    REQUIRE(pool.stats().threads <= cap);
  }
  REQUIRE(all_completed(pool, jobs.size()));
  for (auto& job : jobs) {
    REQUIRE(job.runs.load() == 1);
  }
  CHECK(meter.max_running.load() <= static_cast<int>(cap));
  CHECK(meter.max_running.load() > 1);
  CHECK(pool.stats().peak_threads <= cap);
}

TEST_CASE("the stall rule adds threads when jobs wait and none completes", "[blocking_pool]") {
  // With grow_on_submit off, submit never creates workers: only the sampler's rules do.
  blocking_pool pool(
      {.max_threads = 8, .sample_period = 5ms, .window = 4, .grow_on_submit = false});
  gate hog;
  std::vector<test_job> jobs(6);
  for (auto& job : jobs) {
    job.wait_for = &hog; // long jobs: none completes until the gate opens
    REQUIRE(pool.submit(&job));
  }
  // Nothing completes, yet threads appear until every waiting job has one.
  const bool grown = eventually([&] {
    const auto s = pool.stats();
    return s.threads >= jobs.size() && s.queued == 0;
  });
  const auto stats = pool.stats();
  hog.open();
  REQUIRE(grown);
  CHECK(stats.completed == 0);
  CHECK(stats.threads <= 8);

  REQUIRE(all_completed(pool, jobs.size()));
  for (auto& job : jobs) {
    CHECK(job.runs.load() == 1);
  }
}

TEST_CASE("the sampler publishes a predicted arrival rate while busy", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 8, .sample_period = 5ms});
  std::vector<test_job> jobs(16);
  for (auto& job : jobs) {
    job.sleep = 20ms;
    REQUIRE(pool.submit(&job));
  }
  REQUIRE(all_completed(pool, jobs.size()));
  CHECK(pool.stats().predicted_rate > 0.0);
}

TEST_CASE("submit after shutdown is rejected", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 2});
  test_job before;
  REQUIRE(pool.submit(&before));
  pool.shutdown();
  CHECK(before.runs.load() == 1);

  test_job after;
  CHECK_FALSE(pool.submit(&after));
  CHECK(after.runs.load() == 0);
  CHECK(pool.stats().submitted == 1);
  pool.shutdown(); // idempotent
}

TEST_CASE("shutdown runs every job already submitted and joins every thread", "[blocking_pool]") {
  std::vector<test_job> jobs(50);
  std::vector<test_job> late(50);
  {
    blocking_pool pool({.max_threads = 2});
    for (auto& job : jobs) {
      job.sleep = 2ms;
      REQUIRE(pool.submit(&job));
    }
    pool.shutdown();
    const auto stats = pool.stats();
    CHECK(stats.completed == jobs.size());
    CHECK(stats.threads == 0);
    CHECK(stats.queued == 0);
    CHECK(stats.threads_retired == stats.threads_started);
  }
  for (auto& job : jobs) {
    REQUIRE(job.runs.load() == 1);
  }

  // The destructor does the same when nobody called shutdown.
  {
    blocking_pool pool({.max_threads = 3});
    for (auto& job : late) {
      REQUIRE(pool.submit(&job));
    }
  }
  for (auto& job : late) {
    REQUIRE(job.runs.load() == 1);
  }
}

TEST_CASE("concurrent shutdowns all wait for the drain", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 4});
  std::vector<test_job> jobs(20);
  for (auto& job : jobs) {
    job.sleep = 2ms;
    REQUIRE(pool.submit(&job));
  }
  std::uint64_t seen_by_other = 0;
  std::thread other([&] {
    pool.shutdown();
    seen_by_other = pool.stats().completed;
  });
  pool.shutdown();
  other.join();
  CHECK(seen_by_other == jobs.size());
  CHECK(pool.stats().completed == jobs.size());
}

TEST_CASE("blocking_pool_config is validated", "[blocking_pool]") {
  CHECK_THROWS_WITH(blocking_pool({.max_threads = 0}), Catch::Contains("max_threads"));
  CHECK_THROWS_AS(blocking_pool({.max_threads = 0}), std::invalid_argument);
  CHECK_THROWS_WITH(
      blocking_pool({.max_threads = 1, .sample_period = 0ms}), Catch::Contains("sample_period"));
  CHECK_THROWS_WITH(
      blocking_pool({.max_threads = 1, .keep_alive = -1ms}), Catch::Contains("keep_alive"));
  CHECK_THROWS_WITH(blocking_pool({.max_threads = 1, .window = 0}), Catch::Contains("window"));
  CHECK_NOTHROW(blocking_pool({.max_threads = 1}));
  CHECK(blocking_pool_config{}.max_threads == bastion::detail::default_blocking_threads);
}

TEST_CASE("blocking_threads_from_env parses BASTION_BLOCKING_THREADS", "[blocking_pool]") {
  using bastion::detail::blocking_threads_from_env;
  {
    const env_override unset(nullptr);
    CHECK(blocking_threads_from_env(123) == 123);
  }
  {
    const env_override set("12");
    CHECK(blocking_threads_from_env(123) == 12);
  }
  {
    const env_override set("1");
    CHECK(blocking_threads_from_env(123) == 1);
  }
  for (const char* bad :
       {"0", "-3", "+4", "abc", "", "12x", " 12", "1.5", "99999999999999999999999999"}) {
    const env_override set(bad);
    INFO("value: \"" << bad << "\"");
    CHECK_THROWS_AS(blocking_threads_from_env(123), std::invalid_argument);
    CHECK_THROWS_WITH(blocking_threads_from_env(123), Catch::Contains("BASTION_BLOCKING_THREADS"));
    CHECK_THROWS_WITH(
        blocking_threads_from_env(123), Catch::Contains(std::string("\"") + bad + "\""));
  }
}

TEST_CASE("an idle pool costs no CPU", "[blocking_pool]") {
  blocking_pool pool({.max_threads = 8, .keep_alive = 50ms, .sample_period = 5ms});
  std::vector<test_job> jobs(8);
  for (auto& job : jobs) {
    job.sleep = 10ms;
    REQUIRE(pool.submit(&job));
  }
  REQUIRE(all_completed(pool, jobs.size()));
  REQUIRE(eventually([&] { return pool.stats().threads == 0; }));

  // The sampler is asleep with no timeout and every worker has retired.
  const double before = cpu_ms_of_process();
  std::this_thread::sleep_for(1s);
  const double used = cpu_ms_of_process() - before;
  INFO("CPU used over 1 s of idleness: " << used << " ms");
  CHECK(used < 20.0);
  CHECK(pool.stats().threads == 0);
}
