// src/actor/tree.hpp (private): the supervision tree's state: system_core, nodes (child slots
// and supervisor cores), groups, the supervisor's control queue and the events it carries.
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/children.hpp>
#include <bastion/actor/context.hpp>
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/restart.hpp>
#include <bastion/actor/supervisor.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/block_cache.hpp>
#include <bastion/detail/mpsc_queue.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/unique_id.hpp>
#include <bastion/detail/waker_slot.hpp>

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bastion::detail {

/// A fresh process-unique id (never 0) for a supervisor, group or child. Ids are unique,
/// not ordered: each thread takes them in blocks of 256. Thread-safe, O(1), lock-free.
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
  /// True from start() until stop() or kill() is asked (written under mu, read without it):
  /// while it holds, a plain group's creator may start its members itself (prestart_group).
  std::atomic<bool> accepting{false};

  /// The name registry (guarded by mu): for each name, the named groups registered under it,
  /// oldest first (an intrusive list through group_state::reg_prev/reg_next). A group is in it
  /// from its creation until it is done (no members left, removed from its supervisor) or
  /// destroyed. Lock order: mu before any group's mu.
  struct name_entry {
    group_state* first = nullptr;
    group_state* last = nullptr;
  };
  std::map<std::string, name_entry, std::less<>> names;

  /// Registers a named group. Takes mu. O(log names).
  void register_group(group_state& g);
  /// Removes `g` from the registry (no effect when it is not in it). Takes mu. O(log names).
  void unregister_group(group_state& g) noexcept;

  /// Marks the system stopped and releases block_until_stopped().
  void mark_stopped();
};

/// The sink of control queues (events to a supervisor that is gone): not the user's.
dead_letters& control_sink() noexcept;

/// A link of a supervisor's control queue: an event (heap, owned by the queue until taken)
/// or a child's exit note (embedded in its slot; the queue owns one slot reference).
struct control_node : mpsc_node {
  enum class tag : std::uint8_t { event, exit };
  explicit control_node(tag t) noexcept
      : what(t) {}
  const tag what;
};

/// A supervisor's inbox: an intrusive MPSC queue (detail/mpsc_queue.hpp) of control nodes that
/// its proc awaits; pushing allocates nothing.
///
/// Concurrency design:
///   q_/consumer_ — a Dekker pair through seq_cst fences: a pusher links its node, fences, then
///              takes the consumer's waker; the consumer publishes its waker, fences, then pops.
///              Either the pop reaches the node, or the pusher (whose fence came later) finds
///              the waker. A pop that finds a node not yet linked by its pusher suspends: that
///              pusher wakes it. So the consumer never spins. A pusher whose node the consumer
///              took without parking may take a later waker (a late wake): the awaiter's
///              resume guard (detail::resume_guard) parks the consumer again then.
///   gate_    — closed bit (bit 31) plus the number of pushes in progress. A push enters with
///              fetch_add and fails when the bit is set; close() sets the bit, then waits until
///              the pushes in progress are done, so after close() no event is ever pushed
///              (a late event cannot be lost in a queue nobody drains). Exit notes skip the
///              gate (push_note): a late note is settled by ~supervisor_core.
/// Thread-safety: push() and push_note() from any thread; everything else only from the
/// owning supervisor's proc (or, once that proc is gone, whoever finalizes the supervisor).
class control_queue {
public:
  control_queue() noexcept = default;
  control_queue(const control_queue&) = delete;
  control_queue& operator=(const control_queue&) = delete;

  /// Appends `n` and wakes the consumer. False when the queue is closed (n is not taken).
  /// Safe from any thread. Lock-free, O(1).
  bool push(control_node* n) noexcept;
  /// push() without the close gate, for exit notes: one that lands after close() stays until
  /// the queue's owner is destroyed (harmless: a note only refers to its slot). Lock-free.
  void push_note(control_node* n) noexcept;
  /// Takes the oldest node, or null. Only the consumer. O(1).
  control_node* try_pop() noexcept;
  /// Closes the queue; when it returns no push is in progress and every later push fails.
  /// Idempotent. Only the consumer.
  void close() noexcept;
  /// True once close() ran.
  [[nodiscard]] bool is_closed() const noexcept {
    return (gate_.load(std::memory_order_acquire) & closed_bit) != 0;
  }

