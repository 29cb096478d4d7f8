// tests/blocking.cpp: spawn_blocking and blocking_handle (include/bastion/executor/
// blocking.hpp): values, exceptions, where the call runs, the pool growing and shrinking
// through the runtime, and rejection after shutdown.
#include <bastion/config.hpp>

#include <bastion/executor/blocking.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>
#include <bastion/lightproc/this_proc.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using namespace bastion::test;

using namespace std::chrono_literals;
using bastion::join_handle;
using bastion::task;

task<int> blocking_value(int v) {
  co_return co_await bastion::spawn_blocking([v] { return v * 2; });
}

task<void> blocking_void(std::atomic<int>* runs) {
  co_await bastion::spawn_blocking([runs] { runs->fetch_add(1); });
}

task<std::unique_ptr<std::string>> blocking_move_only() {
  co_return co_await bastion::spawn_blocking([] { return std::make_unique<std::string>("boxed"); });
}

task<int> blocking_throws() {
  co_return co_await bastion::spawn_blocking(
      []() -> int { throw std::runtime_error("blocking failure"); });
}

/// Where a blocking call runs, seen from inside it and from the proc that awaited it.
struct placement_report {
  std::thread::id caller;
  std::thread::id callee;
  bool callee_in_runtime = true;
  bool callee_in_proc = true;
};

task<placement_report> where_does_it_run() {
  placement_report r;
  r.caller = std::this_thread::get_id();
  auto [callee, in_runtime, in_proc] = co_await bastion::spawn_blocking([] {
    return std::tuple{
        std::this_thread::get_id(),
        bastion::runtime::current() != nullptr,
        bastion::this_proc::inside()};
  });
  r.callee = callee;
  r.callee_in_runtime = in_runtime;
  r.callee_in_proc = in_proc;
  co_return r;
}

/// Records the thread every proc polls on (the workers).
task<std::thread::id> worker_thread_id() {
  co_return std::this_thread::get_id();
}

task<int> many_blocking_sleeps(int n, std::chrono::milliseconds each) {
  std::vector<bastion::blocking_handle<int>> hs;
  hs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    hs.push_back(bastion::spawn_blocking([each] {
      std::this_thread::sleep_for(each);
      return 1;
    }));
  }
  int done = 0;
  for (auto& h : hs) {
    done += co_await std::move(h);
  }
  co_return done;
}

task<int> spawn_blocking_after_shutdown() {
  co_return co_await bastion::spawn_blocking([] { return 1; });
}

task<int> blocking_join_in_proc() {
  // join() of a blocking handle from inside a proc: blocks this proc's thread, not the pool.
  co_return bastion::spawn_blocking([] { return 9; }).join();
}

} // namespace

TEST_CASE("spawn_blocking returns values, void and move-only results", "[blocking]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  REQUIRE(rt.run(blocking_value(21)) == 42);
  REQUIRE(rt.spawn(blocking_value(5)).join() == 10);
  std::atomic<int> runs{0};
  rt.run(blocking_void(&runs));
  REQUIRE(runs.load() == 1);
  auto boxed = rt.run(blocking_move_only());
  REQUIRE(boxed != nullptr);
  REQUIRE(*boxed == "boxed");
  REQUIRE(rt.spawn(blocking_join_in_proc()).join() == 9);
  // The pool counts a job after it returned, which can be just after its waiter woke.
  REQUIRE(eventually([&] { return rt.stats().blocking.completed == 5; }));
}

TEST_CASE("spawn_blocking rethrows the call's exception", "[blocking]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  REQUIRE_THROWS_WITH(rt.run(blocking_throws()), "blocking failure");
  REQUIRE_THROWS_AS(rt.spawn(blocking_throws()).join(), std::runtime_error);
  REQUIRE(rt.run(blocking_value(1)) == 2); // the pool survives
}

TEST_CASE("a blocking call never runs on an executor worker", "[blocking]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  std::set<std::thread::id> workers;
  for (int i = 0; i < 200; ++i) {
    workers.insert(rt.spawn(worker_thread_id()).join());
  }
  REQUIRE_FALSE(workers.empty());
  REQUIRE(workers.size() <= 2);
  for (int i = 0; i < 20; ++i) {
    const auto r = rt.spawn(where_does_it_run()).join();
    REQUIRE(r.callee != r.caller);
    REQUIRE(workers.count(r.callee) == 0);
    REQUIRE_FALSE(r.callee_in_runtime);
    REQUIRE_FALSE(r.callee_in_proc);
  }
  // From run() on the test thread too.
  const auto r = rt.run(where_does_it_run());
  REQUIRE(r.caller == std::this_thread::get_id());
  REQUIRE(r.callee != r.caller);
  REQUIRE(workers.count(r.callee) == 0);
  REQUIRE_FALSE(r.callee_in_runtime);
}

TEST_CASE(
    "200 blocking calls of 5 ms all complete; the pool grows, then shrinks to zero",
    "[blocking][pool]") {
  constexpr std::size_t cap = 64;
  bastion::runtime rt{
      bastion::runtime_config{}.workers(2).blocking_threads(cap).blocking_keep_alive(
          std::chrono::milliseconds(50))};
  const auto before = rt.stats().blocking;
  REQUIRE(before.threads == 0); // nothing is created up front
  constexpr int n = 200;
  REQUIRE(rt.spawn(many_blocking_sleeps(n, 5ms)).join() == n);

  REQUIRE(eventually([&] { return rt.stats().blocking.completed - before.completed == n; }));
  const auto grown = rt.stats().blocking;
  REQUIRE(grown.peak_threads > 1);
  REQUIRE(grown.peak_threads <= cap);
  REQUIRE(grown.queued == 0);

  // Idle threads retire after the keep-alive.
  REQUIRE(eventually([&] { return rt.stats().blocking.threads == 0; }));
  const auto shrunk = rt.stats().blocking;
  REQUIRE(shrunk.idle_threads == 0);
  REQUIRE(shrunk.peak_threads == grown.peak_threads);
}

TEST_CASE("a pool capped at one thread runs every call, one at a time", "[blocking][pool]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2).blocking_threads(1)};
  REQUIRE(rt.spawn(many_blocking_sleeps(10, 1ms)).join() == 10);
  REQUIRE(eventually([&] { return rt.stats().blocking.completed == 10; }));
  REQUIRE(rt.stats().blocking.peak_threads == 1);
}

TEST_CASE("spawn_blocking after shutdown reports proc_rejected", "[blocking][shutdown]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(1)};
  REQUIRE(rt.run(blocking_value(2)) == 4);
  rt.shutdown();
  // run() still drives a task on the calling thread; its blocking call is refused.
  REQUIRE_THROWS_AS(rt.run(spawn_blocking_after_shutdown()), bastion::proc_rejected);
}

TEST_CASE("a detached blocking call still runs", "[blocking]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(1)};
  std::atomic<int> runs{0};
  rt.run([](std::atomic<int>* r) -> task<void> {
    for (int i = 0; i < 10; ++i) {
      (void)bastion::spawn_blocking([r] { r->fetch_add(1); }); // handle dropped at once
    }
    co_return;
  }(&runs));
  REQUIRE(eventually([&] { return runs.load() == 10; }));
  REQUIRE(eventually([&] { return rt.stats().blocking.completed == 10; }));
}
