// bastion/executor/topology.hpp: the machine as the executor sees it, and where its workers run.
//
// Holds `bastion::topology` (a loaded hwloc topology: this host, a synthetic description or an
// XML export), `bastion::worker_placement` (one worker's PU, core, NUMA node and package) and
// the two policies built on them: `topology::place` (which PU each worker gets) and
// `topology::steal_order` (which victims a worker tries first). hwloc stays behind a pImpl:
// no hwloc type or header reaches users of this file.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bastion {

/// Where one worker runs: its PU and the core, NUMA node and package around it.
///
/// All indexes except `pu_os` are hwloc *logical* indexes (dense, 0-based, in topology
/// order), so they are stable across machines with the same shape. Produced by
/// `topology::place`; a plain value, safe to copy and read from any thread.
struct worker_placement {
  /// Worker index, 0..n-1 in the plan that holds this placement.
  std::size_t worker = 0;
  /// hwloc logical index of the PU (hardware thread) the worker is pinned to.
  unsigned pu_logical = 0;
  /// OS index of that PU: the CPU number the kernel uses (`sched_getcpu`, `taskset`).
  unsigned pu_os = 0;
  /// Logical index of the core holding the PU. When the topology has no core level, each
  /// PU counts as its own core (numbered after the real cores, if any).
  unsigned core_logical = 0;
  /// Logical index of the PU's local NUMA node (0 on a single-node machine).
  unsigned numa_node = 0;
  /// Logical index of the PU's package (socket); 0 when the topology has no package level.
  unsigned package = 0;

  friend bool operator==(const worker_placement&, const worker_placement&) = default;
};

/// A loaded, immutable machine topology (hwloc underneath) and the worker-placement
/// policies that depend on it.
///
/// Value semantics at shared_ptr cost: copies share one hwloc topology, destroyed with the
/// last copy. A topology is never empty: moving one copies it (no moved-from state).
///
/// Thread-safety: every member function is `const` and safe to call from any number of
/// threads at once (hwloc allows concurrent reads and binding on a loaded topology; bastion
/// never modifies one after construction). Copying or destroying distinct `topology`
/// objects that share one hwloc topology is safe from any thread.
class topology {
public:
  /// Discovers this machine. Only PUs the process is allowed to use (cgroup/cpuset limits
  /// as hwloc reports them) appear; the affinity mask of the calling thread (e.g. `taskset`)
  /// does not restrict it: pass a `cpu_set` to `place` for that.
  ///
  /// Errors: throws std::runtime_error when hwloc cannot discover the machine.
  /// Complexity: one hwloc discovery (reads sysfs on Linux: milliseconds); call it once at
  /// startup and keep the result.
  [[nodiscard]] static topology host();

  /// Builds a fake machine from an hwloc synthetic description: each item is `type:count`,
  /// the count of such objects under each object of the previous level, outermost first,
  /// for example "pack:2 numa:1 core:4 pu:2" (2 packages, one NUMA node each, 4 cores per
  /// package, 2 PUs per core: 16 PUs) or "numa:4 core:2 pu:1". A NUMA level below a package
  /// (`pack:2 numa:2 ...`) splits each package into groups, one node each. PU OS indexes
  /// equal their logical indexes. Nothing can be pinned on it (`pin_current_thread` returns
  /// false); it exists to test placement on shapes this machine does not have.
  ///
  /// Errors: throws std::invalid_argument naming `description` when hwloc rejects it.
  [[nodiscard]] static topology synthetic(std::string_view description);

  /// Loads a topology exported to an XML file (by `to_xml`, `lstopo file.xml` or
  /// `hwloc_topology_export_xml`), with its NUMA distances when the file has them. Treated
  /// as another machine: `pin_current_thread` returns false.
  ///
  /// Errors: throws std::invalid_argument naming `path` when the file is missing, unreadable
  /// or not an hwloc topology.
  [[nodiscard]] static topology from_xml_file(const std::string& path);

  /// Loads a topology from XML text held in memory; same rules as `from_xml_file`.
  ///
  /// Errors: throws std::invalid_argument when hwloc rejects the text.
  [[nodiscard]] static topology from_xml_buffer(std::string_view xml);

  topology(const topology&) = default;
  topology& operator=(const topology&) = default;
  // No move operations on purpose: a move copies (one atomic increment), so no topology is
  // ever left without its hwloc state.
  ~topology();

