// bastion/actor/children.hpp: children_builder, the description of a children group: the
// actor body, how many identical children run it, their mailbox and their callbacks.
#pragma once

#include <bastion/actor/context.hpp>
#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/resizer.hpp>
#include <bastion/actor/restart.hpp>
#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace bastion {

namespace detail {
/// What a children_builder collects; the group keeps it for every (re)start.
struct children_spec {
  std::string name;
  std::size_t redundancy = 1;
  std::function<task<>(context&)> exec;
  mailbox_config mailbox;
  std::function<void(const child_ref&)> before_start;
  std::function<void(const child_ref&)> after_start;
  std::function<void(const child_ref&, const failure&)> before_restart;
  std::function<void(const child_ref&, const failure&)> after_restart;
  std::function<void(const child_ref&)> after_stop;
  std::vector<distributor> distributors;
  std::vector<dispatcher> dispatchers;
  std::optional<bastion::resizer> resize;
  std::chrono::milliseconds heartbeat{100};
};

template <class F>
std::function<void(const child_ref&)> wrap_child_callback(F&& f) {
  if constexpr (std::is_invocable_v<F&, const child_ref&>) {
    return std::forward<F>(f);
  } else {
    static_assert(std::is_invocable_v<F&>, "a callback takes (const child_ref&) or ()");
    return [g = std::forward<F>(f)](const child_ref&) mutable {
      g();
    };
  }
}
template <class F>
std::function<void(const child_ref&, const failure&)> wrap_restart_callback(F&& f) {
  if constexpr (std::is_invocable_v<F&, const child_ref&, const failure&>) {
    return std::forward<F>(f);
  } else if constexpr (std::is_invocable_v<F&, const failure&>) {
    return [g = std::forward<F>(f)](const child_ref&, const failure& x) mutable {
      g(x);
    };
  } else {
    static_assert(
        std::is_invocable_v<F&>,
        "a restart callback takes (const child_ref&, const failure&), (const failure&) or ()");
    return [g = std::forward<F>(f)](const child_ref&, const failure&) mutable {
      g();
    };
  }
}
} // namespace detail

/// Describes a children group (Rust Bastion's Children): `redundancy` identical children, each
/// running `exec` anew on every (re)start. Used inside `sys.children(F)` /
/// `supervisor_builder::children(F)`; the group is created when F returns.
///
/// Body outcome: returning normally = the child finished (not restarted; after_stop runs);
/// an exception = a failure, restarted per the supervisor's restart strategy.
///
/// Callbacks run on the supervisor's proc, one at a time, in this order for each child:
/// before_start → (body spawned) → after_start; on a restart before_restart(failure) →
/// (new incarnation spawned) → after_restart(failure); after_stop once the child is stopped
/// for good (stopped, finished, or not restarted; not after kill). A callback takes the
/// child's ref (or nothing); restart callbacks also (or only) the failure. A callback's
/// exception is caught and logged. Keep them short: the supervisor waits for them.
/// Thread-safety: a builder is used by one thread, inside the function that receives it.
class children_builder {
public:
  /// The group's name (also each child's name, and the key of system::find_group: only
  /// named groups are registered there). Default: unnamed, called "children-<id>".
  children_builder& name(std::string n) {
    spec_.name = std::move(n);
    return *this;
  }
  /// Number of identical children (default 1). Throws std::invalid_argument naming
  /// "redundancy" when n < 1.
  children_builder& redundancy(std::size_t n) {
    if (n < 1) {
      throw std::invalid_argument("bastion::children_builder: redundancy must be at least 1");
    }
    spec_.redundancy = spec_.resize ? spec_.resize->clamp(n) : n;
    return *this;
  }
  /// The actor body: a callable `task<>(bastion::context&)`, called anew on every start.
  /// Captures live as long as the group (the callable is kept, not copied per start).
  template <class F>
    requires std::is_invocable_r_v<task<>, F&, context&>
  children_builder& exec(F&& f) {
    spec_.exec = std::forward<F>(f);
    return *this;
  }
  /// Each child's mailbox bound and overflow policy (default unbounded).
  children_builder& mailbox(mailbox_config cfg) noexcept {
    spec_.mailbox = cfg;
    return *this;
  }
  /// Runs before each child's first start.
  template <class F>
  children_builder& before_start(F&& f) {
    spec_.before_start = detail::wrap_child_callback(std::forward<F>(f));
    return *this;
  }
  /// Runs right after each child's first start (its body may already run elsewhere).
  template <class F>
  children_builder& after_start(F&& f) {
    spec_.after_start = detail::wrap_child_callback(std::forward<F>(f));
    return *this;
  }
  /// Runs before a child's new incarnation is spawned; receives the failure.
  template <class F>
  children_builder& before_restart(F&& f) {
    spec_.before_restart = detail::wrap_restart_callback(std::forward<F>(f));
    return *this;
  }
  /// Runs after a child's new incarnation is spawned; receives the failure.
  template <class F>
  children_builder& after_restart(F&& f) {
    spec_.after_restart = detail::wrap_restart_callback(std::forward<F>(f));
    return *this;
  }
  /// Runs once a child is stopped for good (after its body ended).
  template <class F>
  children_builder& after_stop(F&& f) {
    spec_.after_stop = detail::wrap_child_callback(std::forward<F>(f));
    return *this;
  }

  /// Subscribes the group to `d`: each child joins it when it starts, leaves it when it stops
  /// or fails, and joins again when restarted (whichever way the group is created). May be
  /// called for several distributors. Marks `d` known at once (before start, sends to it throw
  /// distributor_error no_recipients rather than no_such_distributor). Throws
  /// std::invalid_argument for an empty handle.
  children_builder& distributor(const bastion::distributor& d) {
    if (!d.state()) {
      throw std::invalid_argument("bastion::children_builder: empty distributor handle");
    }
    detail::distributor_mark_known(d.state());
    spec_.distributors.push_back(d);
    return *this;
  }
  /// Registers the group's children with `d` (same membership rules as distributor()).
  /// Throws std::invalid_argument for an empty handle.
  children_builder& dispatcher(const bastion::dispatcher& d) {
    if (!d.state()) {
      throw std::invalid_argument("bastion::children_builder: empty dispatcher handle");
    }
    spec_.dispatchers.push_back(d);
    return *this;
  }
  /// Auto-scales the group between r.lower() and r.upper() (see bastion::resizer); the
  /// redundancy is clamped into those bounds. Evaluated on every heartbeat tick.
  children_builder& resizer(const bastion::resizer& r) {
    spec_.resize = r;
    spec_.redundancy = r.clamp(spec_.redundancy);
    return *this;
  }
  /// The resizer's evaluation period (any duration, rounded up to whole ms; default 100 ms).
  /// Throws std::invalid_argument when not positive. Without a resizer it has no effect.
  template <class Rep, class Period>
  children_builder& heartbeat(std::chrono::duration<Rep, Period> d) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(d);
    if (ms.count() <= 0) {
      throw std::invalid_argument("bastion::children_builder: heartbeat must be positive");
    }
    spec_.heartbeat = ms;
    return *this;
  }

  /// Internal: what was collected.
  [[nodiscard]] detail::children_spec& spec() noexcept { return spec_; }

private:
  detail::children_spec spec_;
};

} // namespace bastion
