// tests/task.cpp: bastion::task<T> (include/bastion/lightproc/task.hpp) and the promise shape
// under it (include/bastion/detail/promise.hpp): laziness, results of every kind, exception
// propagation, symmetric transfer on deep nesting, misuse.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/lightproc/task.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using bastion::task;

/// A one-worker runtime: task tests run their root task inline with rt.run().
bastion::runtime make_runtime() {
  return bastion::runtime{bastion::runtime_config{}.workers(1)};
}

/// Counts destructions of live (not moved-from) instances.
class tracked {
public:
  explicit tracked(int* destroyed)
      : destroyed_(destroyed) {}
  tracked(tracked&& o) noexcept
      : destroyed_(std::exchange(o.destroyed_, nullptr)) {}
  tracked(const tracked&) = delete;
  tracked& operator=(const tracked&) = delete;
  tracked& operator=(tracked&&) = delete;
  ~tracked() {
    if (destroyed_ != nullptr) {
      ++*destroyed_;
    }
  }

private:
  int* destroyed_;
};

task<int> forty_two() {
  co_return 42;
}

task<void> set_flag(bool* flag) {
  *flag = true;
  co_return;
}

task<int&> ref_to(int* target) {
  co_return *target;
}

task<int> add_one_to_awaited() {
  co_return 1 + co_await forty_two();
}

task<std::unique_ptr<int>> make_unique_int(int v) {
  co_return std::make_unique<int>(v);
}

/// A move-only type without a default constructor.
class move_only {
public:
  explicit move_only(std::string s)
      : s_(std::move(s)) {}
  move_only(move_only&&) noexcept = default;
  move_only& operator=(move_only&&) noexcept = default;
  move_only(const move_only&) = delete;
  move_only& operator=(const move_only&) = delete;
  [[nodiscard]] const std::string& value() const { return s_; }

private:
  std::string s_;
};

task<move_only> make_move_only() {
  co_return move_only{"payload"};
}

task<int> throws_at_the_bottom(int* destroyed) {
  tracked local{destroyed};
  throw std::runtime_error("from the bottom");
  co_return 0; // NOLINT: unreachable, keeps this a coroutine
}

task<int> middle_level(int* destroyed) {
  tracked local{destroyed};
  const int v = co_await throws_at_the_bottom(destroyed);
  co_return v + 1; // never reached
}

task<std::string> top_level_catches(int* destroyed) {
  try {
    co_await middle_level(destroyed);
  } catch (const std::runtime_error& e) {
    co_return std::string("caught: ") + e.what();
  }
  co_return "not caught";
}

/// Awaits itself `n` levels deep: without symmetric transfer each level would add stack
/// frames on the way down (start) and on the way up (completion).
task<std::uint64_t> nested_sum(std::uint64_t n) {
  if (n == 0) {
    co_return 0;
  }
  co_return n + co_await nested_sum(n - 1);
}

task<std::uint64_t> many_sequential_awaits(int n) {
  std::uint64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    sum += static_cast<std::uint64_t>(co_await forty_two());
  }
  co_return sum;
}

task<int> await_empty() {
  task<int> empty;
  co_return co_await std::move(empty);
}

task<int> await_moved_from() {
  task<int> a = forty_two();
  task<int> b = std::move(a);
  const int from_b = co_await std::move(b);
  REQUIRE(from_b == 42);
  co_return co_await std::move(a); // NOLINT(bugprone-use-after-move): the misuse under test
}

task<int> await_lvalue_then_inspect() {
  task<int> t = forty_two();
  REQUIRE_FALSE(t.done());
  const int v = co_await t;
  REQUIRE(t.valid());
  REQUIRE(t.done());
  co_return v;
}

task<int> count_runs(int* runs, tracked /*param*/) {
  ++*runs;
  co_return 1;
}

} // namespace

TEST_CASE("a task is lazy: nothing runs until it is awaited", "[task]") {
  bool ran = false;
  task<void> t = set_flag(&ran);
  REQUIRE(t.valid());
  REQUIRE_FALSE(t.done());
  REQUIRE_FALSE(ran);

  // A root task resumed by hand runs to its end and returns control (noop continuation).
  t.handle().resume();
  REQUIRE(ran);
  REQUIRE(t.done());
}

TEST_CASE("destroying a task that never ran destroys its frame and its parameters", "[task]") {
  int runs = 0;
  int destroyed = 0;
  {
    task<int> t = count_runs(&runs, tracked{&destroyed});
    REQUIRE(destroyed == 0); // the parameter lives in the frame
  }
  REQUIRE(runs == 0);
  REQUIRE(destroyed == 1);
}

