// tests/topology.cpp: bastion::topology (include/bastion/executor/topology.hpp).
//
// Placement and steal order are checked on hwloc synthetic topologies and XML (shapes this
// 1-node machine does not have); discovery and pinning are checked on the host.
#include <bastion/executor/topology.hpp>

#include <catch2/catch.hpp>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using bastion::topology;
using bastion::worker_placement;

constexpr const char* two_packages = "pack:2 numa:1 core:4 pu:2";

/// The message of the std::invalid_argument that `fn` throws ("" when it throws none).
template <typename Fn>
std::string invalid_argument_message(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return {};
}

std::set<unsigned> distinct_pus(const std::vector<worker_placement>& plan) {
  std::set<unsigned> pus;
  for (const auto& p : plan) {
    pus.insert(p.pu_logical);
  }
  return pus;
}

std::set<unsigned> distinct_cores(const std::vector<worker_placement>& plan) {
  std::set<unsigned> cores;
  for (const auto& p : plan) {
    cores.insert(p.core_logical);
  }
  return cores;
}

/// Checks the steal-order contract for every worker of `plan`: a permutation of the others,
/// same-node victims first, each remote node's victims contiguous.
void check_steal_orders(const topology& topo, const std::vector<worker_placement>& plan) {
  for (std::size_t w = 0; w < plan.size(); ++w) {
    const auto order = topo.steal_order(plan, w);
    REQUIRE(order.size() == plan.size() - 1);
    std::vector<std::size_t> sorted = order;
    std::ranges::sort(sorted);
    std::vector<std::size_t> others;
    for (std::size_t v = 0; v < plan.size(); ++v) {
      if (v != w) {
        others.push_back(v);
      }
    }
    REQUIRE(sorted == others); // a permutation of every worker but w
    std::size_t local = 0;
    for (std::size_t v = 0; v < plan.size(); ++v) {
      local += v != w && plan[v].numa_node == plan[w].numa_node ? 1 : 0;
    }
    for (std::size_t i = 0; i < order.size(); ++i) {
      REQUIRE((plan[order[i]].numa_node == plan[w].numa_node) == (i < local));
    }
    std::set<unsigned> finished_nodes;
    for (std::size_t i = 1; i < order.size(); ++i) {
      const unsigned prev = plan[order[i - 1]].numa_node;
      const unsigned cur = plan[order[i]].numa_node;
      if (prev != cur) {
        finished_nodes.insert(prev);
        REQUIRE(finished_nodes.count(cur) == 0);
      }
    }
  }
}

/// The NUMA nodes `worker`'s steal order visits, in order, each once.
std::vector<unsigned>
node_visit_order(const topology& topo, const std::vector<worker_placement>& plan, std::size_t w) {
  std::vector<unsigned> nodes;
  for (std::size_t v : topo.steal_order(plan, w)) {
    if (nodes.empty() || nodes.back() != plan[v].numa_node) {
      nodes.push_back(plan[v].numa_node);
    }
  }
  return nodes;
}

/// `xml` (an hwloc export of a 4-node topology) with a NUMA latency matrix added in which
/// node 0 is nearest to node 2 and node 1 nearest to node 3.
std::string with_numa_distances(std::string xml) {
  std::ostringstream values;
  for (int v : {10, 30, 20, 40, 30, 10, 40, 20, 20, 40, 10, 30, 40, 20, 30, 10}) {
    values << v << ' ';
  }
  const std::string indexes = "0 1 2 3 ";
  const std::string block =
      "  <distances2 type=\"NUMANode\" nbobjs=\"4\" kind=\"6\" name=\"test\" indexing=\"os\">\n"
      "    <indexes length=\""
      + std::to_string(indexes.size()) + "\">" + indexes
      + "</indexes>\n"
        "    <u64values length=\""
      + std::to_string(values.str().size()) + "\">" + values.str()
      + "</u64values>\n"
        "  </distances2>\n";
  const auto at = xml.find("</topology>");
  REQUIRE(at != std::string::npos);
  xml.insert(at, block);
  return xml;
}

