// src/actor/supervisor.cpp: the supervisor's event loop (bastion/actor/supervisor.hpp) and the
// restart machinery: strategies, policies, backoff timers, intensity and escalation. Shared
// node operations (callbacks, routes, finalization) are in node_ops.cpp, backoff arithmetic in
// restart.cpp.
//
// Every tree mutation happens on the supervisor's own proc, in the loop below; other threads
// only post events (and exit notes) into its control queue. Semantics: Erlang/OTP's supervisor
// behaviour (strategies, intensity, escalation, shutdown in reverse start order).
#include <bastion/actor/context.hpp>
#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/actor/supervisor.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/log.hpp>

#include "node_ops.hpp"
#include "tree.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <set>
#include <string>
#include <utility>

namespace bastion {

namespace detail {

namespace {

/// Sleeps `delay`, then posts `ev` to the supervisor (which keeps handling events meanwhile).
task<> backoff_timer(
    std::weak_ptr<supervisor_core> sup,
    std::chrono::milliseconds delay,
    std::unique_ptr<sup_event> ev) {
  co_await sleep_for(delay);
  if (auto s = sup.lock()) {
    s->post(std::move(ev));
  }
}

/// The state of one supervisor incarnation's loop.
class supervisor_loop {
public:
  supervisor_loop(std::shared_ptr<supervisor_core> self, std::uint64_t incarnation) noexcept
      : self_(std::move(self))
      , incarnation_(incarnation) {}

  task<> run(std::optional<failure> restart) {
    auto& s = *self_;
    // The supervisor's own callbacks frame its children's starts (supervisor_builder).
    const auto& cb = s.callbacks;
    const supervisor_ref me{self_};
    if (restart) {
      if (cb.before_restart) {
        guarded("before_restart", s, [&] { cb.before_restart(me, *restart); });
      }
    } else if (cb.before_start) {
      guarded("before_start", s, [&] { cb.before_start(me); });
    }
    for (auto& n : flatten(s)) {
      if (n->state == node::run_state::idle || n->state == node::run_state::down) {
        start_node(n, restart ? &*restart : nullptr);
      }
    }
    if (restart) {
      if (cb.after_restart) {
        guarded("after_restart", s, [&] { cb.after_restart(me, *restart); });
      }
    } else if (cb.after_start) {
      guarded("after_start", s, [&] { cb.after_start(me); });
    }
    for (auto& e : s.elements) {
      if (e.group) {
        arm_heartbeat(e.group);
      }
    }
    for (std::uint32_t handled = 0;; ++handled) {
      if (handled == yield_every) {
        // Let the children just spawned run before the next burst of events (spawns and
        // exits come in bursts: without this, run queues and memory grow breadth-first).
        handled = 0;
        co_await yield_now();
      }
      control_node* cn = co_await s.control.next();
      if (cn->what == control_node::tag::exit) {
        auto slot = slot_ptr::adopt(static_cast<child_slot*>(cn));
        slot->exit_queued.exchange(false, std::memory_order_acq_rel);
        // (No declaration in the condition and no temporaries in the co_await: g++-12
        // mishandles both in coroutines.)
        std::optional<failed_exit> failed = settle_exit(std::move(slot));
        if (failed) {
          node_ref fn = std::move(failed->n);
          failure ff = std::move(failed->f);
          failed.reset();
          co_await on_failure(std::move(fn), std::move(ff));
        }
      } else {
        const std::unique_ptr<sup_event> owned{static_cast<sup_event*>(cn)};
        auto& ev = *owned;
        if (ev.t == sup_event::type::stop || ev.t == sup_event::type::kill) {
          if (ev.incarnation != 0 && ev.incarnation != incarnation_) {
            continue; // meant for an earlier incarnation
          }
          co_await stop_all(ev.permanent, ev.t == sup_event::type::stop);
          co_return;
        }
        if (!on_event_now(ev)) {
          co_await on_event(ev);
        }
      }
      if (gave_up_) {
        logger().error(
            "bastion: supervisor {} gave up (more than {} restarts within {} ms); escalating",
            s.path,
            *s.restart.max_restarts(),
            std::chrono::duration_cast<std::chrono::milliseconds>(s.restart.period()).count());
        co_await stop_all(false, true);
        throw supervisor_gave_up(fmt::format(
            "bastion: supervisor {} exceeded its restart intensity ({} restarts within {} ms)",
            s.path,
            *s.restart.max_restarts(),
            std::chrono::duration_cast<std::chrono::milliseconds>(s.restart.period()).count()));
      }
    }
  }

private:
  /// Events handled in a row before the loop yields its worker.
  static constexpr std::uint32_t yield_every = 16;

