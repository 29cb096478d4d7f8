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

/// Describes a supervisor (Rust Bastion's Supervisor): its strategy, restart strategy, and
/// the children groups and child supervisors it starts, in the order they are added (the
/// order rest_for_one and shutdown use). Used inside `sys.supervisor(F)` /
/// `supervisor_builder::supervisor(F)` / `supervisor_ref::supervisor(F)`.
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
