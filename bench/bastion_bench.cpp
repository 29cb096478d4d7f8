// bench/bastion_bench.cpp: bastion's peer program for shared/bench/run-peers.sh.
//
//   bastion_bench <workload> <N>
//
// prints exactly one line
//
//   workload=<name> peer=bastion n=<N> ms=<ms> result=<checksum> [threads_peak=<k>]
//
// `ms` is the wall time (steady_clock) from just before the first spawn until the result is
// back on the main thread. The runtime is built and warmed up before the clock starts and torn
// down after it stops, so neither start-up nor teardown is measured.
//
// Every workload's master is itself a proc: main() spawns it with runtime::spawn and joins it
// (the master spawns from a worker, as the Tokio peer does with tokio::spawn).
//
// Adding a workload (the actor layer adds skynet, pingpong, ring, counting and fjcreate): write
// a `bastion::task<std::uint64_t> name(std::uint64_t n)` master and add a row to
// workload_table(); set `sample_threads` to report threads_peak. A workload that needs more
// than a master proc (an actor system to build before timing, say) can give its own `run`
// function instead and time itself with measure().
#include <bastion/bastion.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

/// What one measured run produced.
struct outcome {
  std::uint64_t result = 0;
  double ms = 0.0;
};

/// Times `master(n)` as a proc spawned on `rt` and joined from this (non-worker) thread.
template <class Master>
outcome measure(bastion::runtime& rt, Master master, std::uint64_t n) {
  const auto t0 = clock_type::now();
  auto h = rt.spawn(master(n));
  const std::uint64_t result = std::move(h).join();
  const auto t1 = clock_type::now();
  return {result, std::chrono::duration<double, std::milli>(t1 - t0).count()};
}

/// Keeps the optimiser from folding a value it could otherwise see through (Rust's
/// std::hint::black_box in the Tokio peer).
template <class T>
T opaque(T v) noexcept {
  asm volatile("" : "+r"(v));
  return v;
}

// ------------------------------------------------------------ spawn_tasks ----

bastion::task<void> increment(std::atomic<std::uint64_t>* counter) {
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

/// N trivial procs each increment an atomic; the master keeps every join handle and awaits
/// them all (as the Tokio peer keeps its N JoinHandles).
bastion::task<std::uint64_t> spawn_tasks(std::uint64_t n) {
  std::atomic<std::uint64_t> counter{0}; // outlives the procs: all are joined below
  std::vector<bastion::join_handle<void>> handles;
  handles.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    handles.push_back(bastion::spawn(increment(&counter)));
  }
  for (auto& h : handles) {
    co_await std::move(h);
  }
  co_return counter.load(std::memory_order_relaxed);
}

// ----------------------------------------------------------- blocking_mix ----

std::uint64_t cpu_work(std::uint64_t i) noexcept {
  std::uint64_t s = 0;
  for (std::uint64_t k = 0; k < 100; ++k) {
    s += (i * k) % 7;
  }
  return s;
}

bastion::task<void> cpu_proc(std::uint64_t i, std::atomic<std::uint64_t>* sum) {
  sum->fetch_add(cpu_work(opaque(i)), std::memory_order_relaxed);
  co_return;
}

/// N/50 blocking jobs (each sleeps 10 ms on a blocking thread, then counts 1) are submitted
/// first, then N CPU procs (proc i adds sum_{k<100} (i*k mod 7)); the master awaits all of
/// them. Result: the CPU sums + N/50 (25501911 for N = 100000).
bastion::task<std::uint64_t> blocking_mix(std::uint64_t n) {
  std::atomic<std::uint64_t> sum{0};
  const std::uint64_t nblock = n / 50;
  std::vector<bastion::blocking_handle<void>> blocking;
  blocking.reserve(nblock);
  for (std::uint64_t j = 0; j < nblock; ++j) {
    blocking.push_back(bastion::spawn_blocking([&sum] {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      sum.fetch_add(1, std::memory_order_relaxed);
    }));
  }
  std::vector<bastion::join_handle<void>> cpu;
  cpu.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    cpu.push_back(bastion::spawn(cpu_proc(i, &sum)));
  }
  for (auto& h : cpu) {
    co_await std::move(h);
  }
  for (auto& h : blocking) {
    co_await std::move(h);
  }
  co_return sum.load(std::memory_order_relaxed);
}

// ------------------------------------------------------------------ table ----

using run_fn = outcome (*)(bastion::runtime&, std::uint64_t);

struct workload {
  std::string_view name;
  run_fn run;
  bool sample_threads; ///< report threads_peak (the OS threads of the whole process)
};

template <auto Master>
outcome run_master(bastion::runtime& rt, std::uint64_t n) {
  return measure(rt, Master, n);
}

std::span<const workload> workload_table() {
  static const workload table[] = {
      // executor layer
      {"spawn_tasks", &run_master<&spawn_tasks>, false},
      {"blocking_mix", &run_master<&blocking_mix>, true},
      // actor layer: skynet, pingpong, ring, counting, fjcreate go here
  };
  return table;
}

// -------------------------------------------------------- thread sampler ----

