// src/actor/refs.cpp: paths, addresses, child/children/supervisor refs, the context, and
// building groups and supervisors (bastion/actor/{address,refs,context,supervisor}.hpp).
#include <bastion/actor/address.hpp>
#include <bastion/actor/context.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/supervisor.hpp>

#include "node_ops.hpp"
#include "tree.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace bastion {

namespace {
const std::string& empty_string() noexcept {
  static const std::string s;
  return s;
}
const path& root_path() noexcept {
  static const path p;
  return p;
}
} // namespace

// ---- path ----

bool path::is_descendant_of(const path& other) const noexcept {
  return other.ids_.size() < ids_.size()
         && std::equal(other.ids_.begin(), other.ids_.end(), ids_.begin());
}

std::string path::to_string() const {
  std::string s = "/root";
  for (auto id : ids_) {
    s += '/';
    s += std::to_string(id);
  }
  return s;
}

// ---- address ----

std::uint64_t address::id() const noexcept {
  return slot_ ? slot_->id : 0;
}
const std::string& address::name() const {
  return slot_ ? slot_->group->name() : empty_string();
}
const path& address::path() const {
  return slot_ ? slot_->path() : root_path();
}
bool address::is_stopped() const noexcept {
  return !slot_ || slot_->stopped.load(std::memory_order_acquire);
}
bool address::send(message&& m) const {
  if (!slot_) {
    dead_letters::global().record(std::move(m), dead_letter_reason::unknown_target);
    return false;
  }
  return slot_->mb.try_send(std::move(m));
}
mailbox* address::mailbox_ptr() const noexcept {
  return slot_ ? &slot_->mb : nullptr;
}

// ---- child_ref ----

namespace {
void post_to_parent(const detail::slot_ptr& n, detail::sup_event::type t) {
  if (!n) {
    return;
  }
  if (auto p = n->group->sup.lock()) {
    auto ev = std::make_unique<detail::sup_event>(t);
    ev->n = detail::node_ref{n};
    p->post(std::move(ev));
  }
}
void post_group(const std::shared_ptr<detail::group_state>& g, detail::sup_event::type t) {
  if (!g) {
    return;
  }
  if (auto p = g->sup.lock()) {
    auto ev = std::make_unique<detail::sup_event>(t);
    ev->group = g;
    p->post(std::move(ev));
  }
}
} // namespace

void child_ref::stop() const {
  post_to_parent(addr_.slot(), detail::sup_event::type::stop_node);
}
void child_ref::kill() const {
  post_to_parent(addr_.slot(), detail::sup_event::type::kill_node);
}

// ---- children_ref ----

std::uint64_t children_ref::id() const noexcept {
  return g_ ? g_->id : 0;
}
const std::string& children_ref::name() const {
  return g_ ? g_->name() : empty_string();
}
const path& children_ref::path() const noexcept {
  return g_ ? g_->path : root_path();
}
std::vector<child_ref> children_ref::elems() const {
  std::vector<child_ref> out;
  if (!g_) {
    return out;
  }
  std::lock_guard lock(g_->mu);
  out.reserve(g_->count);
  for (auto* s = g_->first; s != nullptr; s = s->next) {
    out.emplace_back(address{detail::slot_ptr{s}});
  }
  return out;
}
std::size_t children_ref::size() const {
  if (!g_) {
    return 0;
  }
  std::lock_guard lock(g_->mu);
  return g_->count;
}
void children_ref::stop() const {
  post_group(g_, detail::sup_event::type::stop_group);
}
void children_ref::kill() const {
  post_group(g_, detail::sup_event::type::kill_group);
}

// ---- context ----

context::recv_operation context::recv() noexcept {
  return recv_operation{*this, slot_->mb};
}
std::optional<message> context::try_recv() {
  auto m = slot_->mb.try_recv();
  if (m) {
    note(*m);
  }
  return m;
}
child_ref context::signature() const {
  return child_ref{address{detail::slot_ptr{slot_}}};
}
children_ref context::parent() const {
  return children_ref{slot_->group};
}
supervisor_ref context::supervisor() const {
  return supervisor_ref{slot_->group->sup.lock()};
}
std::uint64_t context::id() const noexcept {
  return slot_->id;
}
std::uint64_t context::incarnation() const noexcept {
  return slot_->incarnation;
}
mailbox& context::mailbox_ref() const noexcept {
  return slot_->mb;
}
std::optional<message_info> context::current_message() const {
  if (cur_type_ == nullptr) {
    return std::nullopt;
  }
  return message_info{cur_kind_, cur_type_, cur_sender_, nullptr};
}
std::optional<message_info> context::take_failed_message() noexcept {
  std::optional<message_info> info;
  if (cur_type_ != nullptr) {
    info.emplace();
    info->kind = cur_kind_;
    info->type = cur_type_;
    info->sender_id = cur_sender_;
    if (held_) {
      try {
        info->envelope = std::make_shared<const message>(std::move(held_));
      } catch (...) {
        // No memory for the shared envelope: the failure keeps the message's info only.
      }
    }
  }
  held_ = message{};
  return info;
}

