// tests/local_queue.cpp: the per-worker run queue: order, capacity, overflow to the injector,
// steal-half, refill from the injector, index wrap-around, and a multi-threaded stress test
// that checks every runnable runs exactly once.
#include <bastion/config.hpp>

#include <bastion/detail/injector.hpp>
#include <bastion/detail/local_queue.hpp>
#include <bastion/detail/runnable.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

/// Sanitized builds run the stress tests at a quarter of their size.
#define BASTION_TEST_SANITIZED (BASTION_TSAN || BASTION_ASAN)

namespace {

using bastion::detail::injector;
using bastion::detail::local_queue;
using bastion::detail::run_mode;
using bastion::detail::runnable;

struct run_context;

// A runnable that records how often it ran or was cancelled.
struct item : runnable {
  std::uint32_t id = 0;
  run_context* ctx = nullptr;
  std::atomic<std::uint32_t> runs{0};
  std::atomic<std::uint32_t> cancels{0};
};

struct run_context {
  std::atomic<std::uint64_t> executed{0};
  std::atomic<std::uint64_t> checksum{0};
};

void run_item(runnable* r) noexcept {
  auto* it = static_cast<item*>(r);
  it->runs.fetch_add(1, std::memory_order_relaxed);
  if (it->ctx != nullptr) {
    it->ctx->checksum.fetch_add(it->id, std::memory_order_relaxed);
    it->ctx->executed.fetch_add(1, std::memory_order_release);
  }
}

void cancel_item(runnable* r) noexcept {
  static_cast<item*>(r)->cancels.fetch_add(1, std::memory_order_relaxed);
}

void enter_item(runnable* r, run_mode m) noexcept {
  if (m == run_mode::poll) {
    run_item(r);
  } else {
    cancel_item(r);
  }
}

std::vector<item> make_items(std::size_t n, run_context* ctx = nullptr) {
  std::vector<item> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    items[i].id = static_cast<std::uint32_t>(i);
    items[i].ctx = ctx;
    items[i].entry_ = &enter_item;
  }
  return items;
}

std::uint32_t id_of(runnable* r) {
  return static_cast<item*>(r)->id;
}

// Pops everything from `q` and checks the ids are first, first + 1, ..., first + n - 1.
template <std::uint32_t Capacity>
void require_pops(local_queue<Capacity>& q, std::uint32_t first, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    runnable* r = q.pop();
    REQUIRE(r != nullptr);
    REQUIRE(id_of(r) == first + i);
  }
  REQUIRE(q.pop() == nullptr);
  REQUIRE(q.empty());
}

} // namespace

TEST_CASE("local_queue: capacity is a power of two", "[local_queue]") {
  STATIC_REQUIRE(local_queue<>::capacity == 256);
  STATIC_REQUIRE(local_queue<16>::capacity == 16);
}

TEST_CASE("local_queue: FIFO order and capacity", "[local_queue]") {
  local_queue<> q;
  auto items = make_items(257);
  REQUIRE(q.empty());
  REQUIRE(q.pop() == nullptr);
  for (std::size_t i = 0; i < 256; ++i) {
    REQUIRE(q.push_back(&items[i]));
  }
  REQUIRE(q.size() == 256);
  REQUIRE_FALSE(q.push_back(&items[256]));
  REQUIRE(q.size() == 256);
  require_pops(q, 0, 256);
}

TEST_CASE(
    "local_queue: interleaved push and pop keep FIFO order across the ring", "[local_queue]") {
  local_queue<16> q;
  auto items = make_items(std::size_t{16} * 1000);
  std::uint32_t pushed = 0;
  std::uint32_t popped = 0;
  for (int round = 0; round < 1000; ++round) {
    const int burst = 1 + round % 16;
    for (int i = 0; i < burst && q.size() < 16; ++i) {
      REQUIRE(q.push_back(&items[pushed]));
      ++pushed;
    }
    const int take = 1 + (round * 7) % 16;
    for (int i = 0; i < take; ++i) {
      runnable* r = q.pop();
      if (r == nullptr) {
        REQUIRE(popped == pushed);
        break;
      }
      REQUIRE(id_of(r) == popped);
      ++popped;
    }
  }
  q.drain([&](runnable* r) { REQUIRE(id_of(r) == popped++); });
  REQUIRE(popped == pushed);
}

