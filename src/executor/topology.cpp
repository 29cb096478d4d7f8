// src/executor/topology.cpp: bastion::topology on top of hwloc 2.x.
//
// Everything the placement policies need is read out of hwloc once, when the topology is
// loaded (per-PU core/node/package, per-core PU lists, the NUMA distance matrix), so later
// calls only traverse the tree read-only and may run concurrently.
#include <bastion/executor/topology.hpp>

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>

namespace bastion {

namespace {

/// What place() and steal_order() need to know about one PU, indexed by its logical index.
struct pu_info {
  unsigned os = 0;
  unsigned core = 0;
  unsigned numa = 0;
  unsigned package = 0;
};

/// Logical index of the first NUMA node attached at or above `obj` (hwloc 2.x hangs NUMA
/// nodes off the memory-children list of the object they are local to, possibly below
/// memory-side caches). 0 when there is none.
unsigned local_numa_node(hwloc_obj_t obj) noexcept {
  for (; obj != nullptr; obj = obj->parent) {
    for (hwloc_obj_t mem = obj->memory_first_child; mem != nullptr; mem = mem->memory_first_child) {
      if (mem->type == HWLOC_OBJ_NUMANODE) {
        return mem->logical_index;
      }
    }
  }
  return 0;
}

/// Logical index of the nearest ancestor of `obj` of type `type`, or `fallback`.
unsigned ancestor_index(hwloc_obj_t obj, hwloc_obj_type_t type, unsigned fallback) noexcept {
  for (obj = obj->parent; obj != nullptr; obj = obj->parent) {
    if (obj->type == type) {
      return obj->logical_index;
    }
  }
  return fallback;
}

/// ": <strerror(errno)>" for the errno hwloc left, or "" when it left none.
std::string errno_suffix(int error) {
  return error != 0 ? ": " + std::generic_category().message(error) : std::string();
}

/// "2 cores", "1 core".
std::string count_of(std::size_t n, const char* singular, const char* plural) {
  return std::to_string(n) + ' ' + (n == 1 ? singular : plural);
}

/// Owns an hwloc topology handle: destroys it unless it was moved out.
struct topology_handle {
  hwloc_topology_t raw = nullptr;
  topology_handle() {
    if (hwloc_topology_init(&raw) != 0) {
      throw std::runtime_error("bastion::topology: hwloc_topology_init failed");
    }
  }
  topology_handle(topology_handle&& other) noexcept
      : raw(std::exchange(other.raw, nullptr)) {}
  topology_handle(const topology_handle&) = delete;
  topology_handle& operator=(const topology_handle&) = delete;
  topology_handle& operator=(topology_handle&&) = delete;
  ~topology_handle() {
    if (raw != nullptr) {
      hwloc_topology_destroy(raw);
    }
  }
};

} // namespace

struct topology::impl {
  /// Takes ownership of a loaded hwloc topology and derives the tables below from it.
  /// Throws std::invalid_argument when the topology has no PU.
  impl(topology_handle&& loaded, std::string origin);

  /// Appends, for round `round`, the PUs dealt round-robin under `obj` (see place()).
  void spread_round(
      hwloc_obj_t obj,
      unsigned round,
      const std::vector<char>& allowed,
      std::vector<unsigned>& out) const;

