// tests/join_handle.cpp: bastion::join_handle<T> and the proc errors
// (include/bastion/lightproc/join_handle.hpp, errors.hpp): spawn and join, recover, detach,
// cancellation, exception isolation, pids.
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
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace bastion::test;

using namespace std::chrono_literals;
using bastion::join_handle;
using bastion::task;

task<void> nothing(std::atomic<int>* runs) {
  runs->fetch_add(1);
  co_return;
}

task<int&> reference_to(int* p) {
  co_return *p;
}

task<int> throws_runtime_error(int i) {
  throw std::runtime_error("proc " + std::to_string(i) + " failed");
  co_return 0; // NOLINT: unreachable, keeps this a coroutine
}

task<int> throws_int() {
  throw 7;
  co_return 0; // NOLINT: unreachable
}

/// Awaits a join_handle<int&> and reports whether it yielded the very object.
task<bool> joined_reference_is(join_handle<int&> h, int* target) {
  auto&& r = co_await std::move(h);
  co_return &r == target;
}

task<std::unique_ptr<int>> boxed(int v) {
  co_return std::make_unique<int>(v);
}

task<std::uint64_t> spawn_and_sum_children(int n) {
  std::vector<join_handle<int>> children;
  children.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    children.push_back(bastion::spawn(value_of(i)));
  }
  std::uint64_t sum = 0;
  for (auto& h : children) {
    sum += static_cast<std::uint64_t>(co_await std::move(h));
  }
  co_return sum;
}

task<int> sleep_long_with_local(std::atomic<int>* destroyed, std::atomic<bool>* asleep) {
  tracked local{destroyed};
  asleep->store(true);
  co_await bastion::sleep_for(1h);
  co_return 1; // never reached: cancelled
}

task<int> body_that_must_not_run(std::atomic<bool>* ran, tracked /*param*/) {
  ran->store(true);
  co_return 1;
}

/// Spins until `expected` procs are inside at the same time (or the limit passes): proves
/// that many workers are alive and polling. Returns whether they met.
task<bool> meet(std::atomic<int>* inside, int expected) {
  inside->fetch_add(1);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (inside->load() < expected) {
    if (std::chrono::steady_clock::now() > until) {
      co_return false;
    }
    std::this_thread::yield();
  }
  co_return true;
}

task<std::optional<int>> recover_of(join_handle<int> h) {
  co_return co_await std::move(h).recover();
}

task<bool> recover_void(join_handle<void> h) {
  std::optional<std::monostate> r = co_await std::move(h).recover();
  co_return r.has_value();
}

task<int> join_in_worker(join_handle<int> h) {
  // join() on a worker keeps that worker polling, so a child queued behind us still runs.
  co_return std::move(h).join();
}

task<int> spawn_child_then_join_blocking() {
  auto child = bastion::spawn(value_of(5));
  co_return std::move(child).join() + 1;
}

task<int> await_sleeping_child(join_handle<int> child) {
  co_return co_await std::move(child);
}

task<std::uint64_t> own_pid() {
  co_return bastion::this_proc::pid();
}

task<int> await_handle(join_handle<int> h) {
  co_return co_await std::move(h);
}

} // namespace

TEST_CASE("spawn and join: values, void, references, move-only", "[join_handle]") {
  bastion::runtime rt{workers(2)};

  SECTION("value") {
    auto h = rt.spawn(value_of(42));
    REQUIRE(h.valid());
    REQUIRE(h.pid() != 0);
    REQUIRE(std::move(h).join() == 42);
    REQUIRE_FALSE(h.valid()); // NOLINT(bugprone-use-after-move): join consumed it
  }
  SECTION("void") {
    std::atomic<int> runs{0};
    rt.spawn(nothing(&runs)).join();
    REQUIRE(runs.load() == 1);
  }
  SECTION("move-only") {
    auto p = rt.spawn(boxed(8)).join();
    REQUIRE(p != nullptr);
    REQUIRE(*p == 8);
  }
  SECTION("free bastion::spawn inside a proc uses that proc's runtime") {
    REQUIRE(rt.run(spawn_and_sum_children(10)) == 45);
    REQUIRE(rt.stats().procs_spawned >= 10);
  }
}

