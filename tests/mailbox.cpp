// tests/mailbox.cpp: bastion::mailbox and bastion::dead_letters
// (include/bastion/actor/mailbox.hpp, dead_letters.hpp): recv/try_recv/recv_for, close and
// drain, each overflow policy, and an MPSC stress through a consumer proc.
// bastion-test-timeout: 180
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/match.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/task.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bastion::dead_letter_reason;
using bastion::mailbox;
using bastion::mailbox_config;
using bastion::message;
using bastion::overflow_policy;
using bastion::task;

struct seq_msg {
  std::uint32_t producer;
  std::uint32_t seq;
};

int as_int(const message& m) {
  return *static_cast<int*>(m.get()->data());
}

bastion::runtime_config two_workers() {
  return bastion::runtime_config{}.workers(2);
}

} // namespace

TEST_CASE("mailbox: try_send / try_recv are FIFO; size counts", "[mailbox]") {
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  CHECK_FALSE(mb.try_recv());
  for (int i = 0; i < 10; ++i) {
    REQUIRE(mb.try_send(message::tell(i)));
  }
  CHECK(mb.size() == 10);
  for (int i = 0; i < 10; ++i) {
    auto m = mb.try_recv();
    REQUIRE(m);
    CHECK(as_int(*m) == i);
  }
  CHECK(mb.size() == 0);
  CHECK(dl.count() == 0);
}

TEST_CASE("mailbox: size counts sends less receives and drains", "[mailbox]") {
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  for (int i = 0; i < 5; ++i) {
    REQUIRE(mb.try_send(message::tell(i)));
  }
  REQUIRE(mb.try_recv());
  REQUIRE(mb.try_recv());
  CHECK(mb.size() == 3);
  REQUIRE(mb.try_send(message::tell(5)));
  CHECK(mb.size() == 4);
  CHECK(mb.drain_to_dead_letters() == 4);
  CHECK(mb.size() == 0);
  CHECK_FALSE(mb.try_recv());
  CHECK(mb.size() == 0);
}

TEST_CASE("mailbox: close sends later messages to dead letters; drain empties it", "[mailbox]") {
  bastion::dead_letters dl;
  std::vector<std::pair<int, dead_letter_reason>> seen;
  std::mutex mu;
  dl.set_handler([&](message&& m, dead_letter_reason r) {
    std::lock_guard lock(mu);
    seen.emplace_back(as_int(m), r);
  });
  mailbox mb{{}, dl};
  REQUIRE(mb.try_send(message::tell(1)));
  REQUIRE(mb.try_send(message::tell(2)));
  mb.close();
  CHECK(mb.is_closed());
  CHECK_FALSE(mb.try_send(message::tell(3)));
  CHECK(dl.count(dead_letter_reason::stopped_target) == 1);
  auto first = mb.try_recv(); // queued messages are kept
  REQUIRE(first);
  CHECK(as_int(*first) == 1);
  CHECK(mb.drain_to_dead_letters() == 1);
  CHECK(dl.count(dead_letter_reason::stopped_target) == 2);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == std::pair{3, dead_letter_reason::stopped_target});
  CHECK(seen[1] == std::pair{2, dead_letter_reason::stopped_target});
}

TEST_CASE("mailbox: an ask that ends in dead letters gives its asker no_reply", "[mailbox]") {
  bastion::dead_letters dl;
  mailbox mb{mailbox_config{}.capacity(1).policy(overflow_policy::reject), dl};
  REQUIRE(mb.try_send(message::tell(0)));
  auto [a, f] = message::ask<int>(1);
  CHECK_FALSE(mb.try_send(std::move(a)));
  CHECK(dl.count(dead_letter_reason::mailbox_full) == 1);
  REQUIRE(f.is_ready());
  bastion::runtime rt{two_workers()};
  auto body = [](bastion::reply_future<int> fut) -> task<bool> {
    try {
      (void)co_await std::move(fut);
    } catch (const bastion::no_reply&) {
      co_return true;
    }
    co_return false;
  };
  CHECK(rt.run(body(std::move(f))));
}

