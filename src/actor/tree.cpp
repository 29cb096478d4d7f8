// src/actor/tree.cpp: the supervision tree's data structures (tree.hpp): the control queue,
// child slots (intrusive count, exit notes), groups' member lists, the name registry.
#include "tree.hpp"

#include <bastion/log.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iterator>
#include <stdexcept>
#include <thread>
#include <utility>

namespace bastion::detail {

std::uint64_t next_node_id() noexcept {
  return next_unique_id<node, 256>();
}

dead_letters& control_sink() noexcept {
  static auto* sink = new dead_letters; // never destroyed: control queues may outlive statics
  return *sink;
}

// ---- control_queue ----

bool control_queue::push(control_node* n) noexcept {
  if ((gate_.fetch_add(1, std::memory_order_acq_rel) & closed_bit) != 0) {
    gate_.fetch_sub(1, std::memory_order_release);
    return false;
  }
  q_.push(n);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  consumer_.take().wake();
  gate_.fetch_sub(1, std::memory_order_release);
  return true;
}

void control_queue::push_note(control_node* n) noexcept {
  q_.push(n);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  consumer_.take().wake();
}

control_node* control_queue::try_pop() noexcept {
  return static_cast<control_node*>(q_.pop());
}

void control_queue::close() noexcept {
  gate_.fetch_or(closed_bit, std::memory_order_acq_rel);
  while ((gate_.load(std::memory_order_acquire) & ~closed_bit) != 0) {
    std::this_thread::yield(); // a push is between its two steps
  }
}

bool control_queue::next_operation::await_suspend(std::coroutine_handle<> h) {
  auto* cur = current_proc();
  if (cur == nullptr) {
    throw std::logic_error("bastion: a supervisor's control queue awaited outside a proc");
  }
  cur->set_resume_point(h);
  if (!park(cur)) {
    return false;
  }
  ready = &has_node;
  cur->set_resume_guard(this);
  return true;
}

bool control_queue::next_operation::has_node(resume_guard* g, proc_header* p) noexcept {
  auto& op = *static_cast<next_operation*>(g);
  if (op.n_ != nullptr) {
    return true; // taken before suspending; this is the wake that was on its way
  }
  if ((op.n_ = op.q_.try_pop()) != nullptr) {
    return true;
  }
  // A late wake, or a node not linked yet (its pusher wakes us): park again.
  return !op.park(p);
}

bool control_queue::next_operation::park(proc_header* p) noexcept {
  q_.consumer_.publish(p);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  n_ = q_.try_pop();
  // Empty, or a pusher is between its two push steps: it links, fences and then takes the
  // waker, so it wakes us (see the class comment). No spinning. A node in hand with the waker
  // taken: its wake is coming, so stay parked until it does.
  return n_ == nullptr || !q_.consumer_.retract();
}

control_node* control_queue::next_operation::await_resume() noexcept {
  if (parked()) {
    ready = nullptr;
    (void)q_.consumer_.retract();
  }
  return n_;
}

// ---- child slots ----

namespace {

/// Queues `s`'s exit note to its supervisor, consuming one reference on `s` (the queue keeps
/// it while the note is in; otherwise it is dropped). The supervisor settles this exit (its
/// settle_exit claims it, if the completion did not hand it over already).
void queue_exit(child_slot* s) noexcept {
  if (!s->exit_queued.exchange(true, std::memory_order_acq_rel)) {
    if (auto sup = s->group->sup.lock()) {
      sup->control.push_note(s); // the queue owns the reference now
      return;
    }
    // No supervisor to tell (it is gone): nobody looks at this slot's exits any more.
  }
  release_slot(s);
}

/// True when members of `g` that return normally settle their own exit (child_slot): the
/// supervisor would have nothing to run for them (no after_stop, no routes to leave).
bool settles_itself(const group_state& g) noexcept {
  return !g.spec.after_stop && !g.has_routes();
}

/// The self-settled end of `s` (exit_owner is exit_self): what the supervisor's
/// settle_exit and finalize_node do for a finished child, on the completing thread.
/// Consumes one reference on `s` (the waker's).
void settle_self(child_slot* s) noexcept {
  auto& g = *s->group;
  s->stopped.store(true, std::memory_order_release);
  s->mb.close_without_consumer(); // its proc returned: nobody waits in recv
  s->mb.drain_to_dead_letters();
  s->ctx.reset();
  s->handle.detach(); // the proc (and its frame) goes once its completion lets go
  if (logger().should_log(spdlog::level::debug)) {
    try {
      logger().debug("bastion: {} finished", s->path());
    } catch (...) {
    }
  }
  bool left_empty = false;
  slot_ptr list_ref = g.unlink(s, &left_empty);
  if (left_empty && !g.spec.resize) {
    // Left empty: its supervisor takes it out of its elements (and the name registry).
    if (auto sup = g.sup.lock()) {
      try {
        auto ev = std::make_unique<sup_event>(sup_event::type::retire_group);
        ev->group = g.shared_from_this();
        (void)sup->post(std::move(ev)); // a closed queue: the supervisor's end settles it
      } catch (...) {
        // No memory: the empty group stays an element until its supervisor stops.
      }
    }
  }
  list_ref = {};
  release_slot(s);
}

// The null checks cannot fire (a waker never holds null); they spare g++-12 a false
// -Wstringop-overflow on the null path of the base-to-derived cast.
/// The slot's waker entry: its proc's completion (wake), or the waker let go unused (drop).
void exit_entry(wake_target* t, wake_mode m) noexcept {
  auto* s = static_cast<child_slot*>(t);
  if (s == nullptr) {
    return;
  }
  if (m == wake_mode::drop) {
    release_slot(s);
    return;
  }
  if (settles_itself(*s->group)) {
    auto open = slot_header::exit_open;
    if (s->exit_owner.compare_exchange_strong(
            open, slot_header::exit_busy, std::memory_order_acq_rel)) {
      // Ours to decide: the supervisor waits (claim_exit) and touches nothing meanwhile.
      const auto* p = s->handle.proc();
      if ((p->load_state() & proc_header::closed) == 0 && !p->ended_by_exception()) {
        s->exit_owner.store(slot_header::exit_self, std::memory_order_release);
        settle_self(s);
        return;
      }
      s->exit_owner.store(slot_header::exit_supervisor, std::memory_order_release);
    }
  }
  queue_exit(s);
}

} // namespace

void retain_slot(child_slot* s) noexcept {
  s->refs.fetch_add(1, std::memory_order_relaxed);
}

bool claim_exit(child_slot& s) noexcept {
  auto o = s.exit_owner.load(std::memory_order_acquire);
  for (;;) {
    switch (o) {
    case slot_header::exit_supervisor:
      return true;
    case slot_header::exit_self:
      return false;
    case slot_header::exit_open:
      if (s.exit_owner.compare_exchange_weak(
              o, slot_header::exit_supervisor, std::memory_order_acq_rel)) {
        return true;
      }
      break;
    default: // busy: the completion decides within a few instructions
      std::this_thread::yield();
      o = s.exit_owner.load(std::memory_order_acquire);
      break;
    }
  }
}

void release_slot(child_slot* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    delete s;
  }
}

