// tests/runtime.cpp: bastion::runtime and its free entry points (include/bastion/executor/
// runtime.hpp, runtime_config.hpp, spawn.hpp, stats.hpp): run(), the LIFO slot's fairness,
// the injector, work stealing, parking (an idle runtime uses no CPU), shutdown, config
// validation and worker placement.
#include <bastion/config.hpp>

#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/proc.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
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

template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument thrown)";
}

std::uint64_t
sum_of(const bastion::runtime_stats& s, std::uint64_t bastion::worker_stats::* field) {
  std::uint64_t total = 0;
  for (const auto& w : s.workers) {
    total += w.*field;
  }
  return total;
}

task<int> throws_logic_error() {
  throw std::logic_error("run failed");
  co_return 0; // NOLINT: unreachable, keeps this a coroutine
}

/// Spawns `n` procs and sums their values; -1 when it does not run on `expected_rt` (no
/// REQUIRE here: it may run on a thread other than the test's).
task<std::int64_t> spawn_and_sum(int n, bastion::runtime* expected_rt) {
  if (bastion::runtime::current() != expected_rt) {
    co_return -1;
  }
  std::vector<join_handle<int>> hs;
  for (int i = 0; i < n; ++i) {
    hs.push_back(bastion::spawn(value_of(i)));
  }
  std::int64_t sum = 0;
  for (auto& h : hs) {
    sum += co_await std::move(h);
  }
  co_return sum;
}

task<void> yield_once() {
  co_await bastion::yield_now();
}

task<int> count_yields(int n) {
  int k = 0;
  for (int i = 0; i < n; ++i) {
    co_await bastion::yield_now();
    ++k;
  }
  co_return k;
}

task<bastion::runtime*> current_runtime_inside() {
  co_return bastion::runtime::current();
}

// ---- run() on a worker ----

task<int> inner_awaits_spawned() {
  auto h = bastion::spawn(value_of(20));
  co_return co_await std::move(h) + 1;
}

task<int> inner_awaits(join_handle<int> h) {
  co_return co_await std::move(h);
}

/// On a one-worker runtime: calls bastion::run() from inside a proc, twice: once on a task
/// that spawns and awaits a proc, once on a task awaiting a proc queued on this worker
/// before run() was called. Either deadlocks unless run() keeps the worker polling.
task<int> nested_run_on_worker() {
  const int a = bastion::run(inner_awaits_spawned());
  auto queued = bastion::spawn(value_of(100)); // sits in this worker's local queue
  const int b = bastion::run(inner_awaits(std::move(queued)));
  co_return a + b;
}

task<int> sleep_then_value(std::chrono::milliseconds d, int v) {
  co_await bastion::sleep_for(d);
  co_return v;
}

/// bastion::run() on a worker, on a task that sleeps: some thread must fire the timer
/// while the only worker waits inside run().
task<int> nested_run_that_sleeps() {
  co_return bastion::run(sleep_then_value(5ms, 30));
}

/// join() on a worker of a proc that sleeps.
task<int> nested_join_of_sleeper() {
  co_return bastion::spawn(sleep_then_value(5ms, 40)).join();
}

/// Joins `h` if it finishes within `limit`, else returns nullopt (a deadlock) after
/// unsticking the runtime so that the rest of the file still runs: procs spawned from
/// outside make the stuck worker poll, and its periodic timer check then fires the timer.
/// If even that fails, the runtime is leaked rather than hang in its destructor.
template <class T>
std::optional<T>
join_within(std::unique_ptr<bastion::runtime>& rt, join_handle<T> h, std::chrono::seconds limit) {
  if (eventually([&] { return h.is_finished(); }, limit)) {
    return std::move(h).join();
  }
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (!h.is_finished() && std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 64; ++i) {
      rt->spawn(value_of(i)).detach();
    }
    std::this_thread::sleep_for(1ms);
  }
  if (!h.is_finished()) {
    h.detach();
    (void)rt.release(); // NOLINT(bugprone-unused-return-value): deliberate leak, see above
  }
  return std::nullopt;
}

// ---- LIFO slot fairness ----