// ---- supervisor_ref and builder ----

std::uint64_t supervisor_ref::id() const noexcept {
  return c_ ? c_->id : 0;
}
const path& supervisor_ref::path() const noexcept {
  return c_ ? c_->path : root_path();
}
std::size_t supervisor_ref::size() const noexcept {
  return c_ ? c_->element_count.load(std::memory_order_relaxed) : 0;
}
void supervisor_ref::strategy(supervision_strategy s) const {
  if (c_) {
    auto ev = std::make_unique<detail::sup_event>(detail::sup_event::type::set_strategy);
    ev->strategy = s;
    c_->post(std::move(ev));
  }
}
void supervisor_ref::stop() const {
  if (c_) {
    c_->post(std::make_unique<detail::sup_event>(detail::sup_event::type::stop));
  }
}
void supervisor_ref::kill() const {
  if (c_) {
    c_->post(std::make_unique<detail::sup_event>(detail::sup_event::type::kill));
  }
}

supervisor_builder& supervisor_builder::strategy(supervision_strategy s) {
  c_->strategy.store(s, std::memory_order_relaxed);
  return *this;
}
supervisor_builder& supervisor_builder::restart(restart_strategy r) {
  c_->restart = r;
  return *this;
}
void supervisor_builder::set_before_start(std::function<void(const supervisor_ref&)> f) {
  c_->callbacks.before_start = std::move(f);
}
void supervisor_builder::set_after_start(std::function<void(const supervisor_ref&)> f) {
  c_->callbacks.after_start = std::move(f);
}
void supervisor_builder::set_before_restart(
    std::function<void(const supervisor_ref&, const failure&)> f) {
  c_->callbacks.before_restart = std::move(f);
}
void supervisor_builder::set_after_restart(
    std::function<void(const supervisor_ref&, const failure&)> f) {
  c_->callbacks.after_restart = std::move(f);
}
void supervisor_builder::set_after_stop(std::function<void(const supervisor_ref&)> f) {
  c_->callbacks.after_stop = std::move(f);
}

namespace detail {

children_ref
add_group(const std::shared_ptr<supervisor_core>& sup, children_spec&& spec, bool post) {
  if (!sup) {
    throw std::invalid_argument("bastion: adding a children group to an empty supervisor_ref");
  }
  if (!spec.exec) {
    throw std::invalid_argument("bastion::children_builder: exec is not set");
  }
  const auto id = next_node_id();
  auto p = sup->path.child(id);
  const bool named = !spec.name.empty(); // an unnamed group's name is built on demand
  const auto cfg = spec.mailbox;
  const auto n = spec.redundancy;
  auto g = std::allocate_shared<group_state>(
      cached_allocator<group_state>{}, id, std::move(p), std::move(spec), sup, sup->sys);
  auto& sink = *sup->sys->sink;
  std::unique_ptr<sup_event> ev;
  bool prestart = false;
  try {
    {
      std::lock_guard lock(g->mu); // uncontended (nobody else knows g yet): taken once
      for (std::size_t i = 0; i < n; ++i) {
        g->link_locked(new child_slot(next_node_id(), g, cfg, sink)); // adopts the reference
      }
    }
    if (post) {
      ev = std::make_unique<sup_event>(sup_event::type::add_group);
      ev->group = g;
      // A plain group under a running system: its creator starts the members (see
      // prestart_group), the supervisor only attaches it. (Before the registration, which
      // publishes the group to find_group.)
      prestart = can_prestart(*g);
      if (prestart) {
        prestart_group(*g, *sup);
      }
    }
    if (named) {
      sup->sys->register_group(*g);
    }
  } catch (...) {
    g->close_unstarted(); // the members made so far refer to g: let them go
    sup->sys->unregister_group(*g);
    throw;
  }
  if (post) {
    if (!sup->post(std::move(ev))) {
      // The supervisor is gone for good: so is the group.
      if (prestart) {
        cancel_prestarted(*g);
      }
      g->close_unstarted();
      sup->sys->unregister_group(*g);
    } else if (prestart) {
      submit_prestarted(*g);
    }
  } else {
    sup->attach(g);
  }
  return children_ref{std::move(g)};
}

std::shared_ptr<supervisor_core> make_supervisor(const std::shared_ptr<supervisor_core>& sup) {
  if (!sup) {
    throw std::invalid_argument("bastion: adding a supervisor to an empty supervisor_ref");
  }
  const auto id = next_node_id();
  return std::make_shared<supervisor_core>(id, sup->path.child(id), sup, sup->sys);
}

void attach_supervisor(
    const std::shared_ptr<supervisor_core>& sup,
    const std::shared_ptr<supervisor_core>& child,
    bool post) {
  if (post) {
    auto ev = std::make_unique<sup_event>(sup_event::type::add_supervisor);
    ev->sup = child;
    if (!sup->post(std::move(ev))) {
      child->state = node::run_state::stopped;
      child->stopped.store(true, std::memory_order_release);
      finalize_subtree(*child, false);
      drain_control(*child);
    }
  } else {
    sup->attach(child);
  }
}

} // namespace detail
} // namespace bastion
