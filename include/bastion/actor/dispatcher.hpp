// bastion/actor/dispatcher.hpp: bastion::dispatcher, named group membership with a pluggable
// handler that decides where a dispatched message goes (default: round-robin to one member),
// and register/remove notifications. After Rust Bastion's Dispatcher. See docs/routing.md.
#pragma once

#include <bastion/actor/message.hpp>
#include <bastion/actor/refs.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace bastion {

class context;

namespace detail {
class dispatcher_state;
/// Runs the handler on `m` (see dispatcher::dispatch).
bool dispatcher_dispatch(const std::shared_ptr<dispatcher_state>& s, message&& m);
/// Adds `c` (no duplicates) and runs the on_register notification. Safe from any thread.
void dispatcher_join(const std::shared_ptr<dispatcher_state>& s, const child_ref& c);
/// Removes `c` if present and runs the on_remove notification. Safe from any thread.
void dispatcher_leave(const std::shared_ptr<dispatcher_state>& s, const child_ref& c);
/// The dispatchers of the group `ctx` runs in.
std::vector<std::shared_ptr<dispatcher_state>> dispatchers_of(const context& ctx);
} // namespace detail

/// A named membership list with a pluggable routing handler (Rust Bastion's Dispatcher).
/// `dispatcher::named("x")` is a cheap handle on the process-wide entry of that name.
/// Children of every group whose builder called `c.dispatcher(d)` register when they start and
/// are removed when they stop or fail (registered again on restart); on_register/on_remove
/// notifications run then (on the supervisor's proc: keep them short; exceptions are caught and
/// logged).
///
/// Thread-safety: every member is safe from any thread. Handlers run on the dispatching thread
/// with no lock held, possibly concurrently with themselves.
class dispatcher {
public:
  /// Decides where `m` goes among `members` (current members, join order; never empty). It
  /// owns `m`: send it (`members[i].address().send(std::move(m))`) or drop it (an unsent
  /// envelope is destroyed; an ask then answers no_reply). Returns true when it delivered.
  using handler_fn = std::function<bool(const std::vector<child_ref>& members, message&& m)>;
  /// A register or remove notification.
  using notify_fn = std::function<void(const child_ref&)>;

  /// An empty handle (dispatch() returns false; setters throw std::logic_error).
  dispatcher() = default;
  /// The handle of the dispatcher called `name` (created on first use, never removed). Takes
  /// the registry's mutex; O(1) average.
  [[nodiscard]] static dispatcher named(std::string_view name);

  /// The name ("" for an empty handle).
  [[nodiscard]] const std::string& name() const noexcept;
  /// The current members, in join order. Takes the mutex; O(members).
  [[nodiscard]] std::vector<child_ref> members() const;

  /// Replaces the handler (default: round-robin to one member). Returns *this.
  const dispatcher& handler(handler_fn f) const;
  /// Sets the notification run when a member registers.
  const dispatcher& on_register(notify_fn f) const;
  /// Sets the notification run when a member is removed.
  const dispatcher& on_remove(notify_fn f) const;

  /// Tells `v` through the handler. Returns the handler's result; false (the message in
  /// dead_letters::global(), unknown_target) when there is no member. Never waits.
  template <class T>
    requires message_type<std::decay_t<T>>
  bool dispatch(T&& v, std::uint64_t sender = 0) const {
    return detail::dispatcher_dispatch(s_, message::tell(std::forward<T>(v), sender));
  }
  /// Dispatches a prebuilt message (an ask, a broadcast) through the handler.
  bool dispatch_message(message&& m) const { return detail::dispatcher_dispatch(s_, std::move(m)); }

  friend bool operator==(const dispatcher& a, const dispatcher& b) noexcept { return a.s_ == b.s_; }
  /// Internal.
  [[nodiscard]] const std::shared_ptr<detail::dispatcher_state>& state() const noexcept {
    return s_;
  }

private:
  explicit dispatcher(std::shared_ptr<detail::dispatcher_state> s) noexcept
      : s_(std::move(s)) {}
  std::shared_ptr<detail::dispatcher_state> s_;
};

/// Dispatches a copy of `v` through every dispatcher of the group the calling actor runs in
/// (Rust Bastion's `ctx.notify`/broadcast to dispatchers), with the actor as sender. Returns
/// how many dispatchers delivered it. Only the owning actor's body may call it.
template <class T>
  requires message_type<std::decay_t<T>> && std::is_copy_constructible_v<std::decay_t<T>>
std::size_t notify_dispatchers(const context& ctx, const T& v, std::uint64_t sender = 0) {
  std::size_t n = 0;
  for (const auto& d : detail::dispatchers_of(ctx)) {
    n += detail::dispatcher_dispatch(d, message::tell(std::decay_t<T>(v), sender)) ? 1 : 0;
  }
  return n;
}

} // namespace bastion
