// bastion/actor/mailbox.hpp: bastion::mailbox, an actor's lock-free MPSC message queue with an
// optional bound and overflow policy, awaitable on both ends.
#pragma once

#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/mpsc_queue.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_entry.hpp>
#include <bastion/detail/waker_slot.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>

namespace bastion {

namespace detail {
struct mailbox_access; // white-box tests reach the consumer's waker through it
} // namespace detail

/// What a bounded mailbox does with a message that finds it full.
enum class overflow_policy : std::uint8_t {
  reject,       ///< the send fails (false) and the message goes to dead letters (mailbox_full)
  drop_oldest,  ///< the oldest queued message goes to dead letters (dropped_oldest)
  backpressure, ///< `co_await send(m)` suspends the sender until there is room
};

/// Thrown by recv()/recv_for() on a mailbox that is closed and empty.
class mailbox_closed : public std::runtime_error {
public:
  mailbox_closed()
      : std::runtime_error("bastion: the mailbox is closed and empty") {}
};

/// A mailbox's bound and overflow policy. capacity 0 (the default) means unbounded.
struct mailbox_config {
  std::size_t capacity_ = 0;
  overflow_policy policy_ = overflow_policy::reject;

  /// Bounds the mailbox to `n` messages (0: unbounded).
  mailbox_config& capacity(std::size_t n) noexcept {
    capacity_ = n;
    return *this;
  }
  /// What a full mailbox does (ignored when unbounded).
  mailbox_config& policy(overflow_policy p) noexcept {
    policy_ = p;
    return *this;
  }
};

/// An actor's mailbox: many senders, one consumer (the owning actor).
///
/// Design: Dmitry Vyukov's intrusive MPSC node-based queue (detail/mpsc_queue.hpp) of message
/// envelopes; a send is one allocation-free exchange. The consumer parks in a waker_slot
/// (detail/waker_slot.hpp); receiving allocates nothing (the awaiter parks the proc itself).
/// A bounded mailbox admits a message by a CAS on its size (never above capacity with
/// reject/backpressure); drop_oldest admits always and trims the oldest under a consumer
/// try-lock. Backpressured senders wait FIFO in a mutex-guarded list that only a
/// backpressure mailbox allocates. What each send writes and what each receive writes lie on
/// different cache lines (96 bytes in all), so a producer and a consumer on two cores do not
/// contend for one line per message.
///
/// Guarantees: at-most-once delivery; FIFO per sender. Closing is separate from the actor's
/// life: a restarted actor keeps its mailbox and what is queued in it. A send racing with
/// close() may still be queued (it is then received or drained, never lost).
/// Thread-safety: senders (try_send, send, close, size, is_closed) are safe from any thread;
/// the consumer side (recv, try_recv, recv_for, drain_to_dead_letters) only from the owning
/// actor, one call at a time. Destroying the mailbox drains it to dead letters
/// (stopped_target); no sender may still wait on it then.
class mailbox {
public:
  /// @param cfg bound and policy (a capacity above 2^32 - 1 is clamped to it); @param sink
  /// where undeliverable messages go (must outlive the mailbox). Allocates only for a bounded
  /// backpressure mailbox (its list of waiting senders): throws std::bad_alloc then.
  explicit mailbox(mailbox_config cfg = {}, dead_letters& sink = dead_letters::global());
  mailbox(const mailbox&) = delete;
  mailbox& operator=(const mailbox&) = delete;
  ~mailbox();

  /// Sends without waiting. Returns false when the message could not be queued: the mailbox
  /// is closed (dead letters: stopped_target) or full under reject or backpressure (dead
  /// letters: mailbox_full). Under drop_oldest it always queues, pushing the oldest out.
  /// Safe from any thread. O(1), lock-free (drop_oldest trimming: a try-lock, never waits).
  bool try_send(message&& m);

