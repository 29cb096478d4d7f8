// Tests of the supervisor callbacks of bastion/actor/supervisor.hpp (supervisor_builder's
// before_start, after_start, before_restart, after_restart, after_stop): their order around
// their children's callbacks through a start, a restart by the parent (escalation, and a
// one_for_all sibling failure) and a stop; the failure they receive; a throwing callback.
// Catch2 is not thread-safe: actor bodies and callbacks only record; the test thread asserts.
// bastion-test-timeout: 120
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>
#include <bastion/log.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

/// The callbacks of supervisor "s" holding group "g", started and then stopped gracefully.
const std::vector<std::string> start_then_stop{
    "s.before_start",
    "g.before_start",
    "g.after_start",
    "s.after_start",
    "g.after_stop",
    "s.after_stop"};

/// Throws on the string "fail"; answers question<int> with its incarnation.
bastion::task<> worker(bastion::context& ctx) {
  for (;;) {
    auto msg = co_await ctx.recv();
    bastion::match(
        std::move(msg),
        [](const std::string& s) {
          if (s == "fail") {
            throw std::runtime_error("told to fail");
          }
        },
        [&](bastion::question<int> q) { q.reply(static_cast<int>(ctx.incarnation())); },
        bastion::otherwise([](bastion::message&&) {}));
  }
}

/// Records every callback of a group as "<name>.<callback>".
void group_callbacks(bastion::children_builder& c, event_log& log, const std::string& name) {
  c.name(name)
      .exec(worker)
      .before_start([&log, name] { log.add(name + ".before_start"); })
      .after_start([&log, name] { log.add(name + ".after_start"); })
      .before_restart([&log, name] { log.add(name + ".before_restart"); })
      .after_restart([&log, name] { log.add(name + ".after_restart"); })
      .after_stop([&log, name] { log.add(name + ".after_stop"); });
}

/// What a supervisor's restart callbacks saw.
struct seen_failure {
  std::string what;
  std::uint64_t failed_child = 0;
  bool has_message = false;
  std::uint64_t ref_id = 0;
};

/// Records every callback of a supervisor as "<name>.<callback>" (and the failure its
/// before_restart receives).
void supervisor_callbacks(
    bastion::supervisor_builder& s, event_log& log, const std::string& name, seen_failure& f) {
  s.before_start([&log, name](const bastion::supervisor_ref&) { log.add(name + ".before_start"); })
      .after_start([&log, name] { log.add(name + ".after_start"); })
      .before_restart(
          [&log, &f, name](const bastion::supervisor_ref& r, const bastion::failure& x) {
            f.what = x.what();
            f.failed_child = x.failed_child;
            f.has_message = x.message.has_value();
            f.ref_id = r.id();
            log.add(name + ".before_restart");
          })
      .after_restart([&log, name](const bastion::failure&) { log.add(name + ".after_restart"); })
      .after_stop([&log, name] { log.add(name + ".after_stop"); });
}

} // namespace

TEST_CASE("supervisor callbacks: order through a start and a stop", "[supervisor][callbacks]") {
  event_log log;
  seen_failure unused;
  std::uint64_t seen_id = 0;
  std::uint64_t sup_id = 0;
  {
    bastion::system sys{test_config()};
    auto sup = sys.supervisor([&](bastion::supervisor_builder& s) {
      supervisor_callbacks(s, log, "s", unused);
      s.before_start([&](const bastion::supervisor_ref& r) {
        seen_id = r.id();
        log.add("s.before_start");
      });
      s.children([&](bastion::children_builder& c) { group_callbacks(c, log, "g"); });
    });
    sup_id = sup.id();
    sys.start();
    REQUIRE(wait_until([&] { return log.has("s.after_start"); }));
    sys.stop();
    sys.block_until_stopped();
  }
  REQUIRE(log.snapshot() == start_then_stop);
  REQUIRE(seen_id == sup_id);
}

