// examples/scaling_groups.cpp: a group that scales with its load (bastion::resizer): one worker
// at rest, up to six under a flood, back to one when idle. The supervisor evaluates the average
// mailbox size on every heartbeat tick.
#include <bastion/bastion.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

using namespace std::chrono_literals;

int main() {
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};
  const auto jobs = bastion::distributor::named("jobs");
  std::atomic<int> done{0};

  auto workers = sys.children([&](bastion::children_builder& c) {
    c.name("workers")
        .distributor(jobs)
        .resizer(bastion::resizer{}
                     .lower(1)
                     .upper(6)
                     .upscale_when(bastion::avg_mailbox > 4.0)
                     .upscale_rate(1.0) // double per tick while overloaded
                     .downscale_when(bastion::avg_mailbox < 1.0)
                     .downscale_rate(0.5)) // halve per tick while idle
        .heartbeat(10ms)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          for (;;) {
            auto job = co_await ctx.recv();
            (void)job;
            co_await bastion::sleep_for(1ms); // one job takes 1 ms
            done.fetch_add(1);
          }
        });
  });
  sys.start();
  while (jobs.size() < 1) { // members join "jobs" when they start
    std::this_thread::sleep_for(1ms);
  }

  auto report = [&](const char* when) {
    std::printf("%-10s %zu workers, %d jobs done\n", when, workers.elems().size(), done.load());
  };
  report("at rest:");

  int sent = 0;
  std::size_t peak = 0;
  for (int round = 0; round < 100; ++round) { // 30 jobs every 3 ms for ~0.3 s
    for (int i = 0; i < 30; ++i) {
      jobs.tell_one(i);
      ++sent;
    }
    peak = std::max(peak, workers.elems().size());
    std::this_thread::sleep_for(3ms);
  }
  report("flooded:");
  while (done.load() < sent) {
    peak = std::max(peak, workers.elems().size());
    std::this_thread::sleep_for(5ms);
  }
  report("drained:");
  std::printf("peak: %zu workers (upper bound 6)\n", peak);
  for (int i = 0; i < 200 && workers.elems().size() > 1; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  report("idle:");
  const auto at_rest = workers.elems().size();

  sys.stop();
  sys.block_until_stopped();
  return (peak <= 6 && at_rest >= 1) ? 0 : 1;
}
