// Tests of bastion/actor/{supervisor,restart}.hpp: every strategy with every policy, siblings
// really stopped before replacements start, restart order, intensity escalation, backoff.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 180
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
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

/// A thread-safe event log with timestamps.
struct timed_log {
  std::mutex mu;
  std::vector<std::string> events;
  std::vector<std::chrono::steady_clock::time_point> times;
  void add(std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
    times.push_back(std::chrono::steady_clock::now());
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
  std::size_t count(const std::string& prefix) {
    std::lock_guard lock(mu);
    return static_cast<std::size_t>(std::count_if(
        events.begin(), events.end(), [&](auto& e) { return e.rfind(prefix, 0) == 0; }));
  }
  std::ptrdiff_t index_of(const std::string& e) {
    std::lock_guard lock(mu);
    auto it = std::find(events.begin(), events.end(), e);
    return it == events.end() ? -1 : it - events.begin();
  }
};

/// Records its end (normal, exception or cancellation) in the log.
struct stop_guard {
  timed_log* log;
  std::string what;
  ~stop_guard() { log->add(what); }
};

enum class fail_mode { once_on_message, always };

/// Adds group `name` whose body logs start/stop; child "b" fails per `mode`.
void add_member(
    bastion::supervisor_builder& s,
    const std::string& name,
    timed_log& body,
    timed_log& spawns,
    fail_mode mode) {
  s.children([&body, &spawns, name, mode](bastion::children_builder& c) {
    c.name(name)
        .exec([&body, name, mode](bastion::context& ctx) -> bastion::task<> {
          body.add(fmt::format("start:{}:{}", name, ctx.incarnation()));
          stop_guard g{&body, fmt::format("stop:{}:{}", name, ctx.incarnation())};
          if (name == "b" && mode == fail_mode::always && ctx.incarnation() > 1) {
            throw std::runtime_error("b fails again");
          }
          for (;;) {
            auto m = co_await ctx.recv();
            if (name == "b" && m.is<std::string>(bastion::message_kind::tell)) {
              throw std::runtime_error("b fails");
            }
          }
        })
        .before_start([&spawns, name] { spawns.add("spawn:" + name); })
        .before_restart([&spawns, name] { spawns.add("spawn:" + name); })
        .after_stop([&spawns, name] { spawns.add("after_stop:" + name); });
  });
}

struct policy_case {
  const char* name;
  bastion::restart_policy policy;
  fail_mode mode;
};

} // namespace

TEST_CASE("backoff delays: immediate, linear, exponential with a cap", "[restart]") {
  using ms = std::chrono::milliseconds;
  REQUIRE(bastion::backoff::immediate().delay(5) == ms{0});
  auto lin = bastion::backoff::linear(10ms);
  REQUIRE(lin.delay(0) == ms{10});
  REQUIRE(lin.delay(1) == ms{20});
  REQUIRE(lin.delay(4) == ms{50});
  auto ex = bastion::backoff::exponential(10ms, 2.0, 50ms);
  REQUIRE(ex.delay(0) == ms{10});
  REQUIRE(ex.delay(1) == ms{20});
  REQUIRE(ex.delay(2) == ms{40});
  REQUIRE(ex.delay(3) == ms{50});
  REQUIRE(ex.delay(60) == ms{50});
  REQUIRE_THROWS_WITH(bastion::backoff::exponential(10ms, 0.5), Catch::Contains("multiplier"));
  REQUIRE(bastion::restart_policy::always().allows(1000));
  REQUIRE_FALSE(bastion::restart_policy::never().allows(0));
  REQUIRE(bastion::restart_policy::tries(2).allows(1));
  REQUIRE_FALSE(bastion::restart_policy::tries(2).allows(2));
}