TEST_CASE("a proc spawning 1,000 procs and summing their results", "[join_handle]") {
  bastion::runtime rt{workers(2)};
  const auto before = rt.stats().procs_spawned;
  auto h = rt.spawn(spawn_and_sum_children(1000));
  REQUIRE(std::move(h).join() == 999ULL * 1000 / 2);
  REQUIRE(rt.stats().procs_spawned - before == 1001);
}

TEST_CASE("join() from plain threads, each with its own handle", "[join_handle]") {
  bastion::runtime rt{workers(2)};
  constexpr int threads = 8;
  std::vector<join_handle<int>> handles;
  for (int i = 0; i < threads; ++i) {
    handles.push_back(rt.spawn(value_of(i * 10)));
  }
  std::vector<int> results(threads, -1);
  std::vector<std::thread> joiners;
  for (int i = 0; i < threads; ++i) {
    joiners.emplace_back(
        [&results, i, h = std::move(handles[static_cast<std::size_t>(i)])]() mutable {
          results[static_cast<std::size_t>(i)] = std::move(h).join();
        });
  }
  for (auto& t : joiners) {
    t.join();
  }
  for (int i = 0; i < threads; ++i) {
    REQUIRE(results[static_cast<std::size_t>(i)] == i * 10);
  }
}

TEST_CASE("join() on a worker thread keeps that worker running other procs", "[join_handle]") {
  // One worker: the child can only run if join() polls it from inside the parent's poll.
  bastion::runtime rt{workers(1)};
  REQUIRE(rt.spawn(spawn_child_then_join_blocking()).join() == 6);
  auto child = rt.spawn(value_of(11));
  REQUIRE(rt.spawn(join_in_worker(std::move(child))).join() == 11);
}

TEST_CASE("a proc's exception is rethrown to its joiner as it was", "[join_handle]") {
  bastion::runtime rt{workers(2)};
  REQUIRE_THROWS_WITH(rt.spawn(throws_runtime_error(3)).join(), "proc 3 failed");
  REQUIRE_THROWS_AS(rt.spawn(throws_runtime_error(3)).join(), std::runtime_error);
  try {
    (void)rt.spawn(throws_int()).join();
    FAIL("join() did not rethrow");
  } catch (int v) {
    REQUIRE(v == 7);
  }
}

TEST_CASE("exceptions never kill a worker", "[join_handle]") {
  bastion::runtime rt{workers(2)};
  constexpr int n = 1000;
  std::vector<join_handle<int>> handles;
  handles.reserve(n);
  for (int i = 0; i < n; ++i) {
    handles.push_back(rt.spawn(throws_runtime_error(i)));
  }
  int rethrown = 0;
  for (int i = 0; i < n; ++i) {
    try {
      (void)std::move(handles[static_cast<std::size_t>(i)]).join();
    } catch (const std::runtime_error& e) {
      REQUIRE(std::string(e.what()) == "proc " + std::to_string(i) + " failed");
      ++rethrown;
    }
  }
  REQUIRE(rethrown == n);

  // The runtime still runs new work, on both workers: two procs that each hold a worker
  // until the other one is inside can only meet if both workers are alive.
  REQUIRE(rt.spawn(value_of(1)).join() == 1);
  std::atomic<int> inside{0};
  auto a = rt.spawn(meet(&inside, 2));
  auto b = rt.spawn(meet(&inside, 2));
  REQUIRE(std::move(a).join());
  REQUIRE(std::move(b).join());
}

