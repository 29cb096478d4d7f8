// bastion/detail/injector.hpp: the global injection queue shared by all workers.
//
// Internal: work submitted from outside the executor lands here, and a worker whose local
// run queue overflows moves half of it here. Workers pull from it in fair-share batches.
#pragma once

#include <bastion/detail/runnable.hpp>

#include <atomic>
#include <cassert>
#include <cstddef>
#include <mutex>

namespace bastion::detail {

/// The global injection queue: an intrusive FIFO of runnables linked through
/// `runnable::next_`, guarded by one mutex, with a lock-free length hint.
///
/// After the shape of Tokio's multi-threaded scheduler "inject" queue (and Go's global run
/// queue `sched.runq`): a plain locked list, because it is touched only when a local queue
/// overflows, when work arrives from outside, or when a worker's local queue runs dry.
/// Batches (`push_batch`, `pop_batch`) keep it at one lock acquisition per batch.
///
/// Closing: `close()` stops admission through `push()` (it returns false so the caller can
/// report the work as rejected). `push_batch()` is not gated: it carries work that was already
/// admitted (a worker's overflow), and the runtime calls `drain()` only after every worker
/// has stopped, so nothing pushed by a worker is lost.
///
/// Thread-safety: every member is safe from any thread.
class injector {
public:
  /// A detached run of runnables taken out in one lock acquisition, linked through
  /// `runnable::next_` from `first` to `last` (whose `next_` is null). Empty: all null / 0.
  struct batch {
    runnable* first = nullptr;
    runnable* last = nullptr;
    std::size_t size = 0;
  };

  injector() = default;
  injector(const injector&) = delete;
  injector& operator=(const injector&) = delete;

  /// @pre empty: the runtime drained it (see `drain`). Asserted in debug builds.
  ~injector() { assert(head_ == nullptr && "bastion: injector destroyed while holding work"); }

  /// Appends one runnable at the back.
  /// @param r the runnable to enqueue; @pre not in any queue.
  /// @returns true if queued; false if the injector is closed, in which case `r` is untouched
  ///          and still owned by the caller (who reports it rejected or cancels it).
  /// Thread-safety: any thread. Complexity: O(1), one lock acquisition.
  [[nodiscard]] bool push(runnable* r) {
    assert(r != nullptr);
    std::lock_guard lock(mutex_);
    if (closed_.load(std::memory_order_relaxed)) {
      return false;
    }
    r->next_ = nullptr;
    append_locked(r, r, 1);
    return true;
  }

  /// Appends an already linked chain `first -> ... -> last` (through `next_`) of `n`
  /// runnables at the back, in order. Not gated by `close()` (see the class comment).
  /// @param first,last ends of the chain; `last->next_` is overwritten with null.
  /// @param n number of runnables in the chain, @pre n >= 1 and matches the chain.
  /// Thread-safety: any thread. Complexity: O(1), one lock acquisition.
  void push_batch(runnable* first, runnable* last, std::size_t n) {
    assert(first != nullptr && last != nullptr && n >= 1);
    last->next_ = nullptr;
    std::lock_guard lock(mutex_);
    append_locked(first, last, n);
  }

  /// Removes the runnable at the front.
  /// @returns it (with `next_` reset to null), or null if the injector is empty.
  /// Thread-safety: any thread. Complexity: O(1); no lock taken when the length hint is 0.
  [[nodiscard]] runnable* pop() {
    if (empty()) {
      return nullptr;
    }
    std::lock_guard lock(mutex_);
    batch b = take_locked(1);
    return b.first;
  }

  /// Removes up to `max` runnables from the front in one lock acquisition, keeping their order.
  /// @param max upper bound on the number taken; 0 takes nothing.
  /// @returns the detached chain (possibly empty). The caller owns every runnable in it.
  /// Thread-safety: any thread. Complexity: O(k) for k taken, under one lock acquisition.
  [[nodiscard]] batch pop_batch(std::size_t max) {
    if (max == 0 || empty()) {
      return {};
    }
    std::lock_guard lock(mutex_);
    return take_locked(max);
  }

