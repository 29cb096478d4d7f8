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
  void push(mpsc_node* n) noexcept { push_at(head_, n); }

  /// Takes the oldest node into `out`. Only the consumer. O(1).
  /// @return item (out set), empty, or inconsistent (a producer is mid-push: retry later; the
  /// producer's own wake-up logic runs after it links, so a waiter is not lost).
  pop_status pop(mpsc_node*& out) noexcept { return pop_at(head_, tail_, stub_, out); }

  /// Takes the oldest node or returns null (empty or inconsistent). Only the consumer.
  mpsc_node* pop() noexcept {
    mpsc_node* n = nullptr;
    return pop(n) == pop_status::item ? n : nullptr;
  }

  /// The queue's steps on fields its owner lays out itself (the mailbox keeps `head` and
  /// `tail` on different cache lines). `head` and `tail` start out pointing at `stub`.
  /// push: safe from any thread.
  static void push_at(std::atomic<mpsc_node*>& head, mpsc_node* n) noexcept {
    n->next_.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = head.exchange(n, std::memory_order_acq_rel);
    prev->next_.store(n, std::memory_order_release);
  }
  /// pop: only the consumer.
  static pop_status pop_at(
      std::atomic<mpsc_node*>& head,
      mpsc_node*& tail_ref,
      mpsc_node& stub,
      mpsc_node*& out) noexcept {
    mpsc_node* tail = tail_ref;
    mpsc_node* next = tail->next_.load(std::memory_order_acquire);
    if (tail == &stub) {
      if (next == nullptr) {
        return head.load(std::memory_order_acquire) == &stub ? pop_status::empty
                                                             : pop_status::inconsistent;
      }
      tail_ref = next;
      tail = next;
      next = next->next_.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ref = next;
      out = tail;
      return pop_status::item;
    }
    if (tail != head.load(std::memory_order_acquire)) {
      return pop_status::inconsistent;
    }
    push_at(head, &stub);
    next = tail->next_.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ref = next;
      out = tail;
      return pop_status::item;
    }
    return pop_status::inconsistent;
  }

private:
  std::atomic<mpsc_node*> head_;
  mpsc_node* tail_;
  mpsc_node stub_;
};

} // namespace bastion::detail
