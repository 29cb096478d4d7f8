// tests/timer_heap.cpp: the timer min-heap: expiry order, FIFO among equal deadlines,
// O(log n) removal, and random operations checked against a std::multiset.
#include <bastion/detail/timer_heap.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace {

using bastion::detail::timer_heap;
using bastion::detail::timer_node;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct test_timer : timer_node {
  int id = 0;
  int fired = 0;
};

void fire_test_timer(timer_node* node) noexcept {
  ++static_cast<test_timer*>(node)->fired;
}

std::vector<test_timer> make_timers(std::size_t n, clock_type::time_point base) {
  std::vector<test_timer> timers(n);
  for (std::size_t i = 0; i < n; ++i) {
    timers[i].id = static_cast<int>(i);
    timers[i].deadline = base;
    timers[i].fire_fn_ = &fire_test_timer;
  }
  return timers;
}

int id_of(timer_node* node) {
  return static_cast<test_timer*>(node)->id;
}

} // namespace

TEST_CASE("timer_heap: empty heap", "[timer_heap]") {
  timer_heap heap;
  REQUIRE(heap.empty());
  REQUIRE(heap.size() == 0);
  REQUIRE_FALSE(heap.next_deadline().has_value());
  REQUIRE(heap.pop_expired(clock_type::time_point::max()) == nullptr);
  test_timer t;
  REQUIRE_FALSE(t.armed());
  REQUIRE_FALSE(heap.remove(&t));
}

TEST_CASE("timer_heap: pops in deadline order, only once expired", "[timer_heap]") {
  const auto base = clock_type::now();
  timer_heap heap;
  auto timers = make_timers(5, base);
  const int offsets_ms[] = {30, 10, 50, 20, 40};
  for (std::size_t i = 0; i < 5; ++i) {
    timers[i].deadline = base + milliseconds(offsets_ms[i]);
    heap.insert(&timers[i]);
    REQUIRE(timers[i].armed());
  }
  REQUIRE(heap.size() == 5);
  REQUIRE(heap.next_deadline() == base + milliseconds(10));
  REQUIRE(heap.pop_expired(base) == nullptr);
  REQUIRE(heap.pop_expired(base + milliseconds(9)) == nullptr);

  // A deadline equal to `now` counts as expired.
  timer_node* n = heap.pop_expired(base + milliseconds(10));
  REQUIRE(n != nullptr);
  REQUIRE(id_of(n) == 1);
  REQUIRE_FALSE(n->armed());
  n->fire();
  REQUIRE(timers[1].fired == 1);

  std::vector<int> order;
  while (timer_node* e = heap.pop_expired(base + milliseconds(45))) {
    order.push_back(id_of(e));
  }
  REQUIRE(order == std::vector<int>{3, 0, 4});
  REQUIRE(heap.size() == 1);
  REQUIRE(heap.next_deadline() == base + milliseconds(50));
  REQUIRE(id_of(heap.pop_expired(base + milliseconds(50))) == 2);
  REQUIRE(heap.empty());
}

TEST_CASE("timer_heap: equal deadlines fire in insertion order", "[timer_heap]") {
  const auto base = clock_type::now();
  timer_heap heap;
  auto timers = make_timers(100, base);
  // Insert in a scrambled slot order, all with the same deadline, and a few earlier ones.
  std::vector<int> inserted;
  for (std::size_t i = 0; i < 100; ++i) {
    const std::size_t k = (i * 37) % 100;
    if (k % 10 == 0) {
      timers[k].deadline = base - milliseconds(1);
    }
    heap.insert(&timers[k]);
    inserted.push_back(static_cast<int>(k));
  }
  std::vector<int> early;
  std::vector<int> same;
  for (int k : inserted) {
    (k % 10 == 0 ? early : same).push_back(k);
  }
  std::vector<int> expect = early;
  expect.insert(expect.end(), same.begin(), same.end());

  std::vector<int> order;
  while (timer_node* n = heap.pop_expired(base)) {
    order.push_back(id_of(n));
  }
  REQUIRE(order == expect);
}