  /// How many runnables a worker should pull in one go so that the injector's backlog is
  /// shared fairly: min(len / workers + 1, limit), after Tokio's `next_remote_task_batch`.
  /// @param workers number of workers sharing the injector, @pre workers >= 1.
  /// @param limit cap on the batch, typically half the local queue's capacity.
  /// Thread-safety: any thread (reads the length hint). Complexity: O(1).
  [[nodiscard]] std::size_t fair_share(std::size_t workers, std::size_t limit) const noexcept {
    assert(workers >= 1);
    const std::size_t share = size() / workers + 1;
    return share < limit ? share : limit;
  }

  /// Number of queued runnables; exact while no push or pop runs concurrently, otherwise a hint.
  /// Thread-safety: any thread, lock-free. Complexity: O(1).
  [[nodiscard]] std::size_t size() const noexcept { return len_.load(std::memory_order_acquire); }

  /// Whether the queue looks empty (same caveat as `size`).
  /// Thread-safety: any thread, lock-free. Complexity: O(1).
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  /// Stops admission: later `push()` calls return false. Queued work stays until popped or
  /// drained.
  /// @returns true if this call closed the injector, false if it was already closed.
  /// Thread-safety: any thread. Complexity: O(1), one lock acquisition.
  bool close() {
    std::lock_guard lock(mutex_);
    return !closed_.exchange(true, std::memory_order_release);
  }

  /// Whether `close()` has been called.
  /// Thread-safety: any thread, lock-free. Complexity: O(1).
  [[nodiscard]] bool is_closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  /// Removes everything queued and calls `f(runnable*)` on each, in FIFO order, outside the
  /// lock (so `f`, typically `runnable::cancel`, may touch the injector again). Repeats until
  /// the injector is seen empty.
  /// @pre for a complete drain, no worker pushes concurrently (call after workers stopped).
  /// Thread-safety: any thread. Complexity: O(n) plus one lock acquisition per round.
  template <class F>
  void drain(F&& f) {
    for (;;) {
      batch b;
      {
        std::lock_guard lock(mutex_);
        b = take_locked(len_.load(std::memory_order_relaxed));
      }
      if (b.first == nullptr) {
        return;
      }
      for (runnable* r = b.first; r != nullptr;) {
        runnable* next = r->next_;
        r->next_ = nullptr;
        f(r);
        r = next;
      }
    }
  }

private:
  // Concurrency design:
  //  - head_, tail_: the list ends, read and written only with mutex_ held.
  //  - len_: the exact length, written only with mutex_ held (release); read without the
  //    lock (acquire) as a hint by `empty()`/`size()`/`fair_share()`. A reader that sees
  //    non-zero still takes the lock and re-checks the list; one that sees 0 may miss a push
  //    in flight, which the executor's wake-up protocol (not this queue) must cover.
  //  - closed_: false -> true once, written only with mutex_ held so `push()` sees a stable
  //    value under the lock; `is_closed()` reads it lock-free (acquire pairs with the
  //    release in `close()`).
  //  - runnable::next_ of a queued runnable is written only under mutex_; once a runnable is
  //    detached (pop/pop_batch/drain) its `next_` belongs to the caller.

  void append_locked(runnable* first, runnable* last, std::size_t n) noexcept {
    if (tail_ == nullptr) {
      head_ = first;
    } else {
      tail_->next_ = first;
    }
    tail_ = last;
    len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }

  batch take_locked(std::size_t max) noexcept {
    const std::size_t len = len_.load(std::memory_order_relaxed);
    const std::size_t n = max < len ? max : len;
    if (n == 0) {
      return {};
    }
    batch b{head_, head_, n};
    for (std::size_t i = 1; i < n; ++i) {
      b.last = b.last->next_;
    }
    head_ = b.last->next_;
    if (head_ == nullptr) {
      tail_ = nullptr;
    }
    b.last->next_ = nullptr;
    len_.store(len - n, std::memory_order_release);
    return b;
  }

  mutable std::mutex mutex_;
  runnable* head_ = nullptr;
  runnable* tail_ = nullptr;
  std::atomic<std::size_t> len_{0};
  std::atomic<bool> closed_{false};
};

} // namespace bastion::detail
