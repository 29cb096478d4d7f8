// Tests of message delivery through refs: FIFO per sender–receiver pair under concurrency,
// dead letters for every undeliverable case, each overflow policy through refs (tell and the
// awaitable send), ask timeouts and unanswered asks (the asker never hangs).
// Catch2 is not thread-safe: actor bodies, senders and handlers only record into atomics or
// mutex-guarded vectors; the test thread asserts.
// bastion-test-timeout: 120
#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using reason = bastion::dead_letter_reason;

namespace {

using namespace bastion::test;

#if BASTION_TSAN
constexpr std::uint64_t per_sender = 5'000;
#else
constexpr std::uint64_t per_sender = 20'000;
#endif
constexpr std::uint32_t n_senders = 4;

/// A sequence-numbered message: the `seq`-th (0-based) of sender `from`.
struct seq_msg {
  std::uint32_t from = 0;
  std::uint64_t seq = 0;
};

/// What the FIFO checker records (written by the actor only).
struct fifo_record {
  std::array<std::atomic<std::uint64_t>, n_senders> next{}; ///< the next expected seq
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> out_of_order{0};
  std::atomic<std::uint64_t> unexpected{0};
};

/// Receives seq_msg tells forever, checking that each sender's seqs arrive as 0, 1, 2, ...
/// (so: in order, none lost, none twice).
auto fifo_checker(fifo_record* r) {
  return [r](bastion::context& ctx) -> bastion::task<> {
    for (;;) {
      auto msg = co_await ctx.recv();
      bastion::match(
          std::move(msg),
          [r](const seq_msg& m) {
            if (m.from >= n_senders) {
              r->unexpected++;
              return;
            }
            auto& next = r->next[m.from];
            if (next.load() != m.seq) {
              r->out_of_order++;
            }
            next.store(m.seq + 1);
            r->received++;
          },
          bastion::otherwise([r](bastion::message&&) { r->unexpected++; }));
    }
  };
}

/// A thread-safe log of ints.
struct int_log {
  std::mutex mu;
  std::vector<int> v;
  void add(int x) {
    std::lock_guard lock(mu);
    v.push_back(x);
  }
  std::vector<int> snapshot() {
    std::lock_guard lock(mu);
    return v;
  }
};

/// An actor that receives nothing until `open` is set, then logs every int it is told.
auto gated_logger(std::atomic<bool>* open, int_log* log) {
  return [open, log](bastion::context& ctx) -> bastion::task<> {
    while (!open->load()) {
      co_await bastion::sleep_for(1ms);
    }
    for (;;) {
      auto msg = co_await ctx.recv();
      bastion::match(
          std::move(msg), [log](int v) { log->add(v); }, bastion::otherwise([](bastion::message&&) {
          }));
    }
  };
}

/// Answers question<int> with twice the value; drops everything else (an unmatched ask).
bastion::task<> doubler(bastion::context& ctx) {
  for (;;) {
    auto msg = co_await ctx.recv();
    bastion::match(
        std::move(msg),
        [](bastion::question<int> q) { q.reply(q.value() * 2); },
        bastion::otherwise([](bastion::message&&) {}));
  }
}

/// Takes every question<int> and drops it without a reply.
bastion::task<> dropper(bastion::context& ctx) {
  for (;;) {
    auto msg = co_await ctx.recv();
    bastion::match(
        std::move(msg),
        [](bastion::question<int>) { /* dropped: the asker gets no_reply */ },
        bastion::otherwise([](bastion::message&&) {}));
  }
}

/// Keeps every message forever and never replies.
bastion::task<> hoarder(bastion::context& ctx) {
  std::vector<bastion::message> kept;
  for (;;) {
    kept.push_back(co_await ctx.recv());
  }
}

/// What a dead-letter handler saw: (reason, the int payload of a tell or ask, or -1).
struct dead_log {
  std::mutex mu;
  std::vector<std::pair<reason, int>> v;
  void add(bastion::message&& m, reason r) {
    int x = -1;
    if (m.is<int>(bastion::message_kind::tell) || m.is<int>(bastion::message_kind::ask)) {
      x = *static_cast<int*>(m.get()->data());
    }
    std::lock_guard lock(mu);
    v.emplace_back(r, x);
  }
  std::vector<std::pair<reason, int>> snapshot() {
    std::lock_guard lock(mu);
    return v;
  }
};

/// Clears a sink's handler on scope exit (the handler captures test locals).
struct handler_guard {
  bastion::dead_letters& sink;
  ~handler_guard() { sink.set_handler({}); }
};

constexpr std::array<reason, 5> all_reasons{
    reason::unknown_target,
    reason::stopped_target,
    reason::mailbox_full,
    reason::dropped_oldest,
    reason::unanswered_ask};

std::array<std::uint64_t, 5> counts_of(const bastion::dead_letters& d) {
  std::array<std::uint64_t, 5> c{};
  for (std::size_t i = 0; i < all_reasons.size(); ++i) {
    c[i] = d.count(all_reasons[i]);
  }
  return c;
}

std::uint64_t
delta(const bastion::dead_letters& d, const std::array<std::uint64_t, 5>& before, reason r) {
  return d.count(r) - before[static_cast<std::size_t>(r)];
}

} // namespace

