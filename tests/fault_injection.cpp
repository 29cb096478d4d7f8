// Randomized fault injection: a group of actors under one_for_one / always restarts throws at
// random (a seeded hash of the message's sequence number) while handling messages; every
// message sent must be accounted for exactly once: handled, the one in flight in a crash
// (reported to the restart callback), or in dead letters.
//
// The restart callback's bastion::failure names only the in-flight message's type (kind,
// type, sender), not the message itself: the body's copy dies with the failed incarnation.
// So each actor notes the sequence number it is about to handle, and the callback reads it.
// Catch2 is not thread-safe: bodies, senders and callbacks only record into atomics; the test
// thread asserts.
// bastion-test-timeout: 120
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace bastion::test;

#if BASTION_TSAN
constexpr std::uint64_t total = 10'000;
#else
constexpr std::uint64_t total = 20'000;
#endif
constexpr std::size_t n_actors = 4;
constexpr std::size_t n_senders = 4;
constexpr std::uint64_t seed = 0x5eed'b451'0000'0001ULL;
constexpr std::uint64_t crash_per_mille = 10; // 1%

/// splitmix64: the seeded, stateless PRNG deciding which messages crash their handler.
std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
bool crashes_on(std::uint64_t seq) noexcept {
  return mix(seed ^ seq) % 1000 < crash_per_mille;
}

struct job {
  std::uint64_t seq = 0;
};

struct injected_fault : std::runtime_error {
  injected_fault()
      : std::runtime_error("injected fault") {}
};

/// Everything the run records. Per-message counters must each end at exactly 0 or 1, and
/// exactly one of the three per message.
struct ledger {
  std::unique_ptr<std::atomic<std::uint32_t>[]> handled{new std::atomic<std::uint32_t>[total] {
  }};
  std::unique_ptr<std::atomic<std::uint32_t>[]> crashed{new std::atomic<std::uint32_t>[total] {
  }};
  std::unique_ptr<std::atomic<std::uint32_t>[]> dead{new std::atomic<std::uint32_t>[total] {
  }};
  std::atomic<std::uint64_t> n_handled{0};
  std::atomic<std::uint64_t> n_crashed{0};
  std::atomic<std::uint64_t> n_dead{0};
  std::atomic<std::uint64_t> refused{0}; ///< sends that returned false

  /// seq + 1 of the message each actor is handling (0: none); the restart callback reads it.
  std::array<std::atomic<std::uint64_t>, n_actors> in_flight{};
  std::map<std::uint64_t, std::size_t> index_of; ///< child id -> index; fixed before start

  std::atomic<std::uint64_t> restarts{0};
  std::atomic<std::uint64_t> crash_without_message{0}; ///< a restart with nothing in flight
  std::atomic<std::uint64_t> bad_failure_info{0};      ///< failure.message missing or wrong
  std::atomic<std::uint64_t> unexpected{0};            ///< anything else odd

  [[nodiscard]] std::uint64_t accounted() const {
    return n_handled.load() + n_crashed.load() + n_dead.load();
  }
};

/// The actor: notes the job it takes, maybe crashes on it, else counts it handled.
auto faulty_worker(ledger* l) {
  return [l](bastion::context& ctx) -> bastion::task<> {
    const auto it = l->index_of.find(ctx.id());
    if (it == l->index_of.end()) {
      l->unexpected++;
      co_return;
    }
    auto& in_flight = l->in_flight[it->second];
    for (;;) {
      auto msg = co_await ctx.recv();
      bastion::match(
          std::move(msg),
          [&](const job& j) {
            if (j.seq >= total) {
              l->unexpected++;
              return;
            }
            in_flight.store(j.seq + 1);
            if (crashes_on(j.seq)) {
              throw injected_fault{};
            }
            l->handled[j.seq]++;
            l->n_handled++;
            in_flight.store(0);
          },
          bastion::otherwise([l](bastion::message&&) { l->unexpected++; }));
    }
  };
}

