// bastion/actor/address.hpp: bastion::path (where an element sits in the supervision tree) and
// bastion::address (a child's stable, restart-proof mailbox address).
#pragma once

#include <bastion/actor/message.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bastion {

namespace detail {
class node;
class child_slot;
class group_state;
class supervisor_core;
class system_core;
} // namespace detail

/// The position of a tree element: the ids from the root down, written
/// `/root/<supervisor id>/<group id>/<child id>` (the root supervisor is `/root`; each
/// supervisor, group and child appends its id to its parent's path).
/// Thread-safety: a plain value. Ids are unique in the process, so paths are too.
class path {
public:
  /// The root supervisor's path ("/root").
  path() = default;
  /// This path with `id` appended.
  [[nodiscard]] path child(std::uint64_t id) const {
    path p = *this;
    p.ids_.push_back(id);
    return p;
  }
  /// The ids below the root, top down.
  [[nodiscard]] const std::vector<std::uint64_t>& ids() const noexcept { return ids_; }
  /// Number of ids below the root (0 for the root).
  [[nodiscard]] std::size_t depth() const noexcept { return ids_.size(); }
  /// The last id (0 for the root).
  [[nodiscard]] std::uint64_t id() const noexcept { return ids_.empty() ? 0 : ids_.back(); }
  /// True when `other` is a strict ancestor of this path.
  [[nodiscard]] bool is_descendant_of(const path& other) const noexcept;
  /// "/root/3/7/8".
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const path&, const path&) = default;

private:
  std::vector<std::uint64_t> ids_;
};

/// A child's address: its mailbox, id, name and path, stable across restarts (it refers to
/// the child's slot, not to one incarnation). An empty address (default-constructed) sends
/// everything to dead letters (unknown_target) of dead_letters::global().
/// Thread-safety: copies are independent; every member is safe from any thread.
class address {
public:
  address() = default;
  /// Internal: the address of `slot`.
  explicit address(std::shared_ptr<detail::child_slot> slot) noexcept
      : slot_(std::move(slot)) {}

  /// The child's unique id (0 for an empty address).
  [[nodiscard]] std::uint64_t id() const noexcept;
  /// The child's name (its group's name).
  [[nodiscard]] const std::string& name() const noexcept;
  /// The child's path.
  [[nodiscard]] const bastion::path& path() const noexcept;
  /// True once the child is stopped for good (its mailbox is closed).
  [[nodiscard]] bool is_stopped() const noexcept;
  /// Queues `m` without waiting (mailbox::try_send). False when it went to dead letters:
  /// stopped child (stopped_target), full mailbox (mailbox_full), empty address
  /// (unknown_target). O(1), lock-free.
  bool send(message&& m) const;
  /// Internal: the slot.
  [[nodiscard]] const std::shared_ptr<detail::child_slot>& slot() const noexcept { return slot_; }

  friend bool operator==(const address& a, const address& b) noexcept { return a.slot_ == b.slot_; }

private:
  std::shared_ptr<detail::child_slot> slot_;
};

} // namespace bastion

/// `fmt::format("{}", path)` → "/root/3/7/8".
template <>
struct fmt::formatter<bastion::path> : fmt::formatter<std::string> {
  auto format(const bastion::path& p, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(p.to_string(), ctx);
  }
};
