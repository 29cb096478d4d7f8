// Tests of bastion/actor/{children,refs,context,address}.hpp: groups, refs across restarts,
// ask/reply, broadcast, callbacks, buffering before start, dead letters.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 120
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// The doubler of api.md: answers question<int> with twice the value, forever.
bastion::task<> doubler(bastion::context& ctx) {
  for (;;) {
    auto msg = co_await ctx.recv();
    bastion::match(
        std::move(msg),
        [](bastion::question<int> q) { q.reply(q.value() * 2); },
        bastion::otherwise([](bastion::message&&) {}));
  }
}

} // namespace

TEST_CASE("children_builder validates redundancy and exec", "[children]") {
  bastion::system sys{test_config()};
  bastion::children_builder b;
  REQUIRE_THROWS_WITH(b.redundancy(0), Catch::Contains("redundancy"));
  REQUIRE_THROWS_WITH(
      sys.children([](bastion::children_builder& c) { c.name("no-exec"); }),
      Catch::Contains("exec"));
}

TEST_CASE("config rejects 0 workers", "[children]") {
  REQUIRE_THROWS_WITH(bastion::system{bastion::config{}.workers(0)}, Catch::Contains("workers"));
}

TEST_CASE("a group's refs: ids, names, paths, elems", "[children]") {
  bastion::supervisor_ref sup;
  bastion::children_ref group;
  bastion::system sys{test_config()};
  sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.children([](bastion::children_builder& c) { c.name("workers").redundancy(3).exec(doubler); });
  });
  auto found = sys.find_group("workers");
  REQUIRE(found.has_value());
  group = *found;
  REQUIRE(group.name() == "workers");
  auto elems = group.elems();
  REQUIRE(elems.size() == 3);
  REQUIRE(group.path().is_descendant_of(sup.path()));
  REQUIRE(fmt::format("{}", group.path()) == fmt::format("/root/{}/{}", sup.id(), group.id()));
  for (auto& e : elems) {
    REQUIRE(e.name() == "workers");
    REQUIRE(e.path() == group.path().child(e.id()));
    REQUIRE(e.path().to_string() == fmt::format("/root/{}/{}/{}", sup.id(), group.id(), e.id()));
  }
  REQUIRE(elems[0].id() != elems[1].id());
  REQUIRE_FALSE(sys.find_group("nobody").has_value());
}

TEST_CASE("ask<int>(21) answers 42 (api.md's doubler)", "[children]") {
  bastion::system sys{test_config()};
  auto doublers = sys.children(
      [](bastion::children_builder& c) { c.name("doublers").redundancy(4).exec(doubler); });
  sys.start();
  for (auto& d : doublers.elems()) {
    REQUIRE(sys.runtime().run(d.ask<int>(21, 5s)) == 42);
  }
  // From inside a proc, with the reply future.
  auto first = doublers.elems()[0];
  const int v = sys.runtime().run([](bastion::child_ref r) -> bastion::task<int> {
    co_return co_await r.ask<int>(50);
  }(first));
  REQUIRE(v == 100);
}