/// A one-slot event a proc waits on and another proc signals: a tiny mailbox. Built on the
/// internal waker API because that is what a mailbox uses: a signal wakes the waiter
/// through the LIFO slot of the signalling worker.
class event {
public:
  void signal() {
    bastion::detail::waker w;
    {
      std::lock_guard lk(mu_);
      if (waiter_) {
        w = std::move(waiter_);
      } else {
        set_ = true;
      }
    }
    w.wake();
  }

  class wait_operation {
  public:
    explicit wait_operation(event& ev) noexcept
        : ev_(ev) {}
    bool await_ready() {
      std::lock_guard lk(ev_.mu_);
      return std::exchange(ev_.set_, false);
    }
    bool await_suspend(std::coroutine_handle<> h) {
      auto* cur = bastion::detail::current_proc();
      if (cur == nullptr) {
        throw std::logic_error("event awaited outside a proc");
      }
      cur->set_resume_point(h);
      std::lock_guard lk(ev_.mu_);
      if (std::exchange(ev_.set_, false)) {
        return false;
      }
      ev_.waiter_ = cur->make_waker();
      return true;
    }
    void await_resume() const noexcept {}

  private:
    event& ev_;
  };

  wait_operation wait() { return wait_operation{*this}; }

private:
  std::mutex mu_;
  bool set_ = false;
  bastion::detail::waker waiter_;
};

struct ping_pong_state {
  event ping;
  event pong;
  std::atomic<int> rounds{0};     // signals exchanged so far, both sides
  std::atomic<int> increments{0}; // the bystander's progress
  std::atomic<int> rounds_when_bystander_done{-1};
};

task<void> ping_pong_side(event* mine, event* other, int rounds, std::atomic<int>* counter) {
  for (int i = 0; i < rounds; ++i) {
    co_await mine->wait();
    counter->fetch_add(1);
    other->signal();
  }
}

task<void> bystander(ping_pong_state* s, int increments) {
  for (int i = 0; i < increments; ++i) {
    s->increments.fetch_add(1);
    co_await bastion::yield_now();
  }
  s->rounds_when_bystander_done.store(s->rounds.load());
}

task<void> ping_pong_root(ping_pong_state* s, int rounds, int increments) {
  auto a = bastion::spawn(ping_pong_side(&s->ping, &s->pong, rounds, &s->rounds));
  auto b = bastion::spawn(ping_pong_side(&s->pong, &s->ping, rounds, &s->rounds));
  auto c = bastion::spawn(bystander(s, increments));
  s->ping.signal(); // serve
  co_await std::move(a);
  co_await std::move(b);
  co_await std::move(c);
}

/// A chain of procs, each awaiting the next; the last one spawns the bystander and ends,
/// and the chain unwinds by join wakes only (each wake goes to the LIFO slot).
task<void> join_chain(int depth, ping_pong_state* s, int increments) {
  if (depth == 0) {
    bastion::spawn(bystander(s, increments)).detach();
    co_return;
  }
  co_await bastion::spawn(join_chain(depth - 1, s, increments));
  s->rounds.fetch_add(1);
}

/// Waits for its event, then records its index.
task<void> wake_recorder(event* ev, int index, std::mutex* mu, std::vector<int>* order) {
  co_await ev->wait();
  std::lock_guard lk(*mu);
  order->push_back(index);
}

/// Spawns `n` recorders, lets them park, then wakes them in index order from this proc.
task<void> wake_in_order(int n, std::mutex* mu, std::vector<int>* order) {
  std::vector<std::unique_ptr<event>> evs;
  std::vector<join_handle<void>> hs;
  for (int i = 0; i < n; ++i) {
    evs.push_back(std::make_unique<event>());
    hs.push_back(bastion::spawn(wake_recorder(evs.back().get(), i, mu, order)));
  }
  co_await bastion::yield_now(); // behind the recorders in the queue: they park first
  for (auto& ev : evs) {
    ev->signal();
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
}

// ---- injector and stealing ----

task<void>
record_run(std::vector<std::atomic<int>>* runs, std::size_t i, std::atomic<std::uint64_t>* sum) {
  (*runs)[i].fetch_add(1);
  sum->fetch_add(i);
  co_return;
}

std::atomic<std::uint64_t> work_sink{0};

/// A little work: a few hundred steps of an LCG the optimiser cannot drop.
task<void> small_work(std::vector<std::atomic<int>>* runs, std::size_t i) {
  std::uint64_t x = i;
  for (int k = 0; k < 200; ++k) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  }
  work_sink.fetch_xor(x, std::memory_order_relaxed);
  (*runs)[i].fetch_add(1);
  co_return;
}