  topology_handle owner; // destroys the hwloc topology, once, with the last copy
  hwloc_topology_t topo;
  /// Where the topology came from, for describe(); empty for this machine.
  std::string origin;
  bool this_machine = false;
  std::vector<pu_info> pus;                    // by PU logical index
  std::vector<std::vector<unsigned>> core_pus; // core id -> PU logical indexes, ascending
  std::size_t numa_count = 1;
  std::size_t package_count = 1;
  unsigned real_cores = 0; // hwloc Core objects; ids >= this are PUs outside any core
  /// numa_count * numa_count latency matrix (row = from), or empty when hwloc has none
  /// covering every node.
  std::vector<std::uint64_t> numa_distance;
  /// Serializes to_xml(): hwloc's export may refresh internal caches (distances, memory
  /// attributes) in place, which must not race with another export.
  mutable std::mutex export_mutex;
};

topology::impl::impl(topology_handle&& loaded, std::string from)
    : owner(std::move(loaded))
    , topo(owner.raw)
    , origin(std::move(from))
    , this_machine(hwloc_topology_is_thissystem(topo) != 0) {
  const int pu_total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
  const int core_total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  const int numa_total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  const int package_total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
  if (pu_total <= 0) {
    throw std::invalid_argument("bastion::topology: the topology has no PU");
  }
  real_cores = core_total > 0 ? static_cast<unsigned>(core_total) : 0U;
  numa_count = numa_total > 0 ? static_cast<std::size_t>(numa_total) : 1U;
  package_count = package_total > 0 ? static_cast<std::size_t>(package_total) : 1U;

  pus.resize(static_cast<std::size_t>(pu_total));
  core_pus.resize(real_cores);
  for (unsigned i = 0; i < pus.size(); ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, i);
    pu_info& info = pus[i];
    info.os = pu->os_index;
    info.core = ancestor_index(pu, HWLOC_OBJ_CORE, static_cast<unsigned>(core_pus.size()));
    if (info.core == core_pus.size()) {
      core_pus.emplace_back(); // a PU outside any core is its own core
    }
    core_pus[info.core].push_back(i);
    info.numa = std::min(local_numa_node(pu), static_cast<unsigned>(numa_count - 1));
    info.package = ancestor_index(pu, HWLOC_OBJ_PACKAGE, 0);
  }

  // Latency distances between NUMA nodes, kept only when one matrix covers every node.
  // Always asked for, even on one node: hwloc refreshes its distance cache lazily on the
  // first get (a write), so doing it here leaves later calls (export) read-only there.
  {
    unsigned nr = 1;
    hwloc_distances_s* dist = nullptr;
    if (hwloc_distances_get_by_type(
            topo, HWLOC_OBJ_NUMANODE, &nr, &dist, HWLOC_DISTANCES_KIND_MEANS_LATENCY, 0)
            == 0
        && nr >= 1 && dist != nullptr) {
      // nr may report more matrices than the one slot we asked for; only dist[0] is ours.
      if (numa_count > 1 && dist->nbobjs == numa_count) {
        numa_distance.assign(numa_count * numa_count, 0);
        for (unsigned row = 0; row < dist->nbobjs; ++row) {
          for (unsigned col = 0; col < dist->nbobjs; ++col) {
            numa_distance
                [dist->objs[row]->logical_index * numa_count + dist->objs[col]->logical_index] =
                    dist->values[row * dist->nbobjs + col];
          }
        }
      }
      hwloc_distances_release(topo, dist);
    }
  }
}

// Round `round` of the spread: under a core (or a PU outside any core), the round-th allowed
// PU if it has one; under any other object, its children's rounds interleaved one PU at a
// time (first PU of child 0, of child 1, ..., then second PU of child 0, ...).
void topology::impl::spread_round(
    hwloc_obj_t obj,
    unsigned round,
    const std::vector<char>& allowed,
    std::vector<unsigned>& out) const {
  if (obj->type == HWLOC_OBJ_CORE || obj->type == HWLOC_OBJ_PU) {
    const unsigned core =
        obj->type == HWLOC_OBJ_CORE ? obj->logical_index : pus[obj->logical_index].core;
    unsigned seen = 0;
    for (unsigned pu : core_pus[core]) {
      if (allowed[pu] != 0 && seen++ == round) {
        out.push_back(pu);
        return;
      }
    }
    return;
  }
  std::vector<std::vector<unsigned>> parts;
  std::size_t longest = 0;
  for (hwloc_obj_t child = obj->first_child; child != nullptr; child = child->next_sibling) {
    std::vector<unsigned> part;
    spread_round(child, round, allowed, part);
    if (!part.empty()) {
      longest = std::max(longest, part.size());
      parts.push_back(std::move(part));
    }
  }
  for (std::size_t i = 0; i < longest; ++i) {
    for (const auto& part : parts) {
      if (i < part.size()) {
        out.push_back(part[i]);
      }
    }
  }
}