TEST_CASE("every strategy with every policy: who restarts, how often", "[supervisor]") {
  const policy_case policies[] = {
      {"always", bastion::restart_policy::always(), fail_mode::once_on_message},
      {"never", bastion::restart_policy::never(), fail_mode::once_on_message},
      {"tries(2)", bastion::restart_policy::tries(2), fail_mode::always},
  };
  const bastion::supervision_strategy strategies[] = {
      bastion::one_for_one, bastion::one_for_all, bastion::rest_for_one};
  // expected spawns of a, b, c: [strategy][policy]
  const std::size_t expected[3][3][3] = {
      {{1, 2, 1}, {1, 1, 1}, {1, 3, 1}}, // one_for_one
      {{2, 2, 2}, {1, 1, 1}, {3, 3, 3}}, // one_for_all
      {{1, 2, 2}, {1, 1, 1}, {1, 3, 3}}, // rest_for_one
  };
  for (int si = 0; si < 3; ++si) {
    for (int pi = 0; pi < 3; ++pi) {
      const auto& pc = policies[pi];
      DYNAMIC_SECTION("strategy " << si << " policy " << pc.name) {
        timed_log body;
        timed_log spawns;
        bastion::system sys{test_config()};
        sys.supervisor([&](bastion::supervisor_builder& s) {
          s.strategy(strategies[si]).restart(bastion::restart_strategy{}.policy(pc.policy));
          add_member(s, "a", body, spawns, pc.mode);
          add_member(s, "b", body, spawns, pc.mode);
          add_member(s, "c", body, spawns, pc.mode);
        });
        sys.start();
        REQUIRE(wait_until([&] {
          return body.index_of("start:a:1") >= 0 && body.index_of("start:b:1") >= 0
                 && body.index_of("start:c:1") >= 0;
        }));
        auto b = sys.find_group("b")->elems()[0];
        b.tell(std::string("fail"));
        const auto* e = expected[si][pi];
        REQUIRE(wait_until([&] {
          return spawns.count("spawn:a") == e[0] && spawns.count("spawn:b") == e[1]
                 && spawns.count("spawn:c") == e[2];
        }));
        const bool b_ends = pc.mode == fail_mode::always || pc.policy.allows(0) == false;
        if (b_ends) {
          REQUIRE(wait_until([&] { return spawns.count("after_stop:b") == 1; }));
          REQUIRE(wait_until([&] { return sys.find_group("b") == std::nullopt; }));
        }
        std::this_thread::sleep_for(30ms); // nothing more happens
        REQUIRE(spawns.count("spawn:a") == e[0]);
        REQUIRE(spawns.count("spawn:b") == e[1]);
        REQUIRE(spawns.count("spawn:c") == e[2]);
        REQUIRE(spawns.count("after_stop:a") == 0);
        REQUIRE(spawns.count("after_stop:c") == 0);
        sys.stop();
        sys.block_until_stopped();
        REQUIRE(spawns.count("after_stop:a") == 1);
        REQUIRE(spawns.count("after_stop:b") == 1);
        REQUIRE(spawns.count("after_stop:c") == 1);
      }
    }
  }
}

