// bastion/detail/local_queue.hpp: each worker's bounded lock-free run queue.
//
// Internal: the owning worker pushes and pops at its two ends without locks; idle workers
// steal half of it with a constant number of CAS operations. When it is full, half of it
// moves to the global injector in one batch.
#pragma once

#include <bastion/detail/injector.hpp>
#include <bastion/detail/runnable.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>

namespace bastion::detail {

/// What one `local_queue::steal_into` attempt got.
struct steal_result {
  /// The oldest stolen runnable, for the thief to run now; null if nothing was stolen.
  runnable* task = nullptr;
  /// How many runnables were taken from the victim, `task` included (the rest went into the
  /// thief's queue). 0 when nothing was stolen.
  std::size_t stolen = 0;
  /// True when the attempt gave up because another thief was mid-steal on the same victim.
  /// A worker that sees this often may prefer the injector over stealing for a while.
  bool contended = false;
};

/// What one `local_queue::refill_from` call got from the injector.
struct refill_result {
  /// The oldest runnable pulled, for the worker to run now; null if the injector was empty.
  runnable* task = nullptr;
  /// How many runnables were pulled, `task` included (the rest went into the local queue).
  std::size_t pulled = 0;
};

/// A worker's bounded, lock-free, single-producer multi-consumer run queue of runnables.
///
/// After Tokio's multi-threaded scheduler local queue (tokio/src/runtime/scheduler/
/// multi_thread/queue.rs), itself after Go's `runqput`/`runqget`/`runqsteal`: a ring of
/// `Capacity` slots, a `tail` index written only by the owner, and a packed head word holding
/// two indices, "steal" and "real". A thief claims half of the queue with one CAS that moves
/// "real" and leaves "steal" behind, copies the claimed slots, then releases them with a
/// second CAS that brings "steal" up to "real". While steal != real the claimed slots are
/// reserved: the owner will not overwrite them and other thieves back off (`contended`).
/// Stealing costs O(1) CAS operations plus copying the stolen half, whatever the length.
///
/// The owner pops from the head too (FIFO): the queue is a fair run queue, not a LIFO stack;
/// a "run next" slot, if the executor wants one, lives in the worker, not here.
///
/// Thread-safety: `push_back`, `push_back_or_overflow`, `pop`, `refill_from` and `drain` only
/// on the owning worker's thread; `steal_into`, `size`, `empty` from any thread.
///
/// @tparam Capacity number of slots: a power of two, at least 2, at most 2^31.
template <std::uint32_t Capacity = 256>
class alignas(64) local_queue {
  static_assert(
      Capacity >= 2 && (Capacity & (Capacity - 1)) == 0,
      "local_queue Capacity must be a power of two >= 2");
  static_assert(Capacity <= (std::uint32_t{1} << 31), "local_queue Capacity must fit the indices");
  static_assert(
      std::atomic<std::uint64_t>::is_always_lock_free,
      "local_queue needs a lock-free 64-bit atomic for its head word");

public:
  /// The number of slots.
  static constexpr std::size_t capacity = Capacity;

  /// An empty queue.
  local_queue() noexcept = default;

  /// An empty queue whose indices start at `start_index` instead of 0. Only tests need this:
  /// starting near 2^32 exercises the index wrap-around that a long-lived worker reaches.
  explicit local_queue(std::uint32_t start_index) noexcept
      : head_(pack(start_index, start_index))
      , tail_(start_index) {}

  local_queue(const local_queue&) = delete;
  local_queue& operator=(const local_queue&) = delete;

  /// @pre empty: the owner drained it (see `drain`). Asserted in debug builds.
  ~local_queue() { assert(empty() && "bastion: local_queue destroyed while holding work"); }

  /// Appends `r` at the tail if there is room.
  /// @param r the runnable, @pre not in any queue.
  /// @returns true if queued, false if the queue is full (slots claimed by an in-flight
  ///          steal count as used); on false `r` is untouched.
  /// Thread-safety: owner only. Complexity: O(1), wait-free, no CAS.
  [[nodiscard]] bool push_back(runnable* r) noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    const std::uint32_t steal = unpack_steal(head_.load(std::memory_order_acquire));
    if (static_cast<std::uint32_t>(tail - steal) >= Capacity) {
      return false;
    }
    publish_one(tail, r);
    return true;
  }

