// src/lightproc/block_cache.cpp: the per-thread block caches (bastion/detail/block_cache.hpp).
#include <bastion/detail/block_cache.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#  define BASTION_BLOCK_CACHE 0
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define BASTION_BLOCK_CACHE 0
#  endif
#endif
#ifndef BASTION_BLOCK_CACHE
#  define BASTION_BLOCK_CACHE 1
#endif

namespace bastion::detail {

#if BASTION_BLOCK_CACHE

namespace {

// Class k holds blocks of 16k + 8 bytes: the usable sizes of glibc's chunks (16-byte steps,
// 8 bytes of chunk header), so a cached block costs exactly what a direct malloc would.
// Class 0 (8 bytes) is not used: the smallest class is 24 bytes, room for the two links a
// magazine's first block carries.
constexpr std::size_t granule = 16;
constexpr std::size_t classes = (block_cache_max + 7) / granule + 1;
/// Blocks per magazine: a thread holds at most two magazines per class.
constexpr std::uint32_t magazine_size = 128;
/// Full magazines the depot keeps per class while the runtime is busy (beyond that they go
/// back to the allocator): 4096 * 128 blocks, room for the frames and slots of a burst of half
/// a million actors. A smaller cap (64) sent skynet's exits back to glibc, whose arena lock
/// the two workers then fought over (docs/performance.md, session 6).
constexpr std::uint32_t depot_limit = 4096;
/// Full magazines per class a trim leaves in the depot (trim_block_caches).
constexpr std::uint32_t depot_floor = 64;

/// Magazines held above depot_floor, over all classes: lets trim_block_caches return at
/// once when there is nothing to give back.
std::atomic<std::uint64_t> depot_excess{0};

/// A cached block: the link to the next block of its magazine and, in a magazine's first
/// block while the magazine is in the depot, the link to the next full magazine.
struct free_block {
  free_block* next;
  free_block* next_magazine;
};

/// A magazine: a stack of up to magazine_size free blocks of one class.
struct magazine {
  free_block* head;
  std::uint32_t count;

  void push(void* p) noexcept {
    auto* b = static_cast<free_block*>(p);
    b->next = head;
    head = b;
    ++count;
  }
  void* pop() noexcept {
    auto* b = head;
    head = b->next;
    --count;
    return b;
  }
  void release() noexcept {
    while (auto* b = head) {
      head = b->next;
      ::operator delete(b);
    }
    count = 0;
  }
};

/// The shared depot of full magazines of one class (Bonwick and Adams, "Magazines and Vmem",
/// USENIX 2001): threads exchange whole magazines, one lock per magazine_size blocks, so
/// blocks freed on one worker are reused on another without the allocator's locks.
struct depot {
  std::mutex mu;
  free_block* full = nullptr; ///< first blocks of the full magazines, through next_magazine
  std::uint32_t count = 0;