TEST_CASE(
    "one_for_all and rest_for_one stop the siblings before any replacement starts",
    "[supervisor]") {
  for (auto strategy : {bastion::one_for_all, bastion::rest_for_one}) {
    timed_log body;
    timed_log spawns;
    {
      bastion::system sys{test_config()};
      sys.supervisor([&](bastion::supervisor_builder& s) {
        s.strategy(strategy);
        add_member(s, "a", body, spawns, fail_mode::once_on_message);
        add_member(s, "b", body, spawns, fail_mode::once_on_message);
        add_member(s, "c", body, spawns, fail_mode::once_on_message);
      });
      sys.start();
      REQUIRE(wait_until([&] {
        return body.index_of("start:a:1") >= 0 && body.index_of("start:b:1") >= 0
               && body.index_of("start:c:1") >= 0;
      }));
      sys.find_group("b")->elems()[0].tell(std::string("fail"));
      REQUIRE(wait_until(
          [&] { return body.index_of("start:b:2") >= 0 && body.index_of("start:c:2") >= 0; }));
      if (strategy == bastion::one_for_all) {
        REQUIRE(wait_until([&] { return body.index_of("start:a:2") >= 0; }));
      }
    }
    const auto first_new = std::min(body.index_of("start:b:2"), body.index_of("start:c:2"));
    REQUIRE(body.index_of("stop:b:1") < first_new);
    REQUIRE(body.index_of("stop:c:1") >= 0);
    REQUIRE(body.index_of("stop:c:1") < first_new);
    if (strategy == bastion::one_for_all) {
      REQUIRE(body.index_of("stop:a:1") < body.index_of("start:a:2"));
      REQUIRE(body.index_of("stop:a:1") < first_new);
      // Replacements start in start order: a, b, c.
      auto ev = spawns.snapshot();
      const std::vector<std::string> tail(ev.begin() + 3, ev.begin() + 6);
      REQUIRE(tail == std::vector<std::string>{"spawn:a", "spawn:b", "spawn:c"});
    } else {
      // a is left alone, then stopped by the system's stop.
      REQUIRE(body.index_of("start:a:2") == -1);
      auto ev = spawns.snapshot();
      const std::vector<std::string> tail(ev.begin() + 3, ev.begin() + 5);
      REQUIRE(tail == std::vector<std::string>{"spawn:b", "spawn:c"});
    }
  }
}

TEST_CASE("strategy can be changed at run time", "[supervisor]") {
  timed_log body;
  timed_log spawns;
  bastion::system sys{test_config()};
  auto sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    add_member(s, "a", body, spawns, fail_mode::once_on_message);
    add_member(s, "b", body, spawns, fail_mode::once_on_message);
  });
  sys.start();
  REQUIRE(wait_until([&] { return spawns.count("spawn:") == 2; }));
  sup.strategy(bastion::one_for_all);
  REQUIRE(wait_until([&] { return body.count("start:") == 2; }));
  sys.find_group("b")->elems()[0].tell(std::string("fail"));
  REQUIRE(wait_until([&] { return spawns.count("spawn:a") == 2 && spawns.count("spawn:b") == 2; }));
}

TEST_CASE(
    "a child supervisor restarts its subtree under one_for_all; refs stay valid", "[supervisor]") {
  std::atomic<int> y_spawns{0};
  bastion::children_ref f;
  bastion::children_ref y;
  bastion::system sys{test_config()};
  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_all);
    s.children([&](bastion::children_builder& c) {
      c.name("f").exec([](bastion::context& ctx) -> bastion::task<> {
        for (;;) {
          auto m = co_await ctx.recv();
          if (ctx.incarnation() == 1 && m.is<std::string>(bastion::message_kind::tell)) {
            throw std::runtime_error("f fails");
          }
        }
      });
    });
    s.supervisor([&](bastion::supervisor_builder& inner) {
      inner.children([&](bastion::children_builder& c) {
        c.name("y")
            .exec([](bastion::context& ctx) -> bastion::task<> {
              for (;;) {
                auto m = co_await ctx.recv();
                bastion::match(
                    std::move(m),
                    [&](bastion::question<int> q) { q.reply(static_cast<int>(ctx.incarnation())); },
                    bastion::otherwise([](bastion::message&&) {}));
              }
            })
            .before_start([&] { y_spawns++; })
            .before_restart([&] { y_spawns++; });
      });
    });
  });
  f = *sys.find_group("f");
  y = *sys.find_group("y");
  auto y_ref = y.elems()[0];
  sys.start();
  REQUIRE(sys.runtime().run(y_ref.ask<int>(0, 5s)) == 1);
  f.elems()[0].tell(std::string("fail"));
  REQUIRE(wait_until([&] { return y_spawns.load() == 2; }));
  // The same ref reaches the new incarnation of y.
  REQUIRE(wait_until([&] { return sys.runtime().run(y_ref.ask<int>(0, 5s)) == 2; }));
}