/// The calling thread's CPU affinity, restored when the guard goes out of scope.
class affinity_guard {
public:
  affinity_guard() {
    CPU_ZERO(&saved_);
    REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0);
  }
  affinity_guard(const affinity_guard&) = delete;
  affinity_guard& operator=(const affinity_guard&) = delete;
  ~affinity_guard() { pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_); }

private:
  cpu_set_t saved_;
};

/// The CPUs the calling thread may run on.
std::set<unsigned> current_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof(set), &set) == 0);
  std::set<unsigned> cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      cpus.insert(cpu);
    }
  }
  return cpus;
}

} // namespace

TEST_CASE("host topology: one worker per PU, each on its own PU", "[topology]") {
  const topology host = topology::host();
  REQUIRE(host.pu_count() >= 1);
  REQUIRE(host.core_count() >= 1);
  REQUIRE(host.core_count() <= host.pu_count());
  REQUIRE(host.numa_count() >= 1);
  REQUIRE(host.is_this_machine());
  REQUIRE(host.describe().find("PU") != std::string::npos);

  const auto plan = host.place(host.pu_count());
  REQUIRE(plan.size() == host.pu_count());
  REQUIRE(distinct_pus(plan).size() == host.pu_count());
  std::set<unsigned> os;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    REQUIRE(plan[i].worker == i);
    REQUIRE(plan[i].numa_node < host.numa_count());
    os.insert(plan[i].pu_os);
  }
  REQUIRE(os.size() == host.pu_count());
  check_steal_orders(host, plan);
}

TEST_CASE("synthetic 2 packages x 4 cores x 2 PUs", "[topology]") {
  const topology topo = topology::synthetic(two_packages);
  REQUIRE(topo.pu_count() == 16);
  REQUIRE(topo.core_count() == 8);
  REQUIRE(topo.numa_count() == 2);
  REQUIRE(topo.package_count() == 2);
  REQUIRE_FALSE(topo.is_this_machine());
  REQUIRE_FALSE(topo.has_numa_distances());
  REQUIRE(
      topo.describe()
      == "2 packages, 2 NUMA nodes, 8 cores, 16 PUs (synthetic: " + std::string(two_packages)
             + ")");

  SECTION("8 workers take one PU on each of the 8 cores") {
    const auto plan = topo.place(8);
    REQUIRE(distinct_cores(plan).size() == 8);
    REQUIRE(distinct_pus(plan).size() == 8);
  }

  SECTION("16 workers take every PU exactly once, with the right core, node and package") {
    const auto plan = topo.place(16);
    REQUIRE(distinct_pus(plan).size() == 16);
    for (const auto& p : plan) {
      REQUIRE(p.pu_os == p.pu_logical); // synthetic OS indexes follow logical ones
      REQUIRE(p.core_logical == p.pu_logical / 2);
      REQUIRE(p.package == p.pu_logical / 8);
      REQUIRE(p.numa_node == p.package); // one node per package
    }
    // No core gets its second PU before every core has its first.
    REQUIRE(distinct_cores(std::vector(plan.begin(), plan.begin() + 8)).size() == 8);
    check_steal_orders(topo, plan);
  }

  SECTION("consecutive workers alternate packages") {
    const auto plan = topo.place(4);
    REQUIRE(plan[0].package != plan[1].package);
    REQUIRE(plan[2].package != plan[3].package);
    REQUIRE(distinct_cores(plan).size() == 4);
  }

  SECTION("a smaller plan is a prefix of a larger one") {
    const auto small = topo.place(5);
    const auto large = topo.place(16);
    REQUIRE(std::equal(small.begin(), small.end(), large.begin()));
  }

  SECTION("more workers than PUs wrap around evenly") {
    const auto plan = topo.place(40);
    std::map<unsigned, int> per_pu;
    for (std::size_t i = 0; i < plan.size(); ++i) {
      ++per_pu[plan[i].pu_logical];
      if (i >= 16) {
        REQUIRE(plan[i].pu_logical == plan[i - 16].pu_logical);
      }
    }
    REQUIRE(per_pu.size() == 16);
    for (const auto& [pu, count] : per_pu) {
      REQUIRE((count == 2 || count == 3));
    }
    check_steal_orders(topo, plan);
  }

  SECTION("steal order: hyperthread sibling, then own node, then the other node") {
    const auto plan = topo.place(16);
    for (std::size_t w = 0; w < plan.size(); ++w) {
      const auto order = topo.steal_order(plan, w);
      REQUIRE(plan[order[0]].core_logical == plan[w].core_logical);
      REQUIRE(
          node_visit_order(topo, plan, w)
          == std::vector<unsigned>{plan[w].numa_node, 1 - plan[w].numa_node});
    }
  }

  SECTION("steal order of a single worker is empty") {
    const auto plan = topo.place(1);
    REQUIRE(topo.steal_order(plan, 0).empty());
  }

  SECTION("cpu_set restricts the PUs and still spreads over cores first") {
    // PUs 0-3 are both PUs of cores 0 and 1 (package 0); PU 8 is core 4 (package 1).
    const std::vector<unsigned> cpus{3, 0, 1, 2, 8, 8};
    const auto three = topo.place(3, cpus);
    REQUIRE(distinct_cores(three) == std::set<unsigned>{0, 1, 4});
    const auto five = topo.place(5, cpus);
    REQUIRE(distinct_pus(five) == std::set<unsigned>{0, 1, 2, 3, 8});
    const auto ten = topo.place(10, cpus);
    REQUIRE(distinct_pus(ten) == std::set<unsigned>{0, 1, 2, 3, 8});
  }
}

