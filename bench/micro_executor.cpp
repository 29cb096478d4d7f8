// bench/micro_executor.cpp: Google Benchmark micro benchmarks of the executor layer.
//
// Each benchmark runs a batch of B operations inside one master proc (spawned on a shared
// runtime and joined from the benchmark thread), so the cost of getting in and out of the
// runtime is amortised over the batch; times are wall clock (UseRealTime) per operation.
//
//   spawn_join        spawn one trivial proc and await it, one after the other
//   spawn_batch       spawn B trivial procs, then await them all (spawn_tasks in small)
//   yield_now         co_await yield_now() in a loop
//   lifo_pingpong     two procs wake each other through a one-slot event (LIFO-slot wakes)
//   steal             a proc queues 128 procs and spins; only another worker's steals run them
//   timer_fire        sleep_for(10us) in a loop: arm a timer, park, fire, resume
//   timer_cancel      K procs sleep on a 1 h timer, then are cancelled (timer insert + remove)
//   spawn_blocking    co_await spawn_blocking(trivial) in a loop (blocking pool round trip)
//
// Run: build/release/bench/micro_executor [--benchmark_filter=...]
// The machine this was written on has 2 cores: every benchmark is kept short (MinTime 0.2 s).
#include <bastion/bastion.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

constexpr double min_time_s = 0.2;

bastion::runtime& rt() {
  static bastion::runtime instance{bastion::runtime_config{}};
  return instance;
}

/// Runs `t` as a proc on the shared runtime and waits for it on this thread.
template <class T>
T run_on_runtime(bastion::task<T> t) {
  auto h = rt().spawn(std::move(t));
  return std::move(h).join();
}

bastion::task<void> nop() {
  co_return;
}

bastion::task<void> bump(std::atomic<std::uint64_t>* c) {
  c->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

// -------------------------------------------------------------- spawn+join ----

bastion::task<void> spawn_join_loop(std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    co_await bastion::spawn(nop());
  }
}

