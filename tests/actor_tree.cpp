// Tests of the supervision tree's bookkeeping (src/actor/tree.hpp through the public API):
// finished children and done groups leave the tree (supervisor_ref::size, children_ref::size,
// the name registry), stopping a very large group completes, an exec that throws instead of
// returning a task is a failure, exits of fast children are never lost, and the tree does not
// grow under churn.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 300
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// Answers one ask of int with the value, then finishes.
bastion::task<> answer_once(bastion::context& ctx) {
  bastion::match(
      co_await ctx.recv(),
      [](bastion::question<int> q) { q.reply(q.value()); },
      bastion::otherwise([](bastion::message&&) {}));
}

bastion::task<> idle(bastion::context& ctx) {
  for (;;) {
    (void)co_await ctx.recv();
  }
}

bastion::task<int> ask_all(std::vector<bastion::child_ref> refs) {
  int sum = 0;
  for (auto& r : refs) {
    sum += co_await r.ask<int>(1);
  }
  co_return sum;
}

} // namespace

TEST_CASE("finished children leave the tree: element count back to baseline", "[tree]") {
#if BASTION_TSAN || BASTION_ASAN
  constexpr int n = 2000;
#else
  constexpr int n = 10000;
#endif
  std::atomic<int> after_stop{0};
  bastion::system sys{test_config()};
  auto sup = sys.supervisor([](bastion::supervisor_builder&) {});
  auto keep = sup.children([](bastion::children_builder& c) { c.name("keep").exec(idle); });
  sys.start();
  REQUIRE(wait_until([&] { return sup.size() == 1; }));
  const std::size_t root_baseline = sys.root().size();
  REQUIRE(root_baseline == 1); // the supervisor above

  // n groups of one, each child answers once and finishes.
  std::vector<bastion::children_ref> groups;
  std::vector<bastion::child_ref> refs;
  groups.reserve(n);
  refs.reserve(n);
  for (int i = 0; i < n; ++i) {
    groups.push_back(sup.children([&](bastion::children_builder& c) {
      c.name("fj").exec(answer_once).after_stop([&] { after_stop++; });
    }));
    refs.push_back(groups.back().elems().at(0));
  }
  REQUIRE(sys.runtime().run(ask_all(refs)) == n);
  REQUIRE(wait_until([&] { return after_stop.load() == n; }));
  REQUIRE(wait_until([&] { return sup.size() == 1; })); // only "keep" is left
  for (auto& g : groups) {
    REQUIRE(g.size() == 0);
    REQUIRE(g.elems().empty());
  }
  for (auto& r : refs) {
    REQUIRE(r.is_stopped());
  }
  REQUIRE_FALSE(sys.find_group("fj").has_value()); // done groups left the registry
  REQUIRE(sys.find_group("keep").has_value());
  REQUIRE(keep.size() == 1);
  REQUIRE(sys.root().size() == root_baseline);
  // A ref that outlives its child still works: sends go to dead letters.
  const auto before = sys.dead_letters().count(bastion::dead_letter_reason::stopped_target);
  REQUIRE_FALSE(refs.front().tell(1));
  REQUIRE(sys.dead_letters().count(bastion::dead_letter_reason::stopped_target) == before + 1);
  REQUIRE(fmt::format("{}", refs.front().path()).find("/root/") == 0);
}

TEST_CASE("one group of many members that finish leaves the tree", "[tree]") {
#if BASTION_TSAN || BASTION_ASAN
  constexpr int n = 2000;
#else
  constexpr int n = 20000;
#endif
  std::atomic<int> after_stop{0};
  bastion::system sys{test_config()};
  sys.start();
  auto g = sys.children([&](bastion::children_builder& c) {
    c.name("many").redundancy(n).exec(answer_once).after_stop([&] { after_stop++; });
  });
  const auto members = g.elems();
  REQUIRE(members.size() == static_cast<std::size_t>(n));
  REQUIRE(g.size() == static_cast<std::size_t>(n));
  REQUIRE(sys.runtime().run(ask_all(members)) == n);
  REQUIRE(wait_until([&] { return after_stop.load() == n; }));
  REQUIRE(wait_until([&] { return sys.root().size() == 0; }));
  REQUIRE(g.size() == 0);
  REQUIRE_FALSE(sys.find_group("many").has_value());
}