TEST_CASE("synthetic 4 NUMA nodes over 2 packages", "[topology]") {
  const topology topo = topology::synthetic("pack:2 numa:2 core:2 pu:2");
  REQUIRE(topo.pu_count() == 16);
  REQUIRE(topo.core_count() == 8);
  REQUIRE(topo.numa_count() == 4);
  REQUIRE(topo.package_count() == 2);

  const auto four = topo.place(4);
  std::set<unsigned> nodes;
  for (const auto& p : four) {
    nodes.insert(p.numa_node);
  }
  REQUIRE(nodes.size() == 4); // 4 workers, 4 nodes
  REQUIRE(four[0].package != four[1].package);

  const auto plan = topo.place(16);
  for (const auto& p : plan) {
    REQUIRE(p.numa_node == p.pu_logical / 4);
    REQUIRE(p.package == p.pu_logical / 8);
  }
  check_steal_orders(topo, plan);
  // Without distances: own node, the other node of the package, then the other package's
  // nodes counted cyclically from the thief's node.
  for (std::size_t w = 0; w < plan.size(); ++w) {
    const std::map<unsigned, std::vector<unsigned>> expected{
        {0, {0, 1, 2, 3}},
        {1, {1, 0, 2, 3}},
        {2, {2, 3, 0, 1}},
        {3, {3, 2, 0, 1}},
    };
    REQUIRE(node_visit_order(topo, plan, w) == expected.at(plan[w].numa_node));
  }
}

TEST_CASE("synthetic topologies without packages or cores", "[topology]") {
  SECTION("nodes as groups, no package level") {
    const topology topo = topology::synthetic("node:2 core:4 pu:2");
    REQUIRE(topo.pu_count() == 16);
    REQUIRE(topo.numa_count() == 2);
    REQUIRE(topo.package_count() == 1);
    const auto plan = topo.place(2);
    REQUIRE(plan[0].numa_node != plan[1].numa_node);
    check_steal_orders(topo, topo.place(16));
  }
  SECTION("PUs only: each PU counts as a core") {
    const topology topo = topology::synthetic("pu:3");
    REQUIRE(topo.pu_count() == 3);
    REQUIRE(topo.core_count() == 3);
    REQUIRE(topo.numa_count() == 1);
    REQUIRE(topo.describe().rfind("1 package, 1 NUMA node, 3 cores, 3 PUs", 0) == 0);
    REQUIRE(distinct_cores(topo.place(3)).size() == 3);
  }
}