  /// Takes a full magazine; false when there is none.
  bool take(magazine& m) noexcept {
    std::lock_guard lock(mu);
    if (full == nullptr) {
      return false;
    }
    m.head = full;
    m.count = magazine_size;
    full = full->next_magazine;
    if (count-- > depot_floor) {
      depot_excess.fetch_sub(1, std::memory_order_relaxed);
    }
    return true;
  }
  /// Keeps full magazine `m` (leaving it empty), or gives its blocks back to the allocator
  /// when the depot already holds depot_limit.
  void give(magazine& m) noexcept {
    {
      std::lock_guard lock(mu);
      if (count < depot_limit) {
        m.head->next_magazine = full;
        full = m.head;
        if (count++ >= depot_floor) {
          depot_excess.fetch_add(1, std::memory_order_relaxed);
        }
        m = magazine{};
        return;
      }
    }
    m.release();
  }
  /// Gives the magazines beyond depot_floor back to the allocator; returns how many.
  std::size_t trim() noexcept {
    free_block* surplus = nullptr;
    std::size_t n = 0;
    {
      std::lock_guard lock(mu);
      if (count <= depot_floor) {
        return 0;
      }
      // Keep the newest depot_floor magazines (the warmest), cut off the rest.
      free_block** link = &full;
      for (std::uint32_t i = 0; i < depot_floor; ++i) {
        link = &(*link)->next_magazine;
      }
      surplus = *link;
      *link = nullptr;
      n = count - depot_floor;
      count = depot_floor;
      depot_excess.fetch_sub(n, std::memory_order_relaxed);
    }
    while (surplus != nullptr) {
      magazine m{surplus, magazine_size};
      surplus = surplus->next_magazine;
      m.release();
    }
    return n;
  }
  std::size_t size() noexcept {
    std::lock_guard lock(mu);
    return count;
  }
};

/// The depots, one per class; never destroyed (threads may free blocks during static
/// destruction), so what they hold at exit stays reachable.
depot* depots() noexcept {
  alignas(depot) static unsigned char storage[sizeof(depot) * classes];
  static depot* const d = [] {
    auto* first = reinterpret_cast<depot*>(storage);
    for (std::size_t k = 0; k < classes; ++k) {
      new (first + k) depot();
    }
    return first;
  }();
  return d;
}

/// One thread's cache: two magazines per class (Bonwick's loaded and previous). Trivially
/// destructible, so it stays usable during thread exit (a block freed by another
/// thread_local's destructor just bypasses it once it is flushed).
struct cache {
  magazine loaded[classes];
  magazine previous[classes];
  bool registered; ///< the flusher below exists for this thread
  bool closed;     ///< flushed at thread exit: free straight to the allocator
};

thread_local cache tl_cache{};

/// Hands the thread's magazines to the depots (full ones) or the allocator.
void flush(cache& c) noexcept {
  auto* d = depots();
  for (std::size_t k = 0; k < classes; ++k) {
    for (auto* m : {&c.loaded[k], &c.previous[k]}) {
      if (m->count == magazine_size) {
        d[k].give(*m);
      } else {
        m->release();
      }
    }
  }
}

/// Gives the thread's cached blocks back when the thread exits.
struct flusher {
  flusher() noexcept = default;
  flusher(const flusher&) = delete;
  flusher& operator=(const flusher&) = delete;
  ~flusher() {
    flush(tl_cache);
    tl_cache.closed = true;
  }
};

/// Makes sure this thread's flusher exists (a function-local thread_local is constructed
/// when control first passes its declaration).
void register_flusher(cache& c) noexcept {
  c.registered = true;
  thread_local flusher f;
  (void)f;
}

std::size_t class_of(std::size_t n) noexcept {
  return n <= 8 ? 1 : (n + 7) / granule;
}
std::size_t class_size(std::size_t k) noexcept {
  return granule * k + 8;
}

} // namespace

void* cached_allocate(std::size_t n) {
  if (n == 0 || n > block_cache_max) {
    return ::operator new(n);
  }
  auto& c = tl_cache;
  const auto k = class_of(n);
  auto& loaded = c.loaded[k];
  if (loaded.count != 0) {
    return loaded.pop();
  }
  if (c.previous[k].count != 0) {
    std::swap(loaded, c.previous[k]);
    return loaded.pop();
  }
  if (!c.closed) {
    if (!c.registered) {
      register_flusher(c); // the cache is flushed when this thread exits
    }
    if (depots()[k].take(loaded)) {
      return loaded.pop();
    }
  }
  return ::operator new(class_size(k));
}

void cached_deallocate(void* p, std::size_t n) noexcept {
  if (p == nullptr) {
    return;
  }
  auto& c = tl_cache;
  if (n == 0 || n > block_cache_max || c.closed) {
    ::operator delete(p);
    return;
  }
  if (!c.registered) {
    register_flusher(c);
  }
  const auto k = class_of(n);
  auto& loaded = c.loaded[k];
  if (loaded.count == magazine_size) {
    auto& previous = c.previous[k];
    if (previous.count == magazine_size) {
      depots()[k].give(previous); // leaves it empty
    }
    std::swap(loaded, previous);
  }
  loaded.push(p);
}

bool block_caches_enabled() noexcept {
  return true;
}

std::size_t trim_block_caches() noexcept {
  if (depot_excess.load(std::memory_order_relaxed) == 0) {
    return 0;
  }
  std::size_t blocks = 0;
  auto* d = depots();
  for (std::size_t k = 0; k < classes; ++k) {
    blocks += d[k].trim() * magazine_size;
  }
  return blocks;
}

std::size_t block_cache_depot_blocks(std::size_t n) noexcept {
  if (n == 0 || n > block_cache_max) {
    return 0;
  }
  return depots()[class_of(n)].size() * magazine_size;
}

#else // the caches are off (AddressSanitizer): plain allocator calls

bool block_caches_enabled() noexcept {
  return false;
}

void* cached_allocate(std::size_t n) {
  return ::operator new(n);
}

void cached_deallocate(void* p, std::size_t /*n*/) noexcept {
  ::operator delete(p);
}

std::size_t trim_block_caches() noexcept {
  return 0;
}

std::size_t block_cache_depot_blocks(std::size_t /*n*/) noexcept {
  return 0;
}

#endif

} // namespace bastion::detail