TEST_CASE("a moved task transfers its frame", "[task]") {
  task<int> a = forty_two();
  const auto h = a.handle();
  task<int> b = std::move(a);
  REQUIRE_FALSE(a.valid()); // NOLINT(bugprone-use-after-move): checking the moved-from state
  REQUIRE(b.valid());
  REQUIRE(b.handle() == h);
  task<int> c;
  c = std::move(b);
  REQUIRE(c.handle() == h);
  c.handle().resume();
  REQUIRE(c.done());
  REQUIRE(c.handle().promise().take() == 42);
}

TEST_CASE("task results: value, void, reference, move-only", "[task]") {
  auto rt = make_runtime();

  SECTION("value") {
    REQUIRE(rt.run(forty_two()) == 42);
  }
  SECTION("value of a nested await") {
    REQUIRE(rt.run(add_one_to_awaited()) == 43);
  }
  SECTION("void") {
    bool ran = false;
    rt.run(set_flag(&ran));
    REQUIRE(ran);
  }
  SECTION("reference: the awaiter gets the very object") {
    int target = 5;
    int& r = rt.run(ref_to(&target));
    REQUIRE(&r == &target);
    r = 9;
    REQUIRE(target == 9);
  }
  SECTION("move-only unique_ptr") {
    auto p = rt.run(make_unique_int(17));
    REQUIRE(p != nullptr);
    REQUIRE(*p == 17);
  }
  SECTION("move-only type without a default constructor") {
    REQUIRE(rt.run(make_move_only()).value() == "payload");
  }
  SECTION("awaited as an lvalue, the task stays valid and done") {
    REQUIRE(rt.run(await_lvalue_then_inspect()) == 42);
  }
}

TEST_CASE("an exception propagates through nested awaits and unwinds every frame", "[task]") {
  auto rt = make_runtime();

  SECTION("caught by an outer task") {
    int destroyed = 0;
    REQUIRE(rt.run(top_level_catches(&destroyed)) == "caught: from the bottom");
    REQUIRE(destroyed == 2); // the locals of the bottom and the middle frames
  }
  SECTION("escaping to the caller of run()") {
    int destroyed = 0;
    REQUIRE_THROWS_WITH(rt.run(middle_level(&destroyed)), "from the bottom");
    REQUIRE(destroyed == 2);
  }
  SECTION("stored by a root task resumed by hand, rethrown by take()") {
    int destroyed = 0;
    task<int> t = throws_at_the_bottom(&destroyed);
    t.handle().resume();
    REQUIRE(t.done());
    REQUIRE(t.handle().promise().failed());
    REQUIRE(t.handle().promise().exception() != nullptr);
    REQUIRE_THROWS_WITH(t.handle().promise().take(), "from the bottom");
    REQUIRE(destroyed == 1);
  }
}

TEST_CASE("100,000 nested awaits do not overflow the stack (symmetric transfer)", "[task]") {
  auto rt = make_runtime();
  constexpr std::uint64_t depth = 100'000;
  REQUIRE(rt.run(nested_sum(depth)) == depth * (depth + 1) / 2);
}

TEST_CASE("many sequential awaits of tasks that finish at once", "[task]") {
  auto rt = make_runtime();
  constexpr int n = BASTION_TSAN ? 100'000 : 1'000'000;
  REQUIRE(rt.run(many_sequential_awaits(n)) == std::uint64_t{42} * n);
}

TEST_CASE("awaiting an empty or moved-from task throws std::logic_error", "[task]") {
  auto rt = make_runtime();
  REQUIRE_THROWS_AS(rt.run(await_empty()), std::logic_error);
  REQUIRE_THROWS_AS(rt.run(await_moved_from()), std::logic_error);
}

TEST_CASE("each frame is destroyed exactly once whether it ran or not", "[task]") {
  auto rt = make_runtime();
  int runs = 0;
  int destroyed = 0;
  {
    std::vector<task<int>> tasks;
    for (int i = 0; i < 10; ++i) {
      tasks.push_back(count_runs(&runs, tracked{&destroyed}));
    }
    for (int i = 0; i < 5; ++i) {
      REQUIRE(rt.run(std::move(tasks[static_cast<std::size_t>(i)])) == 1);
    }
    REQUIRE(runs == 5);
    REQUIRE(destroyed == 5); // run() consumed and destroyed the five it ran
  }
  REQUIRE(runs == 5);
  REQUIRE(destroyed == 10);
}