TEST_CASE("recover() yields the value, or nullopt on failure or cancellation", "[join_handle]") {
  bastion::runtime rt{workers(2)};

  SECTION("value") {
    REQUIRE(rt.run(recover_of(rt.spawn(value_of(4)))) == std::optional<int>{4});
  }
  SECTION("void yields monostate") {
    std::atomic<int> runs{0};
    REQUIRE(rt.run(recover_void(rt.spawn(nothing(&runs)))));
    REQUIRE(runs.load() == 1);
  }
  SECTION("exception") {
    REQUIRE_FALSE(rt.run(recover_of(rt.spawn(throws_runtime_error(1)))).has_value());
    REQUIRE_FALSE(rt.run(recover_of(rt.spawn(throws_int()))).has_value());
  }
  SECTION("cancellation") {
    std::atomic<int> destroyed{0};
    std::atomic<bool> asleep{false};
    auto h = rt.spawn(sleep_long_with_local(&destroyed, &asleep));
    REQUIRE(eventually([&] { return asleep.load(); }));
    h.cancel();
    REQUIRE_FALSE(rt.run(recover_of(std::move(h))).has_value());
    REQUIRE(destroyed.load() == 1);
  }
}

TEST_CASE("cancelling a proc that sleeps for an hour", "[join_handle][cancel]") {
  bastion::runtime rt{workers(2)};
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  auto h = rt.spawn(sleep_long_with_local(&destroyed, &asleep));
  const auto pid = h.pid();
  REQUIRE(eventually([&] { return asleep.load(); }));
  REQUIRE_FALSE(h.is_finished());
  REQUIRE(eventually([&] { return h.state() == bastion::proc_state::suspended; }));

  h.cancel();
  REQUIRE(eventually([&] { return h.is_finished(); }));
  REQUIRE(h.state() == bastion::proc_state::closed);
  REQUIRE(destroyed.load() == 1);          // its locals unwound
  REQUIRE(rt.stats().timers_pending == 0); // and its timer was disarmed
  h.cancel();                              // a second cancel is harmless
  try {
    (void)std::move(h).join();
    FAIL("join() of a cancelled proc returned");
  } catch (const bastion::proc_cancelled& e) {
    REQUIRE(e.pid() == pid);
    REQUIRE(std::string(e.what()).find(std::to_string(pid)) != std::string::npos);
  }
}

TEST_CASE("cancelling a proc before it ever ran", "[join_handle][cancel]") {
  bastion::runtime rt{workers(1)};
  gate g;
  auto blocker = rt.spawn(hold_worker(&g));
  REQUIRE(eventually([&] { return g.entered.load(); }));
  REQUIRE(blocker.state() == bastion::proc_state::running);

  std::atomic<bool> ran{false};
  std::atomic<int> destroyed{0};
  std::atomic<int> started{0};
  bastion::proc_stack stack;
  stack.before_start([&started](std::uint64_t) { started.fetch_add(1); });
  auto h = rt.spawn(body_that_must_not_run(&ran, tracked{&destroyed}), std::move(stack));
  REQUIRE(h.state() == bastion::proc_state::scheduled); // the only worker is busy
  h.cancel();
  g.open.store(true);

  REQUIRE(std::move(blocker).join() == 1);
  REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_cancelled);
  REQUIRE_FALSE(ran.load());
  REQUIRE(started.load() == 0);
  REQUIRE(destroyed.load() == 1); // the frame (and its parameter) was destroyed, once
}

TEST_CASE("cancel after completion has no effect", "[join_handle][cancel]") {
  bastion::runtime rt{workers(2)};
  auto h = rt.spawn(value_of(99));
  REQUIRE(eventually([&] { return h.is_finished(); }));
  REQUIRE(h.state() == bastion::proc_state::completed);
  h.cancel();
  REQUIRE(h.state() == bastion::proc_state::completed);
  REQUIRE(std::move(h).join() == 99);
}

TEST_CASE("cancelling a proc that awaits another proc", "[join_handle][cancel]") {
  bastion::runtime rt{workers(2)};
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  auto child = rt.spawn(sleep_long_with_local(&destroyed, &asleep));
  REQUIRE(eventually([&] { return asleep.load(); }));
  auto parent = rt.spawn(await_sleeping_child(std::move(child)));
  REQUIRE(eventually([&] { return parent.state() == bastion::proc_state::suspended; }));
  parent.cancel();
  REQUIRE_THROWS_AS(std::move(parent).join(), bastion::proc_cancelled);
  // The parent's frame held the child's handle: dropping it detached the child, which
  // sleeps on until the runtime shuts down and cancels it.
  REQUIRE(destroyed.load() == 0);
  rt.shutdown();
  REQUIRE(destroyed.load() == 1);
}