TEST_CASE(
    "local_queue: push_back_or_overflow moves half + 1 to the injector in order", "[local_queue]") {
  local_queue<> q;
  injector inj;
  auto items = make_items(300);
  for (std::size_t i = 0; i < 200; ++i) {
    REQUIRE(q.push_back_or_overflow(&items[i], inj) == 0);
  }
  for (std::size_t i = 200; i < 256; ++i) {
    REQUIRE(q.push_back_or_overflow(&items[i], inj) == 0);
  }
  REQUIRE(inj.empty());
  REQUIRE(q.push_back_or_overflow(&items[256], inj) == 129);
  REQUIRE(inj.size() == 129);
  REQUIRE(q.size() == 128);
  // The injector got the older half, then the new runnable.
  for (std::uint32_t i = 0; i < 128; ++i) {
    runnable* r = inj.pop();
    REQUIRE(r != nullptr);
    REQUIRE(id_of(r) == i);
  }
  runnable* r = inj.pop();
  REQUIRE(r != nullptr);
  REQUIRE(id_of(r) == 256);
  REQUIRE(inj.pop() == nullptr);
  // The local queue kept the newer half.
  require_pops(q, 128, 128);
}

TEST_CASE("local_queue: overflow works on a closed injector", "[local_queue]") {
  local_queue<4> q;
  injector inj;
  REQUIRE(inj.close());
  auto items = make_items(5);
  for (std::size_t i = 0; i < 4; ++i) {
    REQUIRE(q.push_back_or_overflow(&items[i], inj) == 0);
  }
  REQUIRE(q.push_back_or_overflow(&items[4], inj) == 3);
  std::vector<std::uint32_t> drained;
  inj.drain([&](runnable* r) { drained.push_back(id_of(r)); });
  REQUIRE(drained == std::vector<std::uint32_t>{0, 1, 4});
  require_pops(q, 2, 2);
}

TEST_CASE("local_queue: steal_into takes half, rounded up", "[local_queue]") {
  for (std::size_t n : {1U, 2U, 3U, 7U, 10U, 128U, 255U, 256U}) {
    CAPTURE(n);
    local_queue<> victim;
    local_queue<> thief;
    auto items = make_items(n);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(victim.push_back(&items[i]));
    }
    const std::size_t expect = n - n / 2;
    auto res = victim.steal_into(thief);
    REQUIRE_FALSE(res.contended);
    REQUIRE(res.stolen == expect);
    REQUIRE(res.task != nullptr);
    REQUIRE(id_of(res.task) == 0); // the oldest runs now
    REQUIRE(thief.size() == expect - 1);
    REQUIRE(victim.size() == n - expect);
    require_pops(thief, 1, expect - 1);
    require_pops(victim, static_cast<std::uint32_t>(expect), n - expect);
  }
}

TEST_CASE("local_queue: steal_into from an empty queue takes nothing", "[local_queue]") {
  local_queue<> victim;
  local_queue<> thief;
  auto res = victim.steal_into(thief);
  REQUIRE(res.task == nullptr);
  REQUIRE(res.stolen == 0);
  REQUIRE_FALSE(res.contended);
}

TEST_CASE("local_queue: steal_into appends after the thief's own work", "[local_queue]") {
  local_queue<16> victim;
  local_queue<16> thief;
  auto items = make_items(20);
  for (std::uint32_t i = 0; i < 8; ++i) {
    REQUIRE(thief.push_back(&items[i]));
  }
  for (std::uint32_t i = 8; i < 16; ++i) {
    REQUIRE(victim.push_back(&items[i]));
  }
  auto res = victim.steal_into(thief);
  REQUIRE(res.stolen == 4);
  REQUIRE(id_of(res.task) == 8);
  for (std::uint32_t i = 0; i < 8; ++i) {
    REQUIRE(id_of(thief.pop()) == i);
  }
  require_pops(thief, 9, 3);
  require_pops(victim, 12, 4);
}

TEST_CASE("local_queue: steal_into skips when the thief is more than half full", "[local_queue]") {
  local_queue<16> victim;
  local_queue<16> thief;
  auto items = make_items(30);
  for (std::uint32_t i = 0; i < 9; ++i) {
    REQUIRE(thief.push_back(&items[i]));
  }
  for (std::uint32_t i = 9; i < 25; ++i) {
    REQUIRE(victim.push_back(&items[i]));
  }
  auto res = victim.steal_into(thief);
  REQUIRE(res.task == nullptr);
  REQUIRE(res.stolen == 0);
  REQUIRE_FALSE(res.contended);
  REQUIRE(victim.size() == 16);
  require_pops(thief, 0, 9);
  require_pops(victim, 9, 16);
}