  /// Appends `r` at the tail; if the queue is full, moves the older half of the queue
  /// followed by `r` to `inj` in one `push_batch` (one lock acquisition), keeping their order.
  /// If the queue is full only because a thief holds slots mid-steal, `r` alone goes to `inj`
  /// (the steal is about to free room), as Tokio does.
  /// @param r the runnable, @pre not in any queue.
  /// @param inj the injector to overflow into (not gated by its `close()`).
  /// @returns how many runnables went to `inj`: 0 if `r` fit, Capacity / 2 + 1 on an overflow,
  ///          1 when a concurrent steal held the slots. The worker can count overflows by it.
  /// Thread-safety: owner only. Complexity: O(1) when `r` fits; O(Capacity / 2) on overflow.
  std::size_t push_back_or_overflow(runnable* r, injector& inj) {
    for (;;) {
      const std::uint64_t head = head_.load(std::memory_order_acquire);
      const std::uint32_t steal = unpack_steal(head);
      const std::uint32_t real = unpack_real(head);
      const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
      if (static_cast<std::uint32_t>(tail - steal) < Capacity) {
        publish_one(tail, r);
        return 0;
      }
      if (steal != real) {
        r->next_ = nullptr;
        inj.push_batch(r, r, 1);
        return 1;
      }
      if (const std::size_t moved = push_overflow(r, real, tail, inj); moved != 0) {
        return moved;
      }
      // A thief took some runnables between our load and our CAS: there is room now.
    }
  }

