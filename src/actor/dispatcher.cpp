// src/actor/dispatcher.cpp: the process-wide dispatcher registry, member lists and the default
// round-robin handler (bastion/actor/dispatcher.hpp).
#include <bastion/actor/context.hpp>
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/dispatcher.hpp>
#include <bastion/log.hpp>

#include "named_registry.hpp"
#include "tree.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace bastion {
namespace detail {

/// One registry entry.
///
/// Concurrency design: `name` is immutable; the rest is guarded by `mu`. Handlers and
/// notifications are copied out under `mu` and run without it.
class dispatcher_state {
public:
  explicit dispatcher_state(std::string n)
      : name(std::move(n)) {}

  const std::string name;
  std::mutex mu;
  std::vector<child_ref> members; ///< join order, no duplicates
  std::size_t cursor = 0;         ///< the default handler's round-robin position
  dispatcher::handler_fn handler; ///< empty: round-robin
  dispatcher::notify_fn on_register;
  dispatcher::notify_fn on_remove;
};

namespace {
void notify(const dispatcher::notify_fn& f, const child_ref& c, const std::string& name) {
  if (!f) {
    return;
  }
  try {
    f(c);
  } catch (const std::exception& e) {
    logger().error("bastion: a notification of dispatcher \"{}\" threw: {}", name, e.what());
  } catch (...) {
    logger().error("bastion: a notification of dispatcher \"{}\" threw", name);
  }
}
} // namespace

bool dispatcher_dispatch(const std::shared_ptr<dispatcher_state>& s, message&& m) {
  if (!s) {
    dead_letters::global().record(std::move(m), dead_letter_reason::unknown_target);
    return false;
  }
  std::unique_lock lock(s->mu);
  std::erase_if(s->members, [](const child_ref& c) { return c.is_stopped(); });
  if (s->members.empty()) {
    lock.unlock();
    dead_letters::global().record(std::move(m), dead_letter_reason::unknown_target);
    return false;
  }
  if (!s->handler) {
    auto to = s->members[s->cursor++ % s->members.size()];
    lock.unlock();
    return to.address().send(std::move(m));
  }
  auto members = s->members;
  auto handler = s->handler;
  lock.unlock();
  return handler(members, std::move(m));
}

void dispatcher_join(const std::shared_ptr<dispatcher_state>& s, const child_ref& c) {
  if (!s) {
    return;
  }
  dispatcher::notify_fn f;
  {
    std::lock_guard lock(s->mu);
    if (std::find(s->members.begin(), s->members.end(), c) != s->members.end()) {
      return;
    }
    s->members.push_back(c);
    f = s->on_register;
  }
  notify(f, c, s->name);
}

void dispatcher_leave(const std::shared_ptr<dispatcher_state>& s, const child_ref& c) {
  if (!s) {
    return;
  }
  dispatcher::notify_fn f;
  {
    std::lock_guard lock(s->mu);
    if (std::erase(s->members, c) == 0) {
      return;
    }
    f = s->on_remove;
  }
  notify(f, c, s->name);
}

std::vector<std::shared_ptr<dispatcher_state>> dispatchers_of(const context& ctx) {
  std::vector<std::shared_ptr<dispatcher_state>> out;
  const auto group = ctx.parent();
  const auto& g = group.state();
  if (g) {
    for (const auto& d : g->spec.dispatchers) {
      out.push_back(d.state());
    }
  }
  return out;
}

} // namespace detail

dispatcher dispatcher::named(std::string_view name) {
  return dispatcher{detail::named_state<detail::dispatcher_state>(name)};
}

const std::string& dispatcher::name() const noexcept {
  static const std::string empty;
  return s_ ? s_->name : empty;
}

std::vector<child_ref> dispatcher::members() const {
  if (!s_) {
    return {};
  }
  std::lock_guard lock(s_->mu);
  std::erase_if(s_->members, [](const child_ref& c) { return c.is_stopped(); });
  return s_->members;
}

namespace {
detail::dispatcher_state& checked(const std::shared_ptr<detail::dispatcher_state>& s) {
  if (!s) {
    throw std::logic_error("bastion::dispatcher: empty handle");
  }
  return *s;
}
} // namespace

const dispatcher& dispatcher::handler(handler_fn f) const {
  auto& s = checked(s_);
  std::lock_guard lock(s.mu);
  s.handler = std::move(f);
  return *this;
}
const dispatcher& dispatcher::on_register(notify_fn f) const {
  auto& s = checked(s_);
  std::lock_guard lock(s.mu);
  s.on_register = std::move(f);
  return *this;
}
const dispatcher& dispatcher::on_remove(notify_fn f) const {
  auto& s = checked(s_);
  std::lock_guard lock(s.mu);
  s.on_remove = std::move(f);
  return *this;
}

} // namespace bastion
