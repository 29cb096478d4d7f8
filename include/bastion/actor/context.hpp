// bastion/actor/context.hpp: bastion::context, what an actor body sees: its mailbox (recv,
// try_recv, recv_for), sending (tell, ask, broadcast) and where it sits in the tree.
#pragma once

#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/match.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/restart.hpp>
#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace bastion {

class supervisor_ref;

/// What an actor body (`task<>(bastion::context&)`) sees: one context per child, kept with
/// the child's slot and reset for each incarnation; the body may use it while it runs.
///
/// The context notes the message most recently received through it (kind, type, sender):
/// when the body fails, that is the message a restart callback's bastion::failure names.
/// A body that dispatches with `ctx.handle(std::move(m), handlers...)` instead of
/// bastion::match lets the context keep the envelope while the handler runs: when the
/// handler throws, the failure also carries the message itself (message_info::envelope), so
/// restart callbacks can read its payload.
/// Thread-safety: only the owning actor's body may use it (the receive side of the mailbox
/// has one consumer). The refs it hands out are safe from any thread.
class context {
public:
  /// Internal: built with the child's slot, which owns it.
  explicit context(detail::child_slot& slot) noexcept
      : slot_(&slot) {}
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// Awaiter of recv(): mailbox::recv (no allocation), noting the message received.
  class [[nodiscard]] recv_operation {
  public:
    recv_operation(context& ctx, mailbox& mb) noexcept
        : ctx_(ctx)
        , op_(mb) {}
    recv_operation(const recv_operation&) = delete;
    recv_operation& operator=(const recv_operation&) = delete;
    bool await_ready() { return op_.await_ready(); }
    bool await_suspend(std::coroutine_handle<> h) { return op_.await_suspend(h); }
    message await_resume() {
      message m = op_.await_resume();
      ctx_.note(m);
      return m;
    }

  private:
    context& ctx_;
    mailbox::recv_operation op_;
  };

  /// Awaits the next message (see mailbox::recv): suspends while the mailbox is empty and
  /// resumes on the worker that picks the actor up after a sender's wake. Throws
  /// mailbox_closed when the mailbox is closed and empty.
  recv_operation recv() noexcept;
  /// The next message if one is ready (no wait). O(1).
  std::optional<message> try_recv();
  /// Awaits the next message for at most `d` (any duration): std::nullopt on timeout.
  template <class Rep, class Period>
  task<std::optional<message>> recv_for(std::chrono::duration<Rep, Period> d) {
    auto m = co_await mailbox_ref().recv_for(d);
    if (m) {
      note(*m);
    }
    co_return m;
  }

  /// Dispatches `msg` like bastion::match(std::move(msg), hs...) (same handlers, same rules,
  /// same result), but the context owns the envelope while the handler runs:
  ///   auto m = co_await ctx.recv();
  ///   ctx.handle(std::move(m), [](const job& j) { ... }, bastion::otherwise([](auto&&) {}));
  /// When the handler returns, the message is destroyed as with match. When it throws, the
  /// context keeps the message and, if the exception ends the body, the restart callbacks
  /// get it in failure::message->envelope (read it with `f.message->value<T>()`); the rest
  /// of the mailbox stays for the new incarnation. The next recv/try_recv/recv_for/handle
  /// drops a kept message (a body that caught the error went on).
  /// What stays readable: tells and broadcasts (a tell handler taking T by value moves the
  /// payload out: take `const T&` to keep it intact); an ask's envelope goes into its
  /// question<T>, so only its kind/type/sender are kept; a fallback that moves the message
  /// away takes it too. Handlers run synchronously: a handler returning a task has returned
  /// before the task runs. Also noted as the current message. @pre bool(msg).
  template <class... Hs>
  decltype(auto) handle(message&& msg, Hs&&... hs) {
    static_assert(
        sizeof...(Hs) > 0 && detail::match_traits<Hs...>::fallback_last,
        "bastion::context::handle: the last argument must be bastion::otherwise(fallback)");
    using tuple = std::tuple<std::remove_cvref_t<Hs>&...>;
    using R = decltype(detail::match_result<tuple>(std::make_index_sequence<sizeof...(Hs) - 1>{}));
    held_ = std::move(msg);
    note_info(held_);
    const held_guard guard{*this};
    tuple hst{hs...};
    return detail::dispatch<R, 0>(held_, hst);
  }