TEST_CASE("restart intensity: a supervisor gives up and escalates to its parent", "[supervisor]") {
  timed_log spawns;
  std::string sibling_failure;
  bastion::system sys{test_config()};
  sys.supervisor([&](bastion::supervisor_builder& p) {
    p.strategy(bastion::one_for_all)
        .restart(bastion::restart_strategy{}.policy(bastion::restart_policy::tries(1)));
    p.children([&](bastion::children_builder& c) {
      c.name("sibling")
          .exec([](bastion::context& ctx) -> bastion::task<> {
            for (;;) {
              (void)co_await ctx.recv();
            }
          })
          .before_start([&] { spawns.add("spawn:s"); })
          .before_restart([&](const bastion::failure& f) {
            sibling_failure = f.what();
            spawns.add("spawn:s");
          });
    });
    p.supervisor([&](bastion::supervisor_builder& c) {
      c.restart(bastion::restart_strategy{}.intensity(2, 10s));
      c.children([&](bastion::children_builder& x) {
        x.name("x")
            .exec([](bastion::context&) -> bastion::task<> {
              throw std::runtime_error("x always fails");
              co_return;
            })
            .before_start([&] { spawns.add("spawn:x"); })
            .before_restart([&] { spawns.add("spawn:x"); })
            .after_stop([&] { spawns.add("after_stop:x"); });
      });
    });
  });
  sys.start();
  // x: 3 spawns per incarnation of its supervisor (start + 2 restarts), the 3rd failure
  // escalates; the parent restarts it once (tries(1)) with the sibling (one_for_all), then
  // leaves it stopped.
  REQUIRE(wait_until([&] { return spawns.count("after_stop:x") == 1; }));
  std::this_thread::sleep_for(30ms);
  REQUIRE(spawns.count("spawn:x") == 6);
  REQUIRE(spawns.count("spawn:s") == 2);
  REQUIRE_THAT(sibling_failure, Catch::Contains("intensity"));
  REQUIRE_FALSE(sys.find_group("x").has_value());
  REQUIRE(sys.find_group("sibling").has_value());
}

TEST_CASE("linear and exponential backoff: order, counts and minimum delays", "[supervisor]") {
  struct backoff_case {
    bastion::backoff b;
    std::vector<std::chrono::milliseconds> gaps;
  };
  const backoff_case cases[] = {
      {bastion::backoff::linear(25ms), {25ms, 50ms, 75ms}},
      {bastion::backoff::exponential(20ms, 2.0, 50ms), {20ms, 40ms, 50ms}},
  };
  for (const auto& bc : cases) {
    timed_log spawns;
    bastion::system sys{test_config()};
    sys.supervisor([&](bastion::supervisor_builder& s) {
      s.restart(bastion::restart_strategy{}.backoff(bc.b));
      s.children([&](bastion::children_builder& c) {
        c.exec([](bastion::context& ctx) -> bastion::task<> {
           if (ctx.incarnation() <= 3) {
             throw std::runtime_error("not yet");
           }
           for (;;) {
             (void)co_await ctx.recv();
           }
         })
            .before_start([&] { spawns.add("spawn"); })
            .before_restart([&] { spawns.add("spawn"); });
      });
    });
    sys.start();
    REQUIRE(wait_until([&] { return spawns.count("spawn") == 4; }));
    std::this_thread::sleep_for(100ms);
    REQUIRE(spawns.count("spawn") == 4);
    std::lock_guard lock(spawns.mu);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto gap = spawns.times[i + 1] - spawns.times[i];
      INFO("restart " << i);
      REQUIRE(gap >= bc.gaps[i]);
    }
  }
}

