// examples/executor_tour.cpp: a tour of bastion's executor layer: spawn procs,
// await their join handles, sleep on a timer, offload a blocking call, run() from main.
#include <bastion/bastion.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// A small computation written as a coroutine.
bastion::task<long> sum_range(long from, long to) {
  long s = 0;
  for (long i = from; i < to; ++i) {
    s += i;
  }
  co_return s;
}

/// Fans out to four procs, sleeps, reads a file on the blocking pool, then joins.
bastion::task<long> tour() {
  std::vector<bastion::join_handle<long>> parts;
  for (long k = 0; k < 4; ++k) {
    parts.push_back(bastion::spawn(sum_range(k * 250'000, (k + 1) * 250'000)));
  }
  co_await bastion::sleep_for(10ms); // a timer, not a blocked thread

  // Blocking work never runs on a worker: it goes to the adaptive blocking pool.
  auto lines = co_await bastion::spawn_blocking([] {
    std::this_thread::sleep_for(5ms); // stands in for a slow syscall
    std::ifstream in("/proc/self/status");
    long n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
    }
    return n;
  });
  std::printf("read %ld lines of /proc/self/status on a blocking thread\n", lines);

  long total = 0;
  for (auto& h : parts) {
    total += co_await std::move(h);
  }
  co_return total;
}

bastion::task<int> fails() {
  throw std::runtime_error("boom");
  co_return 0;
}

} // namespace

int main() {
  // The default runtime has one pinned worker per logical CPU; run() drives a task on
  // this thread until it ends.
  const long total = bastion::run(tour());
  std::printf("sum of 0..999999 = %ld (expected %ld)\n", total, 999'999L * 1'000'000L / 2);

  // An exception never kills a worker: the join handle reports it.
  auto h = bastion::spawn(fails());
  try {
    std::move(h).join();
  } catch (const std::exception& e) {
    std::printf("the proc failed and its handle says: %s\n", e.what());
  }
  const auto stats = bastion::runtime::global().stats();
  std::printf(
      "%zu workers, %llu procs spawned\n",
      stats.workers.size(),
      static_cast<unsigned long long>(stats.procs_spawned));
  return total == 999'999L * 1'000'000L / 2 ? 0 : 1;
}
