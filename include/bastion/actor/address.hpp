// bastion/actor/address.hpp: bastion::path (where an element sits in the supervision tree) and
// bastion::address (a child's stable, restart-proof mailbox address).
#pragma once

#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/message.hpp>

#include <fmt/format.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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
  /// stopped child (stopped_target), full mailbox (mailbox_full: reject, or backpressure
  /// while full), empty address (unknown_target). O(1), lock-free.
  bool send(message&& m) const;

  class send_operation;
  /// Sends `m`, waiting for room under the backpressure policy (mailbox::send): the awaiter
  /// yields true when queued, false when the message went to dead letters (stopped child:
  /// stopped_target; full under reject: mailbox_full; empty address: unknown_target of
  /// dead_letters::global()). Without backpressure it completes at once like send(m).
  /// Awaiting it must happen on a bastion proc when it has to wait (else std::logic_error).
  send_operation send_awaitable(message&& m) const noexcept;

  /// Internal: the child's mailbox (nullptr for an empty address).
  [[nodiscard]] mailbox* mailbox_ptr() const noexcept;
  /// Internal: the slot.
  [[nodiscard]] const std::shared_ptr<detail::child_slot>& slot() const noexcept { return slot_; }

  friend bool operator==(const address& a, const address& b) noexcept { return a.slot_ == b.slot_; }

private:
  std::shared_ptr<detail::child_slot> slot_;
};

/// Awaiter of address::send_awaitable (and child_ref::send, context::send): keeps the slot
/// alive while it waits. Immovable (it may wait in the mailbox's sender list). A message it
/// holds when destroyed unawaited is dropped like any destroyed message (an ask: no_reply).
class [[nodiscard]] address::send_operation {
public:
  send_operation(address a, message&& m) noexcept
      : a_(std::move(a)) {
    if (auto* mb = a_.mailbox_ptr()) {
      op_.emplace(*mb, std::move(m));
    } else {
      m_ = std::move(m);
    }
  }
  send_operation(const send_operation&) = delete;
  send_operation& operator=(const send_operation&) = delete;

  bool await_ready() {
    if (!op_) {
      if (m_) {
        dead_letters::global().record(std::move(m_), dead_letter_reason::unknown_target);
      }
      return true;
    }
    return op_->await_ready();
  }
  bool await_suspend(std::coroutine_handle<> h) { return op_->await_suspend(h); }
  [[nodiscard]] bool await_resume() const noexcept { return op_ && op_->await_resume(); }

private:
  address a_;
  message m_; ///< only for an empty address
  std::optional<mailbox::send_operation> op_;
};

inline address::send_operation address::send_awaitable(message&& m) const noexcept {
  return send_operation{*this, std::move(m)};
}

} // namespace bastion

/// `fmt::format("{}", path)` → "/root/3/7/8".
template <>
struct fmt::formatter<bastion::path> : fmt::formatter<std::string> {
  auto format(const bastion::path& p, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(p.to_string(), ctx);
  }
};
