// tests/block_cache.cpp: the per-thread block caches and their shared depot
// (bastion/detail/block_cache.hpp): blocks are never handed out twice while in use, blocks
// freed on one thread are reused on another through the depot, and cached_allocator works
// in standard containers.
#include <bastion/executor/runtime.hpp>

#include <bastion/detail/block_cache.hpp>

#include "support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using bastion::detail::block_cache_depot_blocks;
using bastion::detail::cached_allocate;
using bastion::detail::cached_deallocate;

namespace {

/// A block in flight between threads: its size and the byte pattern written into it.
struct tagged {
  void* p;
  std::size_t n;
  unsigned char tag;
};

void fill(const tagged& t) {
  std::memset(t.p, t.tag, t.n);
}
bool intact(const tagged& t) {
  const auto* b = static_cast<const unsigned char*>(t.p);
  for (std::size_t i = 0; i < t.n; ++i) {
    if (b[i] != t.tag) {
      return false;
    }
  }
  return true;
}

} // namespace

TEST_CASE("block cache: every size up to the limit is usable and blocks do not overlap") {
  std::vector<tagged> live;
  for (std::size_t n = 1; n <= bastion::detail::block_cache_max + 64; n += 7) {
    for (int copy = 0; copy < 3; ++copy) {
      live.push_back({cached_allocate(n), n, static_cast<unsigned char>(live.size())});
      fill(live.back());
    }
  }
  std::size_t broken = 0;
  for (auto& t : live) {
    broken += intact(t) ? 0 : 1;
  }
  CHECK(broken == 0);
  // Freed and allocated again (now from this thread's magazines): still distinct.
  for (auto& t : live) {
    cached_deallocate(t.p, t.n);
  }
  std::set<void*> seen;
  for (auto& t : live) {
    t.p = cached_allocate(t.n);
    seen.insert(t.p);
    fill(t);
  }
  CHECK(seen.size() == live.size());
  for (auto& t : live) {
    CHECK(intact(t));
    cached_deallocate(t.p, t.n);
  }
  cached_deallocate(nullptr, 16); // no effect
}

TEST_CASE("block cache: blocks freed on one thread are reused on another through the depot") {
  if (!bastion::detail::block_caches_enabled()) {
    SUCCEED("caches are bypassed in this build (AddressSanitizer)");
    return;
  }
  constexpr std::size_t n = 200;      // a size class nothing else in this test uses
  constexpr std::size_t count = 2048; // 16 magazines
  std::vector<void*> blocks(count);
  std::thread producer([&] {
    for (auto& p : blocks) {
      p = cached_allocate(n);
    }
  });
  producer.join();
  // Freed on a third thread, which then exits: its full magazines go to the depot.
  std::thread freer([&] {
    for (auto* p : blocks) {
      cached_deallocate(p, n);
    }
  });
  freer.join();
  const std::set<void*> freed(blocks.begin(), blocks.end());
  std::size_t reused = 0;
  std::vector<void*> again(count);
  for (auto& p : again) {
    p = cached_allocate(n);
    reused += freed.count(p);
  }
  // The depot keeps up to 4096 magazines of 128 per class: all 16 fit, so every block comes
  // back, except for those this thread's own two magazines (up to 256 blocks, from the test
  // above) serve first. Plain malloc would return none of them here: they belong to the
  // producer's arena.
  CHECK(reused >= count - 256);
  for (auto* p : again) {
    cached_deallocate(p, n);
  }
}