topology::topology(std::shared_ptr<const impl> state) noexcept
    : impl_(std::move(state)) {
}

topology::~topology() = default;

topology topology::host() {
  topology_handle handle;
  errno = 0;
  if (hwloc_topology_load(handle.raw) != 0) {
    const int error = errno;
    throw std::runtime_error(
        "bastion::topology::host: hwloc could not discover this machine" + errno_suffix(error));
  }
  return topology(std::make_shared<const impl>(std::move(handle), std::string()));
}

topology topology::synthetic(std::string_view description) {
  const std::string text(description);
  topology_handle handle;
  if (hwloc_topology_set_synthetic(handle.raw, text.c_str()) != 0
      || hwloc_topology_load(handle.raw) != 0) {
    throw std::invalid_argument(
        "bastion::topology::synthetic: hwloc rejected the description \"" + text + '"');
  }
  return topology(std::make_shared<const impl>(std::move(handle), "synthetic: " + text));
}

topology topology::from_xml_file(const std::string& path) {
  topology_handle handle;
  errno = 0;
  if (hwloc_topology_set_xml(handle.raw, path.c_str()) != 0
      || hwloc_topology_load(handle.raw) != 0) {
    const int error = errno;
    throw std::invalid_argument(
        "bastion::topology::from_xml_file: cannot load an hwloc topology from path \"" + path + '"'
        + errno_suffix(error));
  }
  return topology(std::make_shared<const impl>(std::move(handle), "xml: " + path));
}

topology topology::from_xml_buffer(std::string_view xml) {
  if (xml.size() >= static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument("bastion::topology::from_xml_buffer: xml is too large");
  }
  const std::string text(xml); // hwloc wants the terminating '\0' counted in the size
  topology_handle handle;
  if (hwloc_topology_set_xmlbuffer(handle.raw, text.c_str(), static_cast<int>(text.size() + 1)) != 0
      || hwloc_topology_load(handle.raw) != 0) {
    throw std::invalid_argument(
        "bastion::topology::from_xml_buffer: hwloc rejected the xml (" + std::to_string(xml.size())
        + " bytes)");
  }
  return topology(std::make_shared<const impl>(std::move(handle), "xml buffer"));
}

std::size_t topology::pu_count() const noexcept {
  return impl_->pus.size();
}

std::size_t topology::core_count() const noexcept {
  return impl_->core_pus.size();
}

std::size_t topology::numa_count() const noexcept {
  return impl_->numa_count;
}

std::size_t topology::package_count() const noexcept {
  return impl_->package_count;
}

bool topology::is_this_machine() const noexcept {
  return impl_->this_machine;
}

bool topology::has_numa_distances() const noexcept {
  return !impl_->numa_distance.empty();
}

std::vector<worker_placement>
topology::place(std::size_t workers, std::span<const unsigned> cpu_set) const {
  if (workers == 0) {
    throw std::invalid_argument("bastion::topology::place: workers must be at least 1");
  }
  const impl& state = *impl_;
  std::vector<char> allowed(state.pus.size(), cpu_set.empty() ? 1 : 0);
  for (unsigned os : cpu_set) {
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(state.topo, os);
    if (pu == nullptr) {
      throw std::invalid_argument(
          "bastion::topology::place: cpu_set names PU " + std::to_string(os)
          + ", which is not in the topology (" + describe() + ')');
    }
    allowed[pu->logical_index] = 1;
  }

  std::vector<unsigned> order; // allowed PUs in spread order
  const std::size_t allowed_count =
      static_cast<std::size_t>(std::count(allowed.begin(), allowed.end(), char{1}));
  order.reserve(allowed_count);
  hwloc_obj_t root = hwloc_get_root_obj(state.topo);
  for (unsigned round = 0; order.size() < allowed_count; ++round) {
    state.spread_round(root, round, allowed, order);
  }

  std::vector<worker_placement> plan(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    const unsigned pu = order[w % order.size()];
    const pu_info& info = state.pus[pu];
    plan[w] = worker_placement{
        .worker = w,
        .pu_logical = pu,
        .pu_os = info.os,
        .core_logical = info.core,
        .numa_node = info.numa,
        .package = info.package,
    };
  }
  return plan;
}

