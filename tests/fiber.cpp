// tests/fiber.cpp: stackful procs (include/bastion/lightproc/fiber.hpp and
// include/bastion/detail/fiber_context.hpp): values and exceptions through the join handle,
// after_panic, yield order on one worker, sleep order, awaiting tasks and handles,
// cancellation and shutdown unwinding a fiber's stack, misuse, and many fibers on two workers.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/fiber.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>
#include <bastion/lightproc/this_proc.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using bastion::task;
using namespace std::chrono_literals;
namespace this_fiber = bastion::this_fiber;

bastion::runtime make_runtime(std::size_t workers) {
  return bastion::runtime{bastion::runtime_config{}.workers(workers).pin_workers(false)};
}

/// Counts destructions (thread-safe: a fiber may be unwound on any thread).
class tracked {
public:
  explicit tracked(std::atomic<int>* destroyed)
      : destroyed_(destroyed) {}
  tracked(const tracked&) = delete;
  tracked& operator=(const tracked&) = delete;
  ~tracked() { destroyed_->fetch_add(1, std::memory_order_relaxed); }

private:
  std::atomic<int>* destroyed_;
};

/// Waits (bounded) until `flag` is set.
bool wait_for(const std::atomic<bool>& flag, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!flag.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

task<int> add_one_later(int x) {
  co_await bastion::sleep_for(1ms);
  co_return x + 1;
}

task<int&> reference_to(int* p) {
  co_await bastion::yield_now();
  co_return *p;
}

task<int> fail_later(std::string what) {
  co_await bastion::yield_now();
  throw std::runtime_error(what);
}

} // namespace

TEST_CASE("a fiber returns its value through the join handle", "[fiber]") {
  auto rt = make_runtime(2);

  auto h = bastion::spawn_fiber(rt, [] { return 42; });
  REQUIRE(h.valid());
  REQUIRE(std::move(h).join() == 42);

  auto s = bastion::spawn_fiber(rt, [text = std::string(100, 'x')] { return text + "!"; });
  REQUIRE(std::move(s).join() == std::string(100, 'x') + "!");

  auto p = bastion::spawn_fiber(rt, [] { return std::make_unique<int>(7); });
  REQUIRE(*std::move(p).join() == 7);

  std::atomic<bool> ran{false};
  auto v = bastion::spawn_fiber(rt, [&ran] { ran.store(true); });
  std::move(v).join();
  REQUIRE(ran.load());

  // References pass through this_fiber::await and the join handle.
  int target = 5;
  auto r = bastion::spawn_fiber(rt, [&target]() -> int& {
    int& ref = this_fiber::await(reference_to(&target));
    return ref;
  });
  int& joined = std::move(r).join();
  REQUIRE(&joined == &target);
}

TEST_CASE("a fiber is a proc: in_fiber, pid and proc_stack state", "[fiber]") {
  auto rt = make_runtime(2);
  REQUIRE_FALSE(this_fiber::in_fiber());

  bastion::proc_stack stack;
  stack.with_state(7);
  struct seen {
    bool in_fiber = false;
    std::uint64_t pid = 0;
    int state = 0;
  };
  auto h = bastion::spawn_fiber(
      rt,
      [] {
        seen s;
        s.in_fiber = this_fiber::in_fiber();
        s.pid = bastion::this_proc::pid();
        s.state = bastion::this_proc::stack().state<int>();
        this_fiber::yield();
        s.in_fiber = s.in_fiber && this_fiber::in_fiber();
        return s;
      },
      {},
      std::move(stack));
  const auto pid = h.pid();
  const seen s = std::move(h).join();
  REQUIRE(s.in_fiber);
  REQUIRE(s.pid == pid);
  REQUIRE(s.state == 7);

  // A coroutine proc is not a fiber.
  REQUIRE_FALSE(rt.run([]() -> task<bool> {
    co_return this_fiber::in_fiber();
  }()));
}

