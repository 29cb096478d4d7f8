// bastion/detail/mpsc_queue.hpp: Dmitry Vyukov's intrusive, node-based, lock-free
// multi-producer single-consumer queue (the mailbox's message queue). Internal.
#pragma once

#include <atomic>

namespace bastion::detail {

/// A link of mpsc_queue. Derive from it; the queue never allocates or frees nodes.
struct mpsc_node {
  std::atomic<mpsc_node*> next_{nullptr};
};

/// Intrusive lock-free MPSC FIFO queue.
///
/// Source: Dmitry Vyukov, "Intrusive MPSC node-based queue" (1024cores.net, 2010). A push is
/// one atomic exchange plus one store (wait-free); a pop is wait-free for the consumer, but may
/// report `inconsistent` when a producer has swung `head_` and not yet linked its node
/// (a window of two instructions; a preempted producer can stretch it).
///
/// Concurrency design:
///   head_  — the newest node; written by producers only, with exchange (acq_rel), so each
///            producer links behind exactly one predecessor.
///   tail_  — the oldest node (or the stub); the consumer's alone, never shared.
///   node::next_ — null until the successor's producer stores it (release); the consumer
///            loads it (acquire), which publishes the node's payload.
///   stub_  — a dummy node re-pushed by the consumer when it takes the last real node, so the
///            queue is never physically empty.
/// FIFO per producer; the global order is the order of the exchanges on head_.
///
/// Thread-safety: push() is safe from any thread; pop() and empty() only from the single
/// consumer (or whoever holds the consumer role exclusively).
class mpsc_queue {
public:
  /// What pop() found.
  enum class pop_status { item, empty, inconsistent };

  mpsc_queue() noexcept
      : head_(&stub_)
      , tail_(&stub_) {}
  mpsc_queue(const mpsc_queue&) = delete;
  mpsc_queue& operator=(const mpsc_queue&) = delete;

  /// Appends `n`. Safe from any thread. Wait-free: O(1), one atomic exchange.
  void push(mpsc_node* n) noexcept {
    n->next_.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next_.store(n, std::memory_order_release);
  }

  /// Takes the oldest node into `out`. Only the consumer. O(1).
  /// @return item (out set), empty, or inconsistent (a producer is mid-push: retry later; the
  /// producer's own wake-up logic runs after it links, so a waiter is not lost).
  pop_status pop(mpsc_node*& out) noexcept {
    mpsc_node* tail = tail_;
    mpsc_node* next = tail->next_.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) {
        return head_.load(std::memory_order_acquire) == &stub_ ? pop_status::empty
                                                               : pop_status::inconsistent;
      }
      tail_ = next;
      tail = next;
      next = next->next_.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      out = tail;
      return pop_status::item;
    }
    if (tail != head_.load(std::memory_order_acquire)) {
      return pop_status::inconsistent;
    }
    push(&stub_);
    next = tail->next_.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      out = tail;
      return pop_status::item;
    }
    return pop_status::inconsistent;
  }

  /// Takes the oldest node or returns null (empty or inconsistent). Only the consumer.
  mpsc_node* pop() noexcept {
    mpsc_node* n = nullptr;
    return pop(n) == pop_status::item ? n : nullptr;
  }

private:
  std::atomic<mpsc_node*> head_;
  mpsc_node* tail_;
  mpsc_node stub_;
};

} // namespace bastion::detail