TEST_CASE(
    "local_queue: refill_from pulls a batch, one to run and the rest queued", "[local_queue]") {
  injector inj;
  auto items = make_items(300);
  for (auto& it : items) {
    REQUIRE(inj.push(&it));
  }

  SECTION("capped by max") {
    local_queue<> q;
    auto res = q.refill_from(inj, 10);
    REQUIRE(res.pulled == 10);
    REQUIRE(id_of(res.task) == 0);
    REQUIRE(res.task->next_ == nullptr);
    REQUIRE(inj.size() == 290);
    require_pops(q, 1, 9);
  }
  SECTION("capped by the free room + 1") {
    local_queue<> q;
    auto res = q.refill_from(inj, 1000);
    REQUIRE(res.pulled == 257);
    REQUIRE(id_of(res.task) == 0);
    REQUIRE(q.size() == 256);
    REQUIRE(inj.size() == 43);
    require_pops(q, 1, 256);
  }
  SECTION("fair share") {
    local_queue<> q;
    const std::size_t share = inj.fair_share(4, local_queue<>::capacity / 2);
    REQUIRE(share == 76);
    auto res = q.refill_from(inj, share);
    REQUIRE(res.pulled == 76);
    require_pops(q, 1, 75);
  }
  SECTION("nothing when max is 0") {
    local_queue<> q;
    auto res = q.refill_from(inj, 0);
    REQUIRE(res.task == nullptr);
    REQUIRE(res.pulled == 0);
    REQUIRE(inj.size() == 300);
  }
  inj.drain([](runnable*) {});
  local_queue<> q;
  auto res = q.refill_from(inj, 10);
  REQUIRE(res.task == nullptr);
  REQUIRE(res.pulled == 0);
}

TEST_CASE("local_queue: drain hands out everything oldest first", "[local_queue]") {
  local_queue<> q;
  auto items = make_items(100);
  for (auto& it : items) {
    REQUIRE(q.push_back(&it));
  }
  std::uint32_t next = 0;
  q.drain([&](runnable* r) {
    REQUIRE(id_of(r) == next++);
    r->cancel();
  });
  REQUIRE(next == 100);
  REQUIRE(q.empty());
  for (auto& it : items) {
    REQUIRE(it.cancels.load() == 1);
  }
}

TEST_CASE("local_queue: indices wrap around 2^32", "[local_queue]") {
  // Start 100 slots before the wrap and push, pop, steal and overflow across it.
  const std::uint32_t start = 0xFFFFFFFFU - 100U;
  local_queue<16> q(start);
  local_queue<16> thief(start - 5U);
  injector inj;
  auto items = make_items(4000);
  std::uint32_t next_push = 0;
  std::vector<std::uint32_t> seen(items.size(), 0);
  auto consume = [&](runnable* r) {
    ++seen[id_of(r)];
  };
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 19; ++i) {
      (void)q.push_back_or_overflow(&items[next_push++], inj);
    }
    auto res = q.steal_into(thief);
    if (res.task != nullptr) {
      consume(res.task);
    }
    for (int i = 0; i < 3; ++i) {
      if (runnable* r = q.pop()) {
        consume(r);
      }
    }
    thief.drain(consume);
    while (runnable* r = inj.pop()) {
      consume(r);
    }
    REQUIRE(q.size() <= 16);
  }
  q.drain(consume);
  for (std::uint32_t i = 0; i < next_push; ++i) {
    REQUIRE(seen[i] == 1);
  }
}