child_slot::child_slot(
    std::uint64_t id, std::shared_ptr<group_state> g, mailbox_config cfg, dead_letters& sink)
    : node(kind::actor, id)
    , group(std::move(g))
    , mb(cfg, sink)
    , ctx(*this) {
  wake_fn_ = &exit_entry;
}

child_slot::~child_slot() {
  delete path_.load(std::memory_order_acquire);
}

const bastion::path& child_slot::path() const {
  if (auto* p = path_.load(std::memory_order_acquire)) {
    return *p;
  }
  auto fresh = std::make_unique<bastion::path>(group->path.child(id));
  bastion::path* expected = nullptr;
  if (path_.compare_exchange_strong(
          expected, fresh.get(), std::memory_order_acq_rel, std::memory_order_acquire)) {
    return *fresh.release();
  }
  return *expected; // another thread built it first
}

void arm_exit(child_slot& s) noexcept {
  retain_slot(&s); // the waker's reference
  if (!s.handle.proc()->register_join_waiter(waker{static_cast<wake_target*>(&s)})) {
    // Already over: the waker was dropped with its reference; queue the note directly.
    retain_slot(&s);
    queue_exit(&s);
  }
}

// ---- groups ----

group_state::~group_state() {
  if (registered) {
    sys->unregister_group(*this);
  }
  delete auto_name_.load(std::memory_order_acquire);
}

const std::string& group_state::name() const {
  if (!spec.name.empty()) {
    return spec.name;
  }
  if (auto* n = auto_name_.load(std::memory_order_acquire)) {
    return *n;
  }
  auto fresh = std::make_unique<std::string>(fmt::format("children-{}", id));
  std::string* expected = nullptr;
  if (auto_name_.compare_exchange_strong(
          expected, fresh.get(), std::memory_order_acq_rel, std::memory_order_acquire)) {
    return *fresh.release();
  }
  return *expected; // another thread built it first
}

void group_state::link(child_slot* s) noexcept {
  std::lock_guard lock(mu);
  link_locked(s);
}

void group_state::link_locked(child_slot* s) noexcept {
  s->prev = last;
  s->next = nullptr;
  if (last != nullptr) {
    last->next = s;
  } else {
    first = s;
  }
  last = s;
  s->linked = true;
  ++count;
}

slot_ptr group_state::unlink(child_slot* s, bool* left_empty) noexcept {
  std::lock_guard lock(mu);
  if (!s->linked) {
    if (left_empty != nullptr) {
      *left_empty = false;
    }
    return {};
  }
  (s->prev != nullptr ? s->prev->next : first) = s->next;
  (s->next != nullptr ? s->next->prev : last) = s->prev;
  s->prev = nullptr;
  s->next = nullptr;
  s->linked = false;
  --count;
  if (left_empty != nullptr) {
    *left_empty = count == 0;
  }
  return slot_ptr::adopt(s);
}