/// The restart callback: the message in flight when the child failed is the crashed one.
void on_restart(ledger* l, const bastion::child_ref& ref, const bastion::failure& f) {
  l->restarts++;
  if (f.failed_child != ref.id() || !f.message || f.message->kind != bastion::message_kind::tell
      || *f.message->type != typeid(job)) {
    l->bad_failure_info++;
  }
  try {
    if (f.error) {
      std::rethrow_exception(f.error);
    }
    l->unexpected++;
  } catch (const injected_fault&) {
  } catch (...) {
    l->unexpected++;
  }
  const auto it = l->index_of.find(ref.id());
  if (it == l->index_of.end()) {
    l->unexpected++;
    return;
  }
  const auto v = l->in_flight[it->second].exchange(0);
  if (v == 0) {
    l->crash_without_message++;
    return;
  }
  l->crashed[v - 1]++;
  l->n_crashed++;
}

/// Builds the supervised group and wires the dead-letter handler.
bastion::children_ref build(bastion::system& sys, ledger& l, bastion::mailbox_config cfg) {
  sys.dead_letters().set_handler([&l](bastion::message&& m, bastion::dead_letter_reason) {
    if (!m.is<job>(bastion::message_kind::tell)) {
      l.unexpected++;
      return;
    }
    const auto seq = static_cast<job*>(m.get()->data())->seq;
    if (seq >= total) {
      l.unexpected++;
      return;
    }
    l.dead[seq]++;
    l.n_dead++;
  });
  sys.supervisor([&](bastion::supervisor_builder& s) {
    s.strategy(bastion::one_for_one)
        .restart(bastion::restart_strategy{}.policy(bastion::restart_policy::always()));
    s.children([&](bastion::children_builder& c) {
      c.name("faulty")
          .redundancy(n_actors)
          .mailbox(cfg)
          .exec(faulty_worker(&l))
          .before_restart([&l](const bastion::child_ref& r, const bastion::failure& f) {
            on_restart(&l, r, f);
          });
    });
  });
  const auto group = sys.find_group("faulty").value();
  const auto elems = group.elems();
  for (std::size_t i = 0; i < elems.size(); ++i) {
    l.index_of.emplace(elems[i].id(), i);
  }
  return group;
}

/// After the run: each message accounted for exactly once, nothing odd.
void check_ledger(const ledger& l, std::uint64_t expected_crashes) {
  std::uint64_t missing = 0;
  std::uint64_t twice = 0;
  std::uint64_t crashed_but_should_not = 0;
  for (std::uint64_t s = 0; s < total; ++s) {
    const auto n = l.handled[s].load() + l.crashed[s].load() + l.dead[s].load();
    missing += n == 0 ? 1 : 0;
    twice += n > 1 ? 1 : 0;
    crashed_but_should_not += (l.crashed[s].load() != 0 && !crashes_on(s)) ? 1 : 0;
  }
  INFO("seed " << seed << ", " << total << " messages");
  INFO(
      "handled " << l.n_handled.load() << ", crashed " << l.n_crashed.load() << ", dead "
                 << l.n_dead.load() << ", restarts " << l.restarts.load());
  REQUIRE(l.accounted() == total);
  REQUIRE(missing == 0);
  REQUIRE(twice == 0);
  REQUIRE(crashed_but_should_not == 0);
  REQUIRE(l.restarts.load() == l.n_crashed.load());
  REQUIRE(l.crash_without_message.load() == 0);
  REQUIRE(l.bad_failure_info.load() == 0);
  REQUIRE(l.unexpected.load() == 0);
  REQUIRE(l.refused.load() == l.n_dead.load());
  REQUIRE(l.n_crashed.load() == expected_crashes);
}

} // namespace

