// src/lightproc/block_cache.cpp: the per-thread block caches (bastion/detail/block_cache.hpp).
#include <bastion/detail/block_cache.hpp>

#include <cstdint>
#include <new>

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
constexpr std::size_t granule = 16;
constexpr std::size_t classes = (block_cache_max + 7) / granule + 1;
constexpr std::uint32_t per_class = 256;

struct free_block {
  free_block* next;
};

/// One thread's cache. Trivially destructible, so it stays usable during thread exit (a
/// block freed by another thread_local's destructor just bypasses it once it is flushed).
struct cache {
  free_block* head[classes];
  std::uint32_t count[classes];
  bool registered; ///< the flusher below exists for this thread
  bool closed;     ///< flushed at thread exit: free straight to the allocator
};

thread_local cache tl_cache{};

void flush(cache& c) noexcept {
  for (std::size_t k = 0; k < classes; ++k) {
    while (auto* b = c.head[k]) {
      c.head[k] = b->next;
      ::operator delete(b);
    }
    c.count[k] = 0;
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
  return (n + 7) / granule;
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
  if (auto* b = c.head[k]) {
    c.head[k] = b->next;
    --c.count[k];
    return b;
  }
  if (!c.registered && !c.closed) {
    register_flusher(c); // the cache is flushed when this thread exits
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
  if (c.count[k] >= per_class) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<free_block*>(p);
  b->next = c.head[k];
  c.head[k] = b;
  ++c.count[k];
}

#else // the caches are off (AddressSanitizer): plain allocator calls

void* cached_allocate(std::size_t n) {
  return ::operator new(n);
}

void cached_deallocate(void* p, std::size_t /*n*/) noexcept {
  ::operator delete(p);
}

#endif

} // namespace bastion::detail
