// tests/proc_stack.cpp: proc_stack (include/bastion/lightproc/proc_stack.hpp) and this_proc
// (this_proc.hpp): typed state, pids, and the lifecycle callbacks as the executor runs them.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>
#include <bastion/lightproc/this_proc.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace bastion::test;

using namespace std::chrono_literals;
using bastion::proc_stack;
using bastion::task;

/// A stack whose callbacks log to `log`, with the pid each one was given.
proc_stack logging_stack(event_log* log, std::atomic<std::uint64_t>* seen_pid) {
  proc_stack s;
  s.before_start([log, seen_pid](std::uint64_t pid) {
     seen_pid->store(pid);
     log->add("before_start");
   })
      .after_panic([log](std::uint64_t, std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log->add(std::string("after_panic: ") + ex.what());
        }
      })
      .after_complete([log](std::uint64_t) { log->add("after_complete"); });
  return s;
}

task<int> logged_body(event_log* log, bool fail) {
  log->add("body");
  co_await bastion::sleep_for(1ms); // a suspension between start and end
  log->add("body resumed");
  if (fail) {
    throw std::runtime_error("boom");
  }
  co_return 5;
}

task<int> state_reader() {
  auto& s = bastion::this_proc::stack();
  int& v = s.state<int>();
  v += 1; // the body may use its state freely
  co_await bastion::yield_now();
  co_return s.state<int>();
}

task<bool> wrong_state_type_throws() {
  try {
    (void)bastion::this_proc::stack().state<std::string>();
  } catch (const bastion::bad_proc_state&) {
    co_return true;
  }
  co_return false;
}

task<std::uint64_t> own_pid() {
  co_return bastion::this_proc::pid();
}

task<int> plain_value() {
  co_return 3;
}

task<int> throws_now() {
  throw std::runtime_error("detached failure");
  co_return 0; // NOLINT: unreachable, keeps this a coroutine
}

} // namespace

TEST_CASE("proc_stack typed state", "[proc_stack][state]") {
  proc_stack s;
  REQUIRE(s.pid() == 0); // assigned at spawn
  REQUIRE_FALSE(s.has_state<int>());
  REQUIRE_THROWS_AS(s.state<int>(), bastion::bad_proc_state); // empty slot

  s.with_state(41);
  REQUIRE(s.has_state<int>());
  REQUIRE_FALSE(s.has_state<std::string>());
  REQUIRE(s.state<int>() == 41);
  s.state<int>() = 42;
  REQUIRE(s.state<int>() == 42);
  REQUIRE_THROWS_AS(s.state<std::string>(), bastion::bad_proc_state);
  REQUIRE_THROWS_AS(s.state<long>(), bastion::bad_proc_state); // no conversions
  try {
    (void)s.state<std::string>();
  } catch (const bastion::bad_proc_state& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("proc_stack::state"));
  }

  s.with_state(std::string("replaced"));
  REQUIRE_FALSE(s.has_state<int>());
  REQUIRE(s.state<std::string>() == "replaced");
  REQUIRE(s.callbacks() == nullptr); // a state alone sets no callback
}

TEST_CASE("a proc reads and writes its state through this_proc", "[proc_stack][state]") {
  bastion::runtime rt{workers(2)};
  proc_stack s;
  s.with_state(10);
  REQUIRE(rt.spawn(state_reader(), std::move(s)).join() == 11);

  proc_stack t;
  t.with_state(1);
  REQUIRE(rt.spawn(wrong_state_type_throws(), std::move(t)).join());
  REQUIRE_FALSE(bastion::this_proc::inside());
  REQUIRE_THROWS_AS(bastion::this_proc::stack(), std::logic_error);
}