task<void> spawn_many(std::vector<std::atomic<int>>* runs, std::size_t n) {
  std::vector<join_handle<void>> hs;
  hs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    hs.push_back(bastion::spawn(small_work(runs, i)));
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
}

task<void> count_done(std::vector<std::atomic<int>>* runs, std::size_t i, std::atomic<int>* done) {
  (*runs)[i].fetch_add(1);
  done->fetch_add(1);
  co_return;
}

/// Spawns `n` procs, then holds its worker until they have all run: they can only run on
/// the other worker, which must steal those still in this worker's local queue.
task<bool> spawn_counted_then_hold(
    std::vector<std::atomic<int>>* runs, std::atomic<int>* done, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    bastion::spawn(count_done(runs, i, done)).detach();
  }
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (done->load() < static_cast<int>(n)) {
    if (std::chrono::steady_clock::now() > until) {
      co_return false;
    }
    std::this_thread::yield();
  }
  co_return true;
}

// ---- shutdown ----

task<int> sleep_long(std::atomic<int>* armed, std::atomic<int>* destroyed) {
  tracked local{destroyed};
  armed->fetch_add(1);
  co_await bastion::sleep_for(1h);
  co_return 1;
}

task<int> queued_body(std::atomic<int>* ran, tracked /*param*/) {
  ran->fetch_add(1);
  co_return 1;
}

task<bool> shutdown_from_worker(bastion::runtime* rt) {
  try {
    rt->shutdown();
  } catch (const std::logic_error&) {
    co_return true;
  }
  co_return false;
}

task<int> spawn_inside_after_shutdown() {
  auto h = bastion::spawn(value_of(1));
  co_return co_await std::move(h);
}

// ---- idle CPU ----