TEST_CASE("stopping a 100,000-member group completes; every member stops once", "[tree]") {
#if BASTION_TSAN || BASTION_ASAN
  constexpr int n = 5000;
#else
  constexpr int n = 100000;
#endif
  std::atomic<int> started{0};
  std::atomic<int> after_stop{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(n)
        .exec([&](bastion::context& ctx) -> bastion::task<> {
          started++;
          co_await idle(ctx);
        })
        .after_stop([&] { after_stop++; });
  });
  auto other = sys.children([](bastion::children_builder& c) { c.exec(idle); });
  sys.start();
  REQUIRE(wait_until([&] { return started.load() == n; }, 120s));
  REQUIRE(sys.root().size() == 2);
  g.stop();
  REQUIRE(wait_until([&] { return g.size() == 0; }, 120s));
  REQUIRE(wait_until([&] { return sys.root().size() == 1; }, 120s));
  REQUIRE(after_stop.load() == n);
  REQUIRE(started.load() == n); // stopped for good: nobody restarted
  REQUIRE(other.size() == 1);
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(120s));
  REQUIRE(other.size() == 0);
  REQUIRE(sys.root().size() == 0);
}

TEST_CASE("an exec that throws instead of returning a task is a failure, restarted", "[tree]") {
  std::atomic<int> calls{0};
  std::atomic<int> restarts{0};
  std::atomic<int> answered{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec([&](bastion::context& ctx) -> bastion::task<> {
       if (calls.fetch_add(1) == 0) {
         throw std::runtime_error("no body this time");
       }
       return [](bastion::context& cx, std::atomic<int>* n) -> bastion::task<> {
         for (;;) {
           bastion::match(
               co_await cx.recv(),
               [&](bastion::question<int> q) {
                 n->fetch_add(1);
                 q.reply(q.value() + 1);
               },
               bastion::otherwise([](bastion::message&&) {}));
         }
       }(ctx, &answered);
     }).after_restart([&](const bastion::failure& f) {
      if (f.what() == "no body this time") {
        restarts++;
      }
    });
  });
  sys.start();
  const auto ref = g.elems().at(0);
  REQUIRE(sys.runtime().run(ref.ask<int>(41, 10s)) == 42);
  REQUIRE(calls.load() == 2);
  // after_restart runs on the supervisor right after the spawn: maybe after the reply.
  REQUIRE(wait_until([&] { return restarts.load() == 1; }));
  REQUIRE(answered.load() == 1);
}

TEST_CASE("children that finish at once are all accounted for (no lost exit)", "[tree]") {
  // Bodies that end before the supervisor has even registered for their end, in a group
  // with a resizer-free one_for_all supervisor next to a failing sibling: every child's
  // after_stop runs exactly once and the tree empties.
#if BASTION_TSAN || BASTION_ASAN
  constexpr int rounds = 200;
#else
  constexpr int rounds = 2000;
#endif
  std::atomic<int> after_stop{0};
  std::atomic<int> failures{0};
  bastion::system sys{test_config()};
  auto sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_all);
    s.children([&](bastion::children_builder& c) {
      c.name("flaky").exec([&](bastion::context& ctx) -> bastion::task<> {
        for (;;) {
          auto m = co_await ctx.recv();
          if (m.is<int>(bastion::message_kind::tell)) {
            failures++;
            throw std::runtime_error("flaky");
          }
        }
      });
    });
  });
  sys.start();
  for (int i = 0; i < rounds; ++i) {
    sup.children([&](bastion::children_builder& c) {
      c.redundancy(3).exec([](bastion::context&) -> bastion::task<> { co_return; }).after_stop([&] {
        after_stop++;
      });
    });
    if (i % 100 == 0) {
      sys.find_group("flaky")->elems().at(0).tell(1);
    }
  }
  REQUIRE(wait_until([&] { return after_stop.load() == 3 * rounds; }));
  REQUIRE(wait_until([&] { return sup.size() == 1; })); // only "flaky" is left
  REQUIRE(wait_until([&] { return failures.load() == (rounds + 99) / 100; }));
  REQUIRE(after_stop.load() == 3 * rounds); // exactly once each
}

TEST_CASE("message::ask: one reply of a non-default-constructible type", "[tree][ask]") {
  struct only_from_int {
    explicit only_from_int(int v)
        : value(v) {}
    int value;
  };
  auto [m, f] = bastion::message::ask<only_from_int>(5);
  bool replied = false;
  bastion::match(
      std::move(m),
      [&](bastion::question<int> q) {
        q.reply(only_from_int{q.value() * 3});
        replied = true;
      },
      bastion::otherwise([](bastion::message&&) {}));
  REQUIRE(replied);
  REQUIRE(f.is_ready());
  auto reply = [](bastion::reply_future<only_from_int> fut) -> bastion::task<int> {
    co_return (co_await std::move(fut)).value;
  };
  REQUIRE(bastion::run(reply(std::move(f))) == 15);
}
