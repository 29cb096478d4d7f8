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
// Actor workloads (skynet, pingpong, ring, counting, fjcreate, idle_actors) run on a
// bastion::system built before the clock starts; each actor is a child of a children group.
//
// Adding a workload: write
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
#include <memory>
#include <optional>
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

// ------------------------------------------------------------ actor layer ----
//
// Every actor below is a real child of the actor layer: a member of a children group under the
// system's root supervisor, with its own mailbox, receiving through context::recv and
// dispatching with bastion::match. Masters are procs (not actors): they reach actors by tell
// and ask, and the final result comes back as the reply to an ask.

using bastion::child_ref;
using bastion::children_builder;
using bastion::context;
using bastion::message;
using bastion::otherwise;
using bastion::question;

/// The system the actor workloads run on (set by main before the run).
bastion::system* g_sys = nullptr;

/// Adds a children group of `n` members running `body` under the root supervisor.
template <class Body>
bastion::children_ref group(std::string name, std::size_t n, Body body) {
  return g_sys->children(
      [&](children_builder& c) { c.name(std::move(name)).redundancy(n).exec(std::move(body)); });
}

// skynet: a node gets (num, size, parent); a leaf tells num to its parent; an inner node starts
// a group of 10 children (redundancy 10: one control event), sums their 10 replies and tells
// the sum up. The root node is asked.
struct sk_args {
  std::uint64_t num;
  std::uint64_t size;
  child_ref parent;
};
struct sk_root {
  std::uint64_t size;
};

bastion::task<> skynet_node(context& ctx);

/// A group of 10 skynet nodes (unnamed: nobody looks them up) under the root supervisor: one
/// control event starts all 10.
bastion::children_ref skynet_group() {
  return g_sys->children([](children_builder& c) { c.redundancy(10).exec(&skynet_node); });
}

bastion::task<> skynet_node(context& ctx) {
  std::uint64_t num = 0;
  std::uint64_t size = 1;
  child_ref parent;
  std::optional<question<sk_root>> root;
  bastion::match(
      co_await ctx.recv(),
      [&](sk_args&& a) {
        num = a.num;
        size = a.size;
        parent = std::move(a.parent);
      },
      [&](question<sk_root> q) {
        size = q.value().size;
        root.emplace(std::move(q));
      },
      otherwise([](message&&) {}));
  std::uint64_t result = num;
  if (size > 1) {
    const std::uint64_t sub = size / 10;
    const auto kids = skynet_group().elems();
    const auto self = ctx.signature();
    for (std::uint64_t i = 0; i < 10; ++i) {
      kids[i].tell(sk_args{num + i * sub, sub, self}, ctx.id());
    }
    result = 0;
    for (int got = 0; got < 10;) {
      bastion::match(
          co_await ctx.recv(),
          [&](std::uint64_t v) {
            result += v;
            ++got;
          },
          otherwise([](message&&) {}));
    }
  }
  if (root) {
    root->reply(result);
  } else {
    ctx.tell(parent, result);
  }
}

bastion::task<std::uint64_t> skynet(std::uint64_t n) {
  const auto root = group("skynet", 1, &skynet_node).elems().at(0);
  co_return co_await root.ask<std::uint64_t>(sk_root{n});
}

// pingpong: ping (asked for N) tells i to pong, pong tells it back, ping sums; N round trips.
struct pp_refs {
  child_ref ping;
  child_ref pong;
};

bastion::task<std::uint64_t> pingpong(std::uint64_t n) {
  auto refs = std::make_shared<pp_refs>();
  refs->pong = group(
                   "pong",
                   1,
                   [refs](context& ctx) -> bastion::task<> {
                     for (;;) {
                       bastion::match(
                           co_await ctx.recv(),
                           [&](std::uint64_t v) { ctx.tell(refs->ping, v); },
                           otherwise([](message&&) {}));
                     }
                   })
                   .elems()
                   .at(0);
  refs->ping = group(
                   "ping",
                   1,
                   [refs](context& ctx) -> bastion::task<> {
                     std::optional<question<std::uint64_t>> start;
                     while (!start) {
                       bastion::match(
                           co_await ctx.recv(),
                           [&](question<std::uint64_t> q) { start.emplace(std::move(q)); },
                           otherwise([](message&&) {}));
                     }
                     const std::uint64_t rounds = start->value();
                     std::uint64_t sum = 0;
                     for (std::uint64_t i = 0; i < rounds; ++i) {
                       ctx.tell(refs->pong, i);
                       sum += bastion::match(
                           co_await ctx.recv(),
                           [](std::uint64_t v) { return v; },
                           otherwise([](message&&) { return std::uint64_t{0}; }));
                     }
                     start->reply(sum);
                   })
                   .elems()
                   .at(0);
  co_return co_await refs->ping.ask<std::uint64_t>(n);
}

