// src/actor/system.cpp: bastion::system and the default system's free functions
// (bastion/actor/system.hpp).
#include <bastion/actor/system.hpp>
#include <bastion/log.hpp>

#include "node_ops.hpp"
#include "tree.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace bastion {

namespace detail {

system_core::system_core() {
  // Built first, so destroyed after any system (which may log while it stops).
  (void)logger();
  (void)dead_letters::global();
  (void)control_sink();
}

void system_core::mark_stopped() {
  {
    std::lock_guard lock(mu);
    stopped = true;
  }
  cv.notify_all();
}

} // namespace detail

namespace {
runtime_config checked(const config& cfg) {
  if (cfg.runtime().workers() && *cfg.runtime().workers() == 0) {
    throw std::invalid_argument("bastion::config: workers must be at least 1 (got 0)");
  }
  if (cfg.log_level()) {
    set_log_level(*cfg.log_level());
  }
  return cfg.runtime();
}

/// True when `cfg` leaves every setting at its default (runtime::global()'s own config).
bool default_runtime_settings(const runtime_config& cfg) {
  const runtime_config d{};
  return cfg.workers() == d.workers() && cfg.pin_workers() == d.pin_workers()
         && cfg.cpu_set() == d.cpu_set() && cfg.blocking_threads() == d.blocking_threads()
         && cfg.blocking_keep_alive() == d.blocking_keep_alive()
         && cfg.synthetic_topology() == d.synthetic_topology();
}
} // namespace

system::system(config cfg)
    : system(std::move(cfg), nullptr) {
}

system::system(config cfg, bastion::runtime* shared)
    : own_rt_(shared != nullptr ? nullptr : std::make_unique<bastion::runtime>(checked(cfg)))
    , rt_(shared != nullptr ? shared : own_rt_.get())
    , core_(std::make_shared<detail::system_core>()) {
  if (shared != nullptr) {
    (void)checked(cfg); // the log level
  }
  core_->rt = rt_;
  const auto id = detail::next_node_id();
  root_ = std::make_shared<detail::supervisor_core>(
      id, path{}, std::weak_ptr<detail::supervisor_core>{}, core_);
}

system::~system() {
  stop();
  block_until_stopped();
  // Whatever is left (backoff timers) is cancelled; then the tree can be released. (The
  // default system may share runtime::global(): it is destroyed at exit, before that
  // runtime, whose own shutdown then finds it done.)
  rt_->shutdown();
  // The root incarnation's frame holds the root node (its parameter); the node holds the
  // handle, which keeps the finished frame alive: drop it to break the cycle.
  root_->handle.detach();
}

void system::start() {
  std::lock_guard lock(core_->mu);
  if (core_->stop_requested || core_->stopped) {
    throw std::logic_error("bastion::system::start: the system was stopped");
  }
  if (core_->started) {
    return;
  }
  core_->started = true;
  root_->incarnation = 1;
  root_->state = detail::node::run_state::running;
  root_->handle = rt_->spawn(detail::run_supervisor(root_, 1, std::nullopt));
  core_->accepting.store(true, std::memory_order_release);
  logger().info("bastion: system started ({} workers)", rt_->worker_count());
}

void system::stop() {
  {
    std::unique_lock lock(core_->mu);
    if (core_->stop_requested) {
      return;
    }
    core_->stop_requested = true;
    core_->accepting.store(false, std::memory_order_release);
    if (!core_->started) {
      // Nothing ever ran: close everything on this thread (no proc touches the tree).
      lock.unlock();
      root_->state = detail::node::run_state::stopped;
      root_->stopped.store(true, std::memory_order_release);
      detail::finalize_subtree(*root_, false);
      detail::drain_control(*root_);
      core_->mark_stopped();
      return;
    }
  }
  root_->post(std::make_unique<detail::sup_event>(detail::sup_event::type::stop));
}

void system::kill() {
  {
    std::lock_guard lock(core_->mu);
    if (!core_->started) {
      // Nothing runs: same as stop().
      if (core_->stop_requested) {
        return;
      }
    } else {
      core_->stop_requested = true;
      core_->accepting.store(false, std::memory_order_release);
      root_->post(std::make_unique<detail::sup_event>(detail::sup_event::type::kill));
      return;
    }
  }
  stop();
}

void system::block_until_stopped() {
  std::unique_lock lock(core_->mu);
  core_->cv.wait(lock, [&] { return core_->stopped; });
}

bool system::block_until_stopped_for(std::chrono::milliseconds d) {
  std::unique_lock lock(core_->mu);
  return core_->cv.wait_for(lock, d, [&] { return core_->stopped; });
}

bool system::is_running() const noexcept {
  std::lock_guard lock(core_->mu);
  return core_->started && !core_->stopped;
}

bool system::is_stopped() const noexcept {
  std::lock_guard lock(core_->mu);
  return core_->stopped;
}

supervisor_ref system::root() const {
  return supervisor_ref{root_};
}

std::optional<children_ref> system::find_group(std::string_view name) const {
  // Declared before the lock: a group whose last reference is one of these is destroyed
  // (and unregisters itself, taking the lock) only after the lock is released.
  std::vector<std::shared_ptr<detail::group_state>> seen;
  std::lock_guard lock(core_->mu);
  auto it = core_->names.find(name);
  if (it == core_->names.end()) {
    return std::nullopt;
  }
  for (auto* g = it->second.first; g != nullptr; g = g->reg_next) {
    auto sp = g->weak_from_this().lock();
    if (!sp) {
      continue; // being destroyed: it unregisters itself once we let go of the lock
    }
    bool has_members = false;
    {
      std::lock_guard glock(sp->mu);
      has_members = sp->count != 0;
    }
    if (has_members) {
      return children_ref{std::move(sp)};
    }
    seen.push_back(std::move(sp));
  }
  return std::nullopt;
}

bastion::dead_letters& system::dead_letters() const noexcept {
  return *core_->sink;
}

bastion::runtime& system::runtime() const noexcept {
  return *rt_;
}

namespace {
std::mutex g_init_mu;
std::optional<config> g_init_cfg;
bool g_global_built = false;
} // namespace

void system::init(config cfg) {
  std::lock_guard lock(g_init_mu);
  if (g_global_built) {
    throw std::logic_error("bastion::init: the default system exists already");
  }
  g_init_cfg = std::move(cfg);
}

system& system::global() {
  static system s = [] {
    config cfg;
    {
      std::lock_guard lock(g_init_mu);
      g_global_built = true;
      cfg = g_init_cfg.value_or(config{});
    }
    // Built before this system, so destroyed after it (its shutdown in ~system is the first).
    bastion::runtime* shared =
        default_runtime_settings(cfg.runtime()) ? &bastion::runtime::global() : nullptr;
    return system{std::move(cfg), shared};
  }();
  return s;
}

void init(config cfg) {
  system::init(std::move(cfg));
}
void start() {
  system::global().start();
}
void stop() {
  system::global().stop();
}
void kill() {
  system::global().kill();
}
void block_until_stopped() {
  system::global().block_until_stopped();
}

} // namespace bastion