TEST_CASE("timer_heap: remove disarms, from anywhere in the heap", "[timer_heap]") {
  const auto base = clock_type::now();
  timer_heap heap;
  auto timers = make_timers(64, base);
  for (std::size_t i = 0; i < 64; ++i) {
    timers[i].deadline = base + milliseconds(static_cast<int>((i * 13) % 64));
    heap.insert(&timers[i]);
  }
  // Remove every third timer, the root included.
  std::multiset<std::pair<clock_type::time_point, int>> ref;
  for (std::size_t i = 0; i < 64; ++i) {
    if (i % 3 == 0) {
      REQUIRE(heap.remove(&timers[i]));
      REQUIRE_FALSE(timers[i].armed());
      REQUIRE_FALSE(heap.remove(&timers[i]));
    } else {
      ref.emplace(timers[i].deadline, static_cast<int>(i));
    }
  }
  REQUIRE(heap.size() == ref.size());
  // Re-arming a removed timer works and it gets a new, later sequence number.
  const std::uint64_t old_seq = timers[0].seq;
  heap.insert(&timers[0]);
  REQUIRE(timers[0].seq > old_seq);
  ref.emplace(timers[0].deadline, 0);

  for (const auto& [deadline, id] : ref) {
    timer_node* n = heap.pop_expired(clock_type::time_point::max());
    REQUIRE(n != nullptr);
    REQUIRE(n->deadline == deadline);
    (void)id;
  }
  REQUIRE(heap.empty());
}

TEST_CASE("timer_heap: random operations match a std::multiset", "[timer_heap]") {
  const auto base = clock_type::time_point{} + std::chrono::hours(1);
  std::mt19937_64 rng(12345);
  constexpr std::size_t pool = 512;
  auto timers = make_timers(pool, base);
  timer_heap heap;
  // Reference ordered by (deadline, seq), which is exactly the heap's order.
  std::set<std::pair<clock_type::time_point, std::uint64_t>> ref;
  std::vector<std::size_t> armed;
  auto now = base;

  for (int step = 0; step < 200'000; ++step) {
    const auto op = rng() % 8;
    if (op < 4) {
      // Insert a free timer; deadlines on a coarse grid so that ties are frequent.
      const std::size_t k = rng() % pool;
      if (timers[k].armed()) {
        continue;
      }
      timers[k].deadline = now + milliseconds(static_cast<int>(rng() % 64));
      heap.insert(&timers[k]);
      REQUIRE(ref.emplace(timers[k].deadline, timers[k].seq).second);
    } else if (op < 6) {
      // Remove a random timer, armed or not.
      const std::size_t k = rng() % pool;
      const bool was_armed = timers[k].armed();
      REQUIRE(heap.remove(&timers[k]) == was_armed);
      if (was_armed) {
        REQUIRE(ref.erase({timers[k].deadline, timers[k].seq}) == 1);
      }
    } else {
      // Advance time and pop everything that expired, in order.
      now += milliseconds(static_cast<int>(rng() % 8));
      while (timer_node* n = heap.pop_expired(now)) {
        REQUIRE(!ref.empty());
        REQUIRE(ref.begin()->first == n->deadline);
        REQUIRE(ref.begin()->second == n->seq);
        REQUIRE(n->deadline <= now);
        REQUIRE_FALSE(n->armed());
        ref.erase(ref.begin());
      }
      if (!ref.empty()) {
        REQUIRE(ref.begin()->first > now);
      }
    }
    REQUIRE(heap.size() == ref.size());
    if (ref.empty()) {
      REQUIRE_FALSE(heap.next_deadline().has_value());
    } else {
      REQUIRE(heap.next_deadline() == ref.begin()->first);
    }
  }
  // Index bookkeeping: every armed timer is removable, every other one is not.
  for (auto& t : timers) {
    const bool was_armed = t.armed();
    REQUIRE(heap.remove(&t) == was_armed);
  }
  REQUIRE(heap.empty());
}