TEST_CASE(
    "pids are assigned at spawn, unique, non-zero and seen by the proc", "[proc_stack][pid]") {
  bastion::runtime rt{workers(2)};
  constexpr int n = 1000;
  std::set<std::uint64_t> pids;
  std::vector<bastion::join_handle<std::uint64_t>> hs;
  for (int i = 0; i < n; ++i) {
    hs.push_back(rt.spawn(own_pid()));
    pids.insert(hs.back().pid());
  }
  REQUIRE(pids.size() == n);
  REQUIRE(pids.count(0) == 0);
  for (auto& h : hs) {
    const auto pid = h.pid();
    REQUIRE(std::move(h).join() == pid);
  }
  // Two stacks assigned by hand get distinct pids as well.
  proc_stack a;
  proc_stack b;
  a.assign_pid();
  b.assign_pid();
  REQUIRE(a.pid() != 0);
  REQUIRE(a.pid() != b.pid());
  REQUIRE(pids.count(a.pid()) == 0);
}

TEST_CASE("callbacks of a proc that ends with a value", "[proc_stack][callbacks]") {
  bastion::runtime rt{workers(2)};
  event_log log;
  std::atomic<std::uint64_t> seen_pid{0};
  auto h = rt.spawn(logged_body(&log, false), logging_stack(&log, &seen_pid));
  const auto pid = h.pid();
  REQUIRE(std::move(h).join() == 5);
  log.add("joined");
  REQUIRE(seen_pid.load() == pid);
  REQUIRE(
      log.snapshot()
      == std::vector<std::string>{
          "before_start", "body", "body resumed", "after_complete", "joined"});
}

TEST_CASE(
    "callbacks of a throwing proc: before_start, after_panic, after_complete",
    "[proc_stack][callbacks]") {
  bastion::runtime rt{workers(2)};
  event_log log;
  std::atomic<std::uint64_t> seen_pid{0};
  auto h = rt.spawn(logged_body(&log, true), logging_stack(&log, &seen_pid));
  REQUIRE_THROWS_WITH(std::move(h).join(), "boom");
  log.add("joined");
  REQUIRE(
      log.snapshot()
      == std::vector<std::string>{
          "before_start", "body", "body resumed", "after_panic: boom", "after_complete", "joined"});
}

TEST_CASE(
    "after_panic runs when the panic happens, even if nobody ever joins",
    "[proc_stack][callbacks]") {
  bastion::runtime rt{workers(2)};
  std::atomic<bool> panicked{false};
  std::atomic<std::uint64_t> panic_pid{0};
  std::string message;
  proc_stack s;
  s.after_panic([&](std::uint64_t pid, std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      message = ex.what(); // published by the release store below
    }
    panic_pid.store(pid);
    panicked.store(true, std::memory_order_release);
  });
  auto h = rt.spawn(throws_now(), std::move(s));
  const auto pid = h.pid();
  h.detach();
  REQUIRE(eventually([&] { return panicked.load(std::memory_order_acquire); }));
  REQUIRE(panic_pid.load() == pid);
  REQUIRE(message == "detached failure");
}

TEST_CASE("a throwing callback does not break the proc or the worker", "[proc_stack][callbacks]") {
  bastion::runtime rt{workers(1)};
  std::atomic<int> calls{0};
  proc_stack s;
  s.before_start([&calls](std::uint64_t) {
     calls.fetch_add(1);
     throw std::runtime_error("callback failure (expected in this test)");
   }).after_complete([&calls](std::uint64_t) {
    calls.fetch_add(1);
    throw 1;
  });
  REQUIRE(rt.spawn(plain_value(), std::move(s)).join() == 3);
  REQUIRE(calls.load() == 2);
  REQUIRE(rt.spawn(plain_value()).join() == 3); // the worker lives on
}

TEST_CASE("before_start runs once, at the first poll only", "[proc_stack][callbacks]") {
  bastion::runtime rt{workers(2)};
  event_log log;
  std::atomic<int> starts{0};
  proc_stack s;
  s.before_start([&starts](std::uint64_t) { starts.fetch_add(1); });
  REQUIRE(rt.spawn(logged_body(&log, false), std::move(s)).join() == 5); // suspends once
  REQUIRE(starts.load() == 1);
}