void BM_spawn_join(benchmark::State& state) {
  const std::int64_t batch = 1000;
  while (state.KeepRunningBatch(batch)) {
    run_on_runtime(spawn_join_loop(batch));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_spawn_join)->UseRealTime()->MinTime(min_time_s);

bastion::task<std::uint64_t> spawn_batch(std::int64_t n) {
  std::atomic<std::uint64_t> c{0};
  std::vector<bastion::join_handle<void>> hs;
  hs.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    hs.push_back(bastion::spawn(bump(&c)));
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
  co_return c.load(std::memory_order_relaxed);
}

void BM_spawn_batch(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  while (state.KeepRunningBatch(batch)) {
    benchmark::DoNotOptimize(run_on_runtime(spawn_batch(batch)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_spawn_batch)->Arg(256)->Arg(10000)->UseRealTime()->MinTime(min_time_s);

// --------------------------------------------------------------- yield_now ----

bastion::task<void> yield_loop(std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    co_await bastion::yield_now();
  }
}

void BM_yield_now(benchmark::State& state) {
  const std::int64_t batch = 1000;
  while (state.KeepRunningBatch(batch)) {
    run_on_runtime(yield_loop(batch));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_yield_now)->UseRealTime()->MinTime(min_time_s);

// ----------------------------------------------------- wake via LIFO slot ----

/// A one-waiter, auto-reset event for procs, built on the executor's waker (the actor layer's
/// mailboxes wake procs the same way). set() wakes the waiter; when set() runs on a worker,
/// the woken proc lands in that worker's LIFO slot.
class event {
public:
  void set() noexcept {
    if (state_.exchange(is_set, std::memory_order_acq_rel) == has_waiter) {
      waiter_.wake();
    }
  }
  auto wait() noexcept { return awaiter{*this}; }

private:
  static constexpr int empty = 0;
  static constexpr int is_set = 1;
  static constexpr int has_waiter = 2;

  struct awaiter {
    event& e;
    [[nodiscard]] bool await_ready() const noexcept {
      int s = is_set;
      return e.state_.compare_exchange_strong(s, empty, std::memory_order_acquire);
    }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      auto* cur = bastion::detail::current_proc();
      cur->set_resume_point(h);
      e.waiter_ = cur->make_waker();
      int s = empty;
      if (e.state_.compare_exchange_strong(s, has_waiter, std::memory_order_acq_rel)) {
        return true;
      }
      e.waiter_.reset(); // set meanwhile: resume at once
      return false;
    }
    void await_resume() const noexcept { e.state_.store(empty, std::memory_order_relaxed); }
  };

  std::atomic<int> state_{empty};
  bastion::detail::waker waiter_;
};

bastion::task<void> pong(event* mine, event* other, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    co_await mine->wait();
    other->set();
  }
}

bastion::task<void> ping(event* mine, event* other, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    other->set();
    co_await mine->wait();
  }
}

bastion::task<void> pingpong(std::int64_t n) {
  event a;
  event b;
  auto hb = bastion::spawn(pong(&b, &a, n));
  co_await ping(&a, &b, n);
  co_await std::move(hb);
}

void BM_lifo_pingpong(benchmark::State& state) {
  const std::int64_t batch = 1000;
  std::uint64_t lifo0 = 0;
  for (const auto& w : rt().stats().workers) {
    lifo0 += w.lifo_hits;
  }
  while (state.KeepRunningBatch(batch)) {
    run_on_runtime(pingpong(batch));
  }
  std::uint64_t lifo1 = 0;
  for (const auto& w : rt().stats().workers) {
    lifo1 += w.lifo_hits;
  }
  state.SetItemsProcessed(state.iterations()); // one item = one round trip (two wakes)
  state.counters["lifo_hits_per_rt"] = benchmark::Counter(
      static_cast<double>(lifo1 - lifo0) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_lifo_pingpong)->UseRealTime()->MinTime(min_time_s);

// ------------------------------------------------------------------- steal ----

/// Queues k procs on this worker, then spins without yielding: the procs can only run on
/// a worker that steals them. Falls back to joining (running them here) after ~1 s, so a
/// one-worker runtime still ends.
bastion::task<std::uint64_t> steal_round(std::int64_t k) {
  std::atomic<std::uint64_t> c{0};
  std::vector<bastion::join_handle<void>> hs;
  hs.reserve(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < k; ++i) {
    hs.push_back(bastion::spawn(bump(&c)));
  }
  const auto give_up = std::chrono::steady_clock::now() + 1s;
  while (c.load(std::memory_order_acquire) < static_cast<std::uint64_t>(k)
         && std::chrono::steady_clock::now() < give_up) {
    for (int spin = 0; spin < 64; ++spin) {
      benchmark::DoNotOptimize(spin);
    }
  }
  for (auto& h : hs) {
    co_await std::move(h);
  }
  co_return c.load(std::memory_order_relaxed);
}

void BM_steal(benchmark::State& state) {
  if (rt().worker_count() < 2) {
    state.SkipWithError("needs at least 2 workers");
    return;
  }
  const std::int64_t k = 128;
  std::uint64_t stolen0 = 0;
  std::uint64_t steals0 = 0;
  for (const auto& w : rt().stats().workers) {
    stolen0 += w.stolen_tasks;
    steals0 += w.steals;
  }
  while (state.KeepRunningBatch(k)) {
    benchmark::DoNotOptimize(run_on_runtime(steal_round(k)));
  }
  std::uint64_t stolen1 = 0;
  std::uint64_t steals1 = 0;
  for (const auto& w : rt().stats().workers) {
    stolen1 += w.stolen_tasks;
    steals1 += w.steals;
  }
  state.SetItemsProcessed(state.iterations());
  const auto rounds = static_cast<double>(state.iterations()) / static_cast<double>(k);
  state.counters["stolen_frac"] = benchmark::Counter(
      static_cast<double>(stolen1 - stolen0) / static_cast<double>(state.iterations()));
  state.counters["steals_per_round"] =
      benchmark::Counter(static_cast<double>(steals1 - steals0) / rounds);
}
BENCHMARK(BM_steal)->UseRealTime()->MinTime(min_time_s);

// ------------------------------------------------------------------ timers ----

bastion::task<void> sleep_loop(std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    co_await bastion::sleep_for(10us);
  }
}

void BM_timer_fire(benchmark::State& state) {
  const std::int64_t batch = 100;
  while (state.KeepRunningBatch(batch)) {
    run_on_runtime(sleep_loop(batch));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("sleep_for(10us): time per sleep, arm to resume");
}
BENCHMARK(BM_timer_fire)->UseRealTime()->MinTime(min_time_s);

bastion::task<void> sleeper() {
  co_await bastion::sleep_for(1h);
}

/// Spawns k sleepers (each arms a 1 h timer), waits until every timer is armed, cancels them
/// all (each sleep's destructor removes its timer) and joins them.
bastion::task<void> timer_cancel_round(std::int64_t k) {
  std::vector<bastion::join_handle<void>> hs;
  hs.reserve(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < k; ++i) {
    hs.push_back(bastion::spawn(sleeper()));
  }
  for (auto& h : hs) {
    while (h.state() != bastion::proc_state::suspended) {
      co_await bastion::yield_now();
    }
  }
  for (auto& h : hs) {
    h.cancel();
  }
  for (auto& h : hs) {
    co_await std::move(h).recover();
  }
}

void BM_timer_cancel(benchmark::State& state) {
  const std::int64_t k = state.range(0);
  while (state.KeepRunningBatch(k)) {
    run_on_runtime(timer_cancel_round(k));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("spawn + arm + cancel + remove + join, per sleeper");
}
BENCHMARK(BM_timer_cancel)->Arg(1000)->UseRealTime()->MinTime(min_time_s);

// ---------------------------------------------------------- spawn_blocking ----

bastion::task<std::uint64_t> blocking_loop(std::int64_t n) {
  std::uint64_t s = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    s += co_await bastion::spawn_blocking([] { return std::uint64_t{1}; });
  }
  co_return s;
}

void BM_spawn_blocking(benchmark::State& state) {
  const std::int64_t batch = 100;
  while (state.KeepRunningBatch(batch)) {
    benchmark::DoNotOptimize(run_on_runtime(blocking_loop(batch)));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("submit, run on a blocking thread, wake, resume");
}
BENCHMARK(BM_spawn_blocking)->UseRealTime()->MinTime(min_time_s);

} // namespace

BENCHMARK_MAIN();