TEST_CASE("block cache: stress: blocks cross threads and are never handed out twice") {
  constexpr int threads = 4;
  constexpr int rounds = 20000;
  std::mutex mu;
  std::vector<tagged> exchange; // blocks one thread allocated for another to check and free
  std::atomic<std::size_t> broken{0};
  std::atomic<std::size_t> freed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::uint32_t rng = 0x9e3779b9U * static_cast<std::uint32_t>(t + 1);
      for (int i = 0; i < rounds; ++i) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        const std::size_t n = 16 + rng % 600;
        tagged mine{cached_allocate(n), n, static_cast<unsigned char>(rng >> 24)};
        fill(mine);
        tagged theirs{};
        {
          std::lock_guard lock(mu);
          exchange.push_back(mine);
          if (exchange.size() > 64) {
            theirs = exchange.front();
            exchange.erase(exchange.begin());
          }
        }
        if (theirs.p != nullptr) {
          broken += intact(theirs) ? 0 : 1;
          cached_deallocate(theirs.p, theirs.n);
          ++freed;
        }
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  for (auto& t : exchange) {
    broken += intact(t) ? 0 : 1;
    cached_deallocate(t.p, t.n);
    ++freed;
  }
  CHECK(broken.load() == 0);
  CHECK(freed.load() == static_cast<std::size_t>(threads) * rounds);
}

TEST_CASE("block cache: cached_allocator serves std::list and std::allocate_shared") {
  std::list<int, bastion::detail::cached_allocator<int>> l;
  for (int i = 0; i < 1000; ++i) {
    l.push_back(i);
  }
  long sum = 0;
  for (int v : l) {
    sum += v;
  }
  CHECK(sum == 999L * 1000 / 2);
  auto sp = std::allocate_shared<std::vector<int>>(
      bastion::detail::cached_allocator<std::vector<int>>{}, 3, 7);
  CHECK(sp->size() == 3);
  CHECK((*sp)[2] == 7);
  std::weak_ptr<std::vector<int>> w = sp;
  sp.reset();
  CHECK(w.expired());
  bastion::detail::cached_allocator<int> a;
  CHECK_THROWS_AS(a.allocate(static_cast<std::size_t>(-1) / 2), std::bad_array_new_length);
}

namespace {

/// Allocates `count` blocks of `n` bytes on this thread and frees them all (on this thread):
/// beyond the thread's own two magazines, they all land in the depot.
void churn(std::size_t n, std::size_t count) {
  std::vector<void*> blocks(count);
  for (auto& p : blocks) {
    p = cached_allocate(n);
  }
  for (auto* p : blocks) {
    cached_deallocate(p, n);
  }
}

bastion::task<std::size_t> churn_in_proc(std::size_t n, std::size_t count) {
  churn(n, count);
  co_return block_cache_depot_blocks(n); // read while this worker still runs
}

} // namespace

TEST_CASE("block cache: a trim gives the depot's surplus back, down to 64 magazines a class") {
  if (!bastion::detail::block_caches_enabled()) {
    SUCCEED("caches are bypassed in this build (AddressSanitizer)");
    return;
  }
  constexpr std::size_t n = 456; // a class nothing else in this file uses
  REQUIRE(block_cache_depot_blocks(n) == 0);
  std::thread t([] { churn(n, 300 * 128); });
  t.join(); // the thread's exit flushes its two full magazines to the depot too
  const std::size_t held = block_cache_depot_blocks(n);
  CHECK(held == 300 * 128);
  const std::size_t trimmed = bastion::detail::trim_block_caches();
  CHECK(trimmed >= held - 64 * 128);
  CHECK(block_cache_depot_blocks(n) == 64 * 128);
  CHECK(bastion::detail::trim_block_caches() == 0); // nothing left above any floor
}

TEST_CASE("block cache: a runtime that goes idle trims the depots") {
  if (!bastion::detail::block_caches_enabled()) {
    SUCCEED("caches are bypassed in this build (AddressSanitizer)");
    return;
  }
  constexpr std::size_t n = 616; // a class nothing else in this file (or the runtime) uses
  bastion::runtime rt{bastion::test::workers(2)};
  // While the proc runs (on a worker: run() would run it on this thread), the runtime is
  // busy: the burst's magazines stay in the depot.
  const std::size_t during = rt.spawn(churn_in_proc(n, 200 * 128)).join();
  CHECK(during >= 190 * 128);
  // Once both workers park, the last one to park trims the depot to its floor.
  CHECK(bastion::test::eventually([] { return block_cache_depot_blocks(n) <= 64 * 128; }));
}