TEST_CASE("NUMA distances order remote nodes", "[topology]") {
  const topology plain = topology::synthetic("numa:4 core:2 pu:1");
  REQUIRE(plain.numa_count() == 4);
  const auto plain_plan = plain.place(8);
  for (std::size_t w = 0; w < plain_plan.size(); ++w) {
    if (plain_plan[w].numa_node == 0) {
      REQUIRE(node_visit_order(plain, plain_plan, w) == std::vector<unsigned>{0, 1, 2, 3});
    }
  }

  const topology far = topology::from_xml_buffer(with_numa_distances(plain.to_xml()));
  REQUIRE(far.has_numa_distances());
  REQUIRE(far.numa_count() == 4);
  const auto plan = far.place(8);
  REQUIRE(plan == plain_plan);
  check_steal_orders(far, plan);
  const std::map<unsigned, std::vector<unsigned>> expected{
      {0, {0, 2, 1, 3}},
      {1, {1, 3, 0, 2}},
      {2, {2, 0, 3, 1}},
      {3, {3, 1, 2, 0}},
  };
  for (std::size_t w = 0; w < plan.size(); ++w) {
    REQUIRE(node_visit_order(far, plan, w) == expected.at(plan[w].numa_node));
  }
  // The distances survive another export.
  REQUIRE(topology::from_xml_buffer(far.to_xml()).has_numa_distances());
}

TEST_CASE("XML round trip keeps the shape and the plan", "[topology]") {
  const topology original = topology::synthetic(two_packages);
  const std::string xml = original.to_xml();
  REQUIRE(xml.find("<topology") != std::string::npos);

  const topology from_buffer = topology::from_xml_buffer(xml);
  REQUIRE(from_buffer.pu_count() == 16);
  REQUIRE(from_buffer.core_count() == 8);
  REQUIRE(from_buffer.numa_count() == 2);
  REQUIRE(from_buffer.package_count() == 2);
  REQUIRE_FALSE(from_buffer.is_this_machine());
  REQUIRE(from_buffer.place(16) == original.place(16));
  REQUIRE(from_buffer.describe().find("xml") != std::string::npos);

  const auto path = std::filesystem::temp_directory_path()
                    / ("bastion_topology_" + std::to_string(::getpid()) + ".xml");
  {
    std::ofstream out(path);
    out << xml;
  }
  const topology from_file = topology::from_xml_file(path.string());
  std::filesystem::remove(path);
  REQUIRE(from_file.place(16) == original.place(16));
  REQUIRE(from_file.describe().find(path.string()) != std::string::npos);

  // Copies share the loaded topology and outlive the original.
  topology copy = from_file;
  {
    // NOLINTNEXTLINE(performance-move-const-arg): checks that a move leaves `copy` whole
    const topology moved = std::move(copy);
    REQUIRE(moved.pu_count() == 16);
  }
  // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from topology is documented as whole
  REQUIRE(copy.pu_count() == 16);
}