TEST_CASE("mailbox: recv suspends until a message comes; recv_for times out", "[mailbox]") {
  bastion::runtime rt{two_workers()};
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  // No Catch assertions on the worker (Catch is not thread-safe): failures return codes.
  auto consumer = [](mailbox& mb) -> task<int> {
    const auto t0 = bastion::clock::now();
    auto none = co_await mb.recv_for(20ms);
    if (none || bastion::clock::now() - t0 < 20ms) {
      co_return -1;
    }
    int sum = 0;
    for (int i = 0; i < 100; ++i) {
      auto m = co_await mb.recv();
      sum += as_int(m);
    }
    auto late = co_await mb.recv_for(10s); // comes after ~5 ms
    if (!late) {
      co_return -2;
    }
    sum += as_int(*late);
    try {
      (void)co_await mb.recv();
    } catch (const bastion::mailbox_closed&) {
      co_return sum;
    }
    co_return -3;
  };
  auto h = rt.spawn(consumer(mb));
  std::this_thread::sleep_for(40ms);
  int sent = 0;
  for (int i = 0; i < 100; ++i) {
    sent += mb.try_send(message::tell(i)) ? 1 : 0;
    if (i % 10 == 0) {
      std::this_thread::sleep_for(1ms);
    }
  }
  std::this_thread::sleep_for(5ms);
  sent += mb.try_send(message::tell(1000)) ? 1 : 0;
  std::this_thread::sleep_for(5ms);
  mb.close(); // wakes the consumer waiting in recv(): mailbox_closed
  CHECK(std::move(h).join() == 99 * 100 / 2 + 1000);
  CHECK(sent == 101);
}

