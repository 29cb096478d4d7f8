// examples/ping_pong.cpp: two actors bounce a counter N times. ping starts when main asks it
// for N rounds, sends k to pong, pong answers k + 1, and ping replies the final count to main.
#include <bastion/bastion.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <utility>

using namespace std::chrono_literals;

int main() {
  constexpr int rounds = 100'000;
  bastion::system sys{bastion::config{}.workers(2)};

  // Refs exist as soon as a group is built, so each body can capture the other's ref (filled
  // in below, before start()).
  bastion::child_ref ping_ref;
  bastion::child_ref pong_ref;

  auto pong = sys.children([&ping_ref](bastion::children_builder& c) {
    c.name("pong").exec([&ping_ref](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        auto msg = co_await ctx.recv();
        bastion::match(
            std::move(msg),
            [&](int k) { ctx.tell(ping_ref, k + 1); },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  auto ping = sys.children([&pong_ref](bastion::children_builder& c) {
    c.name("ping").exec([&pong_ref](bastion::context& ctx) -> bastion::task<> {
      // The first message is main's question: how many rounds?
      std::optional<bastion::question<int>> start;
      while (!start) {
        bastion::match(
            co_await ctx.recv(),
            [&](bastion::question<int> q) { start.emplace(std::move(q)); },
            bastion::otherwise([](bastion::message&&) {}));
      }
      const int n = start->value();
      ctx.tell(pong_ref, 0);
      for (;;) {
        const int k = bastion::match(
            co_await ctx.recv(),
            [](int v) { return v; },
            bastion::otherwise([](bastion::message&&) { return -1; }));
        if (k < 0) {
          continue;
        }
        if (k % (n / 4) == 0) {
          std::printf("ping: %d round trips so far\n", k);
        }
        if (k == n) {
          start->reply(k);
          co_return; // finished: a body that returns is not restarted
        }
        ctx.tell(pong_ref, k);
      }
    });
  });
  ping_ref = ping.elems().at(0);
  pong_ref = pong.elems().at(0);

  sys.start();
  const auto t0 = std::chrono::steady_clock::now();
  const int done = sys.runtime().run(ping_ref.ask<int>(rounds, 5s));
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  std::printf(
      "%d round trips in %.1f ms (%.0f ns each)\n",
      done,
      us.count() / 1000.0,
      us.count() * 1000.0 / rounds);
  sys.stop();
  sys.block_until_stopped();
  return done == rounds ? 0 : 1;
}
