// bastion/detail/block_cache.hpp (internal): per-thread caches of freed small blocks for the
// runtime's per-proc and per-actor allocations (task frames with their procs, child slots).
#pragma once

#include <cstddef>
#include <new>

namespace bastion::detail {

/// Largest block (bytes) the caches keep; bigger requests go straight to ::operator new.
inline constexpr std::size_t block_cache_max = 1024;

/// Allocates at least `n` bytes (aligned like ::operator new): a block freed before (by any
/// thread) when one of the same size class (16-byte steps) is cached, else a fresh
/// ::operator new block of the class's full size. Throws std::bad_alloc. Thread-safe.
/// O(1); one uncontended lock per 128 blocks when this thread's magazines are empty.
///
/// Why: a proc's frame and an actor's slot are allocated on one worker and often freed on
/// another; glibc's per-thread cache holds only 7 blocks per size, so bursts of spawns and
/// exits (skynet: a million of each) fall through to its arenas' locks, and the workers
/// spend their time waiting for each other there (measured in docs/performance.md).
/// The design is the magazine layer of Bonwick and Adams ("Magazines and Vmem", USENIX
/// 2001): each thread holds two magazines of up to 128 freed blocks per class, lock-free;
/// a thread that fills both hands a full magazine to the class's shared depot, and a thread
/// that runs out takes one from there, so blocks freed on one worker are reused on another.
/// The depot keeps at most 4096 magazines per class and gives the rest back to the
/// allocator; when the runtime goes idle it keeps only 64 (trim_block_caches), so a burst's
/// blocks are not held for good. A thread's cache is flushed when the thread exits (its full
/// magazines go to the depot).
/// Under AddressSanitizer the caches are bypassed, so that every use after free is still
/// caught.
[[nodiscard]] void* cached_allocate(std::size_t n);

/// Frees block `p` of `n` bytes (the `n` given to cached_allocate): into this thread's
/// magazines (a full one goes to the depot, see cached_allocate). Any thread may free any
/// block. Never throws. O(1); one uncontended lock per 128 blocks when both magazines are full.
void cached_deallocate(void* p, std::size_t n) noexcept;

/// True when the caches are in use: false in builds with AddressSanitizer, where every call
/// goes straight to the allocator. Thread-safe. O(1).
[[nodiscard]] bool block_caches_enabled() noexcept;

/// Gives the depots' magazines beyond 64 per class back to the allocator (Bonwick and Adams
/// reap the depot's unused magazines the same way) and returns how many blocks that freed.
/// Called by the last worker of a runtime to park, i.e. when the runtime goes idle; the
/// magazines threads hold are not touched. Thread-safe. Returns at once (one relaxed load)
/// when no depot holds more than its floor; else O(classes + blocks freed).
std::size_t trim_block_caches() noexcept;

/// Blocks the depot of the class serving `n`-byte requests holds now (not counting the
/// threads' own magazines); 0 when the caches are off or `n` is not cached. For tests and
/// diagnostics. Thread-safe. O(1).
[[nodiscard]] std::size_t block_cache_depot_blocks(std::size_t n) noexcept;

/// A base that gives a class (and the classes derived from it) operator new and delete over
/// the block caches: for the runtime's per-actor and per-message objects, made on one
/// worker and often freed on another. Empty (no size cost as a base). Over-aligned types
/// take the allocator's aligned path. Thread-safe; operator new throws std::bad_alloc.
/// Deleting through a base pointer needs a virtual destructor (the sized delete must get the
/// object's own size).
struct cached_new {
  static void* operator new(std::size_t n) { return cached_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { cached_deallocate(p, n); }
  static void* operator new(std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
  static void operator delete(void* p, std::size_t n, std::align_val_t a) noexcept {
    ::operator delete(p, n, a);
  }
};

/// A standard allocator over cached_allocate / cached_deallocate, for the runtime's own
/// node-based containers and shared states (std::allocate_shared, std::list). Stateless:
/// every instance is interchangeable. Thread-safe; throws std::bad_alloc; over-aligned types
/// are not supported (checked at compile time).
template <class T>
struct cached_allocator {
  using value_type = T;
  cached_allocator() noexcept = default;
  template <class U>
  cached_allocator(const cached_allocator<U>& /*other*/) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    static_assert(alignof(T) <= alignof(std::max_align_t), "cached_allocator: over-aligned type");
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    return static_cast<T*>(cached_allocate(n * sizeof(T))); // big ones: ::operator new
  }
  void deallocate(T* p, std::size_t n) noexcept { cached_deallocate(p, n * sizeof(T)); }
  template <class U>
  friend bool operator==(const cached_allocator& /*a*/, const cached_allocator<U>& /*b*/) noexcept {
    return true;
  }
};

} // namespace bastion::detail