TEST_CASE("messages sent before start() are delivered after it", "[children]") {
  std::atomic<int> sum{0};
  std::atomic<bool> ran{false};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec([&](bastion::context& ctx) -> bastion::task<> {
      ran = true;
      for (;;) {
        auto m = co_await ctx.recv();
        bastion::match(
            std::move(m), [&](int x) { sum += x; }, bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  for (int i = 1; i <= 10; ++i) {
    REQUIRE(g.elems()[0].tell(i));
  }
  std::this_thread::sleep_for(20ms);
  REQUIRE_FALSE(ran.load());
  REQUIRE(sum.load() == 0);
  sys.start();
  REQUIRE(wait_until([&] { return sum.load() == 55; }));
}

TEST_CASE("a ref taken before a restart reaches the new incarnation", "[children]") {
  event_log log;
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec([&](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        auto m = co_await ctx.recv();
        auto what = bastion::match(
            std::move(m), [](int x) { return x; }, bastion::otherwise([](bastion::message&&) {
              return -1;
            }));
        log.add(fmt::format("inc{}:{}", ctx.incarnation(), what));
        if (what == 0) {
          throw std::runtime_error("boom");
        }
      }
    });
  });
  auto ref = g.elems()[0]; // taken before start and before the restart
  sys.start();
  REQUIRE(ref.tell(1));
  REQUIRE(ref.tell(0)); // fails incarnation 1
  REQUIRE(wait_until([&] { return log.size() == 2; }));
  REQUIRE(ref.tell(2)); // queued during or after the restart: the new incarnation gets it
  REQUIRE(wait_until([&] { return log.size() == 3; }));
  auto ev = log.snapshot();
  REQUIRE(ev[0] == "inc1:1");
  REQUIRE(ev[1] == "inc1:0");
  REQUIRE(ev[2] == "inc2:2");
  REQUIRE(g.elems().size() == 1);
  REQUIRE(g.elems()[0] == ref);
}

TEST_CASE(
    "callbacks: order through a restart and a stop; failure carries the message", "[children]") {
  event_log log;
  std::string failure_what;
  std::string failure_type;
  std::uint64_t failed_id = 0;
  std::uint64_t child_id = 0;
  {
    bastion::system sys{test_config()};
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec([&](bastion::context& ctx) -> bastion::task<> {
         for (;;) {
           auto m = co_await ctx.recv();
           if (m.is<int>(bastion::message_kind::tell) && ctx.incarnation() == 1) {
             throw std::runtime_error("bad int");
           }
         }
       })
          .before_start([&] { log.add("before_start"); })
          .after_start([&](const bastion::child_ref&) { log.add("after_start"); })
          .before_restart([&](const bastion::child_ref& r, const bastion::failure& f) {
            log.add("before_restart");
            failure_what = f.what();
            failure_type = f.message ? f.message->type_name() : "";
            failed_id = f.failed_child;
            child_id = r.id();
          })
          .after_restart([&](const bastion::failure&) { log.add("after_restart"); })
          .after_stop([&] { log.add("after_stop"); });
    });
    sys.start();
    g.elems()[0].tell(7);
    REQUIRE(wait_until([&] { return log.size() == 4; }));
    sys.stop();
    sys.block_until_stopped();
  }
  const std::vector<std::string> expected{
      "before_start", "after_start", "before_restart", "after_restart", "after_stop"};
  REQUIRE(log.snapshot() == expected);
  REQUIRE(failure_what == "bad int");
  REQUIRE(failure_type == "int");
  REQUIRE(failed_id == child_id);
}

TEST_CASE(
    "failure: the message being handled through ctx.handle reaches the restart callbacks",
    "[children]") {
  // Written by the callbacks (on the supervisor's proc), read here after the wait.
  std::atomic<int> before_value{-1};
  std::atomic<int> after_value{-1};
  std::atomic<int> envelope_missing{0};
  std::atomic<int> later_ok{0};
  std::atomic<int> restarts{0};
  std::string before_type;
  event_log log;
  {
    bastion::system sys{test_config()};
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec([&](bastion::context& ctx) -> bastion::task<> {
         for (;;) {
           auto m = co_await ctx.recv();
           ctx.handle(
               std::move(m),
               [&](const int& v) {
                 if (v == 13) {
                   throw std::runtime_error("unlucky");
                 }
                 log.add(fmt::format("inc{}:{}", ctx.incarnation(), v));
               },
               bastion::otherwise([](bastion::message&&) {}));
           // Reached only after a handler returned normally.
           if (ctx.incarnation() == 2) {
             later_ok++;
           }
         }
       })
          .before_restart([&](const bastion::failure& f) {
            if (f.message && f.message->value<int>() != nullptr) {
              before_value = *f.message->value<int>();
              before_type = f.message->type_name();
            } else {
              envelope_missing++;
            }
          })
          .after_restart([&](const bastion::failure& f) {
            const int* v = f.message ? f.message->value<int>() : nullptr;
            after_value = v != nullptr ? *v : -2;
            restarts++;
          });
    });
    sys.start();
    auto ref = g.elems()[0];
    ref.tell(1);
    ref.tell(13);
    ref.tell(2); // stays in the mailbox for the new incarnation
    REQUIRE(wait_until([&] { return log.size() == 2; }));
    sys.stop();
    sys.block_until_stopped();
  }
  REQUIRE(restarts.load() == 1);
  REQUIRE(envelope_missing.load() == 0);
  REQUIRE(before_value.load() == 13);
  REQUIRE(after_value.load() == 13);
  REQUIRE(before_type == "int");
  REQUIRE(later_ok.load() == 1);
  const std::vector<std::string> expected{"inc1:1", "inc2:2"};
  REQUIRE(log.snapshot() == expected);
}

TEST_CASE(
    "failure: a message received with recv but not handled through handle has no "
    "envelope",
    "[children]") {
  std::atomic<int> with_envelope{0};
  std::atomic<int> restarts{0};
  {
    bastion::system sys{test_config()};
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec([&](bastion::context& ctx) -> bastion::task<> {
         auto m = co_await ctx.recv();
         if (m.is<int>(bastion::message_kind::tell) && ctx.incarnation() == 1) {
           throw std::runtime_error("bad int");
         }
         for (;;) {
           (void)co_await ctx.recv();
         }
       }).before_restart([&](const bastion::failure& f) {
        if (f.message && f.message->envelope) {
          with_envelope++;
        }
        restarts++;
      });
    });
    sys.start();
    g.elems()[0].tell(5);
    REQUIRE(wait_until([&] { return restarts.load() == 1; }));
    sys.stop();
    sys.block_until_stopped();
  }
  REQUIRE(with_envelope.load() == 0);
}