  /// Awaiter of send(): yields true when queued, false when the message went to dead letters.
  /// Immovable once awaited (it waits in the mailbox's sender list).
  class [[nodiscard]] send_operation {
  public:
    send_operation(mailbox& mb, message&& m) noexcept
        : mb_(mb)
        , m_(std::move(m)) {}
    send_operation(const send_operation&) = delete;
    send_operation& operator=(const send_operation&) = delete;
    ~send_operation();
    bool await_ready();
    bool await_suspend(std::coroutine_handle<> h);
    [[nodiscard]] bool await_resume() const noexcept { return result_; }

  private:
    friend class mailbox;
    mailbox& mb_;
    message m_;
    bool result_ = false;
    bool suspended_ = false; ///< written by the sender only
    bool queued_ = false;    ///< in mb_'s sender list: guarded by its mutex
    detail::waker w_;        ///< guarded by the sender list's mutex
  };

  /// Sends `m`; with backpressure, suspends the sending proc while the mailbox is full and
  /// resumes it (FIFO among waiting senders) on the consumer's worker once its message is in.
  /// Otherwise it completes at once like try_send. Yields true when queued; false when it
  /// went to dead letters (closed: stopped_target; reject: mailbox_full). Safe from any
  /// proc. Throws std::logic_error when it must wait outside a bastion proc.
  send_operation send(message&& m) noexcept { return send_operation{*this, std::move(m)}; }

  /// Takes the oldest message without waiting (std::nullopt when none is ready). Only the
  /// owning actor. O(1).
  std::optional<message> try_recv();

  /// Awaiter of recv(): takes a ready message at once; else parks the consumer proc (no
  /// allocation) until a sender or close() wakes it. Immovable. Destroying it while parked
  /// (the proc was cancelled) takes the parking back; a message it had already taken for
  /// the proc (woken, then cancelled before it resumed) goes to dead letters (stopped_target),
  /// so it is not lost.
  class [[nodiscard]] recv_operation : private detail::resume_guard {
  public:
    explicit recv_operation(mailbox& mb) noexcept
        : mb_(mb) {}
    recv_operation(const recv_operation&) = delete;
    recv_operation& operator=(const recv_operation&) = delete;
    ~recv_operation() {
      if (parked()) {
        mb_.unpark();
      }
      if (m_) {
        mb_.sink().record(std::move(m_), dead_letter_reason::stopped_target);
      }
    }
    bool await_ready() { return mb_.recv_ready(m_); }
    bool await_suspend(std::coroutine_handle<> h) {
      if (!mb_.park(h, m_, *this)) {
        return false;
      }
      ready = &still_ready; // the guard's function doubles as the parked flag
      return true;
    }
    message await_resume() {
      const bool was_parked = parked();
      ready = nullptr;
      return mb_.recv_resume(m_, was_parked);
    }

  private:
    [[nodiscard]] bool parked() const noexcept { return ready != nullptr; }
    static bool still_ready(detail::resume_guard* g, detail::proc_header* p) noexcept {
      auto* self = static_cast<recv_operation*>(g);
      return self->mb_.repark_unless_ready(p, self->m_);
    }

    mailbox& mb_;
    message m_;
  };

  /// Awaits the next message: suspends the consuming proc while the mailbox is empty; it
  /// resumes on the worker that picks it up after a sender's wake. Throws mailbox_closed when
  /// the mailbox is closed and empty, std::logic_error outside a bastion proc. Only the owning
  /// actor (exactly one consumer may wait). Allocates nothing.
  recv_operation recv() noexcept { return recv_operation{*this}; }

  /// Awaits the next message for at most `d`: std::nullopt when none came in time (a timeout
  /// is an ordinary outcome for an actor, so it is not an exception). Throws mailbox_closed
  /// when closed and empty. Only the owning actor.
  template <class Rep, class Period>
  task<std::optional<message>> recv_for(std::chrono::duration<Rep, Period> d) {
    return recv_until(clock::now() + std::chrono::duration_cast<clock::duration>(d));
  }
  /// recv_for with an absolute steady-clock deadline.
  task<std::optional<message>> recv_until(clock::time_point deadline);

