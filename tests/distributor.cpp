// Tests of bastion/actor/distributor.hpp and dispatcher.hpp: round-robin, tell_everyone,
// request/ask_everyone, errors, membership across restarts, every group-creation path.
// Catch2 is not thread-safe: actor bodies only record; the test thread asserts.
// bastion-test-timeout: 90
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// A unique distributor name per test (the registry is process-wide).
std::string unique(const char* base) {
  static std::atomic<int> n{0};
  return fmt::format("{}-{}", base, n.fetch_add(1));
}

/// Counts tells of int per receiving child id; answers question<int> with value * 2;
/// throws on a tell of std::string "boom".
struct recorder {
  std::mutex mu;
  std::map<std::uint64_t, int> per_child;
  std::atomic<int> total{0};
  void add(std::uint64_t id) {
    std::lock_guard lock(mu);
    per_child[id] += 1;
    total.fetch_add(1);
  }
  std::map<std::uint64_t, int> snapshot() {
    std::lock_guard lock(mu);
    return per_child;
  }
};

auto worker(recorder& rec) {
  return [&rec](bastion::context& ctx) -> bastion::task<> {
    for (;;) {
      auto msg = co_await ctx.recv();
      bastion::match(
          std::move(msg),
          [&](int) { rec.add(ctx.id()); },
          [&](bastion::question<int> q) { q.reply(q.value() * 2); },
          [&](const std::string& s) {
            if (s == "boom") {
              throw std::runtime_error("boom");
            }
          },
          bastion::otherwise([](bastion::message&&) {}));
    }
  };
}

} // namespace

TEST_CASE("tell_one spreads round-robin evenly over the members") {
  recorder rec;
  const auto d = bastion::distributor::named(unique("rr"));
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  sys.children(
      [&](bastion::children_builder& c) { c.redundancy(4).distributor(d).exec(worker(rec)); });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 4; }));
  for (int i = 0; i < 400; ++i) {
    REQUIRE(d.tell_one(i));
  }
  REQUIRE(wait_until([&] { return rec.total.load() == 400; }));
  const auto per = rec.snapshot();
  REQUIRE(per.size() == 4);
  for (const auto& [id, n] : per) {
    CHECK(n == 100);
  }
}

TEST_CASE("tell_everyone reaches each member exactly once") {
  recorder rec;
  const auto d = bastion::distributor::named(unique("all"));
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  sys.children(
      [&](bastion::children_builder& c) { c.redundancy(3).distributor(d).exec(worker(rec)); });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 3; }));
  CHECK(d.tell_everyone(7) == 3);
  REQUIRE(wait_until([&] { return rec.total.load() == 3; }));
  std::this_thread::sleep_for(20ms);
  const auto per = rec.snapshot();
  REQUIRE(per.size() == 3);
  for (const auto& [id, n] : per) {
    CHECK(n == 1);
  }
}

TEST_CASE("request, request_sync, ask_one and ask_everyone round trips") {
  recorder rec;
  const auto d = bastion::distributor::named(unique("req"));
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  sys.children(
      [&](bastion::children_builder& c) { c.redundancy(3).distributor(d).exec(worker(rec)); });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 3; }));

  CHECK(bastion::run(d.request<int>(21)) == 42);
  CHECK(d.request_sync<int>(5, 2s) == 10);
  CHECK(
      bastion::run([](bastion::reply_future<int> f) -> bastion::task<int> {
        co_return co_await std::move(f);
      }(d.ask_one<int>(4)))
      == 8);
  auto futures = d.ask_everyone<int>(1);
  CHECK(futures.size() == 3);
  auto all = bastion::run(bastion::distributor::gather(std::move(futures), 2s));
  CHECK(all == std::vector<int>{2, 2, 2});
  CHECK(bastion::run(d.request_everyone<int>(3, 2s)) == std::vector<int>{6, 6, 6});
}

TEST_CASE("no such distributor and no recipients are distributor_error; the message is a dead "
          "letter") {
  const auto before = bastion::dead_letters::global().count();
  const auto nobody = bastion::distributor::named(unique("nobody"));
  try {
    nobody.tell_one(1);
    FAIL("expected distributor_error");
  } catch (const bastion::distributor_error& e) {
    CHECK(e.code() == bastion::distributor_errc::no_such_distributor);
    CHECK(std::string(e.what()).find(nobody.name()) != std::string::npos);
  }
  CHECK(bastion::dead_letters::global().count() == before + 1);
  CHECK_THROWS_AS(bastion::distributor{}.tell_everyone(1), bastion::distributor_error);
  CHECK_THROWS_AS(bastion::run(nobody.request<int>(1)), bastion::distributor_error);

  // Known (a builder named it) but no member: before start, and after the group stopped.
  recorder rec;
  const auto d = bastion::distributor::named(unique("empty"));
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  try {
    (void)d.ask_one<int>(1);
    FAIL("expected distributor_error");
  } catch (const bastion::distributor_error& e) {
    CHECK(e.code() == bastion::distributor_errc::no_recipients);
  }
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 1; }));
  g.stop();
  REQUIRE(wait_until([&] { return d.size() == 0; }));
  CHECK_THROWS_AS(d.tell_one(1), bastion::distributor_error);
}

