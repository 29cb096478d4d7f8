// Tests of bastion/actor/resizer.hpp and the heartbeat: a flooded group grows but never past
// upper, shrinks back when idle but never below lower; validation of the policy.
// Catch2 is not thread-safe: actor bodies only record; the test thread asserts.
// bastion-test-timeout: 90
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>
#include <bastion/executor/sleep.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// Takes 1 ms of (timer) time per message.
auto slow_worker(std::atomic<int>& handled) {
  return [&handled](bastion::context& ctx) -> bastion::task<> {
    for (;;) {
      auto msg = co_await ctx.recv();
      (void)msg;
      co_await bastion::sleep_for(1ms);
      handled.fetch_add(1);
    }
  };
}

} // namespace

TEST_CASE("resizer validates its bounds and rates") {
  CHECK_THROWS_AS(bastion::resizer{}.lower(0), std::invalid_argument);
  CHECK_THROWS_AS(bastion::resizer{}.lower(3).upper(2), std::invalid_argument);
  CHECK(bastion::resizer{}.lower(10).upper() == 10);
  CHECK_THROWS_AS(bastion::resizer{}.upscale_rate(0), std::invalid_argument);
  CHECK_THROWS_AS(bastion::resizer{}.downscale_rate(-1), std::invalid_argument);
  const auto r = bastion::resizer{}.lower(2).upper(5).upscale_when(bastion::avg_mailbox > 3.0);
  CHECK(r.upscale_threshold() == 3.0);
  CHECK(r.clamp(1) == 2);
  CHECK(r.clamp(9) == 5);
  bastion::children_builder b;
  b.redundancy(9).resizer(r);
  CHECK(b.spec().redundancy == 5);
  CHECK_THROWS_AS(b.heartbeat(0ms), std::invalid_argument);
}

TEST_CASE("a flooded group grows up to upper, never past it, and shrinks back to lower") {
  std::atomic<int> handled{0};
  std::atomic<int> stopped{0};
  const auto d = bastion::distributor::named("resizer-flood");
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) {
    c.distributor(d)
        .resizer(bastion::resizer{}
                     .lower(2)
                     .upper(5)
                     .upscale_when(bastion::avg_mailbox > 2.0)
                     .upscale_rate(1.0)
                     .downscale_when(bastion::avg_mailbox < 1.0)
                     .downscale_rate(0.5))
        .heartbeat(5ms)
        .exec(slow_worker(handled))
        .after_stop([&] { stopped.fetch_add(1); });
  });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 2; }));

  std::size_t max_seen = 0;
  std::size_t min_seen = 100;
  auto sample = [&] {
    const auto n = g.elems().size();
    max_seen = std::max(max_seen, n);
    min_seen = std::min(min_seen, n);
    return n;
  };
  // Flood: 40 messages every 2 ms for about 0.4 s (far more than 2 members handle).
  int sent = 0;
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 40; ++i) {
      d.tell_one(i);
      ++sent;
    }
    sample();
    std::this_thread::sleep_for(2ms);
  }
  CHECK(max_seen > 2);
  CHECK(max_seen <= 5);

  // Drain, then idle: back down to lower, never below it.
  REQUIRE(wait_until([&] {
    sample();
    return handled.load() == sent;
  }));
  REQUIRE(wait_until([&] { return sample() == 2; }));
  for (int i = 0; i < 50; ++i) { // stays at lower while idle
    sample();
    std::this_thread::sleep_for(2ms);
  }
  CHECK(min_seen >= 2);
  CHECK(max_seen <= 5);
  CHECK(g.elems().size() == 2);
  CHECK(d.size() == 2);
  CHECK(stopped.load() == static_cast<int>(max_seen) - 2);
  CHECK(sys.dead_letters().count() == 0);
}

TEST_CASE("the resizer refills a group whose members finished, up to lower") {
  std::atomic<int> starts{0};
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) {
    c.resizer(bastion::resizer{}.lower(3).upper(4))
        .heartbeat(5ms)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          starts.fetch_add(1);
          auto m = co_await ctx.recv(); // one message, then finish (not restarted)
          (void)m;
        });
  });
  sys.start();
  REQUIRE(wait_until([&] { return starts.load() == 3; }));
  for (auto& c : g.elems()) {
    c.tell(1);
  }
  REQUIRE(wait_until([&] { return starts.load() >= 6; }));
  REQUIRE(wait_until([&] { return g.elems().size() == 3; }));
}