namespace {

// Stress: an owner pushes `n` runnables (overflowing into an injector) and pops some; thieves
// steal from the owner and from each other and pull from the injector; a drainer pops the
// injector. Every runnable must run exactly once.
template <std::uint32_t Capacity>
void stress(std::size_t n, int thieves) {
  run_context ctx;
  auto items = make_items(n, &ctx);
  injector inj;
  local_queue<Capacity> owner_q;
  std::vector<local_queue<Capacity>> thief_qs(static_cast<std::size_t>(thieves));
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> overflowed{0};
  std::atomic<std::uint64_t> steals{0};
  std::atomic<std::uint64_t> contended{0};
  std::atomic<std::uint64_t> refills{0};
  const auto done = [&] {
    return ctx.executed.load(std::memory_order_acquire) == n;
  };

  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(thieves) + 1);
  for (int t = 0; t < thieves; ++t) {
    threads.emplace_back([&, t] {
      auto& own = thief_qs[static_cast<std::size_t>(t)];
      while (!go.load(std::memory_order_acquire)) {
        std::this_thread::yield();
      }
      std::uint64_t my_steals = 0;
      std::uint64_t my_contended = 0;
      std::uint64_t my_refills = 0;
      auto victim = static_cast<unsigned>(t);
      while (!done()) {
        if (runnable* r = own.pop()) {
          r->run();
          continue;
        }
        // Victims: the owner most of the time, the other thieves the rest.
        ++victim;
        auto& from = (victim % 3 != 0 || thieves == 1)
                         ? owner_q
                         : thief_qs
                               [(static_cast<std::size_t>(t) + 1 + victim)
                                % static_cast<std::size_t>(thieves)];
        if (&from != &own) {
          auto res = from.steal_into(own);
          if (res.task != nullptr) {
            ++my_steals;
            res.task->run();
            continue;
          }
          if (res.contended) {
            ++my_contended;
          }
        }
        auto res = own.refill_from(inj, inj.fair_share(4, Capacity / 2));
        if (res.task != nullptr) {
          ++my_refills;
          res.task->run();
          continue;
        }
        std::this_thread::yield();
      }
      steals += my_steals;
      contended += my_contended;
      refills += my_refills;
    });
  }
  // The drainer: pops the injector one at a time or in batches.
  threads.emplace_back([&] {
    while (!go.load(std::memory_order_acquire)) {
      std::this_thread::yield();
    }
    bool batch = false;
    while (!done()) {
      batch = !batch;
      if (batch) {
        auto b = inj.pop_batch(7);
        for (runnable* r = b.first; r != nullptr;) {
          runnable* next = r->next_;
          r->run();
          r = next;
        }
        if (b.size != 0) {
          continue;
        }
      } else if (runnable* r = inj.pop()) {
        r->run();
        continue;
      }
      std::this_thread::yield();
    }
  });

  // The owner: a first burst before the thieves start (it overflows for sure), then phases
  // of 4096 pushes: "surplus" (one pop per three pushes: overflow-heavy), "balanced" (pops
  // whenever the ring is half full: thieves race the owner's pops), "yielding" (gives the
  // thieves the cores). Then it helps until everything ran.
  std::uint64_t my_overflowed = 0;
  std::size_t next = 0;
  const auto pop_and_run = [&] {
    if (runnable* r = owner_q.pop()) {
      r->run();
    }
  };
  for (; next < std::size_t{4} * Capacity && next < n; ++next) {
    my_overflowed += owner_q.push_back_or_overflow(&items[next], inj);
  }
  go.store(true, std::memory_order_release);
  while (next < n) {
    my_overflowed += owner_q.push_back_or_overflow(&items[next++], inj);
    switch ((next / 4096) % 3) {
    case 0:
      if (next % 3 == 0) {
        pop_and_run();
      }
      break;
    case 1:
      if (owner_q.size() >= Capacity / 2) {
        pop_and_run();
      }
      break;
    default:
      if (owner_q.size() >= Capacity / 2 + Capacity / 4) {
        pop_and_run();
      }
      if (next % 16 == 0) {
        std::this_thread::yield();
      }
      break;
    }
  }
  while (!done()) {
    if (runnable* r = owner_q.pop()) {
      r->run();
    } else if (runnable* r = inj.pop()) {
      r->run();
    } else {
      std::this_thread::yield();
    }
  }
  overflowed = my_overflowed;
  for (auto& th : threads) {
    th.join();
  }

  INFO(
      "overflowed " << overflowed.load() << ", steals " << steals.load() << ", contended "
                    << contended.load() << ", refills " << refills.load());
  REQUIRE(ctx.executed.load() == n);
  REQUIRE(ctx.checksum.load() == std::uint64_t{n} * (n - 1) / 2);
  std::size_t wrong = 0;
  for (auto& it : items) {
    if (it.runs.load(std::memory_order_relaxed) != 1) {
      ++wrong;
    }
  }
  REQUIRE(wrong == 0);
  REQUIRE(overflowed.load() > 0);
  REQUIRE(steals.load() > 0);
  REQUIRE(owner_q.empty());
  REQUIRE(inj.empty());
  for (auto& q : thief_qs) {
    REQUIRE(q.empty());
  }
}

} // namespace

TEST_CASE(
    "local_queue: stress, owner + 3 thieves + injector drainer, exactly once",
    "[local_queue][stress]") {
  stress<256>(BASTION_TEST_SANITIZED ? 500'000 : 2'000'000, 3);
}

TEST_CASE(
    "local_queue: stress, small ring, heavy contention, exactly once", "[local_queue][stress]") {
  stress<8>(BASTION_TEST_SANITIZED ? 250'000 : 1'000'000, 2);
}