  /// Closes the mailbox: later sends go to dead letters (stopped_target), waiting senders get
  /// false (their messages too), a waiting consumer wakes (and gets mailbox_closed once the
  /// queue is empty). Queued messages stay: receive them, or drain_to_dead_letters().
  /// Idempotent. Safe from any thread.
  void close() { close(true); }
  /// close() for the owning actor's own end (its proc is over, so no consumer waits): the
  /// same, without looking for a consumer to wake (one fence and one exchange fewer).
  /// Idempotent. Only the owning actor, or whoever settles its end.
  void close_without_consumer() { close(false); }
  /// True once close() ran. Safe from any thread.
  [[nodiscard]] bool is_closed() const noexcept {
    return tx_.closed.load(std::memory_order_acquire);
  }

  /// Moves every queued message to dead letters with `r`; returns how many. Only the owning
  /// actor (or once it is gone). O(n).
  std::size_t drain_to_dead_letters(dead_letter_reason r = dead_letter_reason::stopped_target);

  /// Approximate number of queued messages (for resizers; exact when quiescent). Safe from
  /// any thread.
  [[nodiscard]] std::size_t size() const noexcept {
    const auto n = queued(std::memory_order_relaxed);
    return n < 0 ? 0 : static_cast<std::size_t>(n);
  }
  /// The bound (0: unbounded).
  [[nodiscard]] std::size_t capacity() const noexcept { return tx_.cap; }
  /// The overflow policy.
  [[nodiscard]] overflow_policy policy() const noexcept { return tx_.policy; }
  /// The dead-letter sink.
  [[nodiscard]] dead_letters& sink() const noexcept { return *rare_.sink; }

private:
  void close(bool wake_consumer);
  friend struct detail::mailbox_access;
  class timed_consumer_wait;
  struct sender_list;

  bool admit() noexcept;
  void enqueue(message&& m) noexcept;
  void lock_consumer() noexcept;
  void unlock_consumer() noexcept { rx_.consumer_lock.store(false, std::memory_order_release); }
  /// Messages admitted and not yet taken; `o` orders the load of the senders' count. Read
  /// from another thread than the consumer's it is approximate (even briefly negative).
  [[nodiscard]] std::int64_t queued(std::memory_order o) const noexcept;
  /// The consumer took one message out of the queue.
  void note_taken() noexcept;
  /// Pops the oldest node into `out` (see detail::mpsc_queue::pop). Only the consumer.
  detail::mpsc_queue::pop_status pop_node(detail::mpsc_node*& out) noexcept {
    return detail::mpsc_queue::pop_at(tx_.head, rx_.tail, rare_.stub, out);
  }
  /// Pops the oldest node, or null (empty, or a sender is mid-push). Only the consumer.
  detail::mpsc_node* pop_node() noexcept {
    detail::mpsc_node* n = nullptr;
    return pop_node(n) == detail::mpsc_queue::pop_status::item ? n : nullptr;
  }
  detail::envelope* trim_locked(std::size_t keep) noexcept;
  void record_chain(detail::envelope* chain, dead_letter_reason r) noexcept;
  void trim_from_sender() noexcept;
  void admit_senders();
  bool recv_ready(message& out);
  /// recv's await_suspend: publishes the consumer's waker, then re-checks; true when the proc
  /// suspends (then `guard` is installed on it), false with `out` set when it goes on.
  bool park(std::coroutine_handle<> h, message& out, detail::resume_guard& guard);
  /// Publishes `p` as the waiting consumer, fences, then re-checks: true when `p` stays
  /// parked (nothing there, or a wake is on its way), false with `out` set (or the mailbox
  /// closed) and the waker taken back. Throws what try_recv throws (after publishing).
  bool publish_and_recheck(detail::proc_header* p, message& out);
  /// recv's resume guard: true when a message (into `out`) or close() is there; else parks
  /// `p` again and returns false (see detail::resume_guard).
  bool repark_unless_ready(detail::proc_header* p, message& out) noexcept;
  void unpark() noexcept;
  message recv_resume(message& ready, bool parked);
  // Each side reads the bound and policy from its own cache line.
  [[nodiscard]] bool bounded_drop_oldest() const noexcept { // senders
    return tx_.cap != 0 && tx_.policy == overflow_policy::drop_oldest;
  }
  [[nodiscard]] bool bounded_backpressure() const noexcept { // senders
    return tx_.cap != 0 && tx_.policy == overflow_policy::backpressure;
  }
  [[nodiscard]] bool taker_drop_oldest() const noexcept { // the consumer
    return rx_.kind == mode::drop_oldest;
  }
  [[nodiscard]] bool taker_backpressure() const noexcept { // the consumer
    return rx_.kind == mode::backpressure;
  }