  /// Removes the runnable at the head (the oldest).
  /// @returns it, or null if the queue is empty (or its remaining items are all claimed by
  ///          an in-flight steal).
  /// Thread-safety: owner only. Complexity: O(1); lock-free (retries only when a thief's
  ///          CAS on the head word wins the race).
  [[nodiscard]] runnable* pop() noexcept {
    std::uint64_t head = head_.load(std::memory_order_acquire);
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    std::uint32_t index = 0;
    for (;;) {
      const std::uint32_t steal = unpack_steal(head);
      const std::uint32_t real = unpack_real(head);
      if (real == tail) {
        return nullptr;
      }
      const std::uint32_t next_real = real + 1;
      // With no steal in flight both indices move together; otherwise "steal" stays on the
      // thief's claim and only "real" moves.
      const std::uint64_t next =
          steal == real ? pack(next_real, next_real) : pack(steal, next_real);
      if (head_.compare_exchange_weak(
              head, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
        index = real;
        break;
      }
    }
    return slot(index).load(std::memory_order_relaxed);
  }

  /// Steals half (rounded up) of this queue's runnables into `dst`, the calling worker's own
  /// queue. The oldest stolen runnable is returned to run now; the others are appended to
  /// `dst` in order.
  /// After Tokio's `Steal::steal_into` and Go's `runqsteal`/`runqgrab`.
  /// @param dst the thief's own queue, @pre `&dst != this`, and the caller is `dst`'s owner.
  ///            If `dst` holds more than Capacity / 2 runnables nothing is stolen.
  /// @returns the stolen task and count, or {null, 0, contended} when nothing was taken;
  ///          `contended` is true when another thief was mid-steal on this queue.
  /// Thread-safety: any thread (as `dst`'s owner). Complexity: O(1) CAS operations when
  ///          uncontended, plus O(k) to copy the k stolen runnables; lock-free.
  [[nodiscard]] steal_result steal_into(local_queue& dst) noexcept {
    assert(&dst != this);
    const std::uint32_t dst_tail = dst.tail_.load(std::memory_order_relaxed);
    const std::uint32_t dst_steal = unpack_steal(dst.head_.load(std::memory_order_acquire));
    if (static_cast<std::uint32_t>(dst_tail - dst_steal) > Capacity / 2) {
      // The thief has enough work of its own, and the stolen half might not fit.
      return {};
    }

    // Phase 1: claim [first, first + n) by moving "real" while "steal" stays at `first`.
    std::uint64_t head = head_.load(std::memory_order_acquire);
    std::uint32_t first = 0;
    std::uint32_t n = 0;
    for (;;) {
      const std::uint32_t steal = unpack_steal(head);
      const std::uint32_t real = unpack_real(head);
      if (steal != real) {
        return {nullptr, 0, true};
      }
      const std::uint32_t tail = tail_.load(std::memory_order_acquire);
      const std::uint32_t len = tail - real;
      n = len - len / 2;
      if (n == 0) {
        return {};
      }
      if (n > Capacity / 2) {
        // `head` is stale (the owner popped and pushed since): reload and retry.
        head = head_.load(std::memory_order_acquire);
        continue;
      }
      if (head_.compare_exchange_weak(
              head, pack(steal, real + n), std::memory_order_acq_rel, std::memory_order_acquire)) {
        first = real;
        break;
      }
    }

    // Phase 2: copy. The claimed slots are ours until phase 3: the owner does not overwrite
    // them (its room check uses "steal") and no other thief starts (steal != real).
    runnable* const task = slot(first).load(std::memory_order_relaxed);
    for (std::uint32_t i = 1; i < n; ++i) {
      runnable* const r = slot(first + i).load(std::memory_order_relaxed);
      dst.slot(dst_tail + i - 1).store(r, std::memory_order_relaxed);
    }

    // Phase 3: release the claim, "steal" catches up with "real" (which the owner's pops
    // may have advanced meanwhile).
    head = head_.load(std::memory_order_acquire);
    for (;;) {
      assert(unpack_steal(head) == first);
      const std::uint32_t real = unpack_real(head);
      if (head_.compare_exchange_weak(
              head, pack(real, real), std::memory_order_acq_rel, std::memory_order_acquire)) {
        break;
      }
    }

    if (n > 1) {
      dst.tail_.store(dst_tail + (n - 1), std::memory_order_release);
    }
    return {task, n, false};
  }

  /// Pulls up to `max` runnables from `inj` in one lock acquisition (capped by this queue's
  /// free room + 1): returns the oldest to run now and appends the rest here, in order.
  /// Pass `inj.fair_share(workers, capacity / 2)` as `max` for Tokio's fair-share policy.
  /// @param inj the injector; @param max upper bound on runnables pulled, 0 pulls nothing.
  /// @returns the task to run and how many were pulled ({null, 0} if none).
  /// Thread-safety: owner only. Complexity: O(k) for k pulled, one lock acquisition, one
  ///          release store.
  [[nodiscard]] refill_result refill_from(injector& inj, std::size_t max) {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    const std::uint32_t steal = unpack_steal(head_.load(std::memory_order_acquire));
    const std::size_t room = Capacity - static_cast<std::uint32_t>(tail - steal);
    injector::batch b = inj.pop_batch(max < room + 1 ? max : room + 1);
    if (b.first == nullptr) {
      return {};
    }
    runnable* const task = b.first;
    runnable* r = task->next_;
    task->next_ = nullptr;
    std::uint32_t i = 0;
    while (r != nullptr) {
      runnable* const next = r->next_;
      r->next_ = nullptr;
      slot(tail + i).store(r, std::memory_order_relaxed);
      ++i;
      r = next;
    }
    if (i != 0) {
      tail_.store(tail + i, std::memory_order_release);
    }
    return {task, b.size};
  }

  /// Number of runnables queued and not claimed by a thief. Exact on the owner's thread when
  /// no steal is in flight; from other threads a snapshot that may be stale at once.
  /// Thread-safety: any thread. Complexity: O(1).
  [[nodiscard]] std::size_t size() const noexcept {
    // Head first, then tail: every "real" a thread can observe was set by someone who had
    // seen a tail at least as large, so tail - real does not underflow.
    const std::uint32_t real = unpack_real(head_.load(std::memory_order_acquire));
    const std::uint32_t tail = tail_.load(std::memory_order_acquire);
    const std::uint32_t len = tail - real;
    return len < Capacity ? len : Capacity;
  }

  /// Whether `size() == 0` (same caveats).
  /// Thread-safety: any thread. Complexity: O(1).
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  /// Pops every runnable and calls `f(runnable*)` on each, oldest first (at shutdown,
  /// typically `runnable::cancel`).
  /// Thread-safety: owner only, or any one thread once the owner has stopped (e.g. after
  /// joining it: the join orders the owner's last writes before the drain). Complexity: O(n).
  template <class F>
  void drain(F&& f) {
    while (runnable* r = pop()) {
      f(r);
    }
  }

private:
  // Concurrency design (indices are free-running uint32_t; a slot is index & (Capacity - 1)):
  //
  //  head_ (64-bit word): steal << 32 | real.
  //    - real: the next slot to pop or steal. steal: the first slot still reserved.
  //    - steal == real: no steal in flight. steal != real: a thief owns [steal, real') for
  //      some real' <= real and is copying it; nobody else may steal, and the owner's room
  //      check (tail - steal < Capacity) keeps it from overwriting those slots.
  //    - Written only by CAS (acq_rel, failure acquire), by the owner (pop, overflow) and
  //      thieves (claim: real += n; release: steal = real). Invariant:
  //      steal <= real <= tail (mod 2^32) and tail - steal <= Capacity.
  //  tail_: one past the newest queued slot. Written only by the owner, with release after
  //    the slot store(s); thieves and size() read it with acquire, so a slot's contents (and
  //    the runnable behind it) are visible before its index is.
  //  buffer_: slots are atomics accessed relaxed; ordering comes from tail_ (publish) and
  //    head_ (reuse): a thief's phase-3 CAS (release) precedes the owner's acquire load of
  //    head_ that lets it overwrite those slots. The owner writes slots in [tail, steal +
  //    Capacity); thieves read only their claimed range.

  static constexpr std::uint32_t mask_ = Capacity - 1;

  static constexpr std::uint64_t pack(std::uint32_t steal, std::uint32_t real) noexcept {
    return (std::uint64_t{steal} << 32) | real;
  }
  static constexpr std::uint32_t unpack_steal(std::uint64_t head) noexcept {
    return static_cast<std::uint32_t>(head >> 32);
  }
  static constexpr std::uint32_t unpack_real(std::uint64_t head) noexcept {
    return static_cast<std::uint32_t>(head);
  }

  std::atomic<runnable*>& slot(std::uint32_t index) noexcept { return buffer_[index & mask_]; }

  void publish_one(std::uint32_t tail, runnable* r) noexcept {
    slot(tail).store(r, std::memory_order_relaxed);
    tail_.store(tail + 1, std::memory_order_release);
  }

  // Moves [head, head + Capacity / 2) and then `r` to `inj`. @pre the queue is full and no
  // steal is in flight at `head`. Returns 0 if a thief moved the head first (retry the push).
  std::size_t push_overflow(runnable* r, std::uint32_t head, std::uint32_t tail, injector& inj) {
    constexpr std::uint32_t half = Capacity / 2;
    assert(static_cast<std::uint32_t>(tail - head) == Capacity);
    (void)tail;
    std::uint64_t expected = pack(head, head);
    if (!head_.compare_exchange_strong(
            expected,
            pack(head + half, head + half),
            std::memory_order_acq_rel,
            std::memory_order_relaxed)) {
      return 0;
    }
    // The half is ours now: link it through next_ in order, then r.
    runnable* const first = slot(head).load(std::memory_order_relaxed);
    runnable* prev = first;
    for (std::uint32_t i = 1; i < half; ++i) {
      runnable* const cur = slot(head + i).load(std::memory_order_relaxed);
      prev->next_ = cur;
      prev = cur;
    }
    prev->next_ = r;
    inj.push_batch(first, r, half + 1);
    return half + 1;
  }

  std::atomic<std::uint64_t> head_{0};
  std::atomic<std::uint32_t> tail_{0};
  std::array<std::atomic<runnable*>, Capacity> buffer_{};
};

} // namespace bastion::detail
