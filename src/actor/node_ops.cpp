// src/actor/node_ops.cpp: what the supervisor loop and the stop paths (system, refs) share:
// callbacks that must not throw, routing membership, and stopping nodes for good.
#include "node_ops.hpp"

#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/log.hpp>

#include <spdlog/spdlog.h>

#include <utility>
#include <vector>

namespace bastion::detail {

/// The path of a node (a child's is built on first use: call it for logging only when the
/// line is logged).
const bastion::path& path_of(const node& n) {
  if (n.kind_ == node::kind::actor) {
    return static_cast<const child_slot&>(n).path();
  }
  return static_cast<const supervisor_core&>(n).path;
}

/// Routing membership (docs/routing.md): a child joins its group's distributors and
/// dispatchers when an incarnation starts and leaves them when it ends (stop, fault, finish).
/// Both are idempotent; called on the supervisor's proc (or while no proc runs the tree).
void join_routes(const slot_ptr& slot, const group_state& g) noexcept {
  if (g.spec.distributors.empty() && g.spec.dispatchers.empty()) {
    return;
  }
  const address a{slot};
  for (const auto& d : g.spec.distributors) {
    guarded("distributor join", *slot, [&] { detail::distributor_join(d.state(), a); });
  }
  for (const auto& d : g.spec.dispatchers) {
    guarded(
        "dispatcher on_register", *slot, [&] { detail::dispatcher_join(d.state(), child_ref{a}); });
  }
}
void leave_routes(const slot_ptr& slot, const group_state& g) noexcept {
  if (g.spec.distributors.empty() && g.spec.dispatchers.empty()) {
    return;
  }
  const address a{slot};
  for (const auto& d : g.spec.distributors) {
    guarded("distributor leave", *slot, [&] { detail::distributor_leave(d.state(), a); });
  }
  for (const auto& d : g.spec.dispatchers) {
    guarded(
        "dispatcher on_remove", *slot, [&] { detail::dispatcher_leave(d.state(), child_ref{a}); });
  }
}
void leave_routes(const node_ref& n) noexcept {
  if (n.slot()) {
    leave_routes(n.slot(), *n.slot()->group);
  }
}

/// Removes a group that is done (no members left, and nothing will add one: halted, or no
/// resizer) from its supervisor's elements and from the name registry.
void retire_group_if_done(supervisor_core& owner, group_state& g) noexcept {
  if (!g.attached || g.count != 0 || (!g.halted && g.spec.resize)) {
    return;
  }
  g.sys->unregister_group(g);
  owner.detach(g); // may drop a reference to g: the caller holds another
}

/// Every node of `s`, in start order (groups' children in order, then the next element).
std::vector<node_ref> flatten(const supervisor_core& s) {
  std::vector<node_ref> out;
  for (const auto& e : s.elements) {
    if (e.group) {
      for (auto& m : e.group->members()) {
        out.emplace_back(std::move(m));
      }
    } else if (e.sup) {
      out.emplace_back(e.sup);
    }
  }
  return out;
}

/// Stops `n` for good, its proc having ended (or never started). `owner` is its supervisor.
void finalize_node(supervisor_core& owner, const node_ref& n, bool callbacks) noexcept {
  if (n->state == node::run_state::stopped) {
    return;
  }
  const bool ran = n->incarnation > 0;
  n->state = node::run_state::stopped;
  n->stopped.store(true, std::memory_order_release);
  leave_routes(n);
  if (const auto& slot = n.slot()) {
    auto& g = *slot->group;
    slot->mb.close();
    slot->mb.drain_to_dead_letters();
    slot->ctx.reset();
    (void)g.unlink(slot.get());
    if (callbacks && ran && g.spec.after_stop) {
      guarded("after_stop", *slot, [&] { g.spec.after_stop(child_ref{address{slot}}); });
    }
    retire_group_if_done(owner, g);
  } else {
    auto& sup = *n.sup();
    finalize_subtree(sup, callbacks);
    drain_control(sup);
    owner.detach(sup);
    if (callbacks && ran && sup.callbacks.after_stop) {
      guarded("after_stop", sup, [&] { sup.callbacks.after_stop(supervisor_ref{n.sup()}); });
    }
  }
  if (logger().should_log(spdlog::level::debug)) {
    try {
      logger().debug("bastion: {} stopped", path_of(*n));
    } catch (...) {
    }
  }
}

void finalize_subtree(supervisor_core& s, bool callbacks) noexcept {
  std::vector<node_ref> all;
  try {
    all = flatten(s);
  } catch (...) {
    // No memory for the list: stop element by element, from the last one.
    while (!s.elements.empty()) {
      auto e = s.elements.back();
      if (e.group) {
        for (;;) {
          slot_ptr last;
          {
            std::lock_guard lock(e.group->mu);
            last = slot_ptr{e.group->last};
          }
          if (!last) {
            break;
          }
          finalize_node(s, node_ref{std::move(last)}, callbacks);
        }
      } else if (e.sup) {
        finalize_node(s, node_ref{e.sup}, callbacks);
      }
      if (!s.elements.empty() && s.elements.back().group == e.group
          && s.elements.back().sup == e.sup) {
        s.elements.pop_back();
      }
    }
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    finalize_node(s, *it, callbacks);
  }
  for (auto& e : s.elements) {
    if (e.group) {
      e.group->attached = false;
      s.sys->unregister_group(*e.group);
    } else if (e.sup) {
      e.sup->attached = false;
    }
  }
  s.elements.clear();
  s.element_count.store(0, std::memory_order_relaxed);
}

void drain_control(supervisor_core& s) noexcept {
  s.control.close();
  while (auto* cn = s.control.try_pop()) {
    if (cn->what == control_node::tag::exit) {
      auto* slot = static_cast<child_slot*>(cn);
      slot->exit_queued.store(false, std::memory_order_relaxed);
      release_slot(slot);
      continue;
    }
    std::unique_ptr<sup_event> ev{static_cast<sup_event*>(cn)};
    if (ev->t == sup_event::type::add_group && ev->group) {
      ev->group->close_unstarted();
      s.sys->unregister_group(*ev->group);
    } else if (ev->t == sup_event::type::add_supervisor && ev->sup) {
      ev->sup->state = node::run_state::stopped;
      ev->sup->stopped.store(true, std::memory_order_release);
      finalize_subtree(*ev->sup, false);
      drain_control(*ev->sup);
    }
  }
}

} // namespace bastion::detail
