// tests/message.cpp: bastion::message, question, reply_future (include/bastion/actor/message.hpp)
// and bastion::match / bastion::handlers (include/bastion/actor/match.hpp).
// bastion-test-timeout: 120
#include <bastion/actor/match.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/task.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

namespace {

using namespace std::chrono_literals;
using bastion::message;
using bastion::message_kind;
using bastion::question;
using bastion::task;

struct ping {
  int n;
};

/// Which handler ran: 1..4, 0 for the fallback.
int classify(message m) {
  return bastion::match(
      std::move(m),
      [](question<int> q) {
        q.reply(q.value() + 1);
        return 1;
      },
      [](const int&) { return 2; },
      [](std::string s) { return s == "hi" ? 3 : -3; },
      [](bastion::broadcast<ping> const& b) { return b->n == 7 ? 4 : -4; },
      bastion::otherwise([](message&&) { return 0; }));
}

} // namespace

TEST_CASE("match: dispatches by kind and exact type, fallback otherwise", "[match]") {
  CHECK(classify(message::tell(5)) == 2);
  CHECK(classify(message::tell(std::string("hi"))) == 3);
  CHECK(classify(message::broadcast(std::make_shared<const ping>(ping{7}))) == 4);
  auto [a, f] = message::ask<int>(41);
  CHECK(classify(std::move(a)) == 1);
  CHECK(f.is_ready());
  CHECK(classify(message::tell(5L)) == 0);      // long is not int
  CHECK(classify(message::tell(ping{1})) == 0); // tell of ping: only a broadcast handler
  CHECK(classify(message::broadcast(std::make_shared<const int>(3))) == 0); // not a tell
}

TEST_CASE("match: the first matching handler wins, in order", "[match]") {
  int which = 0;
  bastion::match(
      message::tell(1),
      [&](int) { which = 1; },
      [&](const int&) { which = 2; },
      bastion::otherwise([&](message&&) { which = 3; }));
  CHECK(which == 1);
  message seen;
  bastion::match(
      message::tell(2.5), [&](int) { which = 1; }, bastion::otherwise([&](message&& m) {
        seen = std::move(m);
      }));
  REQUIRE(seen);
  CHECK(seen.kind() == message_kind::tell);
  CHECK(seen.type() == typeid(double));
  CHECK(seen.is<double>(message_kind::tell));
}

TEST_CASE("match: move-only payloads are moved into by-value handlers", "[match]") {
  std::unique_ptr<int> got;
  bastion::match(
      message::tell(std::make_unique<int>(9)),
      [&](std::unique_ptr<int> p) { got = std::move(p); },
      bastion::otherwise([](message&&) {}));
  REQUIRE(got);
  CHECK(*got == 9);
}

TEST_CASE("handlers chain: on_question / on_tell / on_broadcast / on_fallback", "[match]") {
  int tells = 0;
  int broadcasts = 0;
  int fallbacks = 0;
  auto h = bastion::handlers{}
               .on_question<int>([](question<int> q) { q.reply(q.value() * 2); })
               .on_tell<std::string>([&](const std::string& s) { tells += s == "x" ? 1 : 100; })
               .on_broadcast<ping>([&](bastion::broadcast<ping> const& b) { broadcasts += b->n; })
               .on_fallback([&](message&&) { ++fallbacks; });
  h(message::tell(std::string("x")));
  h(message::broadcast(std::make_shared<const ping>(ping{5})));
  h(message::tell(3));
  auto [a, f] = message::ask<int>(4);
  h(std::move(a));
  CHECK(tells == 1);
  CHECK(broadcasts == 5);
  CHECK(fallbacks == 1);
  CHECK(f.is_ready());
}

// A match without bastion::otherwise(...) does not compile; it fails with the static_assert
// "bastion::match: the last argument must be bastion::otherwise(fallback) ...". A compile-fail
// test is not wired into the build yet; this documents the expectation:
//   bastion::match(message::tell(1), [](int) {});   // error

TEST_CASE("ask: reply round trip between two procs on a 2-worker runtime", "[ask]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  auto body = []() -> task<int> {
    int sum = 0;
    for (int i = 0; i < 200; ++i) {
      auto [msg, reply] = message::ask<int>(i);
      // The responder is a proc of its own; it replies from whichever worker runs it.
      auto responder = [](message m) -> task<> {
        co_await bastion::yield_now();
        bastion::match(
            std::move(m),
            [](question<int> q) { q.reply(q.value() * 2); },
            bastion::otherwise([](message&&) {}));
      };
      bastion::spawn(responder(std::move(msg))).detach();
      sum += co_await std::move(reply);
    }
    co_return sum;
  };
  CHECK(rt.run(body()) == 2 * (199 * 200 / 2));
}

TEST_CASE("ask: an ask dropped unanswered gives no_reply, never a hang", "[ask]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  auto body = []() -> task<bool> {
    auto [msg, reply] = message::ask<int>(1);
    auto dropper = [](message m) -> task<> {
      co_await bastion::sleep_for(5ms);
      bastion::match(std::move(m), [](const std::string&) {}, bastion::otherwise([](message&&) {}));
    };
    bastion::spawn(dropper(std::move(msg))).detach();
    try {
      (void)co_await std::move(reply);
    } catch (const bastion::no_reply&) {
      co_return true;
    }
    co_return false;
  };
  CHECK(rt.run(body()));
  // Also without a runtime: the future is ready with the error at once.
  auto [m, f] = message::ask<int>(1);
  {
    message gone = std::move(m);
  }
  CHECK(f.is_ready());
}

TEST_CASE("ask: a reply of the wrong type names both types, on both sides", "[ask]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  auto body = []() -> task<std::string> {
    auto [msg, reply] = message::ask<int>(1);
    std::string replier_saw;
    bastion::match(
        std::move(msg),
        [&](question<int> q) {
          try {
            q.reply(std::string("oops"));
          } catch (const bastion::reply_type_mismatch& e) {
            replier_saw = e.what();
          }
        },
        bastion::otherwise([](message&&) {}));
    REQUIRE(replier_saw.find("int") != std::string::npos);
    try {
      (void)co_await std::move(reply);
    } catch (const bastion::reply_type_mismatch& e) {
      co_return std::string(e.what());
    }
    co_return std::string();
  };
  const auto what = rt.run(body());
  CHECK(what.find("int") != std::string::npos);
  CHECK(what.find("std::__cxx11::basic_string") != std::string::npos);
}

TEST_CASE("ask: with_timeout throws timed_out, and yields the reply when in time", "[ask]") {
  bastion::runtime rt{bastion::runtime_config{}.workers(2)};
  auto body = []() -> task<int> {
    auto [msg, reply] = message::ask<int>(1);
    const auto t0 = bastion::clock::now();
    bool timed = false;
    try {
      (void)co_await std::move(reply).with_timeout(30ms);
    } catch (const bastion::timed_out&) {
      timed = true;
    }
    REQUIRE(timed);
    REQUIRE(bastion::clock::now() - t0 >= 30ms);
    // msg still alive: dropping it now is harmless (the future is gone).
    auto [msg2, reply2] = message::ask<int>(2);
    auto responder = [](message m) -> task<> {
      co_await bastion::sleep_for(5ms);
      bastion::match(
          std::move(m),
          [](question<int> q) { q.reply(q.value() + 40); },
          bastion::otherwise([](message&&) {}));
    };
    bastion::spawn(responder(std::move(msg2))).detach();
    co_return co_await std::move(reply2).with_timeout(10s);
  };
  CHECK(rt.run(body()) == 42);
}
