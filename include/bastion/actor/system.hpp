// bastion/actor/system.hpp: bastion::system (the runtime, the root supervisor, the
// dead-letters sink and the group name registry, with their lifecycle) and the free functions
// over the process-wide default system.
#pragma once

#include <bastion/actor/children.hpp>
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/supervisor.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/lightproc/task.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace bastion {

/// Settings of a bastion::system: the executor's runtime_config plus the actor layer's own.
/// Fluent setters; a plain value.
class config {
public:
  /// Worker threads (default: one per logical CPU). 0 is rejected by system's constructor
  /// (std::invalid_argument naming "workers").
  config& workers(std::size_t n) {
    rt_.workers(n);
    return *this;
  }
  /// Pin workers to their CPUs (default true).
  config& pin_workers(bool on) {
    rt_.pin_workers(on);
    return *this;
  }
  /// Cap of the blocking pool (see runtime_config::blocking_threads).
  config& blocking_threads(std::size_t cap) {
    rt_.blocking_threads(cap);
    return *this;
  }
  /// The level of the "bastion" logger (trace, debug, info, warn, err, critical, off);
  /// applied by the system's constructor. Default: leave it as it is.
  config& log_level(std::string level) {
    log_level_ = std::move(level);
    return *this;
  }
  /// Every executor setting.
  config& runtime(runtime_config cfg) {
    rt_ = std::move(cfg);
    return *this;
  }

  [[nodiscard]] const runtime_config& runtime() const noexcept { return rt_; }
  [[nodiscard]] const std::optional<std::string>& log_level() const noexcept { return log_level_; }

private:
  runtime_config rt_;
  std::optional<std::string> log_level_;
};

/// An actor system: a runtime, a root supervisor (one_for_one, always restart, immediate
/// backoff, no intensity limit), a dead-letters sink and a name registry of groups.
///
/// Lifecycle: nothing runs user code until start(); groups and supervisors added before it
/// exist at once (their refs and mailboxes work: messages are buffered) and start with it.
/// stop() is graceful: the stop flows down the tree (each supervisor stops its children in
/// reverse start order, each child's after_stop runs), then block_until_stopped() returns.
/// kill() cancels everything without callbacks. The destructor stops and waits
/// (RAII). A system runs once: it cannot be started again after it stopped.
/// Thread-safety: every member is safe from any thread, except that the destructor and
/// block_until_stopped() must not run on one of the system's own workers.
class system {
public:
  /// Builds the runtime and the root supervisor. Throws std::invalid_argument naming the bad
  /// field ("workers", ...), what the runtime throws.
  explicit system(config cfg = {});
  /// stop(), then waits until stopped, then shuts the runtime down.
  ~system();
  system(const system&) = delete;
  system& operator=(const system&) = delete;

  /// Adds a children group under the root supervisor (see supervisor_ref::children).
  template <class F>
    requires std::is_invocable_v<F&, children_builder&>
  children_ref children(F&& f) {
    return root().children(std::forward<F>(f));
  }
  /// Adds a top-level supervisor under the root supervisor. A top-level supervisor stopped
  /// on purpose stays stopped; one that fails is restarted by the root.
  template <class F>
    requires std::is_invocable_v<F&, supervisor_builder&>
  supervisor_ref supervisor(F&& f) {
    return root().supervisor(std::forward<F>(f));
  }

  /// Starts the root supervisor (and so everything added so far). Idempotent; throws
  /// std::logic_error after stop().
  void start();
  /// Graceful stop (see the class comment). Asynchronous: returns at once; use
  /// block_until_stopped(). Idempotent. Before start(), nothing ever runs: mailboxes are
  /// closed and drained to dead letters.
  void stop();
  /// Immediate stop: every proc of the tree is cancelled, no callbacks run. Asynchronous.
  void kill();
  /// Blocks the calling thread until the system stopped (after stop(), kill(), or the root
  /// supervisor ending).
  void block_until_stopped();
  /// Waits at most `d`; true when stopped.
  bool block_until_stopped_for(std::chrono::milliseconds d);
  /// True after start() (and before the system stopped).
  [[nodiscard]] bool is_running() const noexcept;
  /// True once the system stopped.
  [[nodiscard]] bool is_stopped() const noexcept;

  /// The root supervisor.
  [[nodiscard]] supervisor_ref root() const;
  /// The group registered under `name` while it has members, or std::nullopt. Takes a mutex.
  [[nodiscard]] std::optional<children_ref> find_group(std::string_view name) const;
  /// The sink of every child mailbox of this system.
  [[nodiscard]] bastion::dead_letters& dead_letters() const noexcept;
  /// The executor.
  [[nodiscard]] bastion::runtime& runtime() const noexcept;

  /// Runs `t` to completion on the calling thread, on this system's runtime (its procs,
  /// timers and blocking calls use it), and returns its value or rethrows its exception:
  /// `sys.run(ref.ask<int>(x, 1s))` from main(). Same as `sys.runtime().run(std::move(t))`.
  /// Prefer it to the free bastion::run, which drives `t` on the calling thread's current
  /// runtime, else on runtime::global() (a second runtime with its own workers, unless this
  /// is the default system: see global()). Safe from any thread; on one of this system's
  /// workers it does not deadlock (see runtime::run). Throws what `t` throws.
  template <class T>
  T run(task<T> t) {
    return rt_->run(std::move(t));
  }

  /// The process-wide default system behind the free functions, built on first use with
  /// init()'s config (or the default one). It is stopped and joined at exit. When that
  /// config leaves every runtime setting at its default (no init(), or an init() that only
  /// sets log_level), the default system runs on runtime::global() instead of a runtime of
  /// its own, so the executor's free functions (bastion::run, bastion::spawn) used from
  /// main() drive their tasks on the same runtime as the actors. Otherwise it owns a runtime
  /// built from the config (use global().run(t) to drive a task on it). Safe from any thread.
  static system& global();
  /// Sets the default system's config. Throws std::logic_error when it exists already.
  static void init(config cfg);

private:
  /// Builds the system on `shared` (not owned) when it is not null, else on a runtime of its
  /// own built from `cfg`.
  system(config cfg, bastion::runtime* shared);

  std::unique_ptr<bastion::runtime> own_rt_; ///< null when the runtime is shared
  bastion::runtime* rt_ = nullptr;           ///< own_rt_, or the shared runtime
  std::shared_ptr<detail::system_core> core_;
  std::shared_ptr<detail::supervisor_core> root_;
};

/// bastion::system::global().children(f).
template <class F>
  requires std::is_invocable_v<F&, children_builder&>
children_ref children(F&& f) {
  return system::global().children(std::forward<F>(f));
}
/// bastion::system::global().supervisor(f).
template <class F>
  requires std::is_invocable_v<F&, supervisor_builder&>
supervisor_ref supervisor(F&& f) {
  return system::global().supervisor(std::forward<F>(f));
}
/// bastion::system::init(cfg): configures the default system before its first use.
void init(config cfg);
/// Starts the default system.
void start();
/// Stops the default system gracefully (asynchronous).
void stop();
/// Kills the default system (asynchronous).
void kill();
/// Blocks until the default system stopped.
void block_until_stopped();

} // namespace bastion
