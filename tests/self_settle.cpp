// Tests of the supervisor-free paths of plain children groups (src/actor/tree.hpp,
// child_slot; src/actor/node_ops.hpp, prestart_group): a group created while the system runs
// has its members started by its creator, and a member that returns normally settles its own
// exit (mailbox drained to dead letters, out of the group) without its supervisor. Failures
// still go to the supervisor. Stress cases race both paths with stops.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 240
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// Message counters shared by the bodies below and the test thread.
struct tally {
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> finished{0}; ///< bodies that returned normally
};

/// A member that takes one int, counts it and returns (a normal exit).
bastion::task<> take_one(bastion::context& ctx, tally* t) {
  auto msg = co_await ctx.recv();
  bastion::match(
      std::move(msg),
      [&](int) { t->handled.fetch_add(1, std::memory_order_relaxed); },
      bastion::otherwise([](bastion::message&&) {}));
  t->finished.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

TEST_CASE(
    "a plain group's members start, return and leave while their supervisor is blocked",
    "[self_settle]") {
  gate blocked;
  tally t;
  bastion::system sys{test_config()}; // 2 workers: the blocked callback holds one
  auto sup = sys.supervisor([](bastion::supervisor_builder&) {});
  sys.start();
  // The supervisor's proc runs a before_start callback that blocks until the gate opens: from
  // then on it handles no event (it would start, settle and retire nothing).
  (void)sup.children([&](bastion::children_builder& c) {
    c.exec([](bastion::context& ctx) -> bastion::task<> {
       (void)co_await ctx.recv();
     }).before_start([&] {
      blocked.entered = true;
      while (!blocked.open.load()) {
        std::this_thread::yield();
      }
    });
  });
  REQUIRE(wait_until([&] { return blocked.entered.load(); }));
  const auto dead_before = sys.dead_letters().count();

  constexpr int n = 20;
  auto plain = sup.children([&](bastion::children_builder& c) {
    c.name("plain").redundancy(n).exec([&](bastion::context& ctx) { return take_one(ctx, &t); });
  });
  const auto members = plain.elems();
  REQUIRE(members.size() == n);
  for (int i = 0; i < n; ++i) {
    REQUIRE(members[i].tell(i));
  }
  // Each member ran (started by its creator), took its message, returned and left the
  // group: all without the supervisor.
  REQUIRE(wait_until([&] { return plain.size() == 0; }));
  CHECK(t.handled.load() == n);
  CHECK(t.finished.load() == n);
  CHECK(sys.dead_letters().count() == dead_before);
  for (const auto& m : members) {
    CHECK(m.is_stopped());
    CHECK_FALSE(m.tell(1)); // a finished member's mailbox is closed: dead letters
  }
  CHECK(sys.dead_letters().count() == dead_before + n);
  // The empty group is retired by its supervisor once that can run again.
  blocked.open = true;
  REQUIRE(wait_until([&] { return !sys.find_group("plain").has_value(); }));
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(60s));
}

TEST_CASE(
    "a returning member's unread messages go to dead letters; a failing one is restarted",
    "[self_settle]") {
  tally t;
  std::atomic<int> runs{0};
  bastion::system sys{test_config()};
  sys.start();
  const auto dead_before = sys.dead_letters().count();
  constexpr int n = 8;
  // Each member fails on its first message (the supervisor restarts it: failures are never
  // settled by the member itself), then takes one more and returns.
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(n).exec([&](bastion::context& ctx) -> bastion::task<> {
      runs.fetch_add(1);
      auto msg = co_await ctx.recv();
      bastion::match(
          std::move(msg),
          [&](int v) {
            if (v == 1) {
              throw std::runtime_error("message 1 fails");
            }
            t.handled.fetch_add(1);
          },
          bastion::otherwise([](bastion::message&&) {}));
    });
  });
  const auto members = g.elems();
  REQUIRE(members.size() == n);
  // Three messages each: the first kills incarnation 1 (it is the failed message, handed to
  // the restart, not a dead letter), the second is handled by incarnation 2, the third is
  // left unread when it returns (drained to dead letters, or refused if sent after).
  for (const auto& m : members) {
    REQUIRE(m.tell(1));
  }
  REQUIRE(wait_until([&] { return runs.load() == 2 * n; }));
  for (const auto& m : members) {
    REQUIRE(m.tell(2));
    (void)m.tell(3); // refused when the member returned already: a dead letter either way
  }
  REQUIRE(wait_until([&] { return g.size() == 0; }));
  CHECK(runs.load() == 2 * n);
  CHECK(t.handled.load() == n);
  REQUIRE(wait_until([&] { return sys.dead_letters().count() == dead_before + n; }));
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(60s));
  CHECK(sys.dead_letters().count() == dead_before + n);
}

