// Tests of bastion/actor/system.hpp: lifecycle (start, graceful stop, kill, RAII), buffering
// before start, the name registry, 10,000 actors, the default system.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 180
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

bastion::task<> idle(bastion::context& ctx) {
  for (;;) {
    (void)co_await ctx.recv();
  }
}

} // namespace

TEST_CASE("graceful stop reaches every member of a nested tree", "[system]") {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  bastion::system sys{test_config()};
  auto counted = [&](bastion::children_builder& c, std::size_t n) {
    c.redundancy(n)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          started++;
          co_await idle(ctx);
        })
        .after_stop([&] { stopped++; });
  };
  sys.children([&](bastion::children_builder& c) { counted(c, 3); });
  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::rest_for_one);
    s.children([&](bastion::children_builder& c) { counted(c, 2); });
    s.supervisor([&](bastion::supervisor_builder& inner) {
      inner.children([&](bastion::children_builder& c) { counted(c, 4); });
    });
  });
  REQUIRE_FALSE(sys.is_running());
  sys.start();
  REQUIRE(sys.is_running());
  REQUIRE(wait_until([&] { return started.load() == 9; }));
  sys.stop();
  sys.block_until_stopped();
  REQUIRE(stopped.load() == 9); // every after_stop ran before waiters were released
  REQUIRE(sys.is_stopped());
  REQUIRE_THROWS_AS(sys.start(), std::logic_error);
}

TEST_CASE("kill cancels everything without callbacks", "[system]") {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<int> unwound{0};
  struct guard {
    std::atomic<int>* n;
    ~guard() { (*n)++; }
  };
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(5)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          guard gd{&unwound};
          started++;
          co_await idle(ctx);
        })
        .after_stop([&] { stopped++; });
  });
  sys.start();
  REQUIRE(wait_until([&] { return started.load() == 5; }));
  auto member = g.elems()[0];
  sys.kill();
  REQUIRE(sys.block_until_stopped_for(20s));
  REQUIRE(unwound.load() == 5); // the bodies were cancelled (their locals unwound)
  REQUIRE(stopped.load() == 0);
  REQUIRE(member.is_stopped());
  REQUIRE_FALSE(member.tell(1));
}

TEST_CASE("stop before start: nothing runs, mailboxes are closed", "[system]") {
  std::atomic<int> ran{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec([&](bastion::context& ctx) -> bastion::task<> {
      ran++;
      co_await idle(ctx);
    });
  });
  auto member = g.elems()[0];
  REQUIRE(member.tell(1)); // buffered
  const auto before = sys.dead_letters().count();
  sys.stop();
  sys.block_until_stopped();
  REQUIRE(sys.dead_letters().count() == before + 1); // the buffered message, accounted for
  REQUIRE_FALSE(member.tell(2));
  REQUIRE(ran.load() == 0);
  REQUIRE_THROWS_AS(sys.start(), std::logic_error);
}

TEST_CASE("the destructor stops and joins (RAII)", "[system]") {
  std::atomic<int> stopped{0};
  bastion::child_ref kept;
  {
    bastion::system sys{test_config()};
    auto g = sys.children([&](bastion::children_builder& c) {
      c.redundancy(3).exec(idle).after_stop([&] { stopped++; });
    });
    kept = g.elems()[0];
    sys.start();
  }
  REQUIRE(stopped.load() == 3);
  // A ref that outlives its system is harmless: its sends go to dead letters.
  REQUIRE_FALSE(kept.tell(1));
  REQUIRE(kept.is_stopped());
}

TEST_CASE("find_group: the registry follows the groups", "[system]") {
  bastion::system sys{test_config()};
  auto g = sys.children([](bastion::children_builder& c) { c.name("named").exec(idle); });
  REQUIRE(sys.find_group("named").has_value());
  REQUIRE(sys.find_group("named")->id() == g.id());
  sys.start();
  g.stop();
  REQUIRE(wait_until([&] { return !sys.find_group("named").has_value(); }));
}

TEST_CASE("10,000 actors start, answer and stop cleanly", "[system]") {
#if BASTION_TSAN
  constexpr int n = 1000;
#else
  constexpr int n = 10000;
#endif
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::atomic<int> answered{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(n)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          started++;
          for (;;) {
            auto m = co_await ctx.recv();
            bastion::match(
                std::move(m), [&](int) { answered++; }, bastion::otherwise([](bastion::message&&) {
                }));
          }
        })
        .after_stop([&] { stopped++; });
  });
  sys.start();
  REQUIRE(wait_until([&] { return started.load() == n; }, 60s));
  for (auto& e : g.elems()) {
    REQUIRE(e.tell(1));
  }
  REQUIRE(wait_until([&] { return answered.load() == n; }, 60s));
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(60s));
  REQUIRE(stopped.load() == n);
  REQUIRE(g.elems().empty());
}

TEST_CASE("the default system behind the free functions", "[system]") {
  bastion::init(test_config());
  std::atomic<int> got{0};
  auto g = bastion::children([&](bastion::children_builder& c) {
    c.exec([&](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        auto m = co_await ctx.recv();
        got += m.is<int>(bastion::message_kind::tell) ? 1 : 0;
      }
    });
  });
  g.elems()[0].tell(1);
  bastion::start();
  REQUIRE(wait_until([&] { return got.load() == 1; }));
  REQUIRE_THROWS_AS(bastion::init(bastion::config{}), std::logic_error);
  bastion::stop();
  bastion::block_until_stopped();
  REQUIRE(bastion::system::global().is_stopped());
}