std::vector<std::size_t>
topology::steal_order(std::span<const worker_placement> plan, std::size_t worker) const {
  const std::size_t n = plan.size();
  if (worker >= n) {
    throw std::invalid_argument(
        "bastion::topology::steal_order: worker " + std::to_string(worker)
        + " is out of range for a plan of " + std::to_string(n) + " workers");
  }
  const impl& state = *impl_;
  for (const worker_placement& p : plan) {
    if (p.numa_node >= state.numa_count) {
      throw std::invalid_argument(
          "bastion::topology::steal_order: plan entry " + std::to_string(p.worker)
          + " names NUMA node " + std::to_string(p.numa_node) + ", not in this topology");
    }
  }

  const worker_placement& thief = plan[worker];
  const std::size_t nodes = state.numa_count;
  // Sort key, smallest first: remote node?, node distance, other package?, cyclic node
  // offset, other core?, cyclic worker offset.
  using key = std::tuple<bool, std::uint64_t, bool, std::size_t, bool, std::size_t>;
  auto key_of = [&](std::size_t v) {
    const worker_placement& victim = plan[v];
    const bool remote = victim.numa_node != thief.numa_node;
    const std::uint64_t distance =
        remote && !state.numa_distance.empty()
            ? state.numa_distance[thief.numa_node * nodes + victim.numa_node]
            : 0;
    return key{
        remote,
        distance,
        victim.package != thief.package,
        (victim.numa_node + nodes - thief.numa_node) % nodes,
        victim.core_logical != thief.core_logical,
        (v + n - worker) % n,
    };
  };

  std::vector<std::pair<key, std::size_t>> keyed;
  keyed.reserve(n - 1);
  for (std::size_t v = 0; v < n; ++v) {
    if (v != worker) {
      keyed.emplace_back(key_of(v), v);
    }
  }
  std::ranges::sort(keyed);
  std::vector<std::size_t> victims;
  victims.reserve(keyed.size());
  for (const auto& entry : keyed) {
    victims.push_back(entry.second);
  }
  return victims;
}

bool topology::pin_current_thread(const worker_placement& placement) const {
  const impl& state = *impl_;
  if (placement.pu_logical >= state.pus.size()
      || state.pus[placement.pu_logical].os != placement.pu_os) {
    throw std::invalid_argument(
        "bastion::topology::pin_current_thread: placement names PU L#"
        + std::to_string(placement.pu_logical) + " P#" + std::to_string(placement.pu_os)
        + ", which is not in this topology");
  }
  if (!state.this_machine) {
    return false;
  }
  hwloc_obj_t pu = hwloc_get_obj_by_type(state.topo, HWLOC_OBJ_PU, placement.pu_logical);
  return hwloc_set_cpubind(state.topo, pu->cpuset, HWLOC_CPUBIND_THREAD) == 0;
}

std::string topology::describe() const {
  std::string line = count_of(package_count(), "package", "packages") + ", "
                     + count_of(numa_count(), "NUMA node", "NUMA nodes") + ", "
                     + count_of(core_count(), "core", "cores") + ", "
                     + count_of(pu_count(), "PU", "PUs");
  if (!impl_->origin.empty()) {
    line += " (" + impl_->origin + ')';
  }
  return line;
}

std::string topology::to_xml() const {
  char* buffer = nullptr;
  int length = 0;
  const std::lock_guard lock(impl_->export_mutex);
  if (hwloc_topology_export_xmlbuffer(impl_->topo, &buffer, &length, 0) != 0 || buffer == nullptr) {
    throw std::runtime_error("bastion::topology::to_xml: hwloc could not export the topology");
  }
  // `length` counts the terminating '\0'.
  std::string xml(buffer, length > 0 ? static_cast<std::size_t>(length - 1) : 0U);
  hwloc_free_xmlbuffer(impl_->topo, buffer);
  return xml;
}

} // namespace bastion