TEST_CASE(
    "mailbox: 3 producers x 300000 to one consumer proc, exactly once, FIFO per producer",
    "[mailbox][stress]") {
  constexpr std::uint32_t producers = 3;
  constexpr std::uint32_t per = 300000;
  bastion::runtime rt{two_workers()};
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  auto consumer = [](mailbox& mb) -> task<bool> {
    std::vector<std::uint32_t> next(producers, 0);
    bool ok = true;
    for (std::uint64_t got = 0; got < std::uint64_t{producers} * per; ++got) {
      auto m = co_await mb.recv();
      bastion::match(
          std::move(m),
          [&](const seq_msg& s) {
            ok = ok && s.producer < producers && s.seq == next[s.producer];
            ++next[s.producer];
          },
          bastion::otherwise([&](message&&) { ok = false; }));
    }
    for (auto n : next) {
      ok = ok && n == per;
    }
    co_return ok && !mb.try_recv();
  };
  auto h = rt.spawn(consumer(mb));
  std::vector<std::thread> ts;
  for (std::uint32_t p = 0; p < producers; ++p) {
    ts.emplace_back([&mb, p] {
      for (std::uint32_t i = 0; i < per; ++i) {
        (void)mb.try_send(message::tell(seq_msg{p, i}, p + 1));
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  CHECK(std::move(h).join());
  CHECK(dl.count() == 0);
  CHECK(mb.size() == 0);
}

TEST_CASE("mailbox: reject policy fails the send and counts mailbox_full", "[mailbox][overflow]") {
  bastion::dead_letters dl;
  std::atomic<int> handled{0};
  dl.set_handler([&](message&& m, dead_letter_reason r) {
    if (r == dead_letter_reason::mailbox_full && as_int(m) >= 4) {
      ++handled;
    }
  });
  mailbox mb{mailbox_config{}.capacity(4).policy(overflow_policy::reject), dl};
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    accepted += mb.try_send(message::tell(i)) ? 1 : 0;
  }
  CHECK(accepted == 4);
  CHECK(mb.size() == 4);
  CHECK(dl.count(dead_letter_reason::mailbox_full) == 6);
  CHECK(handled == 6);
  for (int i = 0; i < 4; ++i) {
    auto m = mb.try_recv();
    REQUIRE(m);
    CHECK(as_int(*m) == i);
  }
  CHECK(mb.try_send(message::tell(99))); // room again
}

TEST_CASE("mailbox: drop_oldest keeps the newest N and reports the rest", "[mailbox][overflow]") {
  bastion::dead_letters dl;
  std::vector<int> dropped;
  std::mutex mu;
  dl.set_handler([&](message&& m, dead_letter_reason r) {
    if (r == dead_letter_reason::dropped_oldest) {
      std::lock_guard lock(mu);
      dropped.push_back(as_int(m));
    }
  });
  mailbox mb{mailbox_config{}.capacity(10).policy(overflow_policy::drop_oldest), dl};
  for (int i = 0; i < 100; ++i) {
    CHECK(mb.try_send(message::tell(i)));
  }
  CHECK(mb.size() == 10);
  CHECK(dl.count(dead_letter_reason::dropped_oldest) == 90);
  REQUIRE(dropped.size() == 90);
  for (int i = 0; i < 90; ++i) {
    CHECK(dropped[static_cast<std::size_t>(i)] == i);
  }
  for (int i = 90; i < 100; ++i) {
    auto m = mb.try_recv();
    REQUIRE(m);
    CHECK(as_int(*m) == i);
  }
  CHECK_FALSE(mb.try_recv());
}

TEST_CASE(
    "mailbox: drop_oldest under concurrent senders accounts for every message",
    "[mailbox][overflow]") {
  bastion::dead_letters dl;
  mailbox mb{mailbox_config{}.capacity(16).policy(overflow_policy::drop_oldest), dl};
  constexpr int per = 20000;
  std::atomic<bool> done{false};
  std::uint64_t received = 0;
  std::thread consumer([&] {
    while (!done.load() || mb.size() > 0) {
      if (mb.try_recv()) {
        ++received;
      }
    }
  });
  std::vector<std::thread> ts;
  for (int p = 0; p < 2; ++p) {
    ts.emplace_back([&] {
      for (int i = 0; i < per; ++i) {
        (void)mb.try_send(message::tell(i));
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  done = true;
  consumer.join();
  CHECK(received + dl.count(dead_letter_reason::dropped_oldest) == 2 * per);
}

TEST_CASE("mailbox: backpressure never exceeds capacity and loses nothing", "[mailbox][overflow]") {
  constexpr std::size_t cap = 8;
  constexpr int total = 3000;
  bastion::runtime rt{two_workers()};
  bastion::dead_letters dl;
  mailbox mb{mailbox_config{}.capacity(cap).policy(overflow_policy::backpressure), dl};
  std::atomic<std::size_t> max_seen{0};
  auto producer = [](mailbox& mb, std::atomic<std::size_t>& max_seen, int from) -> task<bool> {
    bool ok = true;
    for (int i = 0; i < total; ++i) {
      ok = ok && co_await mb.send(message::tell(from + i));
      auto s = mb.size();
      auto m = max_seen.load();
      while (s > m && !max_seen.compare_exchange_weak(m, s)) {
      }
    }
    co_return ok;
  };
  auto consumer = [](mailbox& mb) -> task<bool> {
    int next_a = 0;
    int next_b = 100000;
    for (int got = 0; got < 2 * total; ++got) {
      if (got % 64 == 0) {
        co_await bastion::sleep_for(1ms); // slow consumer
      }
      auto m = co_await mb.recv();
      const int v = as_int(m);
      if (v >= 100000) {
        if (v != next_b++) {
          co_return false;
        }
      } else if (v != next_a++) {
        co_return false;
      }
    }
    co_return next_a == total&& next_b == 100000 + total;
  };
  auto c = rt.spawn(consumer(mb));
  auto pa = rt.spawn(producer(mb, max_seen, 0));
  auto pb = rt.spawn(producer(mb, max_seen, 100000));
  CHECK(std::move(pa).join());
  CHECK(std::move(pb).join());
  CHECK(std::move(c).join());
  CHECK(max_seen.load() <= cap);
  CHECK(dl.count() == 0);
}

TEST_CASE("mailbox: close releases backpressured senders with false", "[mailbox][overflow]") {
  bastion::runtime rt{two_workers()};
  bastion::dead_letters dl;
  mailbox mb{mailbox_config{}.capacity(1).policy(overflow_policy::backpressure), dl};
  REQUIRE(mb.try_send(message::tell(0)));
  auto sender = [](mailbox& mb) -> task<bool> {
    co_return co_await mb.send(message::tell(1));
  };
  auto h = rt.spawn(sender(mb));
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(h.is_finished());
  mb.close();
  CHECK_FALSE(std::move(h).join());
  CHECK(dl.count(dead_letter_reason::stopped_target) == 1);
}

namespace bastion::detail {
/// What a sender does after it linked its message: takes the consumer's waker and wakes it.
/// Done with no message, it is the late wake of a sender whose message the consumer took
/// without parking (the sender is preempted between its link and its take).
struct mailbox_access {
  static void late_wake(mailbox& mb) { mb.tx_.consumer.take().wake(); }
};
} // namespace bastion::detail

TEST_CASE(
    "mailbox: a consumer woken by a producer that never suspends runs beside it", "[mailbox]") {
  // The producer's first send wakes the consumer onto the producer's worker; the producer
  // then keeps that worker. After worker::long_poll_sends sends the consumer must be where
  // the other worker can take it, or it would only run once the producer is done.
  bastion::runtime rt{two_workers()};
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  std::atomic<long> received{0};
  std::atomic<bool> started{false};
  auto consumer =
      [](mailbox& mb, std::atomic<long>& received, std::atomic<bool>& started) -> task<long> {
    long sum = 0;
    started = true;
    try {
      for (;;) {
        sum += as_int(co_await mb.recv());
        received.fetch_add(1, std::memory_order_release);
      }
    } catch (const bastion::mailbox_closed&) {
    }
    co_return sum;
  };
  // Sends without suspending until the consumer took a message, for at most 5 s; returns
  // how many it sent and whether the consumer ran meanwhile.
  auto producer = [](mailbox& mb, std::atomic<long>& received) -> task<std::pair<long, bool>> {
    const auto give_up = bastion::clock::now() + 5s;
    long sent = 0;
    for (int i = 1;; ++i) {
      if (!mb.try_send(message::tell(i))) {
        co_return std::pair{sent, false};
      }
      sent += i;
      if (received.load(std::memory_order_acquire) > 0) {
        co_return std::pair{sent, true};
      }
      if (i % 256 == 0 && bastion::clock::now() > give_up) {
        co_return std::pair{sent, false};
      }
      for (int k = 0; k < 100; ++k) { // a little work per message, and no suspension
        std::atomic_signal_fence(std::memory_order_seq_cst);
      }
    }
  };
  auto c = rt.spawn(consumer(mb, received, started));
  // Let the consumer park first, so the producer's first send is what wakes it.
  REQUIRE(bastion::test::wait_until([&] { return started.load(); }, 10s));
  std::this_thread::sleep_for(20ms);
  const auto [sent, ran_beside] = rt.spawn(producer(mb, received)).join();
  mb.close();
  CHECK(ran_beside);
  CHECK(std::move(c).join() == sent); // and nothing was lost
  CHECK(dl.count() == 0);
}

TEST_CASE("mailbox: a late wake finds recv parked again, not spinning", "[mailbox]") {
  // One worker: a consumer that resumed empty-handed and waited for a message on it would
  // keep every other proc of the runtime from running.
  bastion::runtime rt{bastion::runtime_config{}.workers(1)};
  bastion::dead_letters dl;
  mailbox mb{{}, dl};
  std::atomic<int> phase{0};
  auto consumer = [](mailbox& mb, std::atomic<int>& phase) -> task<int> {
    phase = 1;
    try {
      auto m = co_await mb.recv();
      phase = 2;
      co_return as_int(m);
    } catch (const bastion::mailbox_closed&) {
      co_return -1;
    }
  };
  auto h = rt.spawn(consumer(mb, phase));
  REQUIRE(bastion::test::wait_until([&] { return phase.load() == 1; }, 10s));
  // Let it park (nothing else runs on the worker), then wake it with nothing in the mailbox.
  std::this_thread::sleep_for(20ms);
  bastion::detail::mailbox_access::late_wake(mb);
  std::atomic<bool> other_ran{false};
  auto other = rt.spawn([](std::atomic<bool>& flag) -> task<> {
    flag = true;
    co_return;
  }(other_ran));
  REQUIRE(bastion::test::wait_until([&] { return other_ran.load(); }, 10s));
  std::move(other).join();
  CHECK(phase.load() == 1); // still parked in recv
  CHECK_FALSE(h.is_finished());
  SECTION("then a message: recv returns it") {
    REQUIRE(mb.try_send(message::tell(7)));
    CHECK(std::move(h).join() == 7);
    CHECK(phase.load() == 2);
    CHECK(dl.count() == 0);
  }
  SECTION("then close(): recv throws mailbox_closed") {
    mb.close();
    CHECK(std::move(h).join() == -1);
  }
}