  /// Awaiter of next(): the next node (never null); parks the consumer proc while the queue
  /// is empty. Immovable.
  class [[nodiscard]] next_operation : private resume_guard {
  public:
    explicit next_operation(control_queue& q) noexcept
        : q_(q) {}
    next_operation(const next_operation&) = delete;
    next_operation& operator=(const next_operation&) = delete;
    ~next_operation() {
      if (parked()) {
        (void)q_.consumer_.retract();
      }
    }
    [[nodiscard]] bool await_ready() noexcept {
      n_ = q_.try_pop();
      return n_ != nullptr;
    }
    bool await_suspend(std::coroutine_handle<> h);
    control_node* await_resume() noexcept;

  private:
    /// The guard's function doubles as the parked flag.
    [[nodiscard]] bool parked() const noexcept { return ready != nullptr; }
    /// The resume guard: true once a node is in hand; else parks `p` again.
    static bool has_node(resume_guard* g, proc_header* p) noexcept;
    /// Publishes `p` as the consumer, fences, then pops: true when `p` stays parked (nothing
    /// there, or a node in hand whose pusher's wake is on its way), false with a node in hand
    /// and the waker taken back.
    bool park(proc_header* p) noexcept;

    control_queue& q_;
    control_node* n_ = nullptr;
  };
  /// Awaits the next node. Only the consumer, on a bastion proc.
  next_operation next() noexcept { return next_operation{*this}; }

private:
  static constexpr std::uint32_t closed_bit = 1U << 31;

  mpsc_queue q_;
  std::atomic<std::uint32_t> gate_{0};
  waker_slot consumer_;
};

/// A supervised element's tree state: a child actor (child_slot) or a child supervisor
/// (supervisor_core). Not an owner: slots are owned through slot_ptr (intrusive count),
/// supervisors through std::shared_ptr; node_ref holds either.
///
/// Concurrency design: kind_ and id are immutable. `stopped` goes false -> true once
/// (release; refs read it acquire). Every other field is touched only by the parent
/// supervisor's proc (or by the builder thread before the node is attached): no locks.
class node {
public:
  enum class kind : std::uint8_t { actor, supervisor };
  /// idle: never started; running: an incarnation runs; pending: waiting for a backoff timer;
  /// down: stopped for now (to be restarted with its supervisor); stopped: for good.
  enum class run_state : std::uint8_t { idle, running, pending, down, stopped };

  node(kind k, std::uint64_t id) noexcept
      : kind_(k)
      , id(id) {}
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  const kind kind_;
  std::atomic<bool> stopped{false};
  // Parent-supervisor-proc only:
  run_state state = run_state::idle;
  std::uint32_t restarts = 0; ///< restarts over its whole life (the restart policy's count)
  const std::uint64_t id;
  std::uint32_t incarnation = 0;
  std::uint32_t pending_token = 0;
  std::uint32_t backoff_step = 0; ///< restarts since its backoff last started over
  std::uint32_t started_ms = 0;   ///< when the incarnation started (backoff_clock_ms)
  join_handle<void> handle;

protected:
  ~node() = default; // owned as a child_slot or a supervisor_core, never as a node
};

/// The first part of a child's slot: its exit-note link and, in the link's tail padding, its
/// reference count and flags (a slot is the per-actor cost: every byte counts).
struct slot_header : control_node {
  slot_header() noexcept
      : control_node(tag::exit) {}
  std::atomic<bool> exit_queued{false};
  bool linked = false; ///< in the group's member list (guarded like child_slot::prev/next)
  /// Who settles the end of the current incarnation (see child_slot): exit_open, then
  /// exit_supervisor or (through exit_busy) exit_self.
  std::atomic<std::uint8_t> exit_owner{0};
  std::atomic<std::uint32_t> refs{1};