TEST_CASE("dropping the handle detaches: the proc still runs", "[join_handle]") {
  bastion::runtime rt{workers(2)};
  std::atomic<int> runs{0};
  constexpr int n = 100;
  for (int i = 0; i < n; ++i) {
    auto h = rt.spawn(nothing(&runs));
    if (i % 2 == 0) {
      h.detach();
      REQUIRE_FALSE(h.valid());
    }
  } // the other half detach when their handle goes out of scope
  REQUIRE(eventually([&] { return runs.load() == n; }));
}

// Known core bug (reported): join_operation::await_resume returns `auto`, which decays
// T& to T, so awaiting a join_handle<int&> yields a copy, and join() on one does not compile.
TEST_CASE("awaiting a join_handle<T&> yields the very object", "[join_handle]") {
  bastion::runtime rt{workers(1)};
  int target = 3;
  REQUIRE(rt.run(joined_reference_is(rt.spawn(reference_to(&target)), &target)));
}

TEST_CASE("a moved handle keeps the proc; an empty handle is not valid", "[join_handle]") {
  bastion::runtime rt{workers(1)};
  join_handle<int> empty;
  REQUIRE_FALSE(empty.valid());
  REQUIRE(empty.pid() == 0);
  REQUIRE_FALSE(empty.is_finished());

  auto a = rt.spawn(value_of(5));
  const auto pid = a.pid();
  join_handle<int> b = std::move(a);
  REQUIRE_FALSE(a.valid()); // NOLINT(bugprone-use-after-move): checking the moved-from state
  REQUIRE(b.pid() == pid);
  join_handle<int> c;
  c = std::move(b);
  REQUIRE(c.pid() == pid);
  REQUIRE(std::move(c).join() == 5);
}

TEST_CASE("pids are unique and non-zero; a proc sees its own pid", "[join_handle][pid]") {
  bastion::runtime rt{workers(2)};
  constexpr int n = 1000;
  std::vector<join_handle<std::uint64_t>> handles;
  std::set<std::uint64_t> pids;
  for (int i = 0; i < n; ++i) {
    handles.push_back(rt.spawn(own_pid()));
    pids.insert(handles.back().pid());
  }
  REQUIRE(pids.size() == n);
  REQUIRE(pids.count(0) == 0);
  for (auto& h : handles) {
    const auto pid = h.pid();
    REQUIRE(std::move(h).join() == pid);
  }
}

TEST_CASE("proc errors carry their pid", "[join_handle][errors]") {
  const bastion::proc_cancelled c{12};
  const bastion::proc_rejected r{13};
  const bastion::proc_error& as_base = c;
  REQUIRE(as_base.pid() == 12);
  REQUIRE(r.pid() == 13);
  REQUIRE(std::string(c.what()).find("12") != std::string::npos);
  REQUIRE(std::string(r.what()).find("rejected") != std::string::npos);
  REQUIRE(std::string(bastion::timed_out{}.what()).find("timed out") != std::string::npos);
}

TEST_CASE("awaiting a handle outside a bastion proc throws std::logic_error", "[join_handle]") {
  bastion::runtime rt{workers(1)};
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  auto sleeper = rt.spawn(sleep_long_with_local(&destroyed, &asleep));
  REQUIRE(eventually([&] { return asleep.load(); }));
  // A task resumed by hand on this thread is a coroutine, but not a proc.
  task<int> t = await_handle(std::move(sleeper));
  t.handle().resume();
  REQUIRE(t.done());
  REQUIRE_THROWS_AS(t.handle().promise().take(), std::logic_error);
  // The handle was consumed by the failed await and dropped with the frame: detached.
  t = task<int>{};
  REQUIRE(destroyed.load() == 0);
  rt.shutdown();
  REQUIRE(destroyed.load() == 1);
}
