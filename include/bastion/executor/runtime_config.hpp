// bastion/executor/runtime_config.hpp: runtime_config, the knobs of an executor runtime
// (worker count, pinning, CPU set, blocking-pool cap), validated when a runtime is built.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bastion {

/// Settings of a bastion::runtime. Fluent setters return *this; nothing is checked until
/// validate() (which the runtime's constructor calls).
///
/// Thread-safety: a plain value; copy it freely.
class runtime_config {
public:
  /// Number of worker threads. Default: one per logical CPU (PU) of the machine, or of
  /// cpu_set() when set. 0 is rejected by validate().
  runtime_config& workers(std::size_t n) {
    workers_ = n;
    return *this;
  }
  /// Pins each worker to its PU with hwloc (default true). When the OS refuses, the worker
  /// runs unpinned and a warning is logged.
  runtime_config& pin_workers(bool on) {
    pin_ = on;
    return *this;
  }
  /// Restricts workers to these PUs (OS indexes, as in /proc/cpuinfo). Empty = all PUs.
  runtime_config& cpu_set(std::vector<unsigned> pus) {
    cpu_set_ = std::move(pus);
    return *this;
  }
  /// Cap of the blocking pool (threads for spawn_blocking). Default: the environment
  /// variable BASTION_BLOCKING_THREADS when set, else the pool's built-in default.
  runtime_config& blocking_threads(std::size_t cap) {
    blocking_threads_ = cap;
    return *this;
  }
  /// How long an idle blocking thread lives before it retires (default 2 s).
  runtime_config& blocking_keep_alive(std::chrono::milliseconds d) {
    blocking_keep_alive_ = d;
    return *this;
  }
  /// How long a worker that ran out of work keeps polling the sockets (epoll_wait with a zero
  /// timeout) before it parks, while any socket is registered (default 50 µs; zero parks at
  /// once). Two-phase waiting (spin, then block: Ousterhout 1982; Karlin et al., "Empirical
  /// studies of competitive spinning", SOSP 1991): a request that arrives within the window
  /// is served without a sleep and a wake-up, and the peer that sends it does not pay for
  /// waking this thread (on loopback that cost falls on the sender's send()). A server that
  /// stays idle longer than the window parks and uses no CPU; the window ends early when a
  /// timer comes due. Only one worker per runtime spins at a time, and the window costs that
  /// much CPU each time the runtime runs out of work, unless another thread wants the CPU:
  /// after four polls the spin yields (sched_yield) before each poll, and the first yield
  /// that hands the CPU to another thread ends the spin (the worker parks). validate()
  /// rejects values outside [0 µs, 1 s].
  runtime_config& io_spin(std::chrono::microseconds d) {
    io_spin_ = d;
    return *this;
  }
  /// Plans worker placement on an hwloc synthetic topology instead of the machine (for
  /// tests; forces pin_workers(false)). Example: "package:2 numa:1 core:4 pu:2".
  runtime_config& synthetic_topology(std::string description) {
    synthetic_topology_ = std::move(description);
    return *this;
  }

  [[nodiscard]] std::optional<std::size_t> workers() const noexcept { return workers_; }
  [[nodiscard]] bool pin_workers() const noexcept { return pin_; }
  [[nodiscard]] const std::vector<unsigned>& cpu_set() const noexcept { return cpu_set_; }
  [[nodiscard]] std::optional<std::size_t> blocking_threads() const noexcept {
    return blocking_threads_;
  }
  [[nodiscard]] std::chrono::milliseconds blocking_keep_alive() const noexcept {
    return blocking_keep_alive_;
  }
  [[nodiscard]] std::chrono::microseconds io_spin() const noexcept { return io_spin_; }
  [[nodiscard]] const std::optional<std::string>& synthetic_topology() const noexcept {
    return synthetic_topology_;
  }

  /// Checks the fields that can be checked without a topology: throws
  /// std::invalid_argument naming the field ("workers", "blocking_threads",
  /// "blocking_keep_alive", "io_spin"). CPU-set membership is checked against the topology by the
  /// runtime ("cpu_set").
  void validate() const;

private:
  std::optional<std::size_t> workers_;
  bool pin_ = true;
  std::vector<unsigned> cpu_set_;
  std::optional<std::size_t> blocking_threads_;
  std::chrono::milliseconds blocking_keep_alive_{2000};
  std::chrono::microseconds io_spin_{50};
  std::optional<std::string> synthetic_topology_;
};

} // namespace bastion
