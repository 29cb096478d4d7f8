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

/// Internal: takes one more reference on a child's slot. Safe from any thread. O(1).
void retain_slot(child_slot* s) noexcept;
/// Internal: drops one reference on a child's slot; the last one destroys it (its mailbox is
/// drained to dead letters). Safe from any thread. O(1).
void release_slot(child_slot* s) noexcept;

/// Internal: an owning pointer to a child's slot. The slot carries its own (intrusive)
/// reference count, so a slot costs one allocation and a ref one pointer.
/// Thread-safety: like std::shared_ptr (copies are independent; the count is atomic).
class slot_ptr {
public:
  slot_ptr() noexcept = default;
  /// Shares `s` (takes a new reference); null is fine.
  explicit slot_ptr(child_slot* s) noexcept
      : s_(s) {
    if (s_ != nullptr) {
      retain_slot(s_);
    }
  }
  /// Adopts one reference the caller already holds on `s`.
  [[nodiscard]] static slot_ptr adopt(child_slot* s) noexcept {
    slot_ptr p;
    p.s_ = s;
    return p;
  }
  slot_ptr(const slot_ptr& o) noexcept
      : slot_ptr(o.s_) {}
  slot_ptr(slot_ptr&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)) {}
  slot_ptr& operator=(const slot_ptr& o) noexcept {
    slot_ptr(o).swap(*this);
    return *this;
  }
  slot_ptr& operator=(slot_ptr&& o) noexcept {
    slot_ptr(std::move(o)).swap(*this);
    return *this;
  }
  ~slot_ptr() { reset(); }

  /// Drops the reference (the pointer becomes null).
  void reset() noexcept {
    if (auto* s = std::exchange(s_, nullptr)) {
      release_slot(s);
    }
  }
  /// Gives up the reference without dropping it (the caller now owns it).
  [[nodiscard]] child_slot* release() noexcept { return std::exchange(s_, nullptr); }
  void swap(slot_ptr& o) noexcept { std::swap(s_, o.s_); }
  [[nodiscard]] child_slot* get() const noexcept { return s_; }
  child_slot* operator->() const noexcept { return s_; }
  child_slot& operator*() const noexcept { return *s_; }
  [[nodiscard]] explicit operator bool() const noexcept { return s_ != nullptr; }
  friend bool operator==(const slot_ptr& a, const slot_ptr& b) noexcept { return a.s_ == b.s_; }

private:
  child_slot* s_ = nullptr;
};
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
  explicit address(detail::slot_ptr slot) noexcept
      : slot_(std::move(slot)) {}

  /// The child's unique id (0 for an empty address).
  [[nodiscard]] std::uint64_t id() const noexcept;
  /// The child's name (its group's name; see children_ref::name).
  [[nodiscard]] const std::string& name() const;
  /// The child's path. A child's path is built on first use (one allocation, kept with the
  /// child), so children that are never asked for it do not pay for it; throws std::bad_alloc
  /// when that allocation fails. Safe from any thread.
  [[nodiscard]] const bastion::path& path() const;
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
  [[nodiscard]] const detail::slot_ptr& slot() const noexcept { return slot_; }

  friend bool operator==(const address& a, const address& b) noexcept { return a.slot_ == b.slot_; }

private:
  detail::slot_ptr slot_;
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
