// tests/injector.cpp: the global injection queue: FIFO order, batches, fair share, close and
// drain, and concurrent producers/consumers with an exactly-once check.
#include <bastion/config.hpp>

#include <bastion/detail/injector.hpp>
#include <bastion/detail/runnable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

/// Sanitized builds run the stress tests at a quarter of their size.
#define BASTION_TEST_SANITIZED (BASTION_TSAN || BASTION_ASAN)

namespace {

using bastion::detail::injector;
using bastion::detail::run_mode;
using bastion::detail::runnable;

struct item : runnable {
  std::uint32_t id = 0;
  std::atomic<std::uint32_t> runs{0};
  std::atomic<std::uint32_t> cancels{0};
};

void run_item(runnable* r) noexcept {
  static_cast<item*>(r)->runs.fetch_add(1, std::memory_order_relaxed);
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

std::vector<item> make_items(std::size_t n) {
  std::vector<item> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    items[i].id = static_cast<std::uint32_t>(i);
    items[i].entry_ = &enter_item;
  }
  return items;
}

std::uint32_t id_of(runnable* r) {
  return static_cast<item*>(r)->id;
}

// Links items[first, first + n) through next_ and returns the chain's ends.
std::pair<runnable*, runnable*> link(std::vector<item>& items, std::size_t first, std::size_t n) {
  for (std::size_t i = first; i + 1 < first + n; ++i) {
    items[i].next_ = &items[i + 1];
  }
  return {&items[first], &items[first + n - 1]};
}

} // namespace

TEST_CASE("injector: FIFO push and pop", "[injector]") {
  injector inj;
  auto items = make_items(10);
  REQUIRE(inj.empty());
  REQUIRE(inj.pop() == nullptr);
  for (auto& it : items) {
    REQUIRE(inj.push(&it));
  }
  REQUIRE(inj.size() == 10);
  for (std::uint32_t i = 0; i < 10; ++i) {
    runnable* r = inj.pop();
    REQUIRE(r != nullptr);
    REQUIRE(id_of(r) == i);
    REQUIRE(r->next_ == nullptr);
    REQUIRE(inj.size() == 9 - i);
  }
  REQUIRE(inj.pop() == nullptr);
  REQUIRE(inj.empty());
}

TEST_CASE("injector: push_batch appends a chain in order", "[injector]") {
  injector inj;
  auto items = make_items(12);
  REQUIRE(inj.push(&items[0]));
  auto [first, last] = link(items, 1, 10);
  inj.push_batch(first, last, 10);
  REQUIRE(inj.push(&items[11]));
  REQUIRE(inj.size() == 12);
  for (std::uint32_t i = 0; i < 12; ++i) {
    runnable* r = inj.pop();
    REQUIRE(r != nullptr);
    REQUIRE(id_of(r) == i);
  }
  REQUIRE(inj.empty());
}

TEST_CASE("injector: pop_batch detaches up to max in order", "[injector]") {
  injector inj;
  auto items = make_items(10);
  for (auto& it : items) {
    REQUIRE(inj.push(&it));
  }
  REQUIRE(inj.pop_batch(0).size == 0);

  auto b = inj.pop_batch(4);
  REQUIRE(b.size == 4);
  REQUIRE(id_of(b.first) == 0);
  REQUIRE(id_of(b.last) == 3);
  REQUIRE(b.last->next_ == nullptr);
  std::uint32_t expect = 0;
  for (runnable* r = b.first; r != nullptr; r = r->next_) {
    REQUIRE(id_of(r) == expect++);
  }
  REQUIRE(expect == 4);
  REQUIRE(inj.size() == 6);

  b = inj.pop_batch(100);
  REQUIRE(b.size == 6);
  REQUIRE(id_of(b.first) == 4);
  REQUIRE(id_of(b.last) == 9);
  REQUIRE(b.last->next_ == nullptr);
  REQUIRE(inj.empty());
  REQUIRE(inj.pop_batch(3).first == nullptr);

  // The queue is usable after being emptied by a batch.
  REQUIRE(inj.push(&items[0]));
  REQUIRE(inj.pop() == &items[0]);
}

TEST_CASE("injector: fair_share is min(len / workers + 1, limit)", "[injector]") {
  injector inj;
  auto items = make_items(100);
  REQUIRE(inj.fair_share(4, 128) == 1);
  for (auto& it : items) {
    REQUIRE(inj.push(&it));
  }
  REQUIRE(inj.fair_share(4, 128) == 26);
  REQUIRE(inj.fair_share(1, 128) == 101);
  REQUIRE(inj.fair_share(1, 64) == 64);
  inj.drain([](runnable*) {});
}