  /// Handles the events that need no waiting (the common ones); false for the others.
  bool on_event_now(sup_event& ev) {
    auto& s = *self_;
    switch (ev.t) {
    case sup_event::type::restart_due:
      for (auto& n : ev.nodes) {
        if (n->state == node::run_state::pending && n->pending_token == ev.token) {
          n->state = node::run_state::down;
          start_node(n, &ev.fail);
        }
      }
      return true;
    case sup_event::type::add_group: {
      auto& g = ev.group;
      g->wait_prestarted(); // from here on, the members' handles are ours
      s.attach(g);
      if (!g->prestarted()) {
        // (A prestarted group's members are running already: their creator started them,
        // see prestart_group.)
        for (auto& slot : g->members()) {
          start_node(node_ref{std::move(slot)}, nullptr);
        }
      }
      arm_heartbeat(g);
      retire_group_if_done(s, *g);
      return true;
    }
    case sup_event::type::add_supervisor:
      s.attach(ev.sup);
      start_node(node_ref{ev.sup}, nullptr);
      return true;
    case sup_event::type::retire_group:
      retire_group_if_done(s, *ev.group);
      return true;
    case sup_event::type::set_strategy:
      s.strategy.store(ev.strategy, std::memory_order_relaxed);
      return true;
    default:
      return false;
    }
  }

  /// Handles the events that wait for procs to end (stops, exits of child supervisors,
  /// resizer evaluations).
  task<> on_event(sup_event& ev) {
    auto& s = *self_;
    switch (ev.t) {
    case sup_event::type::child_exited:
      if (ev.n->incarnation == ev.incarnation && ev.n->state == node::run_state::running) {
        (void)co_await std::move(ev.n->handle).recover();
        ev.n->state = node::run_state::down;
        leave_routes(ev.n);
        if (!ev.failed) {
          finalize_node(s, ev.n, true);
        } else {
          failure f{ev.error, std::nullopt, ev.n->id};
          co_await on_failure(ev.n, std::move(f));
        }
      }
      break;
    case sup_event::type::stop_node:
    case sup_event::type::kill_node:
      co_await stop_node(ev.n, true, ev.t == sup_event::type::stop_node);
      break;
    case sup_event::type::heartbeat:
      if (ev.incarnation == incarnation_) {
        armed_.erase(ev.group.get());
        co_await on_heartbeat(ev.group);
        arm_heartbeat(ev.group);
      }
      break;
    case sup_event::type::stop_group:
    case sup_event::type::kill_group: {
      ev.group->wait_prestarted();
      ev.group->halted = true;
      std::vector<node_ref> all;
      for (auto& m : ev.group->members()) {
        all.emplace_back(std::move(m));
      }
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        co_await stop_node(*it, true, ev.t == sup_event::type::stop_group);
      }
      retire_group_if_done(s, *ev.group);
      break;
    }
    default:
      (void)on_event_now(ev);
      break;
    }
  }