std::chrono::microseconds process_cpu_time() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto tv = [](const timeval& t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

task<void> warm_up() {
  std::vector<join_handle<int>> hs;
  for (int i = 0; i < 100; ++i) {
    hs.push_back(bastion::spawn(value_of(i)));
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
  co_await bastion::sleep_for(10ms);
}

} // namespace

// ------------------------------------------------------------------------------ run() ----

TEST_CASE("run() returns the value or rethrows the exception", "[runtime][run]") {
  bastion::runtime rt{workers(2)};
  REQUIRE(rt.run(value_of(7)) == 7);
  REQUIRE_THROWS_WITH(rt.run(throws_logic_error()), "run failed");
  REQUIRE_THROWS_AS(rt.run(throws_logic_error()), std::logic_error);
  REQUIRE(rt.run(spawn_and_sum(100, &rt)) == 4950);
}

TEST_CASE("runtime::current() names the runtime of the worker or run() call", "[runtime]") {
  bastion::runtime rt{workers(1)};
  REQUIRE(bastion::runtime::current() == nullptr);
  REQUIRE(rt.run(current_runtime_inside()) == &rt);
  REQUIRE(bastion::runtime::current() == nullptr); // restored after run()
  REQUIRE(rt.spawn(current_runtime_inside()).join() == &rt);
}

TEST_CASE("run() from 8 plain threads at once, each spawning work", "[runtime][run]") {
  bastion::runtime rt{workers(2)};
  constexpr int threads = 8;
  constexpr int per_thread = BASTION_TSAN ? 100 : 500;
  std::vector<std::int64_t> sums(threads, -1);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&rt, &sums, t] {
      sums[static_cast<std::size_t>(t)] = rt.run(spawn_and_sum(per_thread, &rt));
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  for (const auto s : sums) {
    REQUIRE(s == std::int64_t{per_thread} * (per_thread - 1) / 2);
  }
}

TEST_CASE("run() called inside a worker does not deadlock", "[runtime][run]") {
  bastion::runtime rt{workers(1)};
  REQUIRE(rt.spawn(nested_run_on_worker()).join() == 121);
}

// While run() or join() waits on a worker, that worker must still fire timers: with every
// worker waiting this way, nobody else would.
TEST_CASE("run() and join() on the only worker, waiting on a sleep", "[runtime][run]") {
  SECTION("run()") {
    auto rt = std::make_unique<bastion::runtime>(workers(1));
    auto h = rt->spawn(nested_run_that_sleeps());
    REQUIRE(join_within(rt, std::move(h), 20s) == std::optional<int>{30});
  }
  SECTION("join()") {
    auto rt = std::make_unique<bastion::runtime>(workers(1));
    auto h = rt->spawn(nested_join_of_sleeper());
    REQUIRE(join_within(rt, std::move(h), 20s) == std::optional<int>{40});
  }
}

TEST_CASE("yield_now() resumes the proc; outside a proc it throws", "[runtime][yield]") {
  bastion::runtime rt{workers(2)};
  REQUIRE(rt.spawn(count_yields(1000)).join() == 1000);
  REQUIRE(rt.run(count_yields(100)) == 100); // inside run() on the calling thread too

  task<void> t = yield_once();
  t.handle().resume(); // a coroutine, but not a proc
  REQUIRE(t.done());
  REQUIRE_THROWS_AS(t.handle().promise().take(), std::logic_error);
}

// ------------------------------------------------------------------ LIFO slot fairness ----

TEST_CASE("a ping-pong pair waking each other cannot starve a third proc", "[runtime][lifo]") {
  // One worker: every wake of the pair goes to its LIFO slot. Unless the LIFO slot yields to
  // the queue, the bystander would only run after the last round.
  bastion::runtime rt{workers(1)};
  constexpr int rounds = 10'000; // per side
  // One bystander poll per 65 of the pair's (64 LIFO polls, then the queue's turn): 100
  // increments need ~6,500 of the 20,000.
  constexpr int increments = 100;
  ping_pong_state s;
  rt.spawn(ping_pong_root(&s, rounds, increments)).join();
  REQUIRE(s.rounds.load() == 2 * rounds);
  REQUIRE(s.increments.load() == increments);
  const int seen = s.rounds_when_bystander_done.load();
  CAPTURE(seen);
  REQUIRE(seen >= 0);
  REQUIRE(seen < 2 * rounds); // finished while the ping-pong was still running
  const auto st = rt.stats();
  REQUIRE(sum_of(st, &bastion::worker_stats::lifo_hits) > 0);
}

TEST_CASE("a chain of join wakes cannot starve a proc queued behind it", "[runtime][lifo]") {
  bastion::runtime rt{workers(1)};
  constexpr int depth = BASTION_TSAN ? 4'000 : 10'000;
  // The bystander gets one poll per 65 of the chain (64 LIFO polls, then the queue's turn):
  // 40 increments need ~2,600, well inside the chain.
  constexpr int increments = 40;
  ping_pong_state s;
  rt.spawn(join_chain(depth, &s, increments)).join();
  REQUIRE(s.rounds.load() == depth);
  REQUIRE(eventually([&] { return s.rounds_when_bystander_done.load() >= 0; }));
  const int seen = s.rounds_when_bystander_done.load();
  CAPTURE(seen);
  REQUIRE(seen < depth); // the bystander finished before the chain had unwound
}

TEST_CASE("procs woken by a running proc run newest first (the LIFO stack)", "[runtime][lifo]") {
  // One worker: the five wakes go to its LIFO stack and are polled from the top, as a spawn
  // tree is walked depth-first. (Tokio's one-task LIFO slot would give 4, 0, 1, 2, 3.)
  bastion::runtime rt{workers(1)};
  std::mutex mu;
  std::vector<int> order;
  rt.spawn(wake_in_order(5, &mu, &order)).join();
  REQUIRE(order == std::vector<int>{4, 3, 2, 1, 0});
}

// -------------------------------------------------------------------------- injector ----

TEST_CASE("procs spawned from a plain thread each run exactly once", "[runtime][injector]") {
  bastion::runtime rt{workers(2)};
  constexpr std::size_t n = BASTION_TSAN ? 20'000 : 100'000;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<std::uint64_t> sum{0};
  const auto spawned_before = rt.stats().procs_spawned;
  std::vector<join_handle<void>> hs;
  hs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    hs.push_back(rt.spawn(record_run(&runs, i, &sum)));
  }
  REQUIRE(eventually([&] { return sum.load() == n * (n - 1) / 2; }));
  for (auto& h : hs) {
    REQUIRE(h.is_finished());
    std::move(h).join();
  }
  std::size_t bad = 0;
  for (const auto& r : runs) {
    bad += r.load() == 1 ? 0 : 1;
  }
  REQUIRE(bad == 0);
  REQUIRE(sum.load() == n * (n - 1) / 2);

  const auto st = rt.stats();
  REQUIRE(st.workers.size() == 2);
  REQUIRE(st.procs_spawned - spawned_before == n);
  REQUIRE(sum_of(st, &bastion::worker_stats::injector_pulls) >= n);
  REQUIRE(sum_of(st, &bastion::worker_stats::polls) >= n);
  REQUIRE(st.injector_depth == 0);
}