TEST_CASE("FIFO per sender-receiver pair: 4 sender threads, tell", "[delivery]") {
  fifo_record rec;
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) { c.exec(fifo_checker(&rec)); });
  sys.start();
  const auto target = g.elems().at(0);
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> threads;
  for (std::uint32_t s = 0; s < n_senders; ++s) {
    threads.emplace_back([&, s] {
      for (std::uint64_t i = 0; i < per_sender; ++i) {
        if (!target.tell(seq_msg{s, i})) {
          refused++;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  REQUIRE(refused.load() == 0);
  REQUIRE(wait_until([&] { return rec.received.load() >= n_senders * per_sender; }));
  std::this_thread::sleep_for(10ms); // a duplicate would show up as an extra message
  REQUIRE(rec.received.load() == n_senders * per_sender);
  REQUIRE(rec.out_of_order.load() == 0);
  REQUIRE(rec.unexpected.load() == 0);
  for (std::uint32_t s = 0; s < n_senders; ++s) {
    REQUIRE(rec.next[s].load() == per_sender);
  }
  REQUIRE(sys.dead_letters().count() == 0);
}

TEST_CASE(
    "FIFO per sender-receiver pair: 4 sender procs, co_await send into a backpressure mailbox",
    "[delivery][backpressure]") {
  constexpr std::uint64_t n = per_sender / 4;
  fifo_record rec;
  bastion::system sys{test_config()};
  auto g = sys.children([&](bastion::children_builder& c) {
    c.exec(fifo_checker(&rec))
        .mailbox(
            bastion::mailbox_config{}.capacity(16).policy(bastion::overflow_policy::backpressure));
  });
  sys.start();
  const auto target = g.elems().at(0);
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint32_t> done{0};
  std::vector<bastion::join_handle<void>> procs;
  for (std::uint32_t s = 0; s < n_senders; ++s) {
    procs.push_back(sys.runtime().spawn(
        [](bastion::child_ref to,
           std::uint32_t from,
           std::atomic<std::uint64_t>* refused,
           std::atomic<std::uint32_t>* done) -> bastion::task<> {
          for (std::uint64_t i = 0; i < n; ++i) {
            if (!co_await to.send(seq_msg{from, i})) {
              (*refused)++;
            }
          }
          (*done)++;
        }(target, s, &refused, &done)));
  }
  REQUIRE(wait_until([&] { return done.load() == n_senders; }, 60s));
  REQUIRE(wait_until([&] { return rec.received.load() >= n_senders * n; }));
  std::this_thread::sleep_for(10ms);
  REQUIRE(refused.load() == 0);
  REQUIRE(rec.received.load() == n_senders * n);
  REQUIRE(rec.out_of_order.load() == 0);
  REQUIRE(rec.unexpected.load() == 0);
  for (std::uint32_t s = 0; s < n_senders; ++s) {
    REQUIRE(rec.next[s].load() == n);
  }
  REQUIRE(sys.dead_letters().count() == 0); // backpressure never sheds a waiting send
}

TEST_CASE(
    "dead letters: every undeliverable case is counted exactly and seen by the handler",
    "[delivery][dead_letters]") {
  dead_log seen;        // outlives the system (its handler runs while the system stops)
  dead_log seen_global; // the sink of empty refs
  std::atomic<bool> open{false};
  int_log got_reject;
  int_log got_drop;
  bastion::system sys{test_config()};
  handler_guard g1{bastion::dead_letters::global()};
  bastion::dead_letters::global().set_handler(
      [&](bastion::message&& m, reason r) { seen_global.add(std::move(m), r); });
  sys.dead_letters().set_handler(
      [&](bastion::message&& m, reason r) { seen.add(std::move(m), r); });

  auto rejecting = sys.children([&](bastion::children_builder& c) {
    c.exec(gated_logger(&open, &got_reject))
        .mailbox(bastion::mailbox_config{}.capacity(2).policy(bastion::overflow_policy::reject));
  });
  auto dropping = sys.children([&](bastion::children_builder& c) {
    c.exec(gated_logger(&open, &got_drop))
        .mailbox(
            bastion::mailbox_config{}.capacity(2).policy(bastion::overflow_policy::drop_oldest));
  });
  auto stopping = sys.children([](bastion::children_builder& c) { c.exec(doubler); });
  sys.start();
  const auto before = counts_of(sys.dead_letters());
  const auto before_global = counts_of(bastion::dead_letters::global());

  // Unknown target (an empty ref): tell, awaitable send and ask.
  const bastion::child_ref nobody;
  REQUIRE_FALSE(nobody.tell(100));
  REQUIRE_FALSE(sys.runtime().run([](bastion::child_ref r) -> bastion::task<bool> {
    co_return co_await r.send(101);
  }(nobody)));
  REQUIRE_THROWS_AS(sys.runtime().run(nobody.ask<int>(102, 5s)), bastion::no_reply);

  // Stopped target: the child stops (its mailbox is empty), then a tell, a send and an ask.
  const auto st = stopping.elems().at(0);
  REQUIRE(sys.runtime().run(st.ask<int>(1, 5s)) == 2);
  st.stop();
  REQUIRE(wait_until([&] { return st.is_stopped(); }));
  REQUIRE_FALSE(st.tell(200));
  REQUIRE_FALSE(sys.runtime().run([](bastion::child_ref r) -> bastion::task<bool> {
    co_return co_await r.send(201);
  }(st)));
  REQUIRE_THROWS_AS(sys.runtime().run(st.ask<int>(202, 5s)), bastion::no_reply);

  // Full mailbox under reject: 2 fit, the third goes to dead letters; so does a send.
  const auto rj = rejecting.elems().at(0);
  REQUIRE(rj.tell(300));
  REQUIRE(rj.tell(301));
  REQUIRE_FALSE(rj.tell(302));
  REQUIRE_FALSE(sys.runtime().run([](bastion::child_ref r) -> bastion::task<bool> {
    co_return co_await r.send(303);
  }(rj)));

  // drop_oldest: every send succeeds; the three oldest are pushed out.
  const auto dr = dropping.elems().at(0);
  for (int v = 400; v < 405; ++v) {
    REQUIRE(dr.tell(v));
  }

  // The counts, per reason, exactly.
  REQUIRE(delta(bastion::dead_letters::global(), before_global, reason::unknown_target) == 3);
  REQUIRE(delta(sys.dead_letters(), before, reason::unknown_target) == 0);
  REQUIRE(delta(sys.dead_letters(), before, reason::stopped_target) == 3);
  REQUIRE(delta(sys.dead_letters(), before, reason::mailbox_full) == 2);
  REQUIRE(delta(sys.dead_letters(), before, reason::dropped_oldest) == 3);
  REQUIRE(delta(sys.dead_letters(), before, reason::unanswered_ask) == 0);
  REQUIRE(sys.dead_letters().count() == 8);

  // The handlers saw each one, with its payload.
  using P = std::pair<reason, int>;
  REQUIRE(
      seen_global.snapshot()
      == std::vector<P>{
          {reason::unknown_target, 100},
          {reason::unknown_target, 101},
          {reason::unknown_target, 102}});
  REQUIRE(
      seen.snapshot()
      == std::vector<P>{
          {reason::stopped_target, 200},
          {reason::stopped_target, 201},
          {reason::stopped_target, 202},
          {reason::mailbox_full, 302},
          {reason::mailbox_full, 303},
          {reason::dropped_oldest, 400},
          {reason::dropped_oldest, 401},
          {reason::dropped_oldest, 402}});

  // What was queued is delivered once the actors receive.
  open.store(true);
  REQUIRE(wait_until(
      [&] { return got_reject.snapshot().size() == 2 && got_drop.snapshot().size() == 2; }));
  REQUIRE(got_reject.snapshot() == std::vector<int>{300, 301});
  REQUIRE(got_drop.snapshot() == std::vector<int>{403, 404});
  REQUIRE(sys.dead_letters().count() == 8);
}

TEST_CASE(
    "an ask dropped unanswered is recorded in dead letters (unanswered_ask)",
    "[delivery][dead_letters]") {
  // Spec section 6, "Our rules": an unanswered ask is accounted for in dead letters, and the
  // asker gets no_reply.
  dead_log seen;
  bastion::system sys{test_config()};
  sys.dead_letters().set_handler(
      [&](bastion::message&& m, reason r) { seen.add(std::move(m), r); });
  auto g1 = sys.children([](bastion::children_builder& c) { c.exec(dropper); });
  auto g2 = sys.children([](bastion::children_builder& c) { c.exec(doubler); });
  sys.start();
  // Dropped by the handler (the question is destroyed), and unmatched (match's fallback).
  REQUIRE_THROWS_AS(sys.runtime().run(g1.elems().at(0).ask<int>(7, 5s)), bastion::no_reply);
  REQUIRE_THROWS_AS(
      sys.runtime().run(g2.elems().at(0).ask<int>(std::string("x"), 5s)), bastion::no_reply);
  CHECK(sys.dead_letters().count(reason::unanswered_ask) == 2);
  CHECK(seen.snapshot().size() == 2);
}

TEST_CASE("overflow policies through refs", "[delivery][mailbox]") {
  std::atomic<bool> open{false};
  int_log got;
  bastion::system sys{test_config()};

  SECTION("unbounded: tell and send always queue") {
    auto g = sys.children([&](bastion::children_builder& c) { c.exec(gated_logger(&open, &got)); });
    sys.start();
    const auto r = g.elems().at(0);
    for (int i = 0; i < 100; ++i) {
      REQUIRE(r.tell(i));
    }
    REQUIRE(sys.runtime().run([](bastion::child_ref r) -> bastion::task<bool> {
      co_return co_await r.send(100);
    }(r)));
    open.store(true);
    REQUIRE(wait_until([&] { return got.snapshot().size() == 101; }));
    REQUIRE(sys.dead_letters().count() == 0);
  }

  SECTION("reject: the send past capacity fails into mailbox_full") {
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec(gated_logger(&open, &got))
          .mailbox(bastion::mailbox_config{}.capacity(3).policy(bastion::overflow_policy::reject));
    });
    sys.start();
    const auto r = g.elems().at(0);
    int ok = 0;
    for (int i = 0; i < 10; ++i) {
      ok += r.tell(i) ? 1 : 0;
    }
    REQUIRE(ok == 3);
    REQUIRE(sys.dead_letters().count(reason::mailbox_full) == 7);
    open.store(true);
    REQUIRE(wait_until([&] { return got.snapshot().size() == 3; }));
    REQUIRE(got.snapshot() == std::vector<int>{0, 1, 2});
    // Room again: tells succeed.
    REQUIRE(wait_until([&] { return r.tell(50); }));
    REQUIRE(wait_until([&] { return got.snapshot().size() == 4; }));
  }

  SECTION("drop_oldest: every tell succeeds, the oldest go to dead letters") {
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec(gated_logger(&open, &got))
          .mailbox(
              bastion::mailbox_config{}.capacity(3).policy(bastion::overflow_policy::drop_oldest));
    });
    sys.start();
    const auto r = g.elems().at(0);
    for (int i = 0; i < 10; ++i) {
      REQUIRE(r.tell(i));
    }
    REQUIRE(sys.dead_letters().count(reason::dropped_oldest) == 7);
    open.store(true);
    REQUIRE(wait_until([&] { return got.snapshot().size() == 3; }));
    REQUIRE(got.snapshot() == std::vector<int>{7, 8, 9});
  }

  SECTION("backpressure: tell fails when full; co_await send waits for room, in order") {
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec(gated_logger(&open, &got))
          .mailbox(
              bastion::mailbox_config{}.capacity(4).policy(bastion::overflow_policy::backpressure));
    });
    sys.start();
    const auto r = g.elems().at(0);
    for (int i = 0; i < 4; ++i) {
      REQUIRE(r.tell(i));
    }
    REQUIRE_FALSE(r.tell(99)); // tell never waits: full means mailbox_full
    REQUIRE(sys.dead_letters().count(reason::mailbox_full) == 1);
    std::atomic<int> sent{0};
    std::atomic<int> refused{0};
    std::atomic<bool> done{false};
    auto h = sys.runtime().spawn(
        [](bastion::child_ref r,
           std::atomic<int>* sent,
           std::atomic<int>* refused,
           std::atomic<bool>* done) -> bastion::task<> {
          for (int i = 4; i < 24; ++i) {
            if (co_await r.send(i)) {
              (*sent)++;
            } else {
              (*refused)++;
            }
          }
          done->store(true);
        }(r, &sent, &refused, &done));
    std::this_thread::sleep_for(50ms);
    REQUIRE(sent.load() == 0); // suspended on the first send: the mailbox is full
    REQUIRE_FALSE(done.load());
    open.store(true);
    REQUIRE(wait_until([&] { return done.load(); }));
    REQUIRE(sent.load() == 20);
    REQUIRE(refused.load() == 0);
    REQUIRE(wait_until([&] { return got.snapshot().size() == 24; }));
    std::vector<int> want;
    for (int i = 0; i < 24; ++i) {
      want.push_back(i);
    }
    REQUIRE(got.snapshot() == want);
    REQUIRE(sys.dead_letters().count() == 1);
  }

  SECTION("backpressure: a sender waiting on a child that stops gets false (stopped_target)") {
    auto g = sys.children([&](bastion::children_builder& c) {
      c.exec(gated_logger(&open, &got))
          .mailbox(
              bastion::mailbox_config{}.capacity(2).policy(bastion::overflow_policy::backpressure));
    });
    sys.start();
    const auto r = g.elems().at(0);
    REQUIRE(r.tell(0));
    REQUIRE(r.tell(1));
    std::atomic<int> result{-1};
    auto h =
        sys.runtime().spawn([](bastion::child_ref r, std::atomic<int>* result) -> bastion::task<> {
          const bool ok = co_await r.send(2);
          result->store(ok ? 1 : 0);
        }(r, &result));
    std::this_thread::sleep_for(50ms);
    REQUIRE(result.load() == -1);
    r.stop();
    REQUIRE(wait_until([&] { return result.load() != -1; }));
    REQUIRE(result.load() == 0);
    REQUIRE(wait_until([&] { return r.is_stopped(); }));
    // The waiting send and the two queued messages (drained at the stop).
    REQUIRE(wait_until([&] { return sys.dead_letters().count(reason::stopped_target) == 3; }));
    REQUIRE(sys.dead_letters().count() == 3);
    REQUIRE(got.snapshot().empty());
  }
}