  static constexpr std::uint8_t exit_open = 0;       ///< undecided: the incarnation runs
  static constexpr std::uint8_t exit_supervisor = 1; ///< the supervisor settles it
  static constexpr std::uint8_t exit_busy = 2;       ///< the completion is deciding
  static constexpr std::uint8_t exit_self = 3;       ///< the completion settled it: gone
};

/// A child actor's slot: stable across restarts, owning the mailbox and the context; one
/// allocation per child. Its parent supervisor is its group's.
///
/// It is also the wake_target its proc's completion wakes (the slot is registered as the
/// proc's join waiter), which queues its exit note (the control_node base) to the
/// supervisor: no allocation and no extra proc per exit.
/// Concurrency design (besides node's): refs is the intrusive count (see slot_ptr).
/// exit_queued is true while the exit note is in the control queue (set by the completion
/// with an exchange, cleared by the supervisor with an exchange when it takes the note: the
/// note says "look at this slot", so one queued note covers any number of completions).
/// prev/next/linked link the group's member list: written under the group's mu.
///
/// Self-settled exits (exit_owner): a member of a group with no after_stop callback and no
/// routes whose body returns normally settles its own end on the thread that completed it,
/// without its supervisor: it closes and drains its mailbox, frees its proc and leaves the
/// group (the supervisor hears only when the group is left empty: retire_group). That takes
/// the per-exit work (and the frees of memory other workers allocated) off the supervisor,
/// which otherwise settles every end in one proc. Ownership of the end of an incarnation is
/// decided once per incarnation through exit_owner: the completion CASes open -> busy,
/// looks at its proc, then stores self (normal return) or supervisor (failure, cancel: the
/// exit note goes to the supervisor as before). The supervisor claims the slot (claim_exit:
/// open -> supervisor, waiting out busy) before it touches a running member's handle,
/// mailbox or context; a slot it finds `self` is over and out of the group, and it leaves it
/// alone. A self-settled slot's node fields (state, handle, incarnation) are then never
/// written again by anyone but its completion, which only detaches the handle.
/// start_node reopens exit_owner for each new incarnation.
class child_slot final
    : public slot_header
    , public wake_target
    , public node
    , public cached_new { // one per actor, often freed on another worker
public:
  child_slot(
      std::uint64_t id, std::shared_ptr<group_state> g, mailbox_config cfg, dead_letters& sink);
  child_slot(const child_slot&) = delete;
  child_slot& operator=(const child_slot&) = delete;
  ~child_slot();

  /// The slot's path (built on first use and kept; see address::path).
  const bastion::path& path() const;

  child_slot* prev = nullptr;
  child_slot* next = nullptr;
  const std::shared_ptr<group_state> group;
  mailbox mb; ///< 16-byte aligned: the fields above add up to a multiple of 16 bytes
  context ctx;

private:
  mutable std::atomic<bastion::path*> path_{nullptr};
};
// 248 bytes or less keeps a slot in the allocator's 256-byte chunks (the idle-actor budget).
static_assert(sizeof(child_slot) <= 248, "an actor's slot grew: idle actors cost more");

struct element;
/// A supervisor's elements (see supervisor_core::elements): list nodes from the block caches.
using element_list = std::list<element, cached_allocator<element>>;

/// Registers `s` (running: its handle holds the new proc) as its proc's join waiter, so that
/// the proc's end queues the slot's exit note to its supervisor. Supervisor proc only.
void arm_exit(child_slot& s) noexcept;

/// The supervisor's claim on the end of `s`'s current incarnation (see child_slot): true
/// when the supervisor settles it (now or before), false when the slot settled its own exit
/// (it is gone: leave it alone). Waits out a completion that is deciding (a few
/// instructions). Supervisor proc, or whoever finalizes the subtree.
bool claim_exit(child_slot& s) noexcept;

/// A children group: its spec and its current members (children not stopped for good), in
/// start order, as an intrusive list (O(1) removal).
///
/// Concurrency design: the member list (first/last/count and each slot's prev/next/linked) is
/// written under mu by the group's supervisor proc (or the builder thread before the group is
/// attached) and by members that settle their own exit (child_slot); every reader takes mu,
/// except the creator of a group before it queues the members' procs (prestart_group).
/// halted/attached/pos: supervisor proc only.
/// reg_prev/reg_next/registered: guarded by the system's mu.
class group_state : public std::enable_shared_from_this<group_state> {
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
  group_state(const group_state&) = delete;
  group_state& operator=(const group_state&) = delete;
  ~group_state();