  /// Spawns a new incarnation of `n` (running its start or restart callbacks around it).
  void start_node(const node_ref& n, const failure* f) {
    auto& s = *self_;
    if (n->state == node::run_state::stopped || n->state == node::run_state::running) {
      return;
    }
    const bool restart = n->incarnation > 0;
    if (s.restart.backoff_reset()) {
      n->started_ms = backoff_clock_ms();
    }
    static const failure none{};
    const failure& why = f != nullptr ? *f : none;
    auto* rt = s.sys->rt;
    if (const auto& slot = n.slot()) {
      auto& g = *slot->group;
      const auto& spec = g.spec;
      if (restart) {
        if (spec.before_restart) {
          guarded(
              "before_restart", *n, [&] { spec.before_restart(child_ref{address{slot}}, why); });
        }
      } else if (spec.before_start) {
        guarded("before_start", *n, [&] { spec.before_start(child_ref{address{slot}}); });
      }
      n->incarnation += 1;
      n->state = node::run_state::running;
      slot->ctx.reset();
      slot->exit_owner.store(
          slot_header::exit_open, std::memory_order_relaxed); // published by the spawn
      n->handle = spawn_body(*rt, g, *slot, true);
      arm_exit(*slot);
      join_routes(slot, g);
      if (restart) {
        if (spec.after_restart) {
          guarded("after_restart", *n, [&] { spec.after_restart(child_ref{address{slot}}, why); });
        }
      } else if (spec.after_start) {
        guarded("after_start", *n, [&] { spec.after_start(child_ref{address{slot}}); });
      }
    } else {
      n->incarnation += 1;
      n->state = node::run_state::running;
      n->handle = rt->spawn(run_supervisor(
          n.sup(), n->incarnation, restart ? std::optional<failure>(why) : std::nullopt));
    }
    if (restart) {
      logger().info("bastion: {} restarted (incarnation {})", path_of(*n), n->incarnation);
    }
  }

  /// Ends `n`'s current incarnation: cancels an actor's proc (a child supervisor is asked to
  /// stop its subtree) and waits for it. `permanent`: stopped for good (mailbox closed,
  /// after_stop when `callbacks`), else down (to be restarted).
  task<> stop_node(node_ref n, bool permanent, bool callbacks) {
    if (n.slot()) {
      n.slot()->group->wait_prestarted(); // found by name before its creator queued it?
    }
    if (n->state == node::run_state::running) {
      if (n.slot() && !claim_exit(*n.slot())) {
        co_return; // it returned and settled its own exit: it is gone already
      }
      if (n.slot()) {
        n->handle.cancel();
      } else {
        auto ev =
            std::make_unique<sup_event>(callbacks ? sup_event::type::stop : sup_event::type::kill);
        ev->permanent = permanent;
        ev->incarnation = n->incarnation;
        n.sup()->post(std::move(ev));
      }
      (void)co_await std::move(n->handle).recover();
      n->state = node::run_state::down;
      leave_routes(n);
    } else if (n->state == node::run_state::pending) {
      n->state = node::run_state::down;
    }
    if (permanent) {
      finalize_node(*self_, n, callbacks);
    }
  }

  /// Stops every node in reverse start order.
  task<> stop_all(bool permanent, bool callbacks) {
    auto all = flatten(*self_);
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      co_await stop_node(*it, permanent, callbacks);
    }
  }

  /// Starts the group's heartbeat timer (a one-shot proc posting `heartbeat` to this
  /// supervisor; re-armed after each evaluation) when it has a resizer and none is pending.
  void arm_heartbeat(const std::shared_ptr<group_state>& g) {
    if (!g->spec.resize || g->halted || !g->attached || !armed_.insert(g.get()).second) {
      return;
    }
    auto ev = std::make_unique<sup_event>(sup_event::type::heartbeat);
    ev->group = g;
    ev->incarnation = incarnation_;
    self_->sys->rt->spawn(backoff_timer(self_, g->spec.heartbeat, std::move(ev))).detach();
  }

  /// Starts one more member of `g` (a new slot; its mailbox is new).
  void grow(const std::shared_ptr<group_state>& g) {
    auto* raw = new child_slot(next_node_id(), g, g->spec.mailbox, *self_->sys->sink);
    slot_ptr slot{raw};
    g->link(raw); // adopts the creation reference
    start_node(node_ref{std::move(slot)}, nullptr);
  }

