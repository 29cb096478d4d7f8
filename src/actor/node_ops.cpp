// src/actor/node_ops.cpp: what the supervisor loop and the stop paths (system, refs) share:
// callbacks that must not throw, routing membership, and stopping nodes for good.
#include "node_ops.hpp"

#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/log.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <stdexcept>
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

namespace {

/// Joins (or leaves) every route of `g` with `slot`; a throwing route is logged.
void update_routes(const slot_ptr& slot, const group_state& g, bool join) noexcept {
  if (!g.has_routes()) {
    return;
  }
  const address a{slot};
  for (const auto& d : g.spec.distributors) {
    guarded(join ? "distributor join" : "distributor leave", *slot, [&] {
      join ? detail::distributor_join(d.state(), a) : detail::distributor_leave(d.state(), a);
    });
  }
  for (const auto& d : g.spec.dispatchers) {
    guarded(join ? "dispatcher on_register" : "dispatcher on_remove", *slot, [&] {
      join ? detail::dispatcher_join(d.state(), child_ref{a})
           : detail::dispatcher_leave(d.state(), child_ref{a});
    });
  }
}

} // namespace

/// Routing membership (docs/routing.md): a child joins its group's distributors and
/// dispatchers when an incarnation starts and leaves them when it ends (stop, fault, finish).
/// Both are idempotent; called on the supervisor's proc (or while no proc runs the tree).
void join_routes(const slot_ptr& slot, const group_state& g) noexcept {
  update_routes(slot, g, true);
}
void leave_routes(const slot_ptr& slot, const group_state& g) noexcept {
  update_routes(slot, g, false);
}
void leave_routes(const node_ref& n) noexcept {
  if (n.slot()) {
    leave_routes(n.slot(), *n.slot()->group);
  }
}

namespace {

/// The body of an incarnation whose exec threw instead of returning a task: it fails at once
/// with that exception (a failure like any other).
task<> fail_with(std::exception_ptr e) {
  std::rethrow_exception(std::move(e));
  co_return;
}

} // namespace

std::uint32_t backoff_clock_ms() noexcept {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now().time_since_epoch());
  return static_cast<std::uint32_t>(ms.count());
}

join_handle<void>
spawn_body(bastion::runtime& rt, const group_state& g, child_slot& slot, bool submit) {
  task<> body;
  try {
    body = g.spec.exec(slot.ctx);
    if (!body.valid()) {
      throw std::invalid_argument("bastion: the children group's exec returned an empty task");
    }
  } catch (...) {
    body = fail_with(std::current_exception());
  }
  if (submit) {
    return rt.spawn(std::move(body));
  }
  auto* p = make_proc(std::move(body), proc_stack{}, true);
  p->rt_ = rt.impl();
  return join_handle<void>{p};
}

bool can_prestart(const group_state& g) noexcept {
  const auto& spec = g.spec;
  return !spec.before_start && !spec.after_start && !g.has_routes() && g.sys->rt != nullptr
         && g.sys->accepting.load(std::memory_order_acquire);
}

void prestart_group(group_state& g, const supervisor_core& sup) {
  const bool stamp = sup.restart.backoff_reset().has_value();
  const std::uint32_t now = stamp ? backoff_clock_ms() : 0;
  g.prestart_phase.store(1, std::memory_order_relaxed); // published with the group
  try {
    for (auto* slot = g.first; slot != nullptr; slot = slot->next) {
      slot->handle = spawn_body(*g.sys->rt, g, *slot, false);
      slot->incarnation = 1;
      slot->state = node::run_state::running;
      slot->started_ms = now;
    }
  } catch (...) {
    cancel_prestarted(g);
    throw;
  }
}

void submit_prestarted(group_state& g) noexcept {
  auto* rt = g.sys->rt->impl();
  for (auto* slot = g.first; slot != nullptr;) {
    // Once queued, a member may run, end and be unlinked (even freed) by its supervisor
    // before this loop goes on: read what is needed first. (Unlinking it writes only its
    // neighbours' links back to it; `next` is not queued yet, so its own `next` holds.)
    auto* const next = slot->next;
    auto* const p = slot->handle.proc();
    arm_exit(*slot); // only now: a proc cancelled before this point sends no exit note
    submit(rt, p, true);
    slot = next;
  }
  g.prestart_phase.store(2, std::memory_order_release);
}

void cancel_prestarted(group_state& g) noexcept {
  for (auto* slot = g.first; slot != nullptr; slot = slot->next) {
    if (slot->handle.valid()) {
      proc_header::cancel_queued(slot->handle.proc());
      slot->handle.detach();
      slot->state = node::run_state::idle;
    }
  }
  g.prestart_phase.store(2, std::memory_order_release);
}

/// Removes a group that is done (no members left, and nothing will add one: halted, or no
/// resizer) from its supervisor's elements and from the name registry.
void retire_group_if_done(supervisor_core& owner, group_state& g) noexcept {
  if (!g.attached || (!g.halted && g.spec.resize) || !g.empty()) {
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
  if (n.slot() && !claim_exit(*n.slot())) {
    return; // it returned and settled its own exit: finalized already
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
