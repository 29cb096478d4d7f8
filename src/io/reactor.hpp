// src/io/reactor.hpp: the epoll reactor behind bastion::io, driven by the executor's workers.
// Private to src/: no public header includes it.
//
// Design (after mio/Tokio's I/O driver): every socket is registered once, edge-triggered, for
// both directions. Each direction keeps a readiness sequence number and one waker slot. An
// operation snapshots the sequence, tries its syscall, and on EAGAIN parks on the slot until
// the sequence moves; the reactor bumps the sequence and then takes the waker. Because the
// snapshot is taken before the syscall, an edge that arrives between the syscall and the
// suspension is never lost.
//
// Who polls: the parked worker that holds the runtime's driver role (the same one that sleeps
// until the next timer) waits in epoll_wait instead of on its condition variable; an eventfd
// wakes it (parker::unpark). Busy workers poll without blocking every 61 ticks, so sockets are
// served while no worker parks. An idle runtime blocks in epoll_wait: no thread spins.
#pragma once

#include <bastion/detail/deadline_race.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/waker_slot.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace bastion::detail {

class reactor;

/// Readiness direction of an io_source.
enum class io_dir : unsigned { read = 0, write = 1 };

/// One socket's file descriptor and its readiness state.
///
/// Registration is lazy: the first operation registers the fd with the reactor of the runtime
/// that runs the awaiting proc (so a socket created on the main thread serves the runtime its
/// procs run on, and creating one never starts the global runtime).
/// Lifetime: refs_ counts the owner (stream or listener) and each operation in flight. The
/// owner's close() withdraws it from epoll, marks it closed and wakes both waiters; when the
/// last reference goes, the fd is closed and the object is handed to the reactor, which frees
/// it once no epoll batch can still name it (see reactor::retire).
/// Thread-safety: ready_seq_, sticky_, closed_ and the slots are shared with the polling
/// worker; fd_ is immutable; owner_ is written once under reg_mu_ (then read-only);
/// drained_at_ belongs to the reader (one read at a time).
class io_source {
public:
  explicit io_source(int fd) noexcept
      : fd_(fd) {}

  /// Registers with `rt`'s reactor unless registered (or closed) already. Throws
  /// std::system_error when epoll refuses the fd.
  void ensure_registered(runtime_impl* rt);

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] std::uint32_t seq(io_dir d) const noexcept {
    return ready_seq_[static_cast<unsigned>(d)].load(std::memory_order_seq_cst);
  }
  waker_slot& slot(io_dir d) noexcept { return waiters_[static_cast<unsigned>(d)]; }

  /// Records that a read, begun after read sequence `seen`, returned fewer bytes than its
  /// buffer holds: TCP's recv copies all it has queued, so the socket was empty then. Reader
  /// only (one read at a time per stream).
  void note_drained(std::uint32_t seen) noexcept { drained_at_ = seen; }
  /// Forgets note_drained (the last read filled its buffer, failed or ended). Reader only.
  void note_not_drained() noexcept { drained_at_.reset(); }
  /// True when a recv would find the socket as empty as the last short read left it: the
  /// read sequence is still `seen` (no edge since the snapshot taken before that read), and
  /// no condition that a short read leaves behind was reported: a hang-up, an error, or
  /// urgent data (recv stops at the urgent mark with bytes still queued). The skip Tokio
  /// makes after a short read (its readiness clear keeps the closed bits). Reader only.
  [[nodiscard]] bool would_block(std::uint32_t seen) const noexcept {
    return drained_at_ == seen && !sticky_.load(std::memory_order_acquire);
  }
  /// Makes every read try recv, as after a hang-up: for sockets whose recv may stop short
  /// with bytes still queued (a unix stream's stops at passed descriptors and changes of
  /// credentials). Before the first operation.
  void never_skip_recv() noexcept { sticky_.store(true, std::memory_order_relaxed); }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  /// Drops a reference; the last one closes the fd and retires the object.
  void release() noexcept;
  /// Withdraws from epoll, marks closed, wakes both waiters, drops the owner's reference.
  void close() noexcept;
  /// Marks `mask` (EPOLL* bits) ready and wakes the waiters concerned. Polling worker only.
  void on_event(std::uint32_t mask) noexcept;

private:
  friend class reactor;
  void bump(io_dir d) noexcept;

  // The reactor outlives its sources (a socket closed after its runtime is gone still
  // deregisters safely). Null until registered.
  std::shared_ptr<reactor> owner_;
  std::atomic<bool> registered_{false};
  std::mutex reg_mu_; // orders registration against close()
  const int fd_;
  std::atomic<std::uint32_t> refs_{1};
  std::atomic<bool> closed_{false};
  std::atomic<std::uint32_t> ready_seq_[2] = {0, 0};
  // EPOLLRDHUP, EPOLLERR or EPOLLPRI seen (a bare EPOLLHUP is what an unconnected socket
  // reports when registered, so it does not count): stored before the bump publishing it.
  // Also set for a socket that is not TCP (never_skip_recv).
  std::atomic<bool> sticky_{false};
  std::optional<std::uint32_t> drained_at_; // note_drained: the reader's only
  waker_slot waiters_[2];
  io_source* next_retired_ = nullptr; // guarded by reactor::retired_mu_
  io_source* prev_live_ = nullptr;    // the registry of open sources: reactor::live_mu_
  io_source* next_live_ = nullptr;
};

