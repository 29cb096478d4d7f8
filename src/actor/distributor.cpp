// src/actor/distributor.cpp: the process-wide distributor registry and member lists
// (bastion/actor/distributor.hpp).
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/distributor.hpp>

#include "named_registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>

namespace bastion {

namespace {
std::string errc_text(distributor_errc c, const std::string& name) {
  switch (c) {
  case distributor_errc::no_such_distributor:
    return fmt::format(
        "bastion::distributor: no distributor named \"{}\" (nobody subscribed)", name);
  case distributor_errc::no_recipients:
    return fmt::format("bastion::distributor: \"{}\" has no recipients right now", name);
  }
  return "bastion::distributor: error";
}
} // namespace

distributor_error::distributor_error(distributor_errc c, const std::string& name)
    : std::runtime_error(errc_text(c, name))
    , code_(c)
    , name_(name) {
}

namespace detail {

/// One registry entry.
///
/// Concurrency design: `name` is immutable; everything else is guarded by `mu` (senders,
/// supervisors joining and leaving members, subscribe/unsubscribe all take it briefly; no
/// callback runs under it).
class distributor_state {
public:
  explicit distributor_state(std::string n)
      : name(std::move(n)) {}

  const std::string name;
  std::mutex mu;
  std::vector<address> members; ///< join order, no duplicates
  std::size_t cursor = 0;       ///< round-robin position
  bool known = false;           ///< some builder or subscribe() named it
};

namespace {

[[noreturn]] void fail(const distributor_state* s, bool known, message& m) {
  dead_letters::global().record(std::move(m), dead_letter_reason::unknown_target);
  static const std::string empty;
  throw distributor_error(
      known ? distributor_errc::no_recipients : distributor_errc::no_such_distributor,
      s != nullptr ? s->name : empty);
}

/// Drops members stopped for good. Caller holds s.mu.
void prune(distributor_state& s) {
  std::erase_if(s.members, [](const address& a) { return a.is_stopped(); });
}
} // namespace

address distributor_pick(const std::shared_ptr<distributor_state>& s, message& m) {
  if (!s) {
    fail(nullptr, false, m);
  }
  std::unique_lock lock(s->mu);
  prune(*s);
  if (s->members.empty()) {
    const bool known = s->known;
    lock.unlock();
    fail(s.get(), known, m);
  }
  auto a = s->members[s->cursor++ % s->members.size()];
  return a;
}

std::vector<address> distributor_members(const std::shared_ptr<distributor_state>& s, message& m) {
  if (!s) {
    fail(nullptr, false, m);
  }
  std::unique_lock lock(s->mu);
  prune(*s);
  if (s->members.empty()) {
    const bool known = s->known;
    lock.unlock();
    fail(s.get(), known, m);
  }
  return s->members;
}

void distributor_join(const std::shared_ptr<distributor_state>& s, const address& a) {
  if (!s || !a.slot()) {
    return;
  }
  std::lock_guard lock(s->mu);
  s->known = true;
  if (std::find(s->members.begin(), s->members.end(), a) == s->members.end()) {
    s->members.push_back(a);
  }
}

void distributor_leave(const std::shared_ptr<distributor_state>& s, const address& a) {
  if (!s) {
    return;
  }
  std::lock_guard lock(s->mu);
  std::erase(s->members, a);
}

void distributor_mark_known(const std::shared_ptr<distributor_state>& s) {
  if (s) {
    std::lock_guard lock(s->mu);
    s->known = true;
  }
}

} // namespace detail

distributor distributor::named(std::string_view name) {
  return distributor{detail::named_state<detail::distributor_state>(name)};
}

const std::string& distributor::name() const noexcept {
  static const std::string empty;
  return s_ ? s_->name : empty;
}

std::vector<child_ref> distributor::members() const {
  std::vector<child_ref> out;
  if (!s_) {
    return out;
  }
  std::lock_guard lock(s_->mu);
  detail::prune(*s_);
  out.reserve(s_->members.size());
  for (const auto& a : s_->members) {
    out.emplace_back(a);
  }
  return out;
}

std::size_t distributor::size() const {
  if (!s_) {
    return 0;
  }
  std::lock_guard lock(s_->mu);
  detail::prune(*s_);
  return s_->members.size();
}

void distributor::subscribe(const child_ref& child) const {
  if (!s_) {
    throw distributor_error(distributor_errc::no_such_distributor, "");
  }
  detail::distributor_join(s_, child.address());
}

void distributor::unsubscribe(const child_ref& child) const {
  detail::distributor_leave(s_, child.address());
}

} // namespace bastion
