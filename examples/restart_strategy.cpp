// examples/restart_strategy.cpp: a child that fails on every start, under a supervisor that
// restarts it at most 3 times with exponential backoff (50 ms, 100 ms, 200 ms), then gives up.
#include <bastion/bastion.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
} // namespace

int main() {
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> starts{0};
  std::atomic<int> restarts{0};
  std::atomic<bool> gave_up{false};

  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_one)
        .restart(bastion::restart_strategy{}
                     .policy(bastion::restart_policy::tries(3))
                     .backoff(bastion::backoff::exponential(50ms, 2.0, 1s)))
        .children([&](bastion::children_builder& c) {
          c.name("flaky")
              .exec([&](bastion::context& ctx) -> bastion::task<> {
                starts.fetch_add(1);
                std::printf(
                    "%7.1f ms  incarnation %llu starts and fails\n",
                    ms_since(t0),
                    static_cast<unsigned long long>(ctx.incarnation()));
                throw std::runtime_error(
                    "cannot reach the database (incarnation " + std::to_string(ctx.incarnation())
                    + ")");
                co_return;
              })
              .before_restart([&](const bastion::failure& f) {
                restarts.fetch_add(1);
                std::printf(
                    "%7.1f ms  restart #%d after: %s\n",
                    ms_since(t0),
                    restarts.load(),
                    f.what().c_str());
              })
              .after_stop([&] {
                std::printf(
                    "%7.1f ms  tries(3) used up: the supervisor gave up, the child stays stopped\n",
                    ms_since(t0));
                gave_up.store(true);
              });
        });
  });
  sys.start();
  while (!gave_up.load() && ms_since(t0) < 4000) {
    std::this_thread::sleep_for(5ms);
  }
  const double elapsed = ms_since(t0);
  sys.stop();
  sys.block_until_stopped();
  std::printf(
      "%d starts, %d restarts, gave up: %s, after %.0f ms (backoff total >= 350 ms)\n",
      starts.load(),
      restarts.load(),
      gave_up.load() ? "yes" : "no",
      elapsed);
  return starts.load() == 4 && restarts.load() == 3 && gave_up.load() && elapsed >= 350 ? 0 : 1;
}
