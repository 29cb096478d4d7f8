// tests/sleep.cpp: timers for procs (include/bastion/executor/sleep.hpp): sleep_for,
// sleep_until, their order, and the timeout combinator.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace bastion::test;

using namespace std::chrono_literals;
using bastion::clock;
using bastion::join_handle;
using bastion::task;

std::uint64_t timers_fired(const bastion::runtime& rt) {
  std::uint64_t n = 0;
  for (const auto& w : rt.stats().workers) {
    n += w.timers_fired;
  }
  return n;
}

/// Wake-up log shared by sleepers: (deadline, arming order) in the order they resumed.
struct wake_log {
  std::mutex mu;
  std::vector<std::pair<clock::time_point, int>> entries;
  void add(clock::time_point deadline, int id) {
    std::lock_guard lk(mu);
    entries.emplace_back(deadline, id);
  }
};

task<void> sleep_until_and_log(clock::time_point deadline, int id, wake_log* log) {
  co_await bastion::sleep_until(deadline);
  log->add(deadline, id);
}

task<void> sleep_for_and_log(std::chrono::milliseconds d, int id, wake_log* log) {
  const auto deadline = clock::now() + d;
  co_await bastion::sleep_until(deadline);
  log->add(deadline, id);
}

/// Spawns the sleepers in order from one proc (so they arm in spawn order on one worker).
task<void> spawn_sleepers(std::vector<std::chrono::milliseconds> ds, wake_log* log) {
  std::vector<join_handle<void>> hs;
  for (std::size_t i = 0; i < ds.size(); ++i) {
    hs.push_back(bastion::spawn(sleep_for_and_log(ds[i], static_cast<int>(i), log)));
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
}

task<void> spawn_same_deadline(int n, clock::time_point deadline, wake_log* log) {
  std::vector<join_handle<void>> hs;
  for (int i = 0; i < n; ++i) {
    hs.push_back(bastion::spawn(sleep_until_and_log(deadline, i, log)));
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
}

/// Returns how long it slept, measured around the await.
task<clock::duration> measured_sleep(std::chrono::milliseconds d) {
  const auto t0 = clock::now();
  co_await bastion::sleep_for(d);
  co_return clock::now() - t0;
}

task<bool> zero_sleep_does_not_suspend(std::atomic<bool>* other_ran) {
  // One worker: the other proc sits in this worker's queue. Had sleep_for(0) suspended, it
  // would have run before we resumed.
  auto other = bastion::spawn([](std::atomic<bool>* f) -> task<void> {
    f->store(true);
    co_return;
  }(other_ran));
  co_await bastion::sleep_for(0ms);
  co_await bastion::sleep_for(-5ms);
  co_await bastion::sleep_until(clock::now() - 1s);
  const bool ran_meanwhile = other_ran->load();
  co_await std::move(other);
  co_return !ran_meanwhile;
}

task<int> value_after(std::chrono::milliseconds d, int v) {
  co_await bastion::sleep_for(d);
  co_return v;
}

task<int> slow_with_local(std::atomic<int>* destroyed, std::atomic<bool>* finished) {
  tracked local{destroyed};
  co_await bastion::sleep_for(1h);
  finished->store(true);
  co_return 1;
}

task<int> throws_after(std::chrono::milliseconds d) {
  co_await bastion::sleep_for(d);
  throw std::runtime_error("inner failure");
}

task<int> fast_timeout() {
  co_return co_await bastion::timeout(value_after(1ms, 5), 30s);
}

task<int> slow_timeout(std::atomic<int>* destroyed, std::atomic<bool>* finished) {
  co_return co_await bastion::timeout(slow_with_local(destroyed, finished), 20ms);
}

task<int> failing_timeout() {
  co_return co_await bastion::timeout(throws_after(1ms), 30s);
}

task<void> timeout_on_sleep(std::chrono::milliseconds sleep, std::chrono::milliseconds limit) {
  co_await bastion::timeout(bastion::sleep_for(sleep), limit);
}

task<int> timeout_on_join_handle(join_handle<int> h, std::chrono::milliseconds limit) {
  co_return co_await bastion::timeout(std::move(h), limit);
}

task<int> many_timeouts(int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) {
    sum += co_await bastion::timeout(value_after(0ms, 1), 30s);
  }
  co_return sum;
}

task<int> count_wakes(int sleeps, std::chrono::milliseconds each) {
  int n = 0;
  for (int i = 0; i < sleeps; ++i) {
    co_await bastion::sleep_for(each);
    ++n;
  }
  co_return n;
}

task<void> sleep_an_hour() {
  co_await bastion::sleep_for(1h);
}

} // namespace