  const std::uint64_t id;
  const bastion::path path;
  const children_spec spec; ///< spec.name is empty for an unnamed group (see name())
  const std::weak_ptr<supervisor_core> sup;
  const std::shared_ptr<system_core> sys;

  mutable std::mutex mu;
  child_slot* first = nullptr;
  child_slot* last = nullptr;
  std::size_t count = 0;

  bool halted = false; ///< stopped as a whole (no more resizing)
  /// Its first members were started by its creator (prestart_group), not by its supervisor:
  /// written by the creator before the add_group event is posted.
  /// 0 for a group its supervisor starts; 1 while the creator of a prestarted group has not
  /// queued (or cancelled) every member yet, then 2 (release). Set to 1 before the group is
  /// posted or registered. See wait_prestarted.
  std::atomic<std::uint8_t> prestart_phase{0};
  /// Its creator started its members (prestart_group). Whoever took the add_group event
  /// (after wait_prestarted), or the creator.
  [[nodiscard]] bool prestarted() const noexcept {
    return prestart_phase.load(std::memory_order_relaxed) != 0;
  }
  bool attached = false; ///< in its supervisor's elements, at `pos`
  element_list::iterator pos;

  bool registered = false;
  group_state* reg_prev = nullptr;
  group_state* reg_next = nullptr;

private:
  mutable std::atomic<std::string*> auto_name_{nullptr};

public:
  /// The group's name: spec.name, or "children-<id>" for an unnamed group (built on first
  /// use and kept, so unnamed groups that nobody asks for cost no string). Safe from any
  /// thread; throws std::bad_alloc when the name cannot be built.
  const std::string& name() const;

  /// Appends `s` to the member list, adopting one reference. Takes mu. O(1).
  void link(child_slot* s) noexcept;
  /// link() for a caller that holds mu. O(1).
  void link_locked(child_slot* s) noexcept;
  /// Removes `s` from the member list (no effect when it is not in it) and returns the list's
  /// reference (null when it was not linked). `left_empty`, when given, tells whether this
  /// removal left the list empty (read under the same lock). Takes mu. O(1).
  slot_ptr unlink(child_slot* s, bool* left_empty = nullptr) noexcept;
  /// True when the group routes messages (distributors or dispatchers): its members join
  /// and leave them, which is the supervisor's work.
  [[nodiscard]] bool has_routes() const noexcept {
    return !spec.distributors.empty() || !spec.dispatchers.empty();
  }
  /// For a prestarted group: waits until its creator has queued (or cancelled) every member,
  /// so that the members' handles are its supervisor's to use. The supervisor calls it
  /// before it touches a group's members (add_group, stop_group, stop_node), as does
  /// close_unstarted: a ref found by name can ask for a stop before the group is posted.
  void wait_prestarted() const noexcept;
  /// True when no member is left. Takes mu. O(1).
  [[nodiscard]] bool empty() const noexcept;
  /// The members, in start order. Takes mu. O(n).
  [[nodiscard]] std::vector<slot_ptr> members() const;
  /// Stops every member of a group that its supervisor never took (or whose supervisor is
  /// gone): closed, drained, unlinked. No callbacks. Members its creator already started
  /// (prestarted) are cancelled and waited for first.
  void close_unstarted() noexcept;
};

/// An element of a supervisor: a group or a child supervisor, in start order.
struct element {
  std::shared_ptr<group_state> group;
  std::shared_ptr<supervisor_core> sup;
};

/// An owning reference to a node of either kind (for lists of nodes to stop or restart).
class node_ref {
public:
  node_ref() noexcept = default;
  explicit node_ref(slot_ptr s) noexcept;
  explicit node_ref(std::shared_ptr<supervisor_core> s) noexcept;

