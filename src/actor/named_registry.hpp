// src/actor/named_registry.hpp: the process-wide name -> shared state table behind
// distributor::named and dispatcher::named. Private to src/.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace bastion::detail {

/// Returns the State registered under `name`, creating it (State{name}) on first use.
/// One table per State type; entries live for the whole process (handles may outlive
/// statics, so the table is never destroyed). Safe from any thread; O(1) average, one lock.
template <class State>
std::shared_ptr<State> named_state(std::string_view name) {
  struct table {
    std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<State>> entries;
  };
  static auto* t = new table;
  std::lock_guard lock(t->mu);
  auto [it, inserted] = t->entries.try_emplace(std::string(name));
  if (inserted) {
    it->second = std::make_shared<State>(std::string(name));
  }
  return it->second;
}

} // namespace bastion::detail