/// The `Threads:` field of /proc/self/status (0 when unreadable).
std::uint64_t threads_now() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Threads:", 0) == 0) {
      return std::strtoull(line.c_str() + 8, nullptr, 10);
    }
  }
  return 0;
}

/// Samples the process's OS thread count every 1 ms on a thread of its own (which counts
/// itself, as the Tokio peer's sampler does) and keeps the peak.
class thread_sampler {
public:
  thread_sampler()
      : thread_([this] {
        while (!stop_.load(std::memory_order_relaxed)) {
          note(threads_now());
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }) {}
  thread_sampler(const thread_sampler&) = delete;
  thread_sampler& operator=(const thread_sampler&) = delete;
  ~thread_sampler() { stop(); }

  /// Takes a last sample, stops the thread and returns the peak.
  std::uint64_t stop() {
    if (thread_.joinable()) {
      note(threads_now());
      stop_.store(true, std::memory_order_relaxed);
      thread_.join();
    }
    return peak_.load(std::memory_order_relaxed);
  }

private:
  void note(std::uint64_t k) noexcept {
    auto cur = peak_.load(std::memory_order_relaxed);
    while (k > cur && !peak_.compare_exchange_weak(cur, k, std::memory_order_relaxed)) {
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> peak_{0};
  std::thread thread_;
};

bastion::task<int> warm_up_proc() {
  co_return 1;
}

bastion::task<int> warm_up() {
  // Touch every worker's wake-up path once so the first measured spawn finds running threads.
  std::vector<bastion::join_handle<int>> hs;
  for (int i = 0; i < 64; ++i) {
    hs.push_back(bastion::spawn(warm_up_proc()));
  }
  int s = 0;
  for (auto& h : hs) {
    s += co_await std::move(h);
  }
  co_return s;
}

/// With BASTION_BENCH_STATS=1: the runtime's counters after the run, on stderr (for
/// profiling; includes the warm-up).
void print_stats(const bastion::runtime_stats& st) {
  for (const auto& w : st.workers) {
    std::fprintf(
        stderr,
        "worker %zu pu=%u pinned=%d polls=%llu lifo=%llu steals=%llu stolen=%llu contended=%llu "
        "injector=%llu overflows=%llu parks=%llu\n",
        w.worker,
        w.pu_os,
        static_cast<int>(w.pinned),
        static_cast<unsigned long long>(w.polls),
        static_cast<unsigned long long>(w.lifo_hits),
        static_cast<unsigned long long>(w.steals),
        static_cast<unsigned long long>(w.stolen_tasks),
        static_cast<unsigned long long>(w.steal_contended),
        static_cast<unsigned long long>(w.injector_pulls),
        static_cast<unsigned long long>(w.overflows),
        static_cast<unsigned long long>(w.parks));
  }
  std::fprintf(
      stderr,
      "blocking: peak_threads=%zu completed=%llu; procs_spawned=%llu\n",
      st.blocking.peak_threads,
      static_cast<unsigned long long>(st.blocking.completed),
      static_cast<unsigned long long>(st.procs_spawned));
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s <workload> <N>\nworkloads:", argv0);
  for (const auto& w : workload_table()) {
    std::fprintf(stderr, " %.*s", static_cast<int>(w.name.size()), w.name.data());
  }
  std::fprintf(stderr, "\n");
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    return usage(argv[0]);
  }
  const std::string_view name = argv[1];
  const auto table = workload_table();
  const auto w =
      std::find_if(table.begin(), table.end(), [&](const workload& x) { return x.name == name; });
  if (w == table.end()) {
    std::fprintf(stderr, "unknown workload %s\n", argv[1]);
    return usage(argv[0]);
  }
  char* end = nullptr;
  const std::uint64_t n = std::strtoull(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0') {
    std::fprintf(stderr, "bad N: %s\n", argv[2]);
    return usage(argv[0]);
  }

  try {
    bastion::runtime_config cfg;
    if (const char* pin = std::getenv("BASTION_BENCH_PIN"); pin != nullptr && pin[0] == '0') {
      cfg.pin_workers(false); // for comparing: the peers' workers are not pinned
    }
    bastion::runtime rt{cfg};
    {
      auto h = rt.spawn(warm_up());
      (void)std::move(h).join();
    }
    std::uint64_t peak = 0;
    outcome out;
    if (w->sample_threads) {
      thread_sampler sampler;
      out = w->run(rt, n);
      peak = sampler.stop();
    } else {
      out = w->run(rt, n);
    }
    if (w->sample_threads) {
      std::printf(
          "workload=%s peer=bastion n=%llu ms=%.3f result=%llu threads_peak=%llu\n",
          argv[1],
          static_cast<unsigned long long>(n),
          out.ms,
          static_cast<unsigned long long>(out.result),
          static_cast<unsigned long long>(peak));
    } else {
      std::printf(
          "workload=%s peer=bastion n=%llu ms=%.3f result=%llu\n",
          argv[1],
          static_cast<unsigned long long>(n),
          out.ms,
          static_cast<unsigned long long>(out.result));
    }
    std::fflush(stdout);
    if (const char* st = std::getenv("BASTION_BENCH_STATS"); st != nullptr && st[0] == '1') {
      print_stats(rt.stats());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bastion_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
