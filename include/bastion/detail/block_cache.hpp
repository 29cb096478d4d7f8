// bastion/detail/block_cache.hpp (internal): per-thread caches of freed small blocks for the
// runtime's per-proc and per-actor allocations (task frames with their procs, child slots).
#pragma once

#include <cstddef>

namespace bastion::detail {

/// Largest block (bytes) the caches keep; bigger requests go straight to ::operator new.
inline constexpr std::size_t block_cache_max = 1024;

/// Allocates at least `n` bytes (aligned like ::operator new): a block this thread freed
/// before when one of the same size class (16-byte steps) is cached, else a fresh
/// ::operator new block of the class's full size. Throws std::bad_alloc. Thread-safe (per-thread
/// state). O(1).
///
/// Why: a proc's frame and an actor's slot are allocated on one worker and often freed on
/// another; glibc's per-thread cache holds only 7 blocks per size, so bursts of spawns and
/// exits (skynet: a million of each) fall through to its arenas' locks, and the workers
/// spend their time waiting for each other there (measured in docs/performance.md). Each
/// thread here keeps up to 256 freed blocks per class (in practice a few classes, at most
/// about 9 MiB), lock-free, and hands
/// them back to the allocator when it exits; the design is that of tcache (glibc) and of
/// Go's per-P mcache, with a deeper cache. Under AddressSanitizer the caches are bypassed, so
/// that every use after free is still caught.
[[nodiscard]] void* cached_allocate(std::size_t n);

/// Frees block `p` of `n` bytes (the `n` given to cached_allocate): into this thread's cache
/// while its class has room, else ::operator delete. Any thread may free any block.
/// Never throws. O(1).
void cached_deallocate(void* p, std::size_t n) noexcept;

} // namespace bastion::detail
