// src/actor/supervisor.cpp: the supervisor's event loop (bastion/actor/supervisor.hpp) and the
// restart machinery: strategies, policies, backoff timers, intensity and escalation.
//
// Every tree mutation happens on the supervisor's own proc, in the loop below; other threads
// only post events into its control mailbox. Semantics: Erlang/OTP's supervisor behaviour
// (strategies, intensity, escalation, shutdown in reverse start order).
#include <bastion/actor/context.hpp>
#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/actor/supervisor.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/log.hpp>

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

std::chrono::milliseconds backoff::delay(std::size_t restarts) const noexcept {
  switch (kind_) {
  case kind::immediate:
    return std::chrono::milliseconds{0};
  case kind::linear:
    return timeout_ * static_cast<std::chrono::milliseconds::rep>(restarts + 1);
  case kind::exponential: {
    const double d = static_cast<double>(timeout_.count())
                     * std::pow(multiplier_, static_cast<double>(restarts));
    const auto cap = static_cast<double>(max_.count());
    return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(std::min(d, cap))};
  }
  }
  return std::chrono::milliseconds{0};
}

std::string failure::what() const {
  if (!error) {
    return {};
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

namespace detail {

std::uint64_t next_node_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

dead_letters& control_sink() noexcept {
  static auto* sink = new dead_letters; // never destroyed: control mailboxes may outlive statics
  return *sink;
}

bool supervisor_core::post(sup_event ev) {
  return control.try_send(message::tell(std::move(ev)));
}

void group_state::remove_member(const child_slot* s) {
  std::lock_guard lock(mu);
  std::erase_if(members, [s](const auto& m) { return m.get() == s; });
}

namespace {

template <class F>
void guarded(const char* what, const node& n, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    logger().error("bastion: the {} callback of {} threw: {}", what, n.path, e.what());
  } catch (...) {
    logger().error("bastion: the {} callback of {} threw a non-std exception", what, n.path);
  }
}

/// Routing membership (docs/routing.md): a child joins its group's distributors and
/// dispatchers when an incarnation starts and leaves them when it ends (stop, fault, finish).
/// Both are idempotent; called on the supervisor's proc (or while no proc runs the tree).
void join_routes(const std::shared_ptr<child_slot>& slot, const group_state& g) noexcept {
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
void leave_routes(const std::shared_ptr<child_slot>& slot, const group_state& g) noexcept {
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
void leave_routes(node& n) noexcept {
  if (n.kind_ != node::kind::actor) {
    return;
  }
  auto slot = std::static_pointer_cast<child_slot>(n.shared_from_this());
  if (auto g = slot->group.lock()) {
    leave_routes(slot, *g);
  }
}

/// One actor incarnation: runs the body, then reports its outcome to the supervisor.
task<> run_actor(
    std::shared_ptr<child_slot> s, std::shared_ptr<group_state> g, std::uint64_t incarnation) {
  context ctx{s, g, incarnation};
  bool failed = false;
  std::exception_ptr error;
  try {
    co_await g->spec.exec(ctx);
  } catch (...) {
    failed = true;
    error = std::current_exception();
  }
  if (auto p = s->parent.lock()) {
    sup_event ev{sup_event::type::child_exited};
    ev.n = s;
    ev.incarnation = incarnation;
    ev.failed = failed;
    ev.error = std::move(error);
    // A failure carries the message being handled (its envelope when the body used
    // context::handle); a normal end carries only the info.
    ev.msg = failed ? ctx.take_failed_message() : ctx.current_message();
    p->post(std::move(ev));
  }
}

/// Sleeps `delay`, then tells the supervisor the restart is due (the supervisor keeps
/// handling events meanwhile).
task<>
backoff_timer(std::weak_ptr<supervisor_core> sup, std::chrono::milliseconds delay, sup_event ev) {
  co_await sleep_for(delay);
  if (auto s = sup.lock()) {
    s->post(std::move(ev));
  }
}

/// Closes a drained control mailbox's leftovers: groups and supervisors that were never
/// attached are stopped for good too (their mailboxes closed).
void drain_control(supervisor_core& s) noexcept {
  s.control.close();
  while (auto m = s.control.try_recv()) {
    auto* ev = static_cast<sup_event*>(m->get()->data());
    if (ev->t == sup_event::type::add_group && ev->group) {
      for (auto& slot : ev->group->slots) {
        slot->state = node::run_state::stopped;
        slot->stopped.store(true, std::memory_order_release);
        slot->mb.close();
        slot->mb.drain_to_dead_letters();
      }
      std::lock_guard lock(ev->group->mu);
      ev->group->members.clear();
    } else if (ev->t == sup_event::type::add_supervisor && ev->sup) {
      ev->sup->state = node::run_state::stopped;
      ev->sup->stopped.store(true, std::memory_order_release);
      finalize_subtree(*ev->sup, false);
      drain_control(*ev->sup);
    }
  }
}

/// Stops `n` for good, its proc having ended (or never started).
void finalize_node(node& n, bool callbacks) noexcept {
  if (n.state == node::run_state::stopped) {
    return;
  }
  const bool ran = n.incarnation > 0;
  n.state = node::run_state::stopped;
  n.stopped.store(true, std::memory_order_release);
  leave_routes(n);
  if (n.kind_ == node::kind::actor) {
    auto& slot = static_cast<child_slot&>(n);
    slot.mb.close();
    slot.mb.drain_to_dead_letters();
    if (auto g = slot.group.lock()) {
      g->remove_member(&slot);
      if (callbacks && ran && g->spec.after_stop) {
        const child_ref ref{address{std::static_pointer_cast<child_slot>(slot.shared_from_this())}};
        guarded("after_stop", n, [&] { g->spec.after_stop(ref); });
      }
    }
  } else {
    auto& sup = static_cast<supervisor_core&>(n);
    finalize_subtree(sup, callbacks);
    drain_control(sup);
  }
  logger().debug("bastion: {} stopped", n.path);
}

} // namespace

void finalize_subtree(supervisor_core& s, bool callbacks) noexcept {
  for (auto e = s.elements.rbegin(); e != s.elements.rend(); ++e) {
    if (e->group) {
      for (auto it = e->group->slots.rbegin(); it != e->group->slots.rend(); ++it) {
        finalize_node(**it, callbacks);
      }
    } else if (e->sup) {
      finalize_node(*e->sup, callbacks);
    }
  }
}

namespace {

/// The state of one supervisor incarnation's loop.
class supervisor_loop {
public:
  supervisor_loop(std::shared_ptr<supervisor_core> self, std::uint64_t incarnation) noexcept
      : self_(std::move(self))
      , incarnation_(incarnation) {}

  task<> run(std::optional<failure> restart) {
    auto& s = *self_;
    for (auto& n : flatten()) {
      if (n->state == node::run_state::idle || n->state == node::run_state::down) {
        start_node(n, restart ? &*restart : nullptr);
      }
    }
    for (auto& e : s.elements) {
      if (e.group) {
        arm_heartbeat(e.group);
      }
    }
    for (;;) {
      message m = co_await s.control.recv();
      auto& ev = *static_cast<sup_event*>(m.get()->data());
      switch (ev.t) {
      case sup_event::type::child_exited:
        co_await on_exit(ev);
        break;
      case sup_event::type::restart_due:
        for (auto& n : ev.nodes) {
          if (n->state == node::run_state::pending && n->pending_token == ev.token) {
            n->state = node::run_state::down;
            start_node(n, &ev.fail);
          }
        }
        break;
      case sup_event::type::add_group:
        s.elements.push_back({ev.group, nullptr});
        for (auto& slot : ev.group->slots) {
          start_node(slot, nullptr);
        }
        arm_heartbeat(ev.group);
        break;
      case sup_event::type::add_supervisor:
        s.elements.push_back({nullptr, ev.sup});
        start_node(ev.sup, nullptr);
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
      case sup_event::type::kill_group:
        ev.group->halted = true;
        for (auto it = ev.group->slots.rbegin(); it != ev.group->slots.rend(); ++it) {
          co_await stop_node(*it, true, ev.t == sup_event::type::stop_group);
        }
        break;
      case sup_event::type::set_strategy:
        s.strategy.store(ev.strategy, std::memory_order_relaxed);
        break;
      case sup_event::type::stop:
      case sup_event::type::kill:
        if (ev.incarnation != 0 && ev.incarnation != incarnation_) {
          break; // meant for an earlier incarnation
        }
        co_await stop_all(ev.permanent, ev.t == sup_event::type::stop);
        co_return;
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
  /// Every node, in start order (groups' children in order, then the next element).
  [[nodiscard]] std::vector<std::shared_ptr<node>> flatten() const {
    std::vector<std::shared_ptr<node>> out;
    for (auto& e : self_->elements) {
      if (e.group) {
        out.insert(out.end(), e.group->slots.begin(), e.group->slots.end());
      } else if (e.sup) {
        out.push_back(e.sup);
      }
    }
    return out;
  }

  /// Spawns a new incarnation of `n` (running its start or restart callbacks around it).
  void start_node(const std::shared_ptr<node>& n, const failure* f) {
    auto& s = *self_;
    if (n->state == node::run_state::stopped || n->state == node::run_state::running) {
      return;
    }
    const bool restart = n->incarnation > 0;
    static const failure none{};
    const failure& why = f != nullptr ? *f : none;
    auto* rt = s.sys->rt;
    if (n->kind_ == node::kind::actor) {
      auto slot = std::static_pointer_cast<child_slot>(n);
      auto g = slot->group.lock();
      if (!g) {
        return;
      }
      const child_ref ref{address{slot}};
      if (restart) {
        if (g->spec.before_restart) {
          guarded("before_restart", *n, [&] { g->spec.before_restart(ref, why); });
        }
      } else if (g->spec.before_start) {
        guarded("before_start", *n, [&] { g->spec.before_start(ref); });
      }
      n->incarnation += 1;
      n->state = node::run_state::running;
      n->handle = rt->spawn(run_actor(slot, g, n->incarnation));
      join_routes(slot, *g);
      if (restart) {
        if (g->spec.after_restart) {
          guarded("after_restart", *n, [&] { g->spec.after_restart(ref, why); });
        }
      } else if (g->spec.after_start) {
        guarded("after_start", *n, [&] { g->spec.after_start(ref); });
      }
    } else {
      auto sup = std::static_pointer_cast<supervisor_core>(n);
      n->incarnation += 1;
      n->state = node::run_state::running;
      n->handle = rt->spawn(run_supervisor(
          sup, n->incarnation, restart ? std::optional<failure>(why) : std::nullopt));
    }
    if (restart) {
      logger().info("bastion: {} restarted (incarnation {})", n->path, n->incarnation);
    }
  }

  /// Ends `n`'s current incarnation: cancels an actor's proc (a child supervisor is asked to
  /// stop its subtree) and waits for it. `permanent`: stopped for good (mailbox closed,
  /// after_stop when `callbacks`), else down (to be restarted).
  task<> stop_node(std::shared_ptr<node> n, bool permanent, bool callbacks) {
    if (n->state == node::run_state::running) {
      if (n->kind_ == node::kind::actor) {
        n->handle.cancel();
      } else {
        sup_event ev{callbacks ? sup_event::type::stop : sup_event::type::kill};
        ev.permanent = permanent;
        ev.incarnation = n->incarnation;
        static_cast<supervisor_core&>(*n).post(std::move(ev));
      }
      (void)co_await std::move(n->handle).recover();
      n->state = node::run_state::down;
      leave_routes(*n);
    } else if (n->state == node::run_state::pending) {
      n->state = node::run_state::down;
    }
    if (permanent) {
      finalize_node(*n, callbacks);
    }
  }

  /// Stops every node in reverse start order.
  task<> stop_all(bool permanent, bool callbacks) {
    auto all = flatten();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      co_await stop_node(*it, permanent, callbacks);
    }
  }

  /// Starts the group's heartbeat timer (a one-shot proc posting `heartbeat` to this
  /// supervisor; re-armed after each evaluation) when it has a resizer and none is pending.
  void arm_heartbeat(const std::shared_ptr<group_state>& g) {
    if (!g->spec.resize || g->halted || !armed_.insert(g.get()).second) {
      return;
    }
    sup_event ev{sup_event::type::heartbeat};
    ev.group = g;
    ev.incarnation = incarnation_;
    self_->sys->rt->spawn(backoff_timer(self_, g->spec.heartbeat, std::move(ev))).detach();
  }

  /// Starts one more member of `g` (a new slot; its mailbox is new).
  void grow(const std::shared_ptr<group_state>& g) {
    auto& s = *self_;
    const auto cid = next_node_id();
    auto slot = std::make_shared<child_slot>(
        cid, g->path.child(cid), g->spec.name, self_, s.sys, g, g->spec.mailbox);
    g->slots.push_back(slot);
    {
      std::lock_guard lock(g->mu);
      g->members.push_back(slot);
    }
    start_node(slot, nullptr);
  }

  /// One resizer evaluation (see bastion::resizer for the rules). Bounds count running and
  /// backoff-pending members.
  task<> on_heartbeat(std::shared_ptr<group_state> g) {
    if (!g->spec.resize || g->halted) {
      co_return;
    }
    const auto& r = *g->spec.resize;
    std::vector<std::shared_ptr<child_slot>> live;
    std::size_t queued = 0;
    for (auto& sl : g->slots) {
      if (sl->state == node::run_state::running || sl->state == node::run_state::pending) {
        live.push_back(sl);
        queued += sl->mb.size();
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
      std::vector<std::shared_ptr<child_slot>> victims;
      for (auto it = live.rbegin(); it != live.rend() && victims.size() < remove; ++it) {
        if ((*it)->state == node::run_state::running && (*it)->mb.size() == 0) {
          victims.push_back(*it);
        }
      }
      for (auto& v : victims) {
        // Out of routing first, so no new routed message picks it; then a graceful stop.
        leave_routes(v, *g);
        g->remove_member(v.get());
        co_await stop_node(v, true, true);
        std::erase(g->slots, v);
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

  task<> on_exit(sup_event& ev) {
    auto& s = *self_;
    auto n = ev.n;
    if (n->incarnation != ev.incarnation || n->state != node::run_state::running) {
      co_return; // an incarnation this supervisor already ended
    }
    (void)co_await std::move(n->handle).recover();
    n->state = node::run_state::down;
    leave_routes(*n); // a failed member leaves its routes; it rejoins when restarted
    if (!ev.failed) {
      logger().debug("bastion: {} finished", n->path);
      finalize_node(*n, true);
      co_return;
    }
    failure f{ev.error, ev.msg, n->id};
    logger().warn("bastion: {} failed: {}", n->path, f.what());
    if (!s.restart.policy().allows(n->restarts)) {
      logger().warn("bastion: {} is not restarted (restart policy)", n->path);
      finalize_node(*n, true);
      co_return;
    }
    if (intensity_exceeded()) {
      gave_up_ = true;
      co_return;
    }
    const auto delay = s.restart.backoff().delay(n->restarts);
    n->restarts += 1;

    const auto strategy = s.strategy.load(std::memory_order_relaxed);
    auto all = flatten();
    std::vector<std::shared_ptr<node>> set;
    bool after = false;
    for (auto& x : all) {
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
    // Our rule: really stop the siblings (reverse start order) before any replacement starts.
    for (auto it = set.rbegin(); it != set.rend(); ++it) {
      if (*it != n) {
        co_await stop_node(*it, false, true);
      }
    }
    if (delay.count() == 0) {
      for (auto& x : set) {
        start_node(x, &f);
      }
      co_return;
    }
    logger().info("bastion: restarting {} in {} ms", n->path, delay.count());
    sup_event due{sup_event::type::restart_due};
    due.token = ++next_token_;
    due.fail = f;
    for (auto& x : set) {
      x->state = node::run_state::pending;
      x->pending_token = due.token;
    }
    due.nodes = std::move(set);
    s.sys->rt->spawn(backoff_timer(self_, delay, std::move(due))).detach();
  }

  std::shared_ptr<supervisor_core> self_;
  std::uint64_t incarnation_;
  std::deque<clock::time_point> restart_times_;
  std::uint64_t next_token_ = 0;
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
    sup_event ev{sup_event::type::child_exited};
    ev.n = self;
    ev.incarnation = incarnation;
    ev.failed = failed;
    ev.error = std::move(error);
    p->post(std::move(ev));
  } else {
    // The root: the system ends with it.
    if (failed) {
      logger().critical("bastion: the root supervisor failed: {}", failure{error, {}, 0}.what());
    }
    self->state = node::run_state::down;
    finalize_node(*self, !failed);
    self->sys->mark_stopped();
  }
}

} // namespace detail
} // namespace bastion