TEST_CASE("context: signature, parent, supervisor, try_recv, recv_for, tell", "[children]") {
  std::atomic<int> checks{0};
  std::atomic<int> pongs{0};
  bastion::supervisor_ref sup;
  bastion::children_ref ponger;
  bastion::system sys{test_config()};
  sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.children([&](bastion::children_builder& c) {
      c.name("ponger").exec([&](bastion::context& ctx) -> bastion::task<> {
        for (;;) {
          auto m = co_await ctx.recv();
          if (m.is<std::string>(bastion::message_kind::tell) && m.sender_id() != 0) {
            pongs++;
          }
        }
      });
    });
  });
  ponger = *sys.find_group("ponger");
  auto target = ponger.elems()[0];
  auto g = sys.children([&](bastion::children_builder& c) {
    c.name("checker").exec([&, target](bastion::context& ctx) -> bastion::task<> {
      checks += ctx.signature().id() == ctx.id() ? 1 : 0;
      checks += ctx.current() == ctx.signature() ? 1 : 0;
      checks += ctx.parent().name() == "checker" ? 1 : 0;
      checks += ctx.supervisor().path() == bastion::path{} ? 1 : 0; // the root
      checks += ctx.try_recv().has_value() ? 0 : 1;
      auto none = co_await ctx.recv_for(5ms);
      checks += none.has_value() ? 0 : 1;
      checks += ctx.tell(target, std::string("ping")) ? 1 : 0;
      checks += ctx.incarnation() == 1 ? 1 : 0;
      for (;;) {
        (void)co_await ctx.recv();
      }
    });
  });
  (void)g;
  (void)sup;
  sys.start();
  REQUIRE(wait_until([&] { return checks.load() == 8 && pongs.load() == 1; }));
}

TEST_CASE("broadcast reaches every member with one shared payload", "[children]") {
  std::mutex mu;
  std::vector<const std::string*> seen;
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(5).exec([&](bastion::context& ctx) -> bastion::task<> {
      for (;;) {
        auto m = co_await ctx.recv();
        bastion::match(
            std::move(m),
            [&](const bastion::broadcast<std::string>& b) {
              std::lock_guard lock(mu);
              seen.push_back(&b.value());
            },
            bastion::otherwise([](bastion::message&&) {}));
      }
    });
  });
  sys.start();
  REQUIRE(g.broadcast(std::string("hello")) == 5);
  REQUIRE(wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() == 5;
  }));
  std::lock_guard lock(mu);
  for (auto* p : seen) {
    REQUIRE(p == seen[0]);
  }
}

TEST_CASE("sends to a stopped child go to dead letters; an ask gets no_reply", "[children]") {
  std::atomic<int> stops{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(2).exec(doubler).after_stop([&] { stops++; });
  });
  sys.start();
  auto elems = g.elems();
  REQUIRE(sys.runtime().run(elems[0].ask<int>(1, 5s)) == 2);
  elems[0].stop();
  REQUIRE(wait_until([&] { return elems[0].is_stopped(); }));
  REQUIRE(wait_until([&] { return stops.load() == 1; }));
  REQUIRE(g.elems().size() == 1);
  REQUIRE(g.elems()[0] == elems[1]);
  const auto before = sys.dead_letters().count(bastion::dead_letter_reason::stopped_target);
  REQUIRE_FALSE(elems[0].tell(5));
  REQUIRE(sys.dead_letters().count(bastion::dead_letter_reason::stopped_target) == before + 1);
  REQUIRE_THROWS_AS(sys.runtime().run(elems[0].ask<int>(1, 5s)), bastion::no_reply);
  // The other member still answers.
  REQUIRE(sys.runtime().run(elems[1].ask<int>(4, 5s)) == 8);
  // Kill the group: no after_stop for killed members.
  g.kill();
  REQUIRE(wait_until([&] { return elems[1].is_stopped(); }));
  REQUIRE(stops.load() == 1);
  REQUIRE(g.elems().empty());
}

TEST_CASE("a body that returns finishes: not restarted, after_stop runs", "[children]") {
  std::atomic<int> runs{0};
  std::atomic<int> stops{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.redundancy(3)
        .exec([&](bastion::context&) -> bastion::task<> {
          runs++;
          co_return;
        })
        .after_stop([&] { stops++; });
  });
  sys.start();
  REQUIRE(wait_until([&] { return stops.load() == 3; }));
  std::this_thread::sleep_for(20ms);
  REQUIRE(runs.load() == 3);
  REQUIRE(g.elems().empty());
}
