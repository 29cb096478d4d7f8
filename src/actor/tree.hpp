// src/actor/tree.hpp (private): the supervision tree's state: system_core, nodes (child slots
// and supervisor cores), groups, and the events a supervisor's control mailbox carries.
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/children.hpp>
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/restart.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bastion::detail {

/// A fresh process-unique id for a supervisor, group or child.
std::uint64_t next_node_id() noexcept;

/// What every element of one system shares. Outlives the system object while refs exist.
class system_core {
public:
  system_core();

  bastion::runtime* rt = nullptr; ///< set by system; valid while the system object lives
  std::shared_ptr<dead_letters> sink = std::make_shared<dead_letters>();

  // Lifecycle, guarded by mu: started -> stopped once each.
  mutable std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool stop_requested = false;
  bool stopped = false;

  // The name registry (guarded by mu).
  std::multimap<std::string, std::weak_ptr<group_state>, std::less<>> names;

  /// Marks the system stopped and releases block_until_stopped().
  void mark_stopped();
};

/// The sink of control mailboxes (events to a supervisor that is gone): not the user's.
dead_letters& control_sink() noexcept;

/// A supervised element: a child actor or a child supervisor.
///
/// Concurrency design: id, path, name, parent and sys are immutable after construction.
/// `stopped` goes false -> true once (release; refs read it acquire). Every other field is
/// touched only by the parent supervisor's proc (or by the builder thread before the node is
/// attached): no locks.
class node : public std::enable_shared_from_this<node> {
public:
  enum class kind : std::uint8_t { actor, supervisor };
  /// idle: never started; running: an incarnation runs; pending: waiting for a backoff timer;
  /// down: stopped for now (to be restarted with its supervisor); stopped: for good.
  enum class run_state : std::uint8_t { idle, running, pending, down, stopped };

  node(
      kind k,
      std::uint64_t id,
      bastion::path p,
      std::string name,
      std::weak_ptr<supervisor_core> parent,
      std::shared_ptr<system_core> sys)
      : kind_(k)
      , id(id)
      , path(std::move(p))
      , name(std::move(name))
      , parent(std::move(parent))
      , sys(std::move(sys)) {}
  virtual ~node() = default;

  const kind kind_;
  const std::uint64_t id;
  const bastion::path path;
  const std::string name;
  const std::weak_ptr<supervisor_core> parent;
  const std::shared_ptr<system_core> sys;
  std::atomic<bool> stopped{false};

  // Parent-supervisor-proc only:
  join_handle<void> handle;
  std::uint64_t incarnation = 0;
  run_state state = run_state::idle;
  std::size_t restarts = 0;
  std::uint64_t pending_token = 0;
};

/// A child actor's slot: stable across restarts, owning the mailbox.
class child_slot final : public node {
public:
  child_slot(
      std::uint64_t id,
      bastion::path p,
      std::string name,
      std::weak_ptr<supervisor_core> parent,
      std::shared_ptr<system_core> sys,
      std::weak_ptr<group_state> group,
      mailbox_config cfg)
      : node(kind::actor, id, std::move(p), std::move(name), std::move(parent), sys)
      , sink_keep(sys->sink)
      , mb(cfg, *sink_keep)
      , group(std::move(group)) {}

  const std::shared_ptr<dead_letters> sink_keep; ///< keeps the mailbox's sink alive
  mailbox mb;
  const std::weak_ptr<group_state> group;
};

/// A children group: its spec, every slot it ever had (supervisor proc only) and its current
/// members (mutex-guarded, for elems()).
class group_state {
public:
  group_state(
      std::uint64_t id,
      bastion::path p,
      children_spec s,
      std::weak_ptr<supervisor_core> sup,
      std::shared_ptr<system_core> sys)
      : id(id)
      , path(std::move(p))
      , spec(std::move(s))
      , sup(std::move(sup))
      , sys(std::move(sys)) {}

  const std::uint64_t id;
  const bastion::path path;
  const children_spec spec; ///< spec.name is never empty
  const std::weak_ptr<supervisor_core> sup;
  const std::shared_ptr<system_core> sys;

  std::vector<std::shared_ptr<child_slot>> slots; ///< creation thread, then supervisor proc
  bool halted = false; ///< supervisor proc: stopped as a whole (no more resizing)

  mutable std::mutex mu;
  std::vector<std::shared_ptr<child_slot>> members; ///< guarded by mu

  void remove_member(const child_slot* s);
};

/// What a supervisor's control mailbox carries (as tells of sup_event).
struct sup_event {
  enum class type : std::uint8_t {
    child_exited,   ///< node, incarnation, failed, error, msg
    restart_due,    ///< nodes, token, fail
    add_group,      ///< group
    add_supervisor, ///< sup
    stop_node,      ///< node (graceful, for good)
    kill_node,      ///< node (no callbacks, for good)
    stop_group,     ///< group
    kill_group,     ///< group
    set_strategy,   ///< strategy
    stop,           ///< permanent: for good (true) or down, to be restarted (false)
    kill,
    heartbeat, ///< group, incarnation: evaluate the group's resizer, re-arm
  };
  explicit sup_event(type what) noexcept
      : t(what) {}

  type t;
  std::shared_ptr<node> n;
  std::uint64_t incarnation = 0;
  bool failed = false;
  std::exception_ptr error;
  std::optional<message_info> msg;
  std::vector<std::shared_ptr<node>> nodes;
  std::uint64_t token = 0;
  failure fail;
  std::shared_ptr<group_state> group;
  std::shared_ptr<supervisor_core> sup;
  supervision_strategy strategy = supervision_strategy::one_for_one;
  bool permanent = true;
};

/// A supervisor: a node whose body is the event loop over `control`.
class supervisor_core final : public node {
public:
  supervisor_core(
      std::uint64_t id,
      bastion::path p,
      std::weak_ptr<supervisor_core> parent,
      std::shared_ptr<system_core> sys)
      : node(kind::supervisor, id, std::move(p), "supervisor", std::move(parent), std::move(sys))
      , control(mailbox_config{}, control_sink()) {}

  mailbox control;
  std::atomic<supervision_strategy> strategy{supervision_strategy::one_for_one};
  restart_strategy restart; ///< builder thread, then read-only

  /// An element: a group or a child supervisor, in start order.
  struct element {
    std::shared_ptr<group_state> group;
    std::shared_ptr<supervisor_core> sup;
  };
  std::vector<element> elements; ///< builder thread, then this supervisor's proc only

  /// Posts an event; false when the supervisor is gone for good.
  bool post(sup_event ev);
};

/// The body of a supervisor's incarnation: start the elements, then handle events.
task<> run_supervisor(
    std::shared_ptr<supervisor_core> self,
    std::uint64_t incarnation,
    std::optional<failure> restart);

/// Walks a subtree that no proc runs any more and stops it for good: mailboxes closed and
/// drained, members removed; after_stop runs for children when `callbacks`.
void finalize_subtree(supervisor_core& s, bool callbacks) noexcept;

} // namespace bastion::detail
