// tests/support.hpp: helpers shared by the test files (runtime configs, liveness waits,
// destruction counters, a gate that holds a worker).
#pragma once

#include <bastion/actor/system.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/lightproc/task.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bastion::test {

/// A runtime_config with `n` workers.
inline bastion::runtime_config workers(std::size_t n) {
  return bastion::runtime_config{}.workers(n);
}

/// Polls `pred` until it holds or `limit` passes (a liveness bound, not a speed check).
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Polls `pred` until it holds or `limit` passes (a liveness bound, not a speed check).
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  return eventually(std::move(pred), std::chrono::duration_cast<std::chrono::seconds>(limit));
}

/// The system config actor tests use: 2 unpinned workers, logging off.
inline bastion::config test_config() {
  return bastion::config{}.workers(2).pin_workers(false).log_level("off");
}

/// Counts destructions of live (not moved-from) instances.
class tracked {
public:
  explicit tracked(std::atomic<int>* destroyed)
      : destroyed_(destroyed) {}
  tracked(tracked&& o) noexcept
      : destroyed_(std::exchange(o.destroyed_, nullptr)) {}
  tracked(const tracked&) = delete;
  tracked& operator=(const tracked&) = delete;
  tracked& operator=(tracked&&) = delete;
  ~tracked() {
    if (destroyed_ != nullptr) {
      destroyed_->fetch_add(1);
    }
  }

private:
  std::atomic<int>* destroyed_;
};

/// A latch a proc can block its worker on; the test opens it.
struct gate {
  std::atomic<bool> entered{false};
  std::atomic<bool> open{false};
};

/// Blocks its worker thread (on purpose) until the gate opens.
inline bastion::task<int> hold_worker(gate* g) {
  g->entered.store(true);
  while (!g->open.load()) {
    std::this_thread::yield();
  }
  co_return 1;
}

/// A task that returns `v`.
inline bastion::task<int> value_of(int v) {
  co_return v;
}

/// A thread-safe log of events (callbacks, handlers) that actors append to and the test
/// thread reads; every call locks.
struct event_log {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return events.size();
  }
  bool has(const std::string& e) {
    std::lock_guard lock(mu);
    return std::find(events.begin(), events.end(), e) != events.end();
  }
};

} // namespace bastion::test
