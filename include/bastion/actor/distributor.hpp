// bastion/actor/distributor.hpp: bastion::distributor, a named, cheap handle that routes
// messages to the children subscribed under its name (round-robin to one, copies to all,
// typed request/response). After Rust Bastion's Distributor. See docs/routing.md.
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace bastion {

/// Why a distributor could not route a message.
enum class distributor_errc : std::uint8_t {
  no_such_distributor, ///< no group or child ever subscribed under the name (or empty handle)
  no_recipients,       ///< the distributor is known but has no member right now
};

/// Thrown by distributor operations that find nobody to send to. The message is accounted
/// for in dead_letters::global() (reason unknown_target) before the throw.
class distributor_error : public std::runtime_error {
public:
  distributor_error(distributor_errc c, const std::string& name);
  /// Which error.
  [[nodiscard]] distributor_errc code() const noexcept { return code_; }
  /// The distributor's name.
  [[nodiscard]] const std::string& distributor_name() const noexcept { return name_; }

private:
  distributor_errc code_;
  std::string name_;
};

namespace detail {
class distributor_state;
/// The member to send `m` to (round-robin); records `m` in dead letters and throws
/// distributor_error when there is none. Prunes members stopped for good.
address distributor_pick(const std::shared_ptr<distributor_state>& s, message& m);
/// Every current member; when there is none, records `m` and throws like distributor_pick.
std::vector<address> distributor_members(const std::shared_ptr<distributor_state>& s, message& m);
/// Adds `a` (no duplicates) and marks the distributor known. Safe from any thread.
void distributor_join(const std::shared_ptr<distributor_state>& s, const address& a);
/// Removes `a` if present. Safe from any thread.
void distributor_leave(const std::shared_ptr<distributor_state>& s, const address& a);
/// Marks the distributor known (a builder names it).
void distributor_mark_known(const std::shared_ptr<distributor_state>& s);
} // namespace detail

/// A named message router (Rust Bastion's Distributor). `distributor::named("staff")` returns a
/// cheap, copyable handle on the process-wide registry entry of that name (created on first
/// use, never removed); every handle of one name reaches the same members.
///
/// Members: children of every group whose builder called `c.distributor(d)` join when they
/// start, leave when they stop or fail, and join again when restarted, so membership follows
/// the group's current members whichever way the group was created (sys.children,
/// supervisor_builder::children, supervisor_ref::children). subscribe()/unsubscribe() add or
/// remove a single child by hand (such a child stays a member across its restarts until it is
/// unsubscribed or stopped for good). Before the system starts, nobody is a member yet.
///
/// Errors: an operation that finds nobody throws bastion::distributor_error (no_such_distributor
/// when the name was never subscribed to, no_recipients when it has no member now); the message
/// goes to dead letters first. A member whose mailbox refuses the message (full, closed) sends
/// it to its dead letters as any tell does.
///
/// Thread-safety: every member is safe from any thread; copies are independent.
/// Complexity: the send operations take the entry's mutex for O(members) at most.
class distributor {
public:
  /// An empty handle: every operation throws distributor_error (no_such_distributor).
  distributor() = default;

  /// The handle of the distributor called `name` (created on first use). Takes the registry's
  /// mutex; O(1) average. Cheap to copy afterwards (one shared_ptr).
  [[nodiscard]] static distributor named(std::string_view name);

  /// The distributor's name ("" for an empty handle).
  [[nodiscard]] const std::string& name() const noexcept;
  /// The current members, in join order. Takes the mutex; O(members).
  [[nodiscard]] std::vector<child_ref> members() const;
  /// Number of current members. Takes the mutex; O(members).
  [[nodiscard]] std::size_t size() const;

  /// Adds `child` as a member by hand (idempotent). It stays a member across its restarts.
  void subscribe(const child_ref& child) const;
  /// Removes `child` (idempotent). A group member rejoins on its next (re)start.
  void unsubscribe(const child_ref& child) const;

  /// Tells `v` to one member, chosen round-robin. Returns false when that member's mailbox
  /// refused it (then in dead letters). Throws distributor_error when there is no member.
  /// Never waits. O(1) amortised plus the mutex.
  template <class T>
    requires message_type<std::decay_t<T>>
  bool tell_one(T&& v, std::uint64_t sender = 0) const {
    auto m = message::tell(std::forward<T>(v), sender);
    auto to = detail::distributor_pick(s_, m);
    return to.send(std::move(m));
  }

  /// Tells a copy of `v` to every current member. Returns how many mailboxes accepted it.
  /// Throws distributor_error when there is no member. O(members) copies.
  template <class T>
    requires message_type<std::decay_t<T>> && std::is_copy_constructible_v<std::decay_t<T>>
  std::size_t tell_everyone(T&& v, std::uint64_t sender = 0) const {
    using D = std::decay_t<T>;
    const D value(std::forward<T>(v));
    auto probe = message::tell(D(value), sender);
    auto all = detail::distributor_members(s_, probe);
    std::size_t n = all.front().send(std::move(probe)) ? 1 : 0;
    for (std::size_t i = 1; i < all.size(); ++i) {
      n += all[i].send(message::tell(D(value), sender)) ? 1 : 0;
    }
    return n;
  }

  /// Asks `v` of one member (round-robin), expecting an R: the reply future (co_await it;
  /// bastion::no_reply when the member drops it or its mailbox refuses it). Throws
  /// distributor_error when there is no member.
  template <class R, class T>
    requires message_type<std::decay_t<T>> && message_type<R>
  reply_future<R> ask_one(T&& v, std::uint64_t sender = 0) const {
    auto [m, f] = message::ask<R>(std::forward<T>(v), sender);
    auto to = detail::distributor_pick(s_, m);
    to.send(std::move(m));
    return std::move(f);
  }

  /// Asks a copy of `v` of every current member: one reply future each, in member order.
  /// Throws distributor_error when there is no member.
  template <class R, class T>
    requires message_type<std::decay_t<T>> && message_type<R>
             && std::is_copy_constructible_v<std::decay_t<T>>
  std::vector<reply_future<R>> ask_everyone(T&& v, std::uint64_t sender = 0) const {
    using D = std::decay_t<T>;
    const D value(std::forward<T>(v));
    auto [probe, first] = message::ask<R>(D(value), sender);
    auto all = detail::distributor_members(s_, probe);
    std::vector<reply_future<R>> out;
    out.reserve(all.size());
    all.front().send(std::move(probe));
    out.push_back(std::move(first));
    for (std::size_t i = 1; i < all.size(); ++i) {
      auto [m, f] = message::ask<R>(D(value), sender);
      all[i].send(std::move(m));
      out.push_back(std::move(f));
    }
    return out;
  }

  /// ask_everyone, then awaits every reply: a task yielding the replies in member order. The
  /// first failed reply (no_reply, timed_out after `limit` per reply) is rethrown.
  template <class R, class T, class Rep = std::int64_t, class Period = std::milli>
    requires message_type<std::decay_t<T>> && message_type<R>
             && std::is_copy_constructible_v<std::decay_t<T>>
  task<std::vector<R>>
  request_everyone(T&& v, std::chrono::duration<Rep, Period> limit = std::chrono::hours(24)) const {
    return gather<R>(ask_everyone<R>(std::forward<T>(v)), limit);
  }

  /// Asks `v` of one member (round-robin) and awaits the typed reply:
  /// `R r = co_await staff.request<R>(q);`. The task throws distributor_error (no member),
  /// bastion::no_reply, or bastion::timed_out after `limit`. The message is sent when the
  /// task is first awaited (tasks are lazy); it resumes where the reply wakes it.
  template <class R, class T, class Rep = std::int64_t, class Period = std::milli>
    requires message_type<std::decay_t<T>> && message_type<R>
  task<R> request(T&& v, std::chrono::duration<Rep, Period> limit = std::chrono::hours(24)) const {
    return [](distributor d,
              std::decay_t<T> value,
              std::chrono::duration<Rep, Period> lim) -> task<R> {
      auto f = d.ask_one<R>(std::move(value));
      co_return co_await std::move(f).with_timeout(lim);
    }(*this, std::decay_t<T>(std::forward<T>(v)), limit);
  }

  /// The blocking variant of request(): runs it on the calling thread (bastion::run) and
  /// returns the reply. Throws what request() throws, bastion::timed_out after `limit`.
  /// Meant for non-actor threads; inside an actor prefer `co_await request(...)`.
  template <class R, class T, class Rep, class Period>
    requires message_type<std::decay_t<T>> && message_type<R>
  R request_sync(T&& v, std::chrono::duration<Rep, Period> limit) const {
    return bastion::run(request<R>(std::forward<T>(v), limit));
  }

  /// Awaits every future in order, each for at most `limit`; yields the replies.
  template <class R, class Rep, class Period>
  static task<std::vector<R>>
  gather(std::vector<reply_future<R>> futures, std::chrono::duration<Rep, Period> limit) {
    std::vector<R> out;
    out.reserve(futures.size());
    for (auto& f : futures) {
      out.push_back(co_await std::move(f).with_timeout(limit));
    }
    co_return out;
  }

  friend bool operator==(const distributor& a, const distributor& b) noexcept {
    return a.s_ == b.s_;
  }

  /// Internal.
  [[nodiscard]] const std::shared_ptr<detail::distributor_state>& state() const noexcept {
    return s_;
  }

private:
  explicit distributor(std::shared_ptr<detail::distributor_state> s) noexcept
      : s_(std::move(s)) {}

  std::shared_ptr<detail::distributor_state> s_;
};

} // namespace bastion