TEST_CASE("backoff_reset: a child that ran long enough starts its backoff over", "[supervisor]") {
  // Backoff 10 ms, then 10 s: a restart within a second means the backoff started over.
  // Incarnation 1 fails at once (10 ms). Incarnation 2 runs 150 ms (> the 50 ms reset), then
  // fails: with the reset it waits 10 ms again, without it 10 s. Incarnation 3 fails at once,
  // before the reset: 10 s either way.
  for (const bool reset : {true, false}) {
    DYNAMIC_SECTION("reset " << reset) {
      std::atomic<int> started{0};
      bastion::system sys{test_config()};
      auto strategy = bastion::restart_strategy{}.backoff(
          bastion::backoff::exponential(10ms, 1000.0, std::chrono::hours{1}));
      if (reset) {
        strategy.backoff_reset(50ms);
      }
      sys.supervisor([&](bastion::supervisor_builder& s) {
        s.restart(strategy);
        s.children([&](bastion::children_builder& c) {
          c.name("flaky").exec([&](bastion::context& ctx) -> bastion::task<> {
            started++;
            if (ctx.incarnation() != 2) {
              throw std::runtime_error("fails at once");
            }
            (void)co_await ctx.recv();
            throw std::runtime_error("fails after a while");
          });
        });
      });
      sys.start();
      REQUIRE(wait_until([&] { return started.load() == 2; }, 10s));
      std::this_thread::sleep_for(150ms);
      sys.find_group("flaky")->elems()[0].tell(1);
      if (reset) {
        REQUIRE(wait_until([&] { return started.load() == 3; }, 5s));
      }
      std::this_thread::sleep_for(1s);
      CHECK(started.load() == (reset ? 3 : 2));
    }
  }
  REQUIRE_THROWS_WITH(
      bastion::restart_strategy{}.backoff_reset(0ms), Catch::Contains("backoff_reset"));
}

TEST_CASE("the supervisor keeps handling events during a backoff", "[supervisor]") {
  timed_log log;
  bastion::system sys{test_config()};
  auto sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.restart(bastion::restart_strategy{}.backoff(bastion::backoff::linear(300ms)));
    s.children([&](bastion::children_builder& c) {
      c.exec([&](bastion::context& ctx) -> bastion::task<> {
         if (ctx.incarnation() == 1) {
           log.add("a:fails");
           throw std::runtime_error("a fails");
         }
         for (;;) {
           (void)co_await ctx.recv();
         }
       }).before_restart([&] { log.add("a:restart"); });
    });
  });
  sys.start();
  REQUIRE(wait_until([&] { return log.count("a:fails") == 1; }));
  sup.children([&](bastion::children_builder& c) {
    c.exec([](bastion::context& ctx) -> bastion::task<> {
       for (;;) {
         (void)co_await ctx.recv();
       }
     }).before_start([&] { log.add("b:start"); });
  });
  REQUIRE(wait_until([&] { return log.count("a:restart") == 1; }));
  REQUIRE(log.index_of("b:start") >= 0);
  REQUIRE(log.index_of("b:start") < log.index_of("a:restart"));
}

TEST_CASE("a top-level supervisor stopped on purpose stays stopped", "[supervisor]") {
  std::atomic<int> spawns{0};
  std::atomic<int> stops{0};
  bastion::system sys{test_config()};
  auto sup = sys.supervisor([&](bastion::supervisor_builder& s) {
    s.children([&](bastion::children_builder& c) {
      c.redundancy(2)
          .exec([](bastion::context& ctx) -> bastion::task<> {
            for (;;) {
              (void)co_await ctx.recv();
            }
          })
          .before_start([&] { spawns++; })
          .before_restart([&] { spawns++; })
          .after_stop([&] { stops++; });
    });
  });
  sys.start();
  REQUIRE(wait_until([&] { return spawns.load() == 2; }));
  sup.stop();
  REQUIRE(wait_until([&] { return stops.load() == 2; }));
  std::this_thread::sleep_for(30ms);
  REQUIRE(spawns.load() == 2);
  // Adding to a stopped supervisor: the group is stopped at once.
  auto late = sup.children([](bastion::children_builder& c) {
    c.exec([](bastion::context&) -> bastion::task<> { co_return; });
  });
  REQUIRE(wait_until([&] { return late.elems().empty(); }));
}