TEST_CASE("sleeping outside a bastion proc throws std::logic_error", "[sleep]") {
  task<void> t = sleep_an_hour();
  t.handle().resume(); // a coroutine, but not a proc
  REQUIRE(t.done());
  REQUIRE_THROWS_AS(t.handle().promise().take(), std::logic_error);
}

// Known core bug (reported): timers that expire together are woken in deadline order, but
// each wake takes the worker's LIFO slot and pushes the previous one to the queue, so the
// last one woken resumes first.
TEST_CASE("sleepers wake in deadline order", "[sleep][order]") {
  // One worker, so the wake-up log is the order the timers resumed their procs.
  bastion::runtime rt{workers(1)};
  std::mt19937 rng{20240611};
  std::uniform_int_distribution<int> ms{1, 50};
  std::vector<std::chrono::milliseconds> ds;
  for (int i = 0; i < 50; ++i) {
    ds.emplace_back(ms(rng));
  }
  wake_log log;
  rt.spawn(spawn_sleepers(ds, &log)).join();
  REQUIRE(log.entries.size() == 50);
  for (std::size_t i = 1; i < log.entries.size(); ++i) {
    CAPTURE(i, log.entries[i - 1].second, log.entries[i].second);
    const auto& prev = log.entries[i - 1];
    const auto& cur = log.entries[i];
    REQUIRE(prev.first <= cur.first);
    if (prev.first == cur.first) {
      REQUIRE(prev.second < cur.second); // equal deadlines: in arming order
    }
  }
}

// Known core bug (reported): see above.
TEST_CASE("sleepers with one deadline wake in the order they armed", "[sleep][order]") {
  bastion::runtime rt{workers(1)};
  constexpr int n = 20;
  wake_log log;
  const auto deadline = clock::now() + 30ms;
  rt.spawn(spawn_same_deadline(n, deadline, &log)).join();
  REQUIRE(log.entries.size() == n);
  std::vector<int> order;
  for (const auto& e : log.entries) {
    order.push_back(e.second);
  }
  std::vector<int> expected(n);
  for (int i = 0; i < n; ++i) {
    expected[static_cast<std::size_t>(i)] = i;
  }
  REQUIRE(order == expected);
}

TEST_CASE("each sleeper sleeps at least its duration", "[sleep]") {
  bastion::runtime rt{workers(2)};
  std::vector<join_handle<clock::duration>> hs;
  std::vector<std::chrono::milliseconds> ds;
  for (int i = 0; i < 40; ++i) {
    ds.emplace_back(1 + (i * 7) % 30);
    hs.push_back(rt.spawn(measured_sleep(ds.back())));
  }
  for (std::size_t i = 0; i < hs.size(); ++i) {
    const auto slept = std::move(hs[i]).join();
    CAPTURE(i, ds[i].count());
    REQUIRE(slept >= ds[i]); // a lower bound only: never an upper bound
  }
  REQUIRE(rt.stats().timers_pending == 0);
}

TEST_CASE("sleeping inside run() on the calling thread", "[sleep]") {
  bastion::runtime rt{workers(1)};
  REQUIRE(rt.run(measured_sleep(15ms)) >= 15ms);
  REQUIRE(rt.run(count_wakes(10, 1ms)) == 10);
}

