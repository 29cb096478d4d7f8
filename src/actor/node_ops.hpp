// src/actor/node_ops.hpp (private): operations on supervision-tree nodes that both the
// supervisor loop (supervisor.cpp) and the stop paths of system and refs use. All run on the
// owning supervisor's proc, or while no proc runs the subtree.
#pragma once

#include <bastion/log.hpp>

#include "tree.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <vector>

namespace bastion::detail {

/// The path of a node (a child's is built on first use: call it for logging only when the
/// line is logged).
const bastion::path& path_of(const node& n);

/// Runs user callback `f` of `n` (named `what` in the log); an exception it throws is logged
/// through the "bastion" logger and goes no further.
template <class F>
void guarded(const char* what, const node& n, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    try {
      logger().error("bastion: the {} callback of {} threw: {}", what, path_of(n), e.what());
    } catch (...) {
    }
  } catch (...) {
    try {
      logger().error("bastion: the {} callback of {} threw a non-std exception", what, path_of(n));
    } catch (...) {
    }
  }
}

/// Routing membership (docs/routing.md): a child joins its group's distributors and
/// dispatchers when an incarnation starts and leaves them when it ends (stop, fault, finish).
/// Both are idempotent.
void join_routes(const slot_ptr& slot, const group_state& g) noexcept;
void leave_routes(const slot_ptr& slot, const group_state& g) noexcept;
/// leave_routes for a child node; nothing for a supervisor.
void leave_routes(const node_ref& n) noexcept;

/// Milliseconds on the steady clock, truncated to 32 bits (node::started_ms).
std::uint32_t backoff_clock_ms() noexcept;

/// Builds the next incarnation of `slot`'s body: the group's exec over the slot's context, as
/// a proc of its own (the context lives in the slot, so no wrapper frame is needed). An exec
/// that throws or returns an empty task gives a body that fails at once with that error.
/// `submit` false: the proc is made but not queued (prestart_group queues it later).
/// Throws std::bad_alloc only.
join_handle<void>
spawn_body(bastion::runtime& rt, const group_state& g, child_slot& slot, bool submit);

/// True when the creator of group `g` under a running system may start its members itself:
/// nothing about a start needs the supervisor's proc (no start callbacks, no routes).
[[nodiscard]] bool can_prestart(const group_state& g) noexcept;

/// Starts the first incarnation of every member of the new group `g` of `sup` on the
/// creating thread (the members are running) without queueing the procs yet: the caller
/// posts the add_group event, then calls submit_prestarted (or cancel_prestarted when the
/// post fails), so no exit note can reach the supervisor before the group does. Creation
/// then follows the creator (depth-first through its worker's LIFO stack) instead of the
/// supervisor's queue (breadth-first), and the supervisor only attaches the group.
/// On a throw (std::bad_alloc) the members built so far are cancelled again. O(members).
void prestart_group(group_state& g, const supervisor_core& sup);
/// Arms the exits of the procs prestart_group built and queues them: on a worker of their
/// runtime they go on its LIFO stack, the last on top (docs/executor.md).
/// Creator only. O(members).
void submit_prestarted(group_state& g) noexcept;
/// Completes the procs prestart_group built, never queued, as cancelled (their exits were
/// not armed: no note is sent); the members are idle again. Creator only, before submit_prestarted.
/// O(members).
void cancel_prestarted(group_state& g) noexcept;

/// Removes a group that is done (no members left, and nothing will add one: halted, or no
/// resizer) from its supervisor's elements and from the name registry.
void retire_group_if_done(supervisor_core& owner, group_state& g) noexcept;

/// Every node of `s`, in start order (groups' children in order, then the next element).
std::vector<node_ref> flatten(const supervisor_core& s);

/// Stops `n` for good, its proc having ended (or never started). `owner` is its supervisor.
void finalize_node(supervisor_core& owner, const node_ref& n, bool callbacks) noexcept;

/// Walks a subtree that no proc runs any more and stops it for good: mailboxes closed and
/// drained, members removed; after_stop runs for children when `callbacks`.
void finalize_subtree(supervisor_core& s, bool callbacks) noexcept;

/// Closes a supervisor's control queue (its loop is over, or never ran) and settles what is
/// left in it: groups and supervisors that were never attached are stopped for good too.
void drain_control(supervisor_core& s) noexcept;

} // namespace bastion::detail
