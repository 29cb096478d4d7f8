// tests/mpsc_queue.cpp: bastion::detail::mpsc_queue (include/bastion/detail/mpsc_queue.hpp):
// FIFO, and a multi-producer stress that checks every node arrives exactly once, in order per
// producer.
#include <bastion/detail/mpsc_queue.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace {

struct item : bastion::detail::mpsc_node {
  std::uint32_t producer = 0;
  std::uint32_t seq = 0;
};

} // namespace

TEST_CASE("mpsc_queue: empty, then FIFO on one thread", "[mpsc_queue]") {
  bastion::detail::mpsc_queue q;
  bastion::detail::mpsc_node* out = nullptr;
  CHECK(q.pop(out) == bastion::detail::mpsc_queue::pop_status::empty);
  std::vector<item> items(5);
  for (std::uint32_t i = 0; i < items.size(); ++i) {
    items[i].seq = i;
    q.push(&items[i]);
  }
  for (std::uint32_t i = 0; i < items.size(); ++i) {
    auto* n = q.pop();
    REQUIRE(n != nullptr);
    CHECK(static_cast<item*>(n)->seq == i);
  }
  CHECK(q.pop() == nullptr);
  q.push(&items[0]); // reuse after the stub was re-pushed
  CHECK(q.pop() == &items[0]);
  CHECK(q.pop(out) == bastion::detail::mpsc_queue::pop_status::empty);
}

TEST_CASE(
    "mpsc_queue: 3 producers x 200000, each node exactly once, FIFO per producer",
    "[mpsc_queue][stress]") {
  constexpr std::uint32_t producers = 3;
  constexpr std::uint32_t per = 200000;
  bastion::detail::mpsc_queue q;
  std::vector<std::unique_ptr<item[]>> pools;
  for (std::uint32_t p = 0; p < producers; ++p) {
    pools.emplace_back(new item[per]);
  }
  std::vector<std::thread> ts;
  for (std::uint32_t p = 0; p < producers; ++p) {
    ts.emplace_back([&, p] {
      for (std::uint32_t i = 0; i < per; ++i) {
        pools[p][i].producer = p;
        pools[p][i].seq = i;
        q.push(&pools[p][i]);
      }
    });
  }
  std::vector<std::uint32_t> next(producers, 0);
  std::uint64_t got = 0;
  bool in_order = true;
  while (got < std::uint64_t{producers} * per) {
    auto* n = q.pop();
    if (n == nullptr) {
      std::this_thread::yield();
      continue;
    }
    auto* it = static_cast<item*>(n);
    in_order = in_order && it->seq == next[it->producer];
    ++next[it->producer];
    ++got;
  }
  for (auto& t : ts) {
    t.join();
  }
  CHECK(in_order);
  CHECK(q.pop() == nullptr);
  for (std::uint32_t p = 0; p < producers; ++p) {
    CHECK(next[p] == per);
  }
}