  // Layout: what every send writes (sender side) and what every receive writes (receiver
  // side) sit on different 64-byte cache lines, so a producer and a busy consumer on two
  // cores do not pass one line back and forth per message (measured: counting, consumer
  // beside producer, took 2.8 s on one line and 0.63 s split). The rarely used fields fill
  // the gap between them.
  //
  // Concurrency design:
  //   size   — unbounded: messages ever admitted (senders increment; the receiver counts what
  //            it took in `taken`, so it never writes the sender side). Bounded: messages
  //            admitted and not yet taken (CAS against cap with reject/backpressure; the
  //            receiver decrements). seq_cst: pairs with consumer.publish (a Dekker pair:
  //            either the consumer sees the message, or the sender's take() after its fence
  //            sees the waker).
  //   head / tail / stub — the MPSC queue (detail::mpsc_queue::push_at / pop_at): push from
  //            any thread; pop by the consumer, or under consumer_lock (drop_oldest).
  //   consumer_lock — only with drop_oldest: whoever pops holds it (the consumer spins on
  //            it; trimming senders only try it).
  //   closed — false -> true once (seq_cst).
  //   senders — only for a bounded backpressure mailbox (null otherwise): its waiting senders
  //            (+ each waiter's queued_, w_, result_, m_) are guarded by its mutex;
  //            has_senders mirrors "the list is not empty" (set true provisionally by a sender
  //            before its admission retry: a Dekker pair with the consumer's size decrement).
  enum class mode : std::uint8_t { unbounded, reject, drop_oldest, backpressure };
  /// The receiver side's copy of a bound and policy.
  static mode mode_of(std::uint32_t cap, overflow_policy p) noexcept;
  struct alignas(16) sender_side {
    sender_side(std::uint32_t c, overflow_policy p) noexcept
        : head(nullptr) // the stub, once the mailbox has built it
        , cap(c)
        , policy(p) {}
    std::atomic<detail::mpsc_node*> head;
    std::atomic<std::int64_t> size{0};
    detail::waker_slot consumer; ///< read by every send; written when the consumer parks
    const std::uint32_t cap;
    const overflow_policy policy;
    std::atomic<bool> closed{false};
    std::atomic<bool> has_senders{false};
  };
  struct rarely_used {
    explicit rarely_used(dead_letters& s) noexcept
        : sink(&s) {}
    dead_letters* sink;
    sender_list* senders = nullptr; ///< owned (deleted by ~mailbox)
    detail::mpsc_node stub;         ///< touched only when the queue runs empty
    std::byte gap[24] = {};         ///< keeps the receiver side off the sender side's line
  };
  struct receiver_side {
    receiver_side(detail::mpsc_node* stub, mode k) noexcept
        : tail(stub)
        , kind(k) {}
    detail::mpsc_node* tail;
    /// Unbounded: messages taken (mod 2^32); the consumer's plain load + store, read by size().
    std::atomic<std::uint32_t> taken{0};
    const mode kind; ///< the consumer's copy of cap/policy
    std::atomic<bool> consumer_lock{false};
  };
  // With the mailbox 16-byte aligned, a sender side of a multiple of 16 bytes followed by at
  // least 48 more bytes puts the receiver side on another line wherever the mailbox lands.
  static_assert(sizeof(sender_side) % 16 == 0 && sizeof(rarely_used) >= 64 - 16);

  sender_side tx_;
  rarely_used rare_;
  receiver_side rx_;
};

} // namespace bastion