namespace {
/// Spawns a fiber running `f` on the current runtime, awaits its handle and returns the
/// message of the std::runtime_error it ended with ("" when it returned normally).
template <class F>
std::string failure_of(F f, bastion::proc_stack stack = {}) {
  auto h = bastion::spawn_fiber(std::move(f), {}, std::move(stack));
  try {
    this_fiber::await(std::move(h));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("an exception escaping a fiber reaches the handle after after_panic", "[fiber]") {
  auto rt = make_runtime(2);
  struct outcome {
    std::string caught;
    std::string panic_message;
    std::uint64_t panic_pid = 0;
    int destroyed_when_caught = 0;
  };
  auto h = bastion::spawn_fiber(rt, [] {
    outcome out;
    std::atomic<int> destroyed{0};
    bastion::proc_stack stack;
    stack.after_panic([&out](std::uint64_t pid, std::exception_ptr e) {
      out.panic_pid = pid;
      try {
        std::rethrow_exception(std::move(e));
      } catch (const std::runtime_error& err) {
        out.panic_message = err.what();
      }
    });
    out.caught = failure_of(
        [&destroyed]() -> int {
          tracked local(&destroyed);
          this_fiber::yield();
          throw std::runtime_error("fiber failed");
        },
        std::move(stack));
    out.destroyed_when_caught = destroyed.load();
    return out;
  });
  const outcome out = std::move(h).join();
  REQUIRE(out.caught == "fiber failed");
  REQUIRE(out.destroyed_when_caught == 1);
  REQUIRE(out.panic_message == "fiber failed");
  REQUIRE(out.panic_pid != 0);

  // The same through an exception thrown by a task the fiber awaited.
  auto from_task = bastion::spawn_fiber(
      rt, [] { return failure_of([] { return this_fiber::await(fail_later("escaped")); }); });
  REQUIRE(std::move(from_task).join() == "escaped");

  // And on the thread that joins.
  auto joined = bastion::spawn_fiber(rt, []() -> int {
    this_fiber::yield();
    throw std::runtime_error("joined");
  });
  REQUIRE_THROWS_WITH(std::move(joined).join(), "joined");
  auto joined_task = bastion::spawn_fiber(rt, [] { return this_fiber::await(fail_later("t")); });
  REQUIRE_THROWS_WITH(std::move(joined_task).join(), "t");
}

TEST_CASE("this_fiber::yield interleaves two fibers on one worker", "[fiber]") {
  auto rt = make_runtime(1);
  // Only the single worker touches `log` until the joins below.
  std::vector<std::string> log;
  auto body = [&log](const char* name) {
    return [&log, name] {
      for (int i = 0; i < 3; ++i) {
        log.push_back(name + std::to_string(i));
        this_fiber::yield();
      }
    };
  };
  // Spawned from a proc on the worker, so both land in its queue in order.
  auto coordinator = bastion::spawn_fiber(rt, [&] {
    auto a = bastion::spawn_fiber(body("a"));
    auto b = bastion::spawn_fiber(body("b"));
    this_fiber::await(std::move(a));
    this_fiber::await(std::move(b));
  });
  std::move(coordinator).join();
  REQUIRE(log == std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "b2"});
}

TEST_CASE("fibers sleeping for different times wake in deadline order", "[fiber]") {
  auto rt = make_runtime(2);
  std::mutex mu;
  std::vector<int> order;
  const std::chrono::milliseconds naps[] = {240ms, 40ms, 140ms};

  std::vector<bastion::join_handle<std::chrono::steady_clock::duration>> handles;
  handles.reserve(3);
  for (int i = 0; i < 3; ++i) {
    handles.push_back(bastion::spawn_fiber(rt, [&, i] {
      const auto start = std::chrono::steady_clock::now();
      this_fiber::sleep_for(naps[i]);
      const auto slept = std::chrono::steady_clock::now() - start;
      std::lock_guard lk(mu);
      order.push_back(i);
      return slept;
    }));
  }
  for (int i = 0; i < 3; ++i) {
    REQUIRE(std::move(handles[static_cast<std::size_t>(i)]).join() >= naps[i]);
  }
  std::lock_guard lk(mu);
  REQUIRE(order == std::vector<int>{1, 2, 0});

  // sleep_until with a deadline already passed does not suspend.
  auto h = bastion::spawn_fiber(rt, [] {
    this_fiber::sleep_until(bastion::clock::now() - 1s);
    this_fiber::sleep_for(-5ms);
    return true;
  });
  REQUIRE(std::move(h).join());
}

TEST_CASE("this_fiber::await runs a task and rethrows its exception", "[fiber]") {
  auto rt = make_runtime(2);

  auto value = bastion::spawn_fiber(rt, [] { return this_fiber::await(add_one_later(41)); });
  REQUIRE(std::move(value).join() == 42);

  auto caught = bastion::spawn_fiber(rt, [] {
    std::string what;
    try {
      this_fiber::await(fail_later("task failed"));
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    // The fiber goes on after catching.
    return what + "/" + std::to_string(this_fiber::await(add_one_later(1)));
  });
  REQUIRE(std::move(caught).join() == "task failed/2");
}

TEST_CASE("this_fiber::await waits for join handles of tasks and fibers", "[fiber]") {
  auto rt = make_runtime(2);
  auto h = bastion::spawn_fiber(rt, [] {
    auto t = bastion::spawn(add_one_later(9));
    auto f = bastion::spawn_fiber([] {
      this_fiber::sleep_for(2ms);
      return 100;
    });
    auto bad = bastion::spawn(fail_later("lost"));
    const int sum = this_fiber::await(std::move(t)) + this_fiber::await(std::move(f));
    const std::optional<int> none = this_fiber::await(std::move(bad).recover());
    return none.has_value() ? -1 : sum;
  });
  REQUIRE(std::move(h).join() == 110);

  // A proc cancelled while a fiber waits for it: the fiber sees proc_cancelled.
  auto waiter = bastion::spawn_fiber(rt, [] {
    auto sleeper = bastion::spawn_fiber([] { this_fiber::sleep_for(10s); });
    sleeper.cancel();
    try {
      this_fiber::await(std::move(sleeper));
    } catch (const bastion::proc_cancelled&) {
      return true;
    }
    return false;
  });
  REQUIRE(std::move(waiter).join());
}

TEST_CASE("cancelling a sleeping fiber unwinds its stack", "[fiber]") {
  auto rt = make_runtime(2);
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  std::atomic<bool> woke{false};

  auto h = bastion::spawn_fiber(rt, [&] {
    tracked outer(&destroyed);
    {
      tracked inner(&destroyed);
      asleep.store(true, std::memory_order_release);
      this_fiber::sleep_for(10s);
      woke.store(true);
    }
    return 1;
  });
  REQUIRE(wait_for(asleep));
  std::this_thread::sleep_for(5ms); // most likely parked on its timer by now
  h.cancel();
  REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_cancelled);
  REQUIRE(destroyed.load() == 2);
  REQUIRE_FALSE(woke.load());
  REQUIRE(rt.stats().timers_pending == 0); // the sleep's timer was disarmed

  // Cancelled while awaiting a task that sleeps: the task's frame and the fiber's locals go.
  std::atomic<bool> waiting{false};
  auto nested = bastion::spawn_fiber(rt, [&] {
    tracked local(&destroyed);
    auto sleepy = [](std::atomic<int>* d, std::atomic<bool>* w) -> task<int> {
      tracked in_task(d);
      w->store(true, std::memory_order_release);
      co_await bastion::sleep_for(10s);
      co_return 0;
    };
    return this_fiber::await(sleepy(&destroyed, &waiting));
  });
  REQUIRE(wait_for(waiting));
  nested.cancel();
  REQUIRE_THROWS_AS(std::move(nested).join(), bastion::proc_cancelled);
  REQUIRE(destroyed.load() == 4);
  REQUIRE(rt.stats().timers_pending == 0);
}

TEST_CASE("a swallowed unwind is thrown again at the next suspension", "[fiber]") {
  auto rt = make_runtime(2);
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  std::atomic<int> swallowed{0};
  auto h = bastion::spawn_fiber(rt, [&] {
    tracked local(&destroyed);
    try {
      asleep.store(true, std::memory_order_release);
      this_fiber::sleep_for(10s);
    } catch (...) { // swallows the unwinding: what this test is about
      swallowed.fetch_add(1);
    }
    this_fiber::yield(); // throws again: the fiber is being destroyed
    swallowed.fetch_add(100);
  });
  REQUIRE(wait_for(asleep));
  std::this_thread::sleep_for(5ms);
  h.cancel();
  REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_cancelled);
  REQUIRE(destroyed.load() == 1);
  REQUIRE(swallowed.load() == 1); // caught once, not resumed past the second suspension
}

TEST_CASE("shutting the runtime down cancels a sleeping fiber and unwinds it", "[fiber]") {
  std::atomic<int> destroyed{0};
  std::atomic<bool> asleep{false};
  std::optional<bastion::join_handle<void>> h;
  {
    auto rt = make_runtime(2);
    h.emplace(bastion::spawn_fiber(rt, [&] {
      tracked local(&destroyed);
      asleep.store(true, std::memory_order_release);
      this_fiber::sleep_for(10s);
    }));
    REQUIRE(wait_for(asleep));
    std::this_thread::sleep_for(5ms);
    rt.shutdown();
    REQUIRE(destroyed.load() == 1);
  }
  REQUIRE(h->is_finished());
  REQUIRE_THROWS_AS(std::move(*h).join(), bastion::proc_cancelled);
}

TEST_CASE("fiber misuse is reported", "[fiber]") {
  auto rt = make_runtime(1);
  REQUIRE_THROWS_AS(this_fiber::yield(), std::logic_error);
  REQUIRE_THROWS_AS(this_fiber::sleep_for(1ms), std::logic_error);
  REQUIRE_THROWS_AS(this_fiber::await(add_one_later(1)), std::logic_error);
  REQUIRE_THROWS_AS(
      bastion::spawn_fiber(
          rt, [] {}, bastion::fiber_options{.stack_size = 1024}),
      std::invalid_argument);

  // A coroutine polled by a nested loop on a fiber's stack is not that fiber.
  auto h = bastion::spawn_fiber(rt, [] {
    auto inner = []() -> task<bool> {
      try {
        this_fiber::yield();
      } catch (const std::logic_error&) {
        co_return true;
      }
      co_return false;
    };
    return bastion::run(inner());
  });
  REQUIRE(std::move(h).join());
}

TEST_CASE("fiber stacks can be sized and need not have a guard page", "[fiber]") {
  auto rt = make_runtime(2);
  const bastion::fiber_options opts{.stack_size = std::size_t{512} * 1024, .guard_page = false};
  auto h = bastion::spawn_fiber(
      rt,
      [] {
        // Uses more than the default 64 KiB of stack.
        volatile char buffer[256 * 1024];
        for (std::size_t i = 0; i < sizeof(buffer); i += 4096) {
          buffer[i] = static_cast<char>(i);
        }
        this_fiber::yield();
        return static_cast<int>(buffer[4096]);
      },
      opts);
  REQUIRE(std::move(h).join() == static_cast<int>(static_cast<char>(4096)));
}

TEST_CASE("a thousand fibers yielding ten times each all finish on two workers", "[fiber]") {
  auto rt = make_runtime(2);
  constexpr int fibers = 1000;
  constexpr int yields = 10;
  std::atomic<int> total_yields{0};

  std::vector<bastion::join_handle<std::int64_t>> handles;
  handles.reserve(fibers);
  for (int i = 0; i < fibers; ++i) {
    handles.push_back(bastion::spawn_fiber(rt, [i, &total_yields] {
      std::int64_t acc = 0;
      for (int k = 0; k < yields; ++k) {
        acc += static_cast<std::int64_t>(i) * (k + 1);
        this_fiber::yield();
        total_yields.fetch_add(1, std::memory_order_relaxed);
      }
      return acc;
    }));
  }
  std::int64_t sum = 0;
  for (auto& h : handles) {
    sum += std::move(h).join();
  }
  // sum over i of i * (1 + ... + 10) = 55 * fibers * (fibers - 1) / 2
  REQUIRE(sum == std::int64_t{55} * fibers * (fibers - 1) / 2);
  REQUIRE(total_yields.load() == fibers * yields);
}