TEST_CASE(
    "ask with a timeout throws timed_out against an actor that never replies", "[delivery][ask]") {
  bastion::system sys{test_config()};
  auto g = sys.children([](bastion::children_builder& c) { c.exec(hoarder); });
  sys.start();
  const auto r = g.elems().at(0);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(sys.runtime().run(r.ask<int>(1, 100ms)), bastion::timed_out);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(took >= 100ms);
  REQUIRE(took < 20s);
  // From inside an actor-like proc, through a context-free ref and a reply future.
  REQUIRE_THROWS_AS(
      sys.runtime().run([](bastion::child_ref r) -> bastion::task<int> {
        co_return co_await r.ask<int>(2).with_timeout(50ms);
      }(r)),
      bastion::timed_out);
}

TEST_CASE("an ask the actor drops gives the asker no_reply, never a hang", "[delivery][ask]") {
  bastion::system sys{test_config()};
  auto drops = sys.children([](bastion::children_builder& c) { c.exec(dropper); });
  auto doubles = sys.children([](bastion::children_builder& c) { c.exec(doubler); });
  auto hoards = sys.children([](bastion::children_builder& c) { c.exec(hoarder); });
  sys.start();
  const auto d = drops.elems().at(0);
  const auto x = doubles.elems().at(0);
  const auto h = hoards.elems().at(0);

  // Dropped by the handler (question<int> destroyed unanswered).
  REQUIRE_THROWS_AS(sys.runtime().run(d.ask<int>(1, 5s)), bastion::no_reply);
  // Unmatched: the fallback drops an ask of std::string.
  REQUIRE_THROWS_AS(sys.runtime().run(x.ask<int>(std::string("?"), 5s)), bastion::no_reply);
  // Without a timeout too (the asker would hang if no_reply were not sent).
  REQUIRE_THROWS_AS(
      sys.runtime().run([](bastion::child_ref r) -> bastion::task<int> {
        co_return co_await r.ask<int>(3);
      }(d)),
      bastion::no_reply);
  // The actor still works.
  REQUIRE(sys.runtime().run(x.ask<int>(21, 5s)) == 42);

  // An actor that keeps the question and is then stopped: the waiting asker gets no_reply.
  std::atomic<int> outcome{0}; // 1: value, 2: no_reply, 3: other
  auto asker =
      sys.runtime().spawn([](bastion::child_ref r, std::atomic<int>* out) -> bastion::task<> {
        try {
          (void)co_await r.ask<int>(4);
          out->store(1);
        } catch (const bastion::no_reply&) {
          out->store(2);
        } catch (...) {
          out->store(3);
        }
      }(h, &outcome));
  std::this_thread::sleep_for(50ms);
  REQUIRE(outcome.load() == 0);
  h.stop();
  REQUIRE(wait_until([&] { return outcome.load() != 0; }));
  REQUIRE(outcome.load() == 2);
}
