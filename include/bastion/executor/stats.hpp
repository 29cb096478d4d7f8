// bastion/executor/stats.hpp: counters a running executor exposes (per worker and for the
// blocking pool), read with runtime::stats().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bastion {

/// Counters of one worker since the runtime started. Each is written only by its worker and
/// read with relaxed loads, so a snapshot is consistent per field, not across fields.
struct worker_stats {
  std::size_t worker = 0;            ///< worker index
  unsigned pu_os = 0;                ///< the PU it was placed on (OS index)
  unsigned numa_node = 0;            ///< its NUMA node (logical index)
  bool pinned = false;               ///< whether pinning succeeded
  std::uint64_t polls = 0;           ///< tasks polled
  std::uint64_t lifo_hits = 0;       ///< polls taken from the LIFO stack
  std::uint64_t steals = 0;          ///< successful steal operations
  std::uint64_t stolen_tasks = 0;    ///< tasks taken by those steals
  std::uint64_t steal_contended = 0; ///< steal attempts that met another stealer
  std::uint64_t injector_pulls = 0;  ///< tasks taken from the global injector
  std::uint64_t overflows = 0;       ///< times half the local queue moved to the injector
  std::uint64_t parks = 0;           ///< times the worker went to sleep
  std::uint64_t spin_yields = 0;     ///< sched_yield calls in its spins before parking
  std::uint64_t contended_spins = 0; ///< spins ended because a yield gave the CPU away
  std::uint64_t timers_fired = 0;    ///< timers this worker fired
  std::size_t queue_depth = 0;       ///< local queue length at the time of the snapshot
};

/// Counters of the blocking pool behind spawn_blocking.
struct blocking_stats {
  std::size_t threads = 0;      ///< threads alive now
  std::size_t idle_threads = 0; ///< of which idle
  std::size_t peak_threads = 0; ///< most threads alive at once
  std::size_t queued = 0;       ///< jobs waiting for a thread
  std::uint64_t completed = 0;  ///< jobs run
};

/// A snapshot of a runtime's counters.
struct runtime_stats {
  std::vector<worker_stats> workers;
  blocking_stats blocking;
  std::size_t injector_depth = 0; ///< tasks in the global injector
  std::size_t timers_pending = 0; ///< armed timers
  std::uint64_t procs_spawned = 0;
};

} // namespace bastion