/// The epoll instance of one runtime, with the eventfd that interrupts a blocked poll.
/// Thread-safety: add/retire/interrupt from any thread; poll() from one thread at a time
/// (others return 0 at once).
class reactor : public std::enable_shared_from_this<reactor> {
public:
  /// Creates the epoll instance and eventfd. Throws std::system_error. Always owned by a
  /// std::shared_ptr (sources keep their reactor alive).
  reactor();
  ~reactor();
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  /// Registers `s`'s fd (already non-blocking) for both directions, edge-triggered. Throws
  /// std::system_error (the caller still owns the fd).
  void add(io_source* s);
  /// Polls once: blocks until an event, an interrupt, or `deadline` (nullopt: no limit;
  /// a deadline already passed: does not block). Wakes the waiters of ready sources.
  /// Returns the number of source events handled; 0 when another thread is polling.
  std::size_t poll(std::optional<std::chrono::steady_clock::time_point> deadline);
  /// Makes a blocked (or the next) poll() return. Async-signal-safe write to the eventfd.
  void interrupt() noexcept;
  /// Wakes every waiter of every open source (runtime shutdown: the woken procs are
  /// cancelled, which closes their sockets). Returns how many waiters were woken.
  std::size_t wake_all() noexcept;
  /// Sources currently registered (open).
  [[nodiscard]] std::size_t registered() const noexcept {
    return registered_.load(std::memory_order_seq_cst);
  }

  /// Called by the runtime when a registration may need a driver (0 -> 1 registered).
  void (*on_first_registration_)(void*) noexcept = nullptr;
  void* on_first_registration_arg_ = nullptr;

private:
  friend class io_source;
  void deregister(io_source* s) noexcept;
  /// Queues `s` for freeing after the current epoll batch.
  void retire(io_source* s) noexcept;
  /// Frees the retired sources when no poll is running (else that poll will, when done).
  void free_retired_if_idle() noexcept;

public:
  /// Frees the retired sources (no poll may run concurrently: the runtime calls it after its
  /// workers have stopped). A retired source holds its reactor, so this also breaks that cycle.
  void free_retired() noexcept;

private:
  int epfd_ = -1;
  int evfd_ = -1;
  std::atomic<std::size_t> registered_{0};
  std::mutex poll_mu_; // held by the polling thread for a whole poll (wait + dispatch)
  std::mutex retired_mu_;
  io_source* retired_ = nullptr;
  std::mutex live_mu_;
  io_source* live_ = nullptr; // open sources, linked through prev_live_/next_live_
};

/// Awaits the next readiness edge of `src` in direction `d` after sequence `seen`, optionally
/// until `deadline`. await_resume throws bastion::timed_out when the deadline passed first and
/// std::system_error(bad_file_descriptor) when the socket was closed meanwhile (`op` names
/// the operation in the message). A plain awaiter: a wait costs no coroutine frame.
/// Immovable once awaited (the slot and the timer point into it). The proc resumes on the
/// worker that polled the event (or fired the timer).
class readiness_operation {
public:
  readiness_operation(
      io_source* src,
      io_dir d,
      std::uint32_t seen,
      std::optional<std::chrono::steady_clock::time_point> deadline,
      const char* op) noexcept
      : src_(src)
      , dir_(d)
      , seen_(seen)
      , deadline_(deadline)
      , op_(op) {}
  readiness_operation(const readiness_operation&) = delete;
  readiness_operation& operator=(const readiness_operation&) = delete;
  ~readiness_operation() { withdraw(); }

  [[nodiscard]] bool await_ready() const noexcept { return moved(); }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();

private:
  [[nodiscard]] bool moved() const noexcept { return src_->seq(dir_) != seen_ || src_->closed(); }
  void withdraw() noexcept {
    if (mine_ != nullptr) {
      src_->slot(dir_).retract_if(std::exchange(mine_, nullptr));
    }
    race_.finish();
  }

  io_source* src_;
  io_dir dir_;
  std::uint32_t seen_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  const char* op_;
  deadline_race race_;
  wake_target* mine_ = nullptr; // what this operation parked in the slot, until withdrawn
};

/// The reactor of `rt` (the runtime's, created with it).
reactor& reactor_of(runtime_impl* rt) noexcept;

} // namespace bastion::detail