TEST_CASE(
    "procs spawned from many plain threads at once each run exactly once", "[runtime][injector]") {
  bastion::runtime rt{workers(2)};
  constexpr std::size_t threads = 4;
  constexpr std::size_t per_thread = BASTION_TSAN ? 2'500 : 10'000;
  constexpr std::size_t n = threads * per_thread;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> ts;
  for (std::size_t t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (std::size_t i = t * per_thread; i < (t + 1) * per_thread; ++i) {
        rt.spawn(record_run(&runs, i, &sum)).detach();
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  REQUIRE(eventually([&] { return sum.load() == n * (n - 1) / 2; }));
  std::size_t bad = 0;
  for (const auto& r : runs) {
    bad += r.load() == 1 ? 0 : 1;
  }
  REQUIRE(bad == 0);
}

// ---------------------------------------------------------------------- work stealing ----

TEST_CASE(
    "10,000 procs spawned by one proc on 2 workers each run exactly once", "[runtime][steal]") {
  bastion::runtime rt{workers(2)};
  constexpr std::size_t n = 10'000;
  std::vector<std::atomic<int>> runs(n);
  const auto before = rt.stats();
  rt.spawn(spawn_many(&runs, n)).join();
  std::size_t bad = 0;
  for (const auto& r : runs) {
    bad += r.load() == 1 ? 0 : 1;
  }
  REQUIRE(bad == 0);
  const auto after = rt.stats();
  REQUIRE(after.procs_spawned - before.procs_spawned == n + 1);
  REQUIRE(
      sum_of(after, &bastion::worker_stats::polls) - sum_of(before, &bastion::worker_stats::polls)
      >= n + 1);
  for (const auto& w : after.workers) {
    REQUIRE(w.stolen_tasks >= w.steals); // a steal takes at least one task
  }
}

TEST_CASE("a busy worker's queue is stolen by the idle one", "[runtime][steal]") {
  // The spawner fills its own queue, then holds its worker until everything ran: the other
  // worker must take the overflow from the injector and steal what is left in the queue.
  bastion::runtime rt{workers(2)};
  constexpr std::size_t n = 1'000;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<int> done{0};
  REQUIRE(rt.spawn(spawn_counted_then_hold(&runs, &done, n)).join());
  std::size_t bad = 0;
  for (const auto& r : runs) {
    bad += r.load() == 1 ? 0 : 1;
  }
  REQUIRE(bad == 0);
  const auto st = rt.stats();
  REQUIRE(sum_of(st, &bastion::worker_stats::steals) > 0);
  REQUIRE(sum_of(st, &bastion::worker_stats::stolen_tasks) > 0);
  REQUIRE(sum_of(st, &bastion::worker_stats::polls) >= n + 1);
  // Both workers polled: the spawner ran the spawning proc, the other one ran the rest.
  for (const auto& w : st.workers) {
    REQUIRE(w.polls > 0);
  }
}

// ---------------------------------------------------------------------------- parking ----

TEST_CASE("an idle runtime uses almost no CPU", "[runtime][park]") {
  bastion::runtime rt{workers(2)};
  rt.run(warm_up());
  std::this_thread::sleep_for(100ms); // let the workers park
  const auto before = process_cpu_time();
  std::this_thread::sleep_for(2s);
  const auto used = process_cpu_time() - before;
  CAPTURE(used.count());
  REQUIRE(used < 20ms);
  REQUIRE(rt.stats().timers_pending == 0);
  REQUIRE(sum_of(rt.stats(), &bastion::worker_stats::parks) > 0);
  REQUIRE(rt.run(value_of(3)) == 3); // parked workers still wake up for new work
}

TEST_CASE("a parked runtime wakes for work spawned from outside", "[runtime][park]") {
  bastion::runtime rt{workers(2)};
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(5ms); // long enough for both workers to park
    REQUIRE(rt.spawn(value_of(i)).join() == i);
  }
  REQUIRE(rt.spawn(sleep_then_value(20ms, 4)).join() == 4);
}

// --------------------------------------------------------------------------- shutdown ----

TEST_CASE("shutdown cancels queued and sleeping procs: none vanishes", "[runtime][shutdown]") {
  bastion::runtime rt{workers(1)};
  constexpr int sleepers = 20;
  constexpr int queued = 50;
  std::atomic<int> armed{0};
  std::atomic<int> destroyed{0};
  std::vector<join_handle<int>> hs;
  for (int i = 0; i < sleepers; ++i) {
    hs.push_back(rt.spawn(sleep_long(&armed, &destroyed)));
  }
  REQUIRE(eventually([&] { return armed.load() == sleepers; }));
  REQUIRE(eventually([&] { return rt.stats().timers_pending == sleepers; }));

  gate g;
  auto blocker = rt.spawn(hold_worker(&g));
  REQUIRE(eventually([&] { return g.entered.load(); }));
  std::atomic<int> ran{0};
  for (int i = 0; i < queued; ++i) {
    hs.push_back(rt.spawn(queued_body(&ran, tracked{&destroyed})));
  }
  // The only worker is held: shut down from another thread, then let the worker go.
  std::thread stopper([&rt] { rt.shutdown(); });
  REQUIRE(eventually([&] { return rt.is_shut_down(); }));
  g.open.store(true);
  stopper.join();

  REQUIRE(ran.load() == 0);
  REQUIRE(destroyed.load() == sleepers + queued); // every frame unwound, synchronously
  REQUIRE(std::move(blocker).join() == 1);        // the proc being polled finished
  int cancelled = 0;
  int other = 0;
  for (auto& h : hs) {
    REQUIRE(h.is_finished());
    try {
      (void)std::move(h).join();
      ++other;
    } catch (const bastion::proc_cancelled&) {
      ++cancelled;
    } catch (...) {
      ++other;
    }
  }
  REQUIRE(cancelled == sleepers + queued);
  REQUIRE(other == 0);
}

TEST_CASE("spawn after shutdown is rejected", "[runtime][shutdown]") {
  bastion::runtime rt{workers(2)};
  rt.shutdown();
  REQUIRE(rt.is_shut_down());
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  auto h = rt.spawn(queued_body(&ran, tracked{&destroyed}));
  REQUIRE(h.is_finished());
  REQUIRE(h.state() == bastion::proc_state::closed);
  REQUIRE_THROWS_AS(std::move(h).join(), bastion::proc_rejected);
  REQUIRE(ran.load() == 0);
  REQUIRE(destroyed.load() == 1);
  // From a task run() drives on the shut-down runtime too.
  REQUIRE_THROWS_AS(rt.run(spawn_inside_after_shutdown()), bastion::proc_rejected);
}

TEST_CASE("shutdown is idempotent and refused from a worker", "[runtime][shutdown]") {
  bastion::runtime rt{workers(2)};
  REQUIRE(rt.spawn(shutdown_from_worker(&rt)).join());
  REQUIRE_FALSE(rt.is_shut_down());
  REQUIRE(rt.spawn(value_of(1)).join() == 1);
  rt.shutdown();
  rt.shutdown();
  REQUIRE(rt.is_shut_down());
  std::thread other([&rt] { rt.shutdown(); });
  other.join();
  REQUIRE(rt.is_shut_down());
} // and the destructor shuts down once more

TEST_CASE("destroying a runtime with detached work in flight cancels it", "[runtime][shutdown]") {
  std::atomic<int> armed{0};
  std::atomic<int> destroyed{0};
  {
    bastion::runtime rt{workers(2)};
    for (int i = 0; i < 10; ++i) {
      rt.spawn(sleep_long(&armed, &destroyed)).detach();
    }
    REQUIRE(eventually([&] { return armed.load() == 10; }));
  }
  REQUIRE(destroyed.load() == 10);
}

// ----------------------------------------------------------------------------- config ----

TEST_CASE(
    "a bad config is rejected with std::invalid_argument naming the field", "[runtime][config]") {
  REQUIRE_THAT(
      invalid_argument_message([] { bastion::runtime rt{workers(0)}; }),
      Catch::Contains("workers"));
  REQUIRE_THAT(
      invalid_argument_message(
          [] { bastion::runtime rt{bastion::runtime_config{}.cpu_set({9999})}; }),
      Catch::Contains("cpu_set"));
  REQUIRE_THAT(
      invalid_argument_message(
          [] { bastion::runtime rt{bastion::runtime_config{}.workers(1).blocking_threads(0)}; }),
      Catch::Contains("blocking_threads"));
  REQUIRE_THAT(
      invalid_argument_message([] {
        bastion::runtime rt{bastion::runtime_config{}.workers(1).blocking_keep_alive(-1ms)};
      }),
      Catch::Contains("blocking_keep_alive"));
  REQUIRE_THAT(
      invalid_argument_message(
          [] { bastion::runtime_config{}.workers(1).io_spin(-1us).validate(); }),
      Catch::Contains("io_spin"));
  REQUIRE_THAT(
      invalid_argument_message([] { bastion::runtime_config{}.workers(1).io_spin(2s).validate(); }),
      Catch::Contains("io_spin"));
  REQUIRE_THAT(
      invalid_argument_message([] { bastion::runtime_config{}.workers(0).validate(); }),
      Catch::Contains("workers"));
  REQUIRE_NOTHROW(bastion::runtime_config{}.workers(3).blocking_threads(1).validate());
}

TEST_CASE("runtime_config's setters and defaults", "[runtime][config]") {
  const bastion::runtime_config def;
  REQUIRE_FALSE(def.workers().has_value());
  REQUIRE(def.pin_workers());
  REQUIRE(def.cpu_set().empty());
  REQUIRE_FALSE(def.blocking_threads().has_value());
  REQUIRE(def.blocking_keep_alive() == 2000ms);
  REQUIRE(def.io_spin() == 50us);
  REQUIRE_FALSE(def.synthetic_topology().has_value());

  auto cfg = bastion::runtime_config{}
                 .workers(3)
                 .pin_workers(false)
                 .cpu_set({0, 1})
                 .blocking_threads(7)
                 .blocking_keep_alive(50ms)
                 .io_spin(0us)
                 .synthetic_topology("core:2 pu:1");
  REQUIRE(cfg.workers() == std::size_t{3});
  REQUIRE_FALSE(cfg.pin_workers());
  REQUIRE(cfg.cpu_set() == std::vector<unsigned>{0, 1});
  REQUIRE(cfg.blocking_threads() == std::size_t{7});
  REQUIRE(cfg.blocking_keep_alive() == 50ms);
  REQUIRE(cfg.io_spin() == 0us);
  REQUIRE(cfg.synthetic_topology() == std::string("core:2 pu:1"));
}

TEST_CASE("worker count and stats shape follow the config", "[runtime][stats]") {
  bastion::runtime rt{workers(3)};
  REQUIRE(rt.worker_count() == 3);
  REQUIRE(rt.placement().size() == 3);
  const auto st = rt.stats();
  REQUIRE(st.workers.size() == 3);
  for (std::size_t i = 0; i < st.workers.size(); ++i) {
    REQUIRE(st.workers[i].worker == i);
    REQUIRE(st.workers[i].pu_os == rt.placement()[i].pu_os);
    REQUIRE(rt.placement()[i].worker == i);
  }
}

// -------------------------------------------------------------------------- placement ----

TEST_CASE(
    "placement on a synthetic topology: 8 workers on 8 distinct cores", "[runtime][placement]") {
  bastion::runtime rt{
      bastion::runtime_config{}.synthetic_topology("pack:2 numa:1 core:4 pu:2").workers(8)};
  const auto& plan = rt.placement();
  REQUIRE(plan.size() == 8);
  std::set<unsigned> cores;
  std::set<unsigned> packages;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    REQUIRE(plan[i].worker == i);
    cores.insert(plan[i].core_logical);
    packages.insert(plan[i].package);
  }
  REQUIRE(cores.size() == 8);
  REQUIRE(packages.size() == 2);

  // It still runs tasks, and nothing was pinned (the topology is not this machine).
  REQUIRE(rt.run(spawn_and_sum(1000, &rt)) == 499'500);
  for (const auto& w : rt.stats().workers) {
    REQUIRE_FALSE(w.pinned);
  }
}