TEST_CASE(
    "supervisor callbacks: restarted by the parent after an escalation",
    "[supervisor][callbacks]") {
  event_log log;
  seen_failure f;
  std::uint64_t inner_id = 0;
  int answer = 0;
  {
    bastion::system sys{test_config()};
    bastion::children_ref x;
    sys.supervisor([&](bastion::supervisor_builder& p) {
      p.before_start([&] { log.add("p.before_start"); }).after_stop([&] {
        log.add("p.after_stop");
      });
      p.supervisor([&](bastion::supervisor_builder& s) {
        // The first failure exceeds the intensity: s gives up and fails to p.
        s.restart(bastion::restart_strategy{}.intensity(0, 10s));
        supervisor_callbacks(s, log, "s", f);
        s.children([&](bastion::children_builder& c) { group_callbacks(c, log, "x"); });
        inner_id = s.ref().id();
        x = s.groups().at(0);
      });
    });
    sys.start();
    REQUIRE(wait_until([&] { return log.has("s.after_start"); }));
    const auto child = x.elems().at(0);
    REQUIRE(child.tell(std::string{"fail"}));
    REQUIRE(wait_until([&] { return log.has("s.after_restart"); }));
    auto asked = child.ask<int>(0, 5s);
    answer = sys.runtime().run(std::move(asked));
    sys.stop();
    sys.block_until_stopped();
  }
  const std::vector<std::string> expected{
      "p.before_start",
      "s.before_start",
      "x.before_start",
      "x.after_start",
      "s.after_start",
      // x fails; s gives up (x is stopped for now: no after_stop) and p restarts s.
      "s.before_restart",
      "x.before_restart",
      "x.after_restart",
      "s.after_restart",
      "x.after_stop",
      "s.after_stop",
      "p.after_stop"};
  REQUIRE(log.snapshot() == expected);
  REQUIRE_THAT(f.what, Catch::Contains("intensity"));
  REQUIRE(f.failed_child == inner_id);
  REQUIRE_FALSE(f.has_message);
  REQUIRE(f.ref_id == inner_id);
  REQUIRE(answer == 2); // the group's ref reaches the restarted incarnation
}

TEST_CASE(
    "supervisor callbacks: restarted with its one_for_all sibling; the failure is the sibling's",
    "[supervisor][callbacks]") {
  event_log log;
  seen_failure f;
  std::uint64_t sibling_id = 0;
  {
    bastion::system sys{test_config()};
    bastion::children_ref a;
    sys.supervisor([&](bastion::supervisor_builder& p) {
      p.strategy(bastion::one_for_all);
      p.children([&](bastion::children_builder& c) { group_callbacks(c, log, "a"); });
      p.supervisor([&](bastion::supervisor_builder& s) {
        supervisor_callbacks(s, log, "s", f);
        s.children([&](bastion::children_builder& c) { group_callbacks(c, log, "y"); });
      });
      a = p.groups().at(0);
    });
    sys.start();
    REQUIRE(wait_until([&] { return log.has("s.after_start"); }));
    const auto child = a.elems().at(0);
    sibling_id = child.id();
    REQUIRE(child.tell(std::string{"fail"}));
    REQUIRE(wait_until([&] { return log.has("s.after_restart"); }));
    sys.stop();
    sys.block_until_stopped();
  }
  const std::vector<std::string> expected{
      "a.before_start",
      "a.after_start",
      "s.before_start",
      "y.before_start",
      "y.after_start",
      "s.after_start",
      // a fails: p stops s (and y) for now, then restarts a and s in start order.
      "a.before_restart",
      "a.after_restart",
      "s.before_restart",
      "y.before_restart",
      "y.after_restart",
      "s.after_restart",
      // Graceful stop: reverse start order, each subtree before its supervisor.
      "y.after_stop",
      "s.after_stop",
      "a.after_stop"};
  REQUIRE(log.snapshot() == expected);
  REQUIRE(f.what == "told to fail");
  REQUIRE(f.failed_child == sibling_id);
  REQUIRE(f.has_message);
}

TEST_CASE(
    "supervisor callbacks: a throwing callback is logged and the supervisor goes on",
    "[supervisor][callbacks]") {
  event_log log;
  int answer = 0;
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  bastion::logger().sinks().push_back(sink); // no system runs yet
  {
    bastion::system sys{test_config().log_level("err")};
    bastion::children_ref g;
    sys.supervisor([&](bastion::supervisor_builder& s) {
      s.before_start([&] {
         log.add("s.before_start");
         throw std::runtime_error("before_start boom");
       })
          .after_start([&] {
            log.add("s.after_start");
            throw 42; // not a std::exception
          })
          .after_stop([&] {
            log.add("s.after_stop");
            throw std::runtime_error("after_stop boom");
          });
      g = s.children([&](bastion::children_builder& c) { group_callbacks(c, log, "g"); })
              .groups()
              .at(0);
    });
    sys.start();
    REQUIRE(wait_until([&] { return log.has("s.after_start"); }));
    auto asked = g.elems().at(0).ask<int>(0, 5s);
    answer = sys.runtime().run(std::move(asked));
    sys.stop();
    sys.block_until_stopped();
  }
  const auto lines = sink->last_formatted();
  bastion::logger().sinks().pop_back();
  bastion::set_log_level("off");
  REQUIRE(log.snapshot() == start_then_stop);
  REQUIRE(answer == 1);
  auto logged = [&](const std::string& part) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
      return l.find(part) != std::string::npos;
    });
  };
  REQUIRE(logged("before_start boom"));
  REQUIRE(logged("the after_start callback"));
  REQUIRE(logged("after_stop boom"));
}