void group_state::wait_prestarted() const noexcept {
  // The creator posts the group before it queues the members (prestart_group) and may still
  // be at it on another thread; it does not suspend in between, so this wait is short.
  while (prestart_phase.load(std::memory_order_acquire) == 1) {
    std::this_thread::yield();
  }
}

bool group_state::empty() const noexcept {
  std::lock_guard lock(mu);
  return count == 0;
}

std::vector<slot_ptr> group_state::members() const {
  std::vector<slot_ptr> out;
  std::lock_guard lock(mu);
  out.reserve(count);
  for (auto* s = first; s != nullptr; s = s->next) {
    out.emplace_back(s);
  }
  return out;
}

void group_state::close_unstarted() noexcept {
  wait_prestarted();
  for (;;) {
    slot_ptr s;
    {
      std::lock_guard lock(mu);
      if (first == nullptr) {
        return;
      }
      s = slot_ptr{first};
    }
    if (!claim_exit(*s)) {
      // A prestarted member that returned and settled its own exit: it is leaving.
      (void)unlink(s.get());
      continue;
    }
    if (s->handle.valid()) {
      // Its creator started it (prestart_group) but no supervisor took the group: end it
      // first (cancelled and waited for; on a worker the wait keeps running other procs), so
      // that nothing below races with a running body.
      s->handle.cancel();
      try {
        std::move(s->handle).join();
      } catch (...) {
        // proc_cancelled, or the body's own failure: either way it is over.
      }
    }
    s->state = node::run_state::stopped;
    s->stopped.store(true, std::memory_order_release);
    s->mb.close();
    s->mb.drain_to_dead_letters();
    s->ctx.reset();
    (void)unlink(s.get());
  }
}

// ---- node_ref ----

node_ref::node_ref(slot_ptr s) noexcept
    : n_(s.get())
    , slot_(std::move(s)) {
}

node_ref::node_ref(std::shared_ptr<supervisor_core> s) noexcept
    : n_(s.get())
    , sup_(std::move(s)) {
}

// ---- supervisor_core ----

supervisor_core::~supervisor_core() {
  // Nobody can push any more (pushers hold a strong reference); settle what nobody took.
  while (auto* cn = control.try_pop()) {
    if (cn->what == control_node::tag::exit) {
      auto* s = static_cast<child_slot*>(cn);
      s->exit_queued.store(false, std::memory_order_relaxed);
      release_slot(s);
    } else {
      std::unique_ptr<sup_event> ev{static_cast<sup_event*>(cn)};
      if (ev->t == sup_event::type::add_group && ev->group) {
        ev->group->close_unstarted();
      }
    }
  }
}

void supervisor_core::attach(const std::shared_ptr<group_state>& g) {
  elements.push_back({g, nullptr});
  g->pos = std::prev(elements.end());
  g->attached = true;
  element_count.store(elements.size(), std::memory_order_relaxed);
}

void supervisor_core::attach(const std::shared_ptr<supervisor_core>& child) {
  elements.push_back({nullptr, child});
  child->pos = std::prev(elements.end());
  child->attached = true;
  element_count.store(elements.size(), std::memory_order_relaxed);
}

void supervisor_core::detach(group_state& g) noexcept {
  if (g.attached) {
    g.attached = false;
    elements.erase(g.pos); // may drop a reference to g: the caller holds another
    element_count.store(elements.size(), std::memory_order_relaxed);
  }
}

void supervisor_core::detach(supervisor_core& child) noexcept {
  if (child.attached) {
    child.attached = false;
    elements.erase(child.pos);
    element_count.store(elements.size(), std::memory_order_relaxed);
  }
}

bool supervisor_core::post(std::unique_ptr<sup_event> ev) {
  if (control.push(ev.get())) {
    (void)ev.release(); // the queue owns it now
    return true;
  }
  return false;
}

// ---- registry ----

void system_core::register_group(group_state& g) {
  std::lock_guard lock(mu);
  auto& e = names.try_emplace(g.spec.name).first->second;
  g.reg_prev = e.last;
  g.reg_next = nullptr;
  (e.last != nullptr ? e.last->reg_next : e.first) = &g;
  e.last = &g;
  g.registered = true;
}

void system_core::unregister_group(group_state& g) noexcept {
  std::lock_guard lock(mu);
  if (!g.registered) {
    return;
  }
  auto it = names.find(g.spec.name);
  if (it != names.end()) {
    auto& e = it->second;
    (g.reg_prev != nullptr ? g.reg_prev->reg_next : e.first) = g.reg_next;
    (g.reg_next != nullptr ? g.reg_next->reg_prev : e.last) = g.reg_prev;
    if (e.first == nullptr) {
      names.erase(it);
    }
  }
  g.reg_prev = nullptr;
  g.reg_next = nullptr;
  g.registered = false;
}

} // namespace bastion::detail