TEST_CASE("bad input is rejected with the field named", "[topology]") {
  const topology topo = topology::synthetic(two_packages);

  REQUIRE_THROWS_AS(topo.place(0), std::invalid_argument);
  REQUIRE(
      invalid_argument_message([&] { (void)topo.place(0); }).find("workers") != std::string::npos);

  const std::vector<unsigned> bad_cpus{1, 999};
  const std::string cpu_message = invalid_argument_message([&] { (void)topo.place(2, bad_cpus); });
  REQUIRE(cpu_message.find("cpu_set") != std::string::npos);
  REQUIRE(cpu_message.find("999") != std::string::npos);

  const std::string synthetic_message =
      invalid_argument_message([] { (void)topology::synthetic("pack:2 bogus:3"); });
  REQUIRE(synthetic_message.find("pack:2 bogus:3") != std::string::npos);
  REQUIRE_THROWS_AS(topology::synthetic(""), std::invalid_argument);
  REQUIRE_THROWS_AS(topology::synthetic("pack:0 pu:1"), std::invalid_argument);

  const std::string missing = "/nonexistent/bastion/topology.xml";
  REQUIRE(
      invalid_argument_message([&] { (void)topology::from_xml_file(missing); }).find(missing)
      != std::string::npos);
  REQUIRE_THROWS_AS(topology::from_xml_buffer("<not a topology/>"), std::invalid_argument);
  REQUIRE_THROWS_AS(topology::from_xml_buffer(""), std::invalid_argument);

  const auto plan = topo.place(4);
  REQUIRE(
      invalid_argument_message([&] { (void)topo.steal_order(plan, 4); }).find("worker")
      != std::string::npos);
  auto foreign = plan;
  foreign[1].numa_node = 7;
  REQUIRE(
      invalid_argument_message([&] { (void)topo.steal_order(foreign, 0); }).find("plan")
      != std::string::npos);

  worker_placement bogus = plan[0];
  bogus.pu_logical = 16;
  REQUIRE(
      invalid_argument_message([&] { (void)topo.pin_current_thread(bogus); }).find("placement")
      != std::string::npos);
  bogus = plan[0];
  bogus.pu_os += 1;
  REQUIRE_THROWS_AS(topo.pin_current_thread(bogus), std::invalid_argument);
}

TEST_CASE("one topology shared by many threads", "[topology]") {
  const topology shared = topology::from_xml_buffer(
      with_numa_distances(topology::synthetic("numa:4 core:2 pu:1").to_xml()));
  const auto expected_plan = shared.place(8);
  const auto expected_xml = shared.to_xml();
  std::vector<int> ok(4, 0);
  {
    std::vector<std::jthread> threads;
    threads.reserve(ok.size());
    for (std::size_t t = 0; t < ok.size(); ++t) {
      threads.emplace_back([&, t] {
        // NOLINTNEXTLINE(performance-unnecessary-copy-initialization): copying is under test
        const topology copy = shared; // copies share the hwloc state
        bool good = true;
        for (int round = 0; round < 20; ++round) {
          const auto plan = copy.place(8);
          good = good && plan == expected_plan;
          good = good && copy.steal_order(plan, t).size() == 7;
          good = good && copy.to_xml() == expected_xml;
        }
        ok[t] = good ? 1 : 0;
      });
    }
  }
  REQUIRE(ok == std::vector<int>(4, 1));
}

TEST_CASE("pinning", "[topology]") {
  SECTION("a synthetic topology pins nothing") {
    const topology topo = topology::synthetic(two_packages);
    const auto before = current_affinity();
    REQUIRE_FALSE(topo.pin_current_thread(topo.place(1)[0]));
    REQUIRE(current_affinity() == before);
  }

  SECTION("worker 0 of a host plan pins the calling thread to its PU") {
    const topology host = topology::host();
    const auto plan = host.place(host.pu_count());
    const affinity_guard restore;
    REQUIRE(host.pin_current_thread(plan[0]));
    REQUIRE(current_affinity() == std::set<unsigned>{plan[0].pu_os});
    REQUIRE(static_cast<unsigned>(sched_getcpu()) == plan[0].pu_os);
  }

  SECTION("every worker pins itself concurrently") {
    const topology host = topology::host();
    const auto plan = host.place(host.pu_count());
    std::vector<int> pinned(plan.size(), 0);
    std::vector<int> ran_on(plan.size(), -1);
    {
      std::vector<std::jthread> threads;
      threads.reserve(plan.size());
      for (std::size_t w = 0; w < plan.size(); ++w) {
        threads.emplace_back([&, w] {
          pinned[w] = host.pin_current_thread(plan[w]) ? 1 : 0;
          ran_on[w] = sched_getcpu();
        });
      }
    }
    for (std::size_t w = 0; w < plan.size(); ++w) {
      REQUIRE(pinned[w] == 1);
      REQUIRE(ran_on[w] == static_cast<int>(plan[w].pu_os));
    }
  }
}