TEST_CASE("a failed member leaves, rejoins on restart, and messages keep flowing") {
  recorder rec;
  const auto d = bastion::distributor::named(unique("restart"));
  std::atomic<int> restarts{0};
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(2).distributor(d).exec(worker(rec)).after_restart([&] { restarts.fetch_add(1); });
  });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 2; }));
  auto victim = g.elems()[0];
  victim.tell(std::string("boom"));
  REQUIRE(wait_until([&] { return restarts.load() == 1; }));
  REQUIRE(wait_until([&] { return d.size() == 2; }));
  const auto members = d.members();
  CHECK(std::find(members.begin(), members.end(), victim) != members.end());
  for (int i = 0; i < 100; ++i) {
    d.tell_one(i);
  }
  REQUIRE(wait_until([&] { return rec.total.load() == 100; }));
  const auto per = rec.snapshot();
  CHECK(per.size() == 2);
  CHECK(per.count(victim.id()) == 1);
}

TEST_CASE("registration works through every group-creation path") {
  recorder rec;
  const auto d = bastion::distributor::named(unique("paths"));
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  // 1. sys.children before start
  sys.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  // 2. supervisor builder .children
  auto sp = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  });
  sys.start();
  REQUIRE(wait_until([&] { return d.size() == 2; }));
  // 3. supervisor_ref.children at run time, 4. sys.children after start
  sp.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  sys.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  // 5. a nested supervisor added at run time
  sp.supervisor([&](bastion::supervisor_builder& s) {
    s.children([&](bastion::children_builder& c) { c.distributor(d).exec(worker(rec)); });
  });
  REQUIRE(wait_until([&] { return d.size() == 5; }));
  CHECK(d.tell_everyone(1) == 5);
  REQUIRE(wait_until([&] { return rec.total.load() == 5; }));
  CHECK(rec.snapshot().size() == 5);
}

TEST_CASE("subscribe and unsubscribe by hand") {
  recorder rec;
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) { c.redundancy(2).exec(worker(rec)); });
  sys.start();
  const auto d = bastion::distributor::named(unique("manual"));
  const auto e = g.elems();
  d.subscribe(e[0]);
  d.subscribe(e[0]);
  CHECK(d.size() == 1);
  d.tell_one(1);
  REQUIRE(wait_until([&] { return rec.total.load() == 1; }));
  CHECK(rec.snapshot().count(e[0].id()) == 1);
  d.unsubscribe(e[0]);
  CHECK_THROWS_AS(d.tell_one(1), bastion::distributor_error);
}

TEST_CASE("dispatcher: round-robin by default, custom handler, register/remove notifications") {
  recorder rec;
  const auto name = unique("disp");
  const auto d = bastion::dispatcher::named(name);
  std::atomic<int> registered{0};
  std::atomic<int> removed{0};
  d.on_register([&](const bastion::child_ref&) {
     registered.fetch_add(1);
   }).on_remove([&](const bastion::child_ref&) { removed.fetch_add(1); });
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(2).dispatcher(bastion::dispatcher::named(name)).exec(worker(rec));
  });
  sys.start();
  REQUIRE(wait_until([&] { return registered.load() == 2; }));
  for (int i = 0; i < 10; ++i) {
    CHECK(d.dispatch(i));
  }
  REQUIRE(wait_until([&] { return rec.total.load() == 10; }));
  for (const auto& [id, n] : rec.snapshot()) {
    CHECK(n == 5);
  }
  // A handler sending everything to the last member.
  d.handler([](const std::vector<bastion::child_ref>& members, bastion::message&& m) {
    return members.back().address().send(std::move(m));
  });
  const auto last = d.members().back();
  for (int i = 0; i < 10; ++i) {
    d.dispatch(i);
  }
  REQUIRE(wait_until([&] { return rec.total.load() == 20; }));
  CHECK(rec.snapshot()[last.id()] == 15);
  g.stop();
  REQUIRE(wait_until([&] { return removed.load() == 2; }));
  CHECK_FALSE(d.dispatch(1));
}

TEST_CASE("notify_dispatchers sends through the group's dispatchers") {
  recorder rec;
  const auto d = bastion::dispatcher::named(unique("notify"));
  std::atomic<std::size_t> notified{0};
  bastion::system sys{test_config()}; // after the state its actors and callbacks touch
  sys.children(
      [&](bastion::children_builder& c) { c.redundancy(2).dispatcher(d).exec(worker(rec)); });
  sys.children([&](bastion::children_builder& c) {
    c.dispatcher(d).exec([&](bastion::context& ctx) -> bastion::task<> {
      notified.store(bastion::notify_dispatchers(ctx, 99, ctx.id()) + 1);
      co_return;
    });
  });
  sys.start();
  REQUIRE(wait_until([&] { return notified.load() != 0; }));
  CHECK(notified.load() == 2);
  REQUIRE(wait_until([&] { return rec.total.load() == 1; }));
}