TEST_CASE("sleep_for(0) and past deadlines do not suspend", "[sleep]") {
  bastion::runtime rt{workers(1)};
  const auto fired_before = timers_fired(rt);
  std::atomic<bool> other_ran{false};
  REQUIRE(rt.spawn(zero_sleep_does_not_suspend(&other_ran)).join());
  REQUIRE(other_ran.load());
  REQUIRE(timers_fired(rt) == fired_before); // no timer was armed
  REQUIRE(bastion::sleep_for(0ms).await_ready());
  REQUIRE(bastion::sleep_until(clock::now() - 1ms).await_ready());
  REQUIRE_FALSE(bastion::sleep_for(1h).await_ready());
}

TEST_CASE("many concurrent sleepers all wake", "[sleep]") {
  bastion::runtime rt{workers(2)};
  constexpr int n = BASTION_TSAN ? 500 : 2'000;
  std::vector<join_handle<int>> hs;
  for (int i = 0; i < n; ++i) {
    hs.push_back(rt.spawn(value_after(std::chrono::milliseconds(1 + i % 20), i)));
  }
  std::int64_t sum = 0;
  for (auto& h : hs) {
    sum += std::move(h).join();
  }
  REQUIRE(sum == std::int64_t{n} * (n - 1) / 2);
  REQUIRE(rt.stats().timers_pending == 0);
  REQUIRE(timers_fired(rt) >= static_cast<std::uint64_t>(n));
}

TEST_CASE("timeout() yields the value of a task that ends in time", "[sleep][timeout]") {
  bastion::runtime rt{workers(2)};
  REQUIRE(rt.run(fast_timeout()) == 5);
  REQUIRE(rt.spawn(fast_timeout()).join() == 5);
  REQUIRE(rt.run(many_timeouts(BASTION_TSAN ? 100 : 1'000)) == (BASTION_TSAN ? 100 : 1'000));
  REQUIRE(eventually([&] { return rt.stats().timers_pending == 0; }));
}

TEST_CASE("timeout() on a slow task throws timed_out and cancels it", "[sleep][timeout]") {
  bastion::runtime rt{workers(2)};
  std::atomic<int> destroyed{0};
  std::atomic<bool> finished{false};
  REQUIRE_THROWS_AS(rt.run(slow_timeout(&destroyed, &finished)), bastion::timed_out);
  // The slow task is cancelled: its frame unwinds on a worker soon after.
  REQUIRE(eventually([&] { return destroyed.load() == 1; }));
  REQUIRE_FALSE(finished.load());
  REQUIRE(eventually([&] { return rt.stats().timers_pending == 0; }));

  REQUIRE_THROWS_AS(rt.spawn(slow_timeout(&destroyed, &finished)).join(), bastion::timed_out);
  REQUIRE(eventually([&] { return destroyed.load() == 2; }));
  REQUIRE_FALSE(finished.load());
}

TEST_CASE("timeout() rethrows the exception of a task that fails in time", "[sleep][timeout]") {
  bastion::runtime rt{workers(2)};
  REQUIRE_THROWS_WITH(rt.run(failing_timeout()), "inner failure");
  REQUIRE_THROWS_AS(rt.run(failing_timeout()), std::runtime_error);
}

TEST_CASE("timeout() on other awaitables: a sleep, a join handle", "[sleep][timeout]") {
  bastion::runtime rt{workers(2)};
  REQUIRE_THROWS_AS(rt.run(timeout_on_sleep(1h, 10ms)), bastion::timed_out);
  REQUIRE_NOTHROW(rt.run(timeout_on_sleep(1ms, 30s)));
  REQUIRE(rt.run(timeout_on_join_handle(rt.spawn(value_after(1ms, 8)), 30s)) == 8);
  REQUIRE_THROWS_AS(
      rt.run(timeout_on_join_handle(rt.spawn(value_after(1h, 8)), 10ms)), bastion::timed_out);
}