TEST_CASE(
    "fault injection, bounded reject mailboxes, 4 sender threads: every message accounted once",
    "[fault_injection]") {
  constexpr std::size_t cap = 256;
  ledger l;
  bastion::system sys{test_config()};
  const auto group = build(
      sys, l, bastion::mailbox_config{}.capacity(cap).policy(bastion::overflow_policy::reject));
  const auto targets = group.elems();
  REQUIRE(targets.size() == n_actors);
  // Before start, a burst twice what the mailboxes hold: half of it goes to dead letters
  // (mailbox_full), so every run has all three outcomes.
  constexpr std::uint64_t burst = 2 * n_actors * cap;
  static_assert(burst < total);
  for (std::uint64_t seq = 0; seq < burst; ++seq) {
    if (!targets[seq % n_actors].tell(job{seq})) {
      l.refused++;
    }
  }
  REQUIRE(l.n_dead.load() == burst - n_actors * cap);
  sys.start();
  // Then 4 sender threads, concurrently with the crashing actors.
  std::vector<std::thread> threads;
  constexpr std::uint64_t per = (total - burst) / n_senders;
  static_assert(burst + per * n_senders == total);
  for (std::size_t s = 0; s < n_senders; ++s) {
    threads.emplace_back([&, s] {
      for (std::uint64_t i = 0; i < per; ++i) {
        const std::uint64_t seq = burst + s * per + i;
        if (!targets[(i + s) % n_actors].tell(job{seq})) {
          l.refused++;
        }
        if (i % 64 == 0) {
          std::this_thread::sleep_for(50us); // let the actors drain now and then
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  REQUIRE(wait_until([&] { return l.accounted() >= total; }));
  std::this_thread::sleep_for(20ms); // a duplicate would show up meanwhile
  // Crashes happen exactly for the delivered messages the hash picks.
  std::uint64_t expected_crashes = 0;
  for (std::uint64_t s = 0; s < total; ++s) {
    expected_crashes += (crashes_on(s) && l.dead[s].load() == 0) ? 1 : 0;
  }
  check_ledger(l, expected_crashes);
  REQUIRE(l.n_crashed.load() > 0);
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(30s));
  sys.dead_letters().set_handler({});
  REQUIRE(l.accounted() == total); // nothing left over was drained at the stop
}

TEST_CASE(
    "fault injection, backpressure mailboxes, 4 sender procs with co_await send: no message "
    "lost across restarts",
    "[fault_injection][backpressure]") {
  ledger l;
  bastion::system sys{test_config()};
  const auto group = build(
      sys, l, bastion::mailbox_config{}.capacity(8).policy(bastion::overflow_policy::backpressure));
  sys.start();
  const auto targets = group.elems();
  REQUIRE(targets.size() == n_actors);
  constexpr std::uint64_t per = total / n_senders;
  std::atomic<std::size_t> done{0};
  std::vector<bastion::join_handle<void>> procs;
  for (std::size_t s = 0; s < n_senders; ++s) {
    procs.push_back(sys.runtime().spawn(
        [](std::vector<bastion::child_ref> to,
           std::size_t s,
           ledger* l,
           std::atomic<std::size_t>* done) -> bastion::task<> {
          for (std::uint64_t i = 0; i < per; ++i) {
            if (!co_await to[(i + s) % n_actors].send(job{s * per + i})) {
              l->refused++;
            }
          }
          (*done)++;
        }(targets, s, &l, &done)));
  }
  REQUIRE(wait_until([&] { return done.load() == n_senders; }));
  REQUIRE(wait_until([&] { return l.accounted() >= total; }));
  std::this_thread::sleep_for(20ms);
  std::uint64_t expected_crashes = 0;
  for (std::uint64_t s = 0; s < total; ++s) {
    expected_crashes += crashes_on(s) ? 1 : 0;
  }
  check_ledger(l, expected_crashes);
  REQUIRE(l.n_dead.load() == 0); // backpressure waits instead of shedding
  sys.stop();
  REQUIRE(sys.block_until_stopped_for(30s));
  sys.dead_letters().set_handler({});
}

TEST_CASE(
    "an ask in flight when its handler throws: the asker gets no_reply, the callback the ask",
    "[fault_injection][ask]") {
  std::atomic<int> restarts{0};
  std::atomic<int> ask_reported{0};
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec([](bastion::context& ctx) -> bastion::task<> {
       for (;;) {
         auto msg = co_await ctx.recv();
         bastion::match(
             std::move(msg),
             [](bastion::question<int> q) {
               if (q.value() < 0) {
                 throw injected_fault{};
               }
               q.reply(q.value() + 1);
             },
             bastion::otherwise([](bastion::message&&) {}));
       }
     }).before_restart([&](const bastion::failure& f) {
      if (f.message && f.message->kind == bastion::message_kind::ask
          && *f.message->type == typeid(int)) {
        ask_reported++;
      }
      restarts++; // last: the test thread reads ask_reported once it sees this
    });
  });
  sys.start();
  const auto r = g.elems().at(0);
  REQUIRE(sys.runtime().run(r.ask<int>(1, 5s)) == 2);
  REQUIRE_THROWS_AS(sys.runtime().run(r.ask<int>(-1, 5s)), bastion::no_reply);
  REQUIRE(wait_until([&] { return restarts.load() == 1; }));
  REQUIRE(ask_reported.load() == 1);
  REQUIRE(sys.runtime().run(r.ask<int>(41, 5s)) == 42); // the new incarnation answers
}