  /// One resizer evaluation (see bastion::resizer for the rules). Bounds count running and
  /// backoff-pending members.
  task<> on_heartbeat(std::shared_ptr<group_state> g) {
    if (!g->spec.resize || g->halted || !g->attached) {
      co_return;
    }
    const auto& r = *g->spec.resize;
    std::vector<slot_ptr> live;
    std::size_t queued = 0;
    for (auto& sl : g->members()) {
      if (sl->state == node::run_state::running || sl->state == node::run_state::pending) {
        queued += sl->mb.size();
        live.push_back(std::move(sl));
      }
    }
    const std::size_t n = live.size();
    const double avg = n == 0 ? 0.0 : static_cast<double>(queued) / static_cast<double>(n);
    auto scaled = [](std::size_t base, double rate) {
      const auto k = static_cast<std::size_t>(std::llround(static_cast<double>(base) * rate));
      return std::max<std::size_t>(1, k);
    };
    if (n < r.lower()) {
      for (std::size_t i = n; i < r.lower(); ++i) {
        grow(g);
      }
      logger().debug("bastion: group {} refilled to {} members", g->path, r.lower());
    } else if (avg > r.upscale_threshold() && n < r.upper()) {
      const auto add = std::min(r.upper() - n, scaled(n, r.upscale_rate()));
      for (std::size_t i = 0; i < add; ++i) {
        grow(g);
      }
      logger().debug(
          "bastion: group {} scaled up to {} (avg mailbox {:.1f})", g->path, n + add, avg);
    } else if (avg < r.downscale_threshold() && n > r.lower()) {
      auto remove = std::min(n - r.lower(), scaled(n, r.downscale_rate()));
      std::vector<slot_ptr> victims;
      for (auto it = live.rbegin(); it != live.rend() && victims.size() < remove; ++it) {
        if ((*it)->state == node::run_state::running && (*it)->mb.size() == 0) {
          victims.push_back(*it);
        }
      }
      for (auto& v : victims) {
        // Out of routing and elems() first, so no new message picks it; then a graceful stop.
        leave_routes(v, *g);
        (void)g->unlink(v.get());
        const node_ref victim{v};
        co_await stop_node(victim, true, true);
      }
      if (!victims.empty()) {
        logger().debug(
            "bastion: group {} scaled down to {} (avg mailbox {:.1f})",
            g->path,
            n - victims.size(),
            avg);
      }
    }
  }

  /// True when one more restart now exceeds the intensity (OTP: more than max_restarts within
  /// period).
  bool intensity_exceeded() {
    const auto& r = self_->restart;
    if (!r.max_restarts()) {
      return false;
    }
    const auto now = clock::now();
    restart_times_.push_back(now);
    while (!restart_times_.empty() && restart_times_.front() + r.period() < now) {
      restart_times_.pop_front();
    }
    return restart_times_.size() > *r.max_restarts();
  }

  /// A failed incarnation, for on_failure.
  struct failed_exit {
    node_ref n;
    failure f;
  };

  /// A child's proc ended (its exit note): if the incarnation that runs is the one that
  /// ended, settle it here when it finished (or was cancelled by the runtime); a failure is
  /// returned for on_failure. Stale notes (an incarnation this supervisor already ended, or
  /// one still running) are ignored. No allocation, no waiting.
  std::optional<failed_exit> settle_exit(slot_ptr slot) {
    if (!claim_exit(*slot) || slot->state != node::run_state::running || !slot->handle.valid()
        || !slot->handle.is_finished()) {
      return std::nullopt;
    }
    auto* p = slot->handle.proc();
    const bool closed = (p->load_state() & proc_header::closed) != 0;
    bool failed = false;
    std::exception_ptr error;
    if (!closed) {
      try {
        p->take_result();
      } catch (...) {
        failed = true;
        error = std::current_exception();
      }
    }
    slot->handle.detach(); // frees the finished proc and its frame
    slot->state = node::run_state::down;
    node_ref n{std::move(slot)};
    leave_routes(n); // a failed member leaves its routes; it rejoins when restarted
    if (!failed) {
      // Finished (or cancelled by the runtime's shutdown: then without callbacks).
      if (!closed && logger().should_log(spdlog::level::debug)) {
        logger().debug("bastion: {} finished", path_of(*n));
      }
      finalize_node(*self_, n, !closed);
      return std::nullopt;
    }
    auto msg = n.slot()->ctx.take_failed_message();
    const auto id = n->id;
    return failed_exit{std::move(n), failure{std::move(error), std::move(msg), id}};
  }