// counting: the master tells 1..N to a counter, then asks it for the total.
struct count_get {};

bastion::task<std::uint64_t> counting(std::uint64_t n) {
  const auto counter = group(
                           "counter",
                           1,
                           [](context& ctx) -> bastion::task<> {
                             std::uint64_t sum = 0;
                             for (bool done = false; !done;) {
                               bastion::match(
                                   co_await ctx.recv(),
                                   [&](std::uint64_t v) { sum += v; },
                                   [&](question<count_get> q) {
                                     q.reply(sum);
                                     done = true;
                                   },
                                   otherwise([](message&&) {}));
                             }
                           })
                           .elems()
                           .at(0);
  for (std::uint64_t i = 1; i <= n; ++i) {
    counter.tell(i);
  }
  co_return co_await counter.ask<std::uint64_t>(count_get{});
}

// ring: 503 actors (one group); each learns its index and successor from an init message; the
// one receiving 0 tells its index to a collector actor, which answers the master's ask.
constexpr std::size_t ring_size = 503;
struct ring_init {
  std::uint64_t index;
  child_ref next;
  child_ref collector;
};
struct ring_wait {};

bastion::task<std::uint64_t> ring(std::uint64_t n) {
  const auto collector = group(
                             "ring-collector",
                             1,
                             [](context& ctx) -> bastion::task<> {
                               std::optional<question<ring_wait>> waiting;
                               std::optional<std::uint64_t> index;
                               while (!waiting || !index) {
                                 bastion::match(
                                     co_await ctx.recv(),
                                     [&](question<ring_wait> q) { waiting.emplace(std::move(q)); },
                                     [&](std::uint64_t i) { index = i; },
                                     otherwise([](message&&) {}));
                               }
                               waiting->reply(*index);
                             })
                             .elems()
                             .at(0);
  const auto members = group("ring", ring_size, [](context& ctx) -> bastion::task<> {
                         ring_init me;
                         bastion::match(
                             co_await ctx.recv(),
                             [&](ring_init&& i) { me = std::move(i); },
                             otherwise([](message&&) {}));
                         for (;;) {
                           const std::uint64_t k = bastion::match(
                               co_await ctx.recv(),
                               [](std::uint64_t v) { return v; },
                               otherwise([](message&&) { return std::uint64_t{1}; }));
                           if (k == 0) {
                             ctx.tell(me.collector, me.index);
                             co_return;
                           }
                           ctx.tell(me.next, k - 1);
                         }
                       }).elems();
  for (std::size_t i = 0; i < members.size(); ++i) {
    members[i].tell(ring_init{i, members[(i + 1) % members.size()], collector});
  }
  auto done = collector.ask<std::uint64_t>(ring_wait{});
  members[0].tell(n);
  co_return co_await std::move(done);
}

// fjcreate: the master creates N actors, asks each its index; each replies and finishes.
// Timed until the master holds every reply. The N actors are one children group of
// redundancy N (one call, one control message to the supervisor: the natural way to start
// many identical actors); `fjcreate_groups` creates them one by one instead, as N groups of
// one, each through the supervisor's control queue.
bastion::task<> fj_body(context& ctx) {
  bastion::match(
      co_await ctx.recv(),
      [](question<std::uint64_t> q) { q.reply(q.value()); },
      otherwise([](message&&) {}));
}

bastion::task<std::uint64_t> fjcreate(std::uint64_t n) {
  const auto members = group("fj", n, &fj_body).elems();
  std::vector<bastion::reply_future<std::uint64_t>> replies;
  replies.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    replies.push_back(members[i].ask<std::uint64_t>(i));
  }
  std::uint64_t sum = 0;
  for (auto& r : replies) {
    sum += co_await std::move(r);
  }
  co_return sum;
}