  /// Tells `v` to `to`, with this child as the sender. False when it went to dead letters.
  template <class T>
    requires message_type<std::decay_t<T>>
  bool tell(const child_ref& to, T&& v) const {
    return to.tell(std::forward<T>(v), id());
  }
  /// Tells `v` to `to`, with this child as the sender, waiting for room when `to` has a
  /// full backpressure mailbox: `bool ok = co_await ctx.send(ref, v);` (see child_ref::send).
  /// Beware of cycles: two actors each waiting to send into the other's full mailbox
  /// deadlock; tell() never waits.
  template <class T>
    requires message_type<std::decay_t<T>>
  address::send_operation send(const child_ref& to, T&& v) const {
    return to.send(std::forward<T>(v), id());
  }
  /// Asks `v` of `to`, with this child as the sender: `co_await ctx.ask<int>(ref, 21)`.
  template <class R, class T>
    requires message_type<std::decay_t<T>> && message_type<R>
  reply_future<R> ask(const child_ref& to, T&& v) const {
    return to.template ask<R>(std::forward<T>(v), id());
  }
  /// Asks with a timeout: a task throwing bastion::timed_out after `limit`.
  template <class R, class T, class Rep, class Period>
    requires message_type<std::decay_t<T>> && message_type<R>
  task<R> ask(const child_ref& to, T&& v, std::chrono::duration<Rep, Period> limit) const {
    return to.template ask<R>(std::forward<T>(v), limit, id());
  }
  /// Broadcasts `v` to every member of this child's own group (itself included). Returns
  /// how many it was queued for.
  template <class T>
    requires message_type<std::decay_t<T>>
  std::size_t broadcast(T&& v) const {
    return parent().broadcast(std::forward<T>(v), id());
  }

  /// This child's ref (Rust Bastion's `signature()`), valid across restarts.
  [[nodiscard]] child_ref signature() const;
  /// Same as signature().
  [[nodiscard]] child_ref current() const { return signature(); }
  /// This child's group.
  [[nodiscard]] children_ref parent() const;
  /// The supervisor of this child's group (include bastion/actor/supervisor.hpp to use it).
  [[nodiscard]] supervisor_ref supervisor() const;
  /// This child's id.
  [[nodiscard]] std::uint64_t id() const noexcept;
  /// Which incarnation runs: 1 for the first start, +1 for each restart.
  [[nodiscard]] std::uint64_t incarnation() const noexcept;
  /// The message most recently received through this context in this incarnation, if any
  /// (its kind, type and sender; no envelope).
  [[nodiscard]] std::optional<message_info> current_message() const;
  /// This child's mailbox (its consumer side belongs to this body).
  [[nodiscard]] mailbox& mailbox_ref() const noexcept;

  /// Internal (the supervisor, once the body failed): the current message's info, with the
  /// envelope kept by handle() when there is one. Leaves no envelope here.
  [[nodiscard]] std::optional<message_info> take_failed_message() noexcept;
  /// Internal (the supervisor, before each incarnation and once the child stopped): forgets
  /// the current message and drops a kept envelope.
  void reset() noexcept {
    held_ = message{};
    cur_type_ = nullptr;
    cur_sender_ = 0;
    cur_kind_ = message_kind::tell;
  }

private:
  /// Drops a handled message on a normal return; keeps it when an exception leaves.
  struct held_guard {
    explicit held_guard(context& c) noexcept
        : ctx(c)
        , uncaught(std::uncaught_exceptions()) {}
    held_guard(const held_guard&) = delete;
    held_guard& operator=(const held_guard&) = delete;
    ~held_guard() {
      if (std::uncaught_exceptions() <= uncaught) {
        ctx.held_ = message{};
      }
    }
    context& ctx;
    int uncaught;
  };

  void note(const message& m) noexcept {
    held_ = message{};
    note_info(m);
  }
  void note_info(const message& m) noexcept {
    cur_type_ = &m.type();
    cur_sender_ = m.sender_id();
    cur_kind_ = m.kind();
  }

  detail::child_slot* slot_; ///< the slot owns this context
  // The current message's info (cur_type_ null: none yet in this incarnation).
  const std::type_info* cur_type_ = nullptr;
  std::uint64_t cur_sender_ = 0;
  message_kind cur_kind_ = message_kind::tell;
  message held_; ///< the message handle() is dispatching (kept when its handler threw)
};

} // namespace bastion