  [[nodiscard]] node* get() const noexcept { return n_; }
  node* operator->() const noexcept { return n_; }
  node& operator*() const noexcept { return *n_; }
  [[nodiscard]] explicit operator bool() const noexcept { return n_ != nullptr; }
  /// The slot (null for a supervisor).
  [[nodiscard]] const slot_ptr& slot() const noexcept { return slot_; }
  /// The supervisor (null for a slot).
  [[nodiscard]] const std::shared_ptr<supervisor_core>& sup() const noexcept { return sup_; }
  friend bool operator==(const node_ref& a, const node_ref& b) noexcept { return a.n_ == b.n_; }

private:
  node* n_ = nullptr;
  slot_ptr slot_;
  std::shared_ptr<supervisor_core> sup_;
};

/// An event for a supervisor's control queue (heap-allocated from the block caches; the
/// consumer deletes it).
struct sup_event final
    : control_node
    , cached_new {
  enum class type : std::uint8_t {
    child_exited,   ///< a child supervisor's proc ended: n, incarnation, failed, error
    restart_due,    ///< nodes, token, fail
    add_group,      ///< group
    add_supervisor, ///< sup
    stop_node,      ///< n (graceful, for good)
    kill_node,      ///< n (no callbacks, for good)
    stop_group,     ///< group
    kill_group,     ///< group
    set_strategy,   ///< strategy
    stop,           ///< permanent: for good (true) or down, to be restarted (false)
    kill,
    heartbeat,    ///< group, incarnation: evaluate the group's resizer, re-arm
    retire_group, ///< group: its last member settled its own exit (child_slot)
  };
  explicit sup_event(type what) noexcept
      : control_node(tag::event)
      , t(what) {}

  type t;
  bool failed = false;
  bool permanent = true;
  supervision_strategy strategy = supervision_strategy::one_for_one;
  node_ref n;
  std::uint64_t incarnation = 0;
  std::exception_ptr error;
  std::vector<node_ref> nodes;
  std::uint32_t token = 0;
  failure fail;
  std::shared_ptr<group_state> group;
  std::shared_ptr<supervisor_core> sup;
};

/// A supervisor: a node whose body is the event loop over `control`.
class supervisor_core final : public node {
public:
  supervisor_core(
      std::uint64_t id,
      bastion::path p,
      std::weak_ptr<supervisor_core> parent,
      std::shared_ptr<system_core> sys)
      : node(kind::supervisor, id)
      , path(std::move(p))
      , parent(std::move(parent))
      , sys(std::move(sys)) {}
  supervisor_core(const supervisor_core&) = delete;
  supervisor_core& operator=(const supervisor_core&) = delete;
  /// Deletes events nobody took (a supervisor that never ran its loop).
  ~supervisor_core();

  const bastion::path path;
  const std::weak_ptr<supervisor_core> parent;
  const std::shared_ptr<system_core> sys;

  control_queue control;
  std::atomic<supervision_strategy> strategy{supervision_strategy::one_for_one};
  restart_strategy restart;       ///< builder thread, then read-only
  supervisor_callbacks callbacks; ///< builder thread, then read-only

  /// Groups and child supervisors, in start order; done ones are removed (O(1): a group
  /// keeps its position, a child supervisor `pos`). Builder thread, then this supervisor's
  /// proc only.
  element_list elements;
  /// elements.size(), readable from any thread (relaxed; written where elements changes).
  std::atomic<std::size_t> element_count{0};
  bool attached = false;      ///< in its parent's elements, at pos (parent's proc)
  element_list::iterator pos; ///< valid while attached

  /// Appends a group (or a child supervisor) to elements and records its position.
  void attach(const std::shared_ptr<group_state>& g);
  void attach(const std::shared_ptr<supervisor_core>& child);
  /// Removes an attached group (or child supervisor) from elements. O(1).
  void detach(group_state& g) noexcept;
  void detach(supervisor_core& child) noexcept;

  /// Posts an event; false when the supervisor is gone for good (the event is destroyed).
  bool post(std::unique_ptr<sup_event> ev);
};

/// The body of a supervisor's incarnation: start the elements, then handle events.
task<> run_supervisor(
    std::shared_ptr<supervisor_core> self,
    std::uint64_t incarnation,
    std::optional<failure> restart);

} // namespace bastion::detail