TEST_CASE(
    "stress: self-settled exits race group stops; every message is accounted for",
    "[self_settle][stress]") {
  tally t;
  std::atomic<int> spawners_done{0};
  constexpr int spawners = 4;
  constexpr int rounds = 300;
  constexpr int width = 5;
  {
    bastion::system sys{test_config()};
    // Each spawner creates plain groups from its own proc (prestarted, LIFO), feeds them and
    // stops some at once, so member exits race stop_group on the supervisor.
    auto spawner = [&](bastion::context& ctx) -> bastion::task<> {
      for (int r = 0; r < rounds; ++r) {
        auto g = sys.children([&](bastion::children_builder& c) {
          c.redundancy(width).exec([&](bastion::context& c2) { return take_one(c2, &t); });
        });
        for (const auto& m : g.elems()) {
          for (int k = 0; k < 2; ++k) {
            t.sent.fetch_add(1);
            (void)m.tell(k, ctx.id()); // refused sends are dead letters: still accounted
          }
        }
        if (r % 3 == 0) {
          g.stop();
        }
        if (r % 16 == 0) {
          co_await bastion::yield_now();
        }
      }
      spawners_done.fetch_add(1);
    };
    (void)sys.children([&](bastion::children_builder& c) { c.redundancy(spawners).exec(spawner); });
    sys.start();
    REQUIRE(wait_until([&] { return spawners_done.load() == spawners; }));
    sys.stop();
    REQUIRE(sys.block_until_stopped_for(120s));
    // Every member handled at most one message; the rest are dead letters.
    CHECK(t.handled.load() <= std::uint64_t{spawners} * rounds * width);
    CHECK(t.handled.load() + sys.dead_letters().count() == t.sent.load());
  }
}

TEST_CASE(
    "stress: groups created while the system stops; nothing hangs, nothing is lost",
    "[self_settle][stress]") {
  for (int trial = 0; trial < 20; ++trial) {
    tally t;
    std::atomic<int> groups{0};
    bastion::system sys{test_config()};
    // Spawners create and feed plain groups until they are stopped, so creations (prestart,
    // post, submit) race the root supervisor's stop and the drain of its control queue.
    auto spawner = [&](bastion::context& ctx) -> bastion::task<> {
      for (int r = 0;; ++r) {
        auto g = sys.children([&](bastion::children_builder& c) {
          c.redundancy(3).exec([&](bastion::context& c2) { return take_one(c2, &t); });
        });
        groups.fetch_add(1);
        for (const auto& m : g.elems()) {
          t.sent.fetch_add(1);
          (void)m.tell(r, ctx.id());
        }
        co_await bastion::yield_now();
      }
    };
    (void)sys.children([&](bastion::children_builder& c) { c.redundancy(2).exec(spawner); });
    sys.start();
    const int target = 50 + 40 * trial;
    REQUIRE(wait_until([&] { return groups.load() >= target; }));
    sys.stop();
    REQUIRE(sys.block_until_stopped_for(120s));
    CHECK(t.handled.load() + sys.dead_letters().count() == t.sent.load());
  }
}

TEST_CASE(
    "stress: a group found by name is stopped while its creator is still starting it",
    "[self_settle][stress]") {
  tally t;
  std::atomic<bool> done{false};
  std::atomic<int> stops{0};
  bastion::system sys{test_config()};
  sys.start();
  // The stopper races find_group + stop against each creation below: a stop may reach the
  // supervisor before the group itself (the registry publishes it before the post).
  std::thread stopper([&] {
    while (!done.load()) {
      if (auto g = sys.find_group("raced")) {
        g->stop();
        stops.fetch_add(1);
      }
    }
  });
  // At least 2000 creations, and more until the stopper has hit one (on a loaded machine it
  // may not get a core while the first 2000 groups are alive).
  for (int r = 0; r < 2000 || (stops.load() == 0 && r < 1'000'000); ++r) {
    auto g = sys.children([&](bastion::children_builder& c) {
      c.name("raced").redundancy(4).exec([&](bastion::context& ctx) { return take_one(ctx, &t); });
    });
    for (const auto& m : g.elems()) {
      t.sent.fetch_add(1);
      (void)m.tell(r);
    }
  }
  done = true;
  stopper.join();
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(120s));
  CHECK(stops.load() > 0);
  CHECK(t.handled.load() + sys.dead_letters().count() == t.sent.load());
}