  /// A node's incarnation failed (its proc is over and joined, state down, out of its
  /// routes): restart it (and its siblings, per the strategy), or leave it stopped.
  task<> on_failure(node_ref n, failure f) {
    auto& s = *self_;
    logger().warn("bastion: {} failed: {}", path_of(*n), f.what());
    if (!s.restart.policy().allows(n->restarts)) {
      logger().warn("bastion: {} is not restarted (restart policy)", path_of(*n));
      finalize_node(s, n, true);
      co_return;
    }
    if (intensity_exceeded()) {
      gave_up_ = true;
      co_return;
    }
    if (const auto reset = s.restart.backoff_reset()) {
      // Ran long enough since its last start: the backoff starts over. (Unsigned arithmetic:
      // right across the 32-bit wrap of the millisecond clock, for runs under 49 days.)
      if (backoff_clock_ms() - n->started_ms >= static_cast<std::uint32_t>(reset->count())) {
        n->backoff_step = 0;
      }
    }
    const auto delay = s.restart.backoff().delay(n->backoff_step);
    n->restarts += 1;
    n->backoff_step += 1;

    const auto strategy = s.strategy.load(std::memory_order_relaxed);
    std::vector<node_ref> set;
    if (strategy == supervision_strategy::one_for_one) {
      set.push_back(n);
    } else {
      bool after = false;
      for (auto& x : flatten(s)) {
        if (x == n) {
          set.push_back(x);
          after = true;
          continue;
        }
        const bool live =
            x->state == node::run_state::running || x->state == node::run_state::pending;
        if (live
            && (strategy == supervision_strategy::one_for_all
                || (strategy == supervision_strategy::rest_for_one && after))) {
          set.push_back(x);
        }
      }
    }
    // Our rule: really stop the siblings (reverse start order) before any replacement starts.
    for (auto it = set.rbegin(); it != set.rend(); ++it) {
      if (!(*it == n)) {
        co_await stop_node(*it, false, true);
      }
    }
    // A sibling that returned meanwhile and settled its own exit is gone: not restarted.
    std::erase_if(set, [](const node_ref& x) { return x.slot() && !claim_exit(*x.slot()); });
    if (delay.count() == 0) {
      for (auto& x : set) {
        start_node(x, &f);
      }
      co_return;
    }
    logger().info("bastion: restarting {} in {} ms", path_of(*n), delay.count());
    auto due = std::make_unique<sup_event>(sup_event::type::restart_due);
    due->token = ++next_token_;
    due->fail = f;
    for (auto& x : set) {
      x->state = node::run_state::pending;
      x->pending_token = due->token;
    }
    due->nodes = std::move(set);
    s.sys->rt->spawn(backoff_timer(self_, delay, std::move(due))).detach();
  }

  std::shared_ptr<supervisor_core> self_;
  std::uint64_t incarnation_;
  std::deque<clock::time_point> restart_times_;
  std::uint32_t next_token_ = 0;
  bool gave_up_ = false;
  std::set<const group_state*> armed_; ///< groups with a pending heartbeat timer
};

} // namespace

task<> run_supervisor(
    std::shared_ptr<supervisor_core> self,
    std::uint64_t incarnation,
    std::optional<failure> restart) {
  bool failed = false;
  std::exception_ptr error;
  try {
    supervisor_loop loop{self, incarnation};
    co_await loop.run(std::move(restart));
  } catch (...) {
    failed = true;
    error = std::current_exception();
  }
  if (auto p = self->parent.lock()) {
    auto ev = std::make_unique<sup_event>(sup_event::type::child_exited);
    ev->n = node_ref{self};
    ev->incarnation = incarnation;
    ev->failed = failed;
    ev->error = std::move(error);
    p->post(std::move(ev));
  } else {
    // The root: the system ends with it.
    if (failed) {
      logger().critical("bastion: the root supervisor failed: {}", failure{error, {}, 0}.what());
    }
    self->state = node::run_state::stopped;
    self->stopped.store(true, std::memory_order_release);
    finalize_subtree(*self, !failed);
    drain_control(*self);
    self->sys->mark_stopped();
  }
}

} // namespace detail
} // namespace bastion
