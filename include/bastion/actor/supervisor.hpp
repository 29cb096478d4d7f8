// bastion/actor/supervisor.hpp: supervisor_builder (strategy, restart strategy, children
// groups and child supervisors) and supervisor_ref (a handle on a running supervisor: add
// subtrees at run time, change the strategy, stop, kill).
//
// Source of the semantics: Erlang/OTP's supervisor behaviour; builder shape after Rust
// Bastion. See docs/supervision.md.
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/children.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/restart.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace bastion {

class supervisor_builder;

namespace detail {
/// Creates a group (and its children's slots and mailboxes) from `spec` under `sup`. When
/// `post` is true the group is handed to the running supervisor through its control mailbox,
/// else it is appended directly (the supervisor is still being built).
children_ref
add_group(const std::shared_ptr<supervisor_core>& sup, children_spec&& spec, bool post);
/// Creates a child supervisor of `sup` (not yet attached) for a builder.
std::shared_ptr<supervisor_core> make_supervisor(const std::shared_ptr<supervisor_core>& sup);
/// Attaches a built child supervisor to `sup` (see add_group for `post`).
void attach_supervisor(
    const std::shared_ptr<supervisor_core>& sup,
    const std::shared_ptr<supervisor_core>& child,
    bool post);
} // namespace detail

/// A handle on a supervisor (Rust Bastion's SupervisorRef). Valid across the supervisor's
/// restarts. Thread-safety: copies are independent; every member is safe from any thread.
/// Every mutation is posted to the supervisor's control mailbox and done on its proc.
class supervisor_ref {
public:
  supervisor_ref() = default;
  /// Internal.
  explicit supervisor_ref(std::shared_ptr<detail::supervisor_core> c) noexcept
      : c_(std::move(c)) {}

  /// The supervisor's unique id (0 only for an empty ref).
  [[nodiscard]] std::uint64_t id() const noexcept;
  /// The supervisor's path (/root for the root supervisor).
  [[nodiscard]] const bastion::path& path() const noexcept;

  /// Adds a children group built by `f(children_builder&)`; it starts as soon as the
  /// supervisor runs (at once when it does). Returns the group's ref (its mailboxes exist
  /// already: messages sent now are delivered once it runs). Throws what `f` throws.
  template <class F>
    requires std::is_invocable_v<F&, children_builder&>
  children_ref children(F&& f) const {
    children_builder b;
    f(b);
    return detail::add_group(c_, std::move(b.spec()), true);
  }
  /// Adds a child supervisor built by `f(supervisor_builder&)` (a dynamic subtree).
  template <class F>
    requires std::is_invocable_v<F&, supervisor_builder&>
  supervisor_ref supervisor(F&& f) const;

  /// The number of elements (children groups and child supervisors) the supervisor holds
  /// now. A group leaves when it is done (no members left and none to come: every child
  /// finished or was stopped, and it has no resizer or was stopped as a whole); a child
  /// supervisor leaves when stopped for good. Safe from any thread; a snapshot (exact once
  /// the supervisor is idle). O(1).
  [[nodiscard]] std::size_t size() const noexcept;
  /// Changes the strategy for the failures handled from now on.
  void strategy(supervision_strategy s) const;
  /// Stops the supervisor for good, gracefully: its children are stopped in reverse start
  /// order (their after_stop runs), then it ends; its own supervisor does not restart it.
  void stop() const;
  /// Like stop() without callbacks (immediate cancellation of the subtree).
  void kill() const;

  /// Internal.
  [[nodiscard]] const std::shared_ptr<detail::supervisor_core>& core() const noexcept { return c_; }

private:
  std::shared_ptr<detail::supervisor_core> c_;
};

namespace detail {
/// A supervisor's own callbacks (see supervisor_builder). Set by the builder thread before the
/// supervisor is attached, then read-only.
struct supervisor_callbacks {
  std::function<void(const supervisor_ref&)> before_start;
  std::function<void(const supervisor_ref&)> after_start;
  std::function<void(const supervisor_ref&, const failure&)> before_restart;
  std::function<void(const supervisor_ref&, const failure&)> after_restart;
  std::function<void(const supervisor_ref&)> after_stop;
};

template <class F>
std::function<void(const supervisor_ref&)> wrap_supervisor_callback(F&& f) {
  if constexpr (std::is_invocable_v<F&, const supervisor_ref&>) {
    return std::forward<F>(f);
  } else {
    static_assert(std::is_invocable_v<F&>, "a callback takes (const supervisor_ref&) or ()");
    return [g = std::forward<F>(f)](const supervisor_ref&) mutable {
      g();
    };
  }
}
template <class F>
std::function<void(const supervisor_ref&, const failure&)> wrap_supervisor_restart_callback(F&& f) {
  if constexpr (std::is_invocable_v<F&, const supervisor_ref&, const failure&>) {
    return std::forward<F>(f);
  } else if constexpr (std::is_invocable_v<F&, const failure&>) {
    return [g = std::forward<F>(f)](const supervisor_ref&, const failure& x) mutable {
      g(x);
    };
  } else {
    static_assert(
        std::is_invocable_v<F&>,
        "a restart callback takes (const supervisor_ref&, const failure&), (const failure&) or "
        "()");
    return [g = std::forward<F>(f)](const supervisor_ref&, const failure&) mutable {
      g();
    };
  }
}
} // namespace detail

/// Describes a supervisor (Rust Bastion's Supervisor): its strategy, restart strategy, and
/// the children groups and child supervisors it starts, in the order they are added (the
/// order rest_for_one and shutdown use). Used inside `sys.supervisor(F)` /
/// `supervisor_builder::supervisor(F)` / `supervisor_ref::supervisor(F)`.
///
/// Callbacks (as a children group's, see children_builder) run on the supervisor's own proc,
/// one at a time, in this order for each incarnation: before_start → (its children start,
/// with their own callbacks) → after_start; when its parent restarts it (one_for_all /
/// rest_for_one sibling failure, or its own escalation) the new incarnation runs
/// before_restart(failure) → (its children restart) → after_restart(failure); after_stop
/// runs on the parent's proc once the supervisor is stopped for good, after its whole
/// subtree (not after kill). A callback takes the supervisor's ref (or nothing); restart
/// callbacks also (or only) the failure. A callback's exception is caught and logged
/// through the "bastion" logger; the supervisor goes on. The root supervisor has none.
/// Thread-safety: a builder is used by one thread, inside the function that receives it.
class supervisor_builder {
public:
  /// Internal.
  explicit supervisor_builder(std::shared_ptr<detail::supervisor_core> c) noexcept
      : c_(std::move(c)) {}

  /// The strategy (default one_for_one).
  supervisor_builder& strategy(supervision_strategy s);
  /// The restart strategy (default: always, immediate, no intensity limit).
  supervisor_builder& restart(restart_strategy r);

  /// Runs on the supervisor's proc when its first incarnation begins, before its children
  /// start. `f` takes (const supervisor_ref&) or (). Replaces an earlier one. Its exception
  /// is logged, not propagated. Thread-safety: the builder's thread.
  template <class F>
  supervisor_builder& before_start(F&& f) {
    set_before_start(detail::wrap_supervisor_callback(std::forward<F>(f)));
    return *this;
  }
  /// Runs on the supervisor's proc once its first incarnation has started its children
  /// (their bodies may already run elsewhere). `f` takes (const supervisor_ref&) or ().
  /// Its exception is logged, not propagated. Thread-safety: the builder's thread.
  template <class F>
  supervisor_builder& after_start(F&& f) {
    set_after_start(detail::wrap_supervisor_callback(std::forward<F>(f)));
    return *this;
  }
  /// Runs on the supervisor's proc when its parent restarts it, before its children restart.
  /// `f` takes (const supervisor_ref&, const failure&), (const failure&) or (); the failure
  /// is the one that caused the restart (a bastion::supervisor_gave_up for an escalation,
  /// or the failed sibling's error, message and id). Its exception is logged, not
  /// propagated. Thread-safety: the builder's thread.
  template <class F>
  supervisor_builder& before_restart(F&& f) {
    set_before_restart(detail::wrap_supervisor_restart_callback(std::forward<F>(f)));
    return *this;
  }
  /// Runs on the supervisor's proc when its parent restarted it, once its children were
  /// restarted. Same arguments as before_restart. Its exception is logged, not propagated.
  /// Thread-safety: the builder's thread.
  template <class F>
  supervisor_builder& after_restart(F&& f) {
    set_after_restart(detail::wrap_supervisor_restart_callback(std::forward<F>(f)));
    return *this;
  }
  /// Runs on the parent supervisor's proc once this supervisor is stopped for good (by
  /// stop(), the system's stop, or its parent's policy refusing a restart), after every
  /// after_stop of its subtree; not after kill, and not when it never started. `f` takes
  /// (const supervisor_ref&) or (). Its exception is logged, not propagated.
  /// Thread-safety: the builder's thread.
  template <class F>
  supervisor_builder& after_stop(F&& f) {
    set_after_stop(detail::wrap_supervisor_callback(std::forward<F>(f)));
    return *this;
  }
  /// Adds a children group built by `f(children_builder&)`.
  template <class F>
    requires std::is_invocable_v<F&, children_builder&>
  supervisor_builder& children(F&& f) {
    children_builder b;
    f(b);
    refs_.push_back(detail::add_group(c_, std::move(b.spec()), false));
    return *this;
  }
  /// Adds a child supervisor built by `f(supervisor_builder&)`.
  template <class F>
    requires std::is_invocable_v<F&, supervisor_builder&>
  supervisor_builder& supervisor(F&& f) {
    auto child = detail::make_supervisor(c_);
    supervisor_builder b{child};
    f(b);
    detail::attach_supervisor(c_, child, false);
    return *this;
  }
  /// The refs of the groups added so far, in order.
  [[nodiscard]] const std::vector<children_ref>& groups() const noexcept { return refs_; }
  /// This supervisor's ref.
  [[nodiscard]] supervisor_ref ref() const { return supervisor_ref{c_}; }

private:
  void set_before_start(std::function<void(const supervisor_ref&)> f);
  void set_after_start(std::function<void(const supervisor_ref&)> f);
  void set_before_restart(std::function<void(const supervisor_ref&, const failure&)> f);
  void set_after_restart(std::function<void(const supervisor_ref&, const failure&)> f);
  void set_after_stop(std::function<void(const supervisor_ref&)> f);

  std::shared_ptr<detail::supervisor_core> c_;
  std::vector<children_ref> refs_;
};

template <class F>
  requires std::is_invocable_v<F&, supervisor_builder&>
supervisor_ref supervisor_ref::supervisor(F&& f) const {
  auto child = detail::make_supervisor(c_);
  supervisor_builder b{child};
  f(b);
  detail::attach_supervisor(c_, child, true);
  return supervisor_ref{child};
}

} // namespace bastion
