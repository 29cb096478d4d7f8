// bastion/actor/refs.hpp: child_ref and children_ref, the handles users hold on a child and on
// a children group. Both stay valid across restarts (they hold the slot, not an incarnation).
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace bastion {

/// A handle on one child (Rust Bastion's ChildRef): tell, ask, stop, kill.
///
/// It refers to the child's slot, so it keeps working across restarts: a message told before
/// a restart and still queued, or told after it, reaches the new incarnation. Sends to a
/// child stopped for good go to dead letters (stopped_target).
/// Thread-safety: copies are independent; every member is safe from any thread.
class child_ref {
public:
  child_ref() = default;
  /// Internal: the ref of `a`'s child.
  explicit child_ref(bastion::address a) noexcept
      : addr_(std::move(a)) {}

  /// The child's unique id.
  [[nodiscard]] std::uint64_t id() const noexcept { return addr_.id(); }
  /// The child's name (its group's name).
  [[nodiscard]] const std::string& name() const { return addr_.name(); }
  /// The child's path: /root/.../<group id>/<child id> (built on first use; see
  /// address::path).
  [[nodiscard]] const bastion::path& path() const { return addr_.path(); }
  /// The child's address (what the ref sends to).
  [[nodiscard]] const bastion::address& address() const noexcept { return addr_; }
  /// True once the child is stopped for good.
  [[nodiscard]] bool is_stopped() const noexcept { return addr_.is_stopped(); }

  /// Tells `v` (moved or copied into a new message). Returns false when it went to dead
  /// letters (stopped child, full mailbox with reject or backpressure). Never waits: on a
  /// full backpressure mailbox it fails like reject; use send() to wait for room. O(1).
  /// @param sender the sender's id (0: none; bastion::context::tell fills it in).
  template <class T>
    requires message_type<std::decay_t<T>>
  bool tell(T&& v, std::uint64_t sender = 0) const {
    return addr_.send(message::tell(std::forward<T>(v), sender));
  }

  /// Tells `v`, waiting for room: `bool ok = co_await ref.send(v);`. With a bounded
  /// backpressure mailbox that is full, it suspends the sending proc until the child has
  /// taken enough messages (waiting senders are admitted in FIFO order; per-sender order is
  /// kept). With any other mailbox it completes at once, exactly like tell(). Yields false
  /// when the message went to dead letters (stopped child: stopped_target, also when the
  /// child stops while the sender waits; reject: mailbox_full; empty ref: unknown_target).
  /// Waiting requires a bastion proc (std::logic_error otherwise). A sender cancelled while
  /// it waits sends its message to dead letters (mailbox_full).
  /// Tell vs send: tell never blocks and may fail under backpressure; send may wait.
  template <class T>
    requires message_type<std::decay_t<T>>
  bastion::address::send_operation send(T&& v, std::uint64_t sender = 0) const {
    return addr_.send_awaitable(message::tell(std::forward<T>(v), sender));
  }

  /// Asks `v`, expecting an R: returns the reply future (co_await it). When the message
  /// cannot be delivered, or the child drops it unanswered, the future throws
  /// bastion::no_reply. Never waits to send.
  template <class R, class T>
    requires message_type<std::decay_t<T>> && message_type<R>
  reply_future<R> ask(T&& v, std::uint64_t sender = 0) const {
    auto [m, f] = message::ask<R>(std::forward<T>(v), sender);
    addr_.send(std::move(m));
    return std::move(f);
  }

  /// Asks `v` and awaits the reply for at most `limit` (any duration): a task yielding the
  /// R, throwing bastion::timed_out after `limit`, or no_reply. Usable with bastion::run:
  /// `int x = bastion::run(ref.ask<int>(21, 1s));`.
  template <class R, class T, class Rep, class Period>
    requires message_type<std::decay_t<T>> && message_type<R>
  task<R> ask(T&& v, std::chrono::duration<Rep, Period> limit, std::uint64_t sender = 0) const {
    auto f = ask<R>(std::forward<T>(v), sender);
    return [](reply_future<R> fut, std::chrono::duration<Rep, Period> d) -> task<R> {
      co_return co_await std::move(fut).with_timeout(d);
    }(std::move(f), limit);
  }

  /// Stops the child for good, gracefully: its supervisor cancels its body, runs its
  /// after_stop, closes its mailbox (later sends: dead letters) and removes it from its
  /// group. Asynchronous (the supervisor does it). Not restarted.
  void stop() const;
  /// Like stop() but without callbacks (immediate cancellation).
  void kill() const;

  friend bool operator==(const child_ref& a, const child_ref& b) noexcept {
    return a.addr_ == b.addr_;
  }

private:
  bastion::address addr_;
};

/// A handle on a children group (Rust Bastion's ChildrenRef): its members, broadcast,
/// stop, kill. Valid across restarts.
/// Thread-safety: copies are independent; every member is safe from any thread.
class children_ref {
public:
  children_ref() = default;
  /// Internal.
  explicit children_ref(std::shared_ptr<detail::group_state> g) noexcept
      : g_(std::move(g)) {}

  /// The group's unique id.
  [[nodiscard]] std::uint64_t id() const noexcept;
  /// The group's name: the builder's name(), or "children-<id>" for an unnamed group (built
  /// on first use; throws std::bad_alloc when it cannot be).
  [[nodiscard]] const std::string& name() const;
  /// The group's path: /root/.../<group id>.
  [[nodiscard]] const bastion::path& path() const noexcept;
  /// The current members (children not stopped for good), in start order. Takes the group's
  /// mutex while it copies the member list; O(members), one allocation.
  [[nodiscard]] std::vector<child_ref> elems() const;
  /// The number of current members (children not stopped for good). Takes the group's mutex;
  /// O(1).
  [[nodiscard]] std::size_t size() const;

  /// Broadcasts `v` to every current member: one shared, immutable copy (a
  /// bastion::broadcast<T> view for each). Returns how many members it was queued for.
  template <class T>
    requires message_type<std::decay_t<T>>
  std::size_t broadcast(T&& v, std::uint64_t sender = 0) const {
    using D = std::decay_t<T>;
    auto shared = std::make_shared<const D>(std::forward<T>(v));
    std::size_t n = 0;
    for (const auto& c : elems()) {
      n += c.address().send(message::broadcast(shared, sender)) ? 1 : 0;
    }
    return n;
  }

  /// Stops every member for good, gracefully (see child_ref::stop). Asynchronous.
  void stop() const;
  /// Kills every member (no callbacks). Asynchronous.
  void kill() const;

  /// Internal.
  [[nodiscard]] const std::shared_ptr<detail::group_state>& state() const noexcept { return g_; }

private:
  std::shared_ptr<detail::group_state> g_;
};

} // namespace bastion