TEST_CASE("injector: close rejects later pushes, keeps queued work for drain", "[injector]") {
  injector inj;
  auto items = make_items(8);
  for (std::size_t i = 0; i < 4; ++i) {
    REQUIRE(inj.push(&items[i]));
  }
  REQUIRE_FALSE(inj.is_closed());
  REQUIRE(inj.close());
  REQUIRE(inj.is_closed());
  REQUIRE_FALSE(inj.close());
  REQUIRE_FALSE(inj.push(&items[4]));
  REQUIRE(inj.size() == 4);
  // A worker's overflow batch is still accepted: that work was admitted before.
  auto [first, last] = link(items, 5, 3);
  inj.push_batch(first, last, 3);
  REQUIRE(inj.size() == 7);
  REQUIRE(id_of(inj.pop()) == 0);

  std::vector<std::uint32_t> order;
  inj.drain([&](runnable* r) {
    order.push_back(id_of(r));
    REQUIRE(r->next_ == nullptr);
    r->cancel();
  });
  REQUIRE(order == std::vector<std::uint32_t>{1, 2, 3, 5, 6, 7});
  REQUIRE(inj.empty());
  REQUIRE(items[4].cancels.load() == 0);
  REQUIRE(items[0].cancels.load() == 0);
  for (std::size_t i : {1U, 2U, 3U, 5U, 6U, 7U}) {
    REQUIRE(items[i].cancels.load() == 1);
  }
}

TEST_CASE("injector: drain callback may push again (rejected after close)", "[injector]") {
  injector inj;
  auto items = make_items(3);
  for (auto& it : items) {
    REQUIRE(inj.push(&it));
  }
  REQUIRE(inj.close());
  int rejected = 0;
  inj.drain([&](runnable* r) {
    if (!inj.push(r)) {
      ++rejected;
    }
  });
  REQUIRE(rejected == 3);
  REQUIRE(inj.empty());
}

TEST_CASE(
    "injector: stress, concurrent producers and consumers, exactly once", "[injector][stress]") {
  constexpr int producers = 3;
  constexpr int consumers = 2;
  const std::size_t per_producer = BASTION_TEST_SANITIZED ? 125'000 : 500'000;
  const std::size_t n = per_producer * producers;
  auto items = make_items(n);
  injector inj;
  std::atomic<std::size_t> consumed{0};
  std::atomic<std::uint64_t> checksum{0};
  std::atomic<std::size_t> push_failures{0}; // Catch2 assertions are for the main thread only

  std::vector<std::thread> threads;
  threads.reserve(producers + consumers);
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::size_t i = static_cast<std::size_t>(p) * per_producer;
      const std::size_t end = i + per_producer;
      while (i < end) {
        // Alternate single pushes with batches of up to 5.
        const std::size_t k = std::min<std::size_t>(1 + i % 6, end - i);
        if (k == 1) {
          if (!inj.push(&items[i])) {
            ++push_failures;
          }
        } else {
          auto [first, last] = link(items, i, k);
          inj.push_batch(first, last, k);
        }
        i += k;
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      std::uint64_t sum = 0;
      while (consumed.load(std::memory_order_relaxed) < n) {
        std::size_t got = 0;
        if (c == 0) {
          if (runnable* r = inj.pop()) {
            sum += id_of(r);
            r->run();
            got = 1;
          }
        } else {
          auto b = inj.pop_batch(inj.fair_share(consumers, 64));
          for (runnable* r = b.first; r != nullptr;) {
            runnable* next = r->next_;
            sum += id_of(r);
            r->run();
            r = next;
          }
          got = b.size;
        }
        if (got == 0) {
          std::this_thread::yield();
        } else {
          consumed.fetch_add(got, std::memory_order_relaxed);
        }
      }
      checksum += sum;
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  REQUIRE(push_failures.load() == 0);
  REQUIRE(consumed.load() == n);
  REQUIRE(checksum.load() == std::uint64_t{n} * (n - 1) / 2);
  std::size_t wrong = 0;
  for (auto& it : items) {
    if (it.runs.load() != 1) {
      ++wrong;
    }
  }
  REQUIRE(wrong == 0);
  REQUIRE(inj.empty());
}

TEST_CASE("injector: close races with producers; accepted == consumed", "[injector][stress]") {
  constexpr int producers = 3;
  const std::size_t per_producer = BASTION_TEST_SANITIZED ? 50'000 : 200'000;
  auto items = make_items(per_producer * producers);
  injector inj;
  std::atomic<std::size_t> accepted{0};
  std::atomic<std::size_t> rejected{0};
  std::atomic<std::size_t> accepted_after_rejected{0};
  std::atomic<int> running{producers};
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::size_t ok = 0;
      std::size_t no = 0;
      for (std::size_t i = 0; i < per_producer; ++i) {
        if (inj.push(&items[static_cast<std::size_t>(p) * per_producer + i])) {
          if (no != 0) {
            ++accepted_after_rejected; // once rejected, always rejected
          }
          ++ok;
        } else {
          ++no;
        }
      }
      accepted += ok;
      rejected += no;
      running.fetch_sub(1);
    });
  }
  std::size_t consumed = 0;
  bool closed = false;
  while (running.load() != 0 || !inj.empty()) {
    if (!closed && consumed >= 1000) {
      closed = inj.close();
      REQUIRE(closed);
    }
    if (runnable* r = inj.pop()) {
      r->run();
      ++consumed;
    } else {
      std::this_thread::yield();
    }
  }
  for (auto& t : threads) {
    t.join();
  }
  inj.drain([&](runnable* r) {
    r->run();
    ++consumed;
  });
  REQUIRE(closed);
  INFO("accepted " << accepted.load() << ", rejected " << rejected.load());
  REQUIRE(accepted_after_rejected.load() == 0);
  REQUIRE(accepted.load() + rejected.load() == items.size());
  REQUIRE(consumed == accepted.load());
  for (auto& it : items) {
    REQUIRE(it.runs.load() <= 1);
  }
}