  /// Number of PUs (hardware threads, "logical CPUs"): the default worker count. >= 1.
  [[nodiscard]] std::size_t pu_count() const noexcept;
  /// Number of cores; PUs outside any core (topologies without a core level) count as one
  /// core each. >= 1.
  [[nodiscard]] std::size_t core_count() const noexcept;
  /// Number of NUMA nodes. >= 1.
  [[nodiscard]] std::size_t numa_count() const noexcept;
  /// Number of packages (sockets); a topology without a package level counts as 1.
  [[nodiscard]] std::size_t package_count() const noexcept;
  /// True when this topology describes the running machine (so threads can be pinned on
  /// it): `host()` yes, synthetic and XML topologies no.
  [[nodiscard]] bool is_this_machine() const noexcept;
  /// True when hwloc knows latency distances between all NUMA nodes (from the OS on a real
  /// multi-node host, or from an XML export); `steal_order` then uses them.
  [[nodiscard]] bool has_numa_distances() const noexcept;

  /// Plans `workers` workers: which PU each one runs on.
  ///
  /// Policy (spread first, then wrap):
  /// 1. Only the PUs named in `cpu_set` are used (all PUs when it is empty).
  /// 2. Round r hands out the r-th allowed PU of every core, so no core gets a second
  ///    worker (a hyperthread sibling) before every core with an allowed PU has one.
  /// 3. Inside a round, PUs are dealt round-robin down the hwloc tree: consecutive workers
  ///    alternate between packages, then between NUMA nodes/groups inside a package, then
  ///    between cores, so a small plan is spread over every package and node.
  /// 4. With more workers than allowed PUs the sequence wraps: worker i gets the PU of
  ///    worker i mod (allowed PUs), so several workers share a PU, evenly.
  /// The plan for n workers is a prefix of the plan for any m > n, and it is deterministic.
  ///
  /// @param workers number of workers, >= 1.
  /// @param cpu_set OS indexes of the PUs the workers may use (duplicates ignored); empty
  ///   means every PU of the topology.
  /// @returns `workers` placements; element i has `worker == i`.
  /// Errors: throws std::invalid_argument naming "workers" when `workers` is 0, and naming
  ///   "cpu_set" and the offending index when `cpu_set` holds an OS index with no PU in this
  ///   topology.
  /// Complexity: O(objects in the topology × SMT width + workers); call once at startup.
  [[nodiscard]] std::vector<worker_placement>
  place(std::size_t workers, std::span<const unsigned> cpu_set = {}) const;

  /// The victims `worker` should try to steal from, nearest first; never `worker` itself.
  ///
  /// Order: workers on the same NUMA node first (on the same core, i.e. sharing L1/L2,
  /// before the rest of the node); then the other nodes, nearest first: by hwloc latency
  /// distance when `has_numa_distances()`, then same package before other packages, then by
  /// node index counted cyclically from the thief's node (node k+1, k+2, ... wrapping), so
  /// that thieves on different nodes do not all pick the same first remote node. Inside one
  /// node (and core) victims are taken cyclically from `worker + 1`, for the same reason.
  ///
  /// @param plan a plan from `place` on this topology (or an equal one).
  /// @param worker the thief's index in `plan`.
  /// @returns a permutation of every index of `plan` except `worker`.
  /// Errors: throws std::invalid_argument naming "worker" when `worker >= plan.size()`, and
  ///   naming "plan" when an entry's NUMA node is not in this topology.
  /// Complexity: O(n log n) for n = plan.size(); compute once per worker at startup.
  [[nodiscard]] std::vector<std::size_t>
  steal_order(std::span<const worker_placement> plan, std::size_t worker) const;

  /// Pins the calling thread to the placement's PU (one PU, not its whole core).
  ///
  /// @param placement an entry of a plan from `place` on this topology.
  /// @returns true when the OS applied the binding; false when it refused (e.g. the PU is
  ///   outside the process's cgroup) or when this topology is not this machine
  ///   (`is_this_machine()` false: synthetic or XML), in which case nothing changes.
  /// Errors: throws std::invalid_argument naming "placement" when its PU is not in this
  ///   topology (pu_logical out of range or pu_os not matching); never throws for OS errors.
  /// Thread-safety: safe from any thread; affects only the calling thread.
  /// [[nodiscard]]: a worker that runs unpinned should at least say so (log, or cast to void
  /// where running anywhere is acceptable).
  [[nodiscard]] bool pin_current_thread(const worker_placement& placement) const;

  /// One line for logs, e.g. "1 package, 1 NUMA node, 2 cores, 2 PUs"; topologies that are
  /// not this machine add their origin, e.g. " (synthetic: numa:4 core:2 pu:1)".
  [[nodiscard]] std::string describe() const;

  /// Exports the topology (with its NUMA distances) as hwloc XML, loadable by
  /// `from_xml_buffer`, `from_xml_file` and hwloc tools such as `lstopo -i`.
  ///
  /// Errors: throws std::runtime_error when hwloc fails to export.
  [[nodiscard]] std::string to_xml() const;

private:
  struct impl;
  explicit topology(std::shared_ptr<const impl> state) noexcept;

  /// The loaded hwloc topology and what was derived from it; never null, never modified.
  std::shared_ptr<const impl> impl_;
};

} // namespace bastion
