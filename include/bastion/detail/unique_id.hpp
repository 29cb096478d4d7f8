// bastion/detail/unique_id.hpp (internal): process-unique ids handed out in per-thread
// blocks (pids, node ids).
#pragma once

#include <atomic>
#include <cstdint>

namespace bastion::detail {

/// A fresh id of the sequence named by `Tag`: unique in the process and never 0, but not
/// ordered across threads. Each thread takes `Block` ids at a time from the sequence's shared
/// counter, so that threads creating ids at full speed (spawns, actors) do not bounce that
/// counter's cache line between cores: one shared increment per `Block` ids. Thread-safe,
/// lock-free, O(1).
template <class Tag, std::uint64_t Block>
std::uint64_t next_unique_id() noexcept {
  static_assert(Block >= 1, "next_unique_id: Block must be at least 1");
  static std::atomic<std::uint64_t> next_block{1};
  thread_local std::uint64_t next = 0;
  thread_local std::uint64_t end = 0;
  if (next == end) {
    next = next_block.fetch_add(Block, std::memory_order_relaxed);
    end = next + Block;
  }
  return next++;
}

} // namespace bastion::detail