bastion::task<std::uint64_t> fjcreate_groups(std::uint64_t n) {
  std::vector<bastion::reply_future<std::uint64_t>> replies;
  replies.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    replies.push_back(group("fj", 1, &fj_body).elems().at(0).ask<std::uint64_t>(i));
  }
  std::uint64_t sum = 0;
  for (auto& r : replies) {
    sum += co_await std::move(r);
  }
  co_return sum;
}

// idle_actors: N idle actors; each is asked once (so its body has run and now waits in recv),
// then VmRSS is compared with the one before the actors existed.
std::uint64_t vm_rss_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10);
    }
  }
  return 0;
}

bastion::task<> idle_body(context& ctx) {
  for (;;) {
    bastion::match(
        co_await ctx.recv(), [](question<int> q) { q.reply(q.value()); }, otherwise([](message&&) {
        }));
  }
}

std::uint64_t g_idle_bytes = 0;

/// `per_group`: one group of N members (false) or N groups of one (true).
template <bool PerGroup>
bastion::task<std::uint64_t> idle_actors(std::uint64_t n) {
  const std::uint64_t before = vm_rss_kb();
  std::vector<child_ref> actors;
  actors.reserve(n);
  if constexpr (PerGroup) {
    for (std::uint64_t i = 0; i < n; ++i) {
      actors.push_back(group("idle", 1, &idle_body).elems().at(0));
    }
  } else {
    actors = group("idle", n, &idle_body).elems();
  }
  std::uint64_t answered = 0;
  constexpr std::size_t batch = 10'000; // bounded number of outstanding asks
  for (std::size_t from = 0; from < actors.size(); from += batch) {
    std::vector<bastion::reply_future<int>> rs;
    for (std::size_t i = from; i < std::min(actors.size(), from + batch); ++i) {
      rs.push_back(actors[i].ask<int>(1));
    }
    for (auto& r : rs) {
      answered += static_cast<std::uint64_t>(co_await std::move(r));
    }
  }
  const std::uint64_t after = vm_rss_kb();
  // the refs vector is the master's, not the actors': subtract it
  const std::uint64_t refs_bytes = actors.capacity() * sizeof(child_ref);
  g_idle_bytes = ((after - before) * 1024 - std::min((after - before) * 1024, refs_bytes)) / n;
  co_return answered;
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
      // actor layer
      {"skynet", &run_master<&skynet>, false},
      {"pingpong", &run_master<&pingpong>, false},
      {"ring", &run_master<&ring>, false},
      {"counting", &run_master<&counting>, false},
      {"fjcreate", &run_master<&fjcreate>, false},
      {"fjcreate_groups", &run_master<&fjcreate_groups>, false},
      {"idle_actors", &run_master<&idle_actors<false>>, false},
      {"idle_actors_groups", &run_master<&idle_actors<true>>, false},
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
        "injector=%llu overflows=%llu parks=%llu spin_yields=%llu contended_spins=%llu\n",
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
        static_cast<unsigned long long>(w.parks),
        static_cast<unsigned long long>(w.spin_yields),
        static_cast<unsigned long long>(w.contended_spins));
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
    if (const char* w = std::getenv("BASTION_BENCH_WORKERS"); w != nullptr && w[0] != '\0') {
      cfg.workers(std::strtoull(w, nullptr, 10)); // for scaling runs: default one per CPU
    }
    // An actor system (root supervisor, dead letters, group names) over the runtime; the
    // executor workloads use its runtime directly.
    bastion::system sys{bastion::config{}.runtime(cfg).log_level("off")};
    sys.start();
    g_sys = &sys;
    bastion::runtime& rt = sys.runtime();
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
    if (name.rfind("idle_actors", 0) == 0) {
      std::printf(
          "workload=%s peer=bastion n=%llu ms=%.3f result=%llu bytes_per_actor=%llu\n",
          argv[1],
          static_cast<unsigned long long>(n),
          out.ms,
          static_cast<unsigned long long>(out.result),
          static_cast<unsigned long long>(g_idle_bytes));
    } else if (w->sample_threads) {
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
    sys.kill(); // teardown is not measured; no callbacks needed
    sys.block_until_stopped();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bastion_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
