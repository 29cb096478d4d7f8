// bastion/detail/timer_heap.hpp: the runtime's pending timers, an intrusive binary min-heap.
//
// Internal: sleeps and timeouts embed a timer_node; the runtime keeps them here under its
// timer mutex, asks for the next deadline to bound how long a worker parks, and fires what
// has expired.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace bastion::detail {

/// The intrusive header of a pending timer (a sleep or a timeout embeds one).
///
/// The owner sets `deadline` and `fire_fn_` before `timer_heap::insert`; the heap owns `seq`
/// and `heap_index` while the node is armed. Thread-safety: none of its own; the heap's guard
/// (the runtime's timer mutex) covers every field while the node is armed.
struct timer_node {
  /// `heap_index` of a node that is in no heap.
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// When the timer expires.
  std::chrono::steady_clock::time_point deadline{};
  /// Tie-breaker assigned by `timer_heap::insert`: equal deadlines fire in insertion order.
  std::uint64_t seq = 0;
  /// Position in the heap's array, or `npos` when not armed. Written only by the heap.
  std::size_t heap_index = npos;
  /// What firing does (typically: wake the sleeping proc). Never throws.
  void (*fire_fn_)(timer_node*) noexcept = nullptr;

  /// Calls `fire_fn_`. @pre the caller took the node out of the heap (see
  /// `timer_heap::pop_expired`); the node may be destroyed by the call.
  void fire() noexcept { fire_fn_(this); }

  /// Whether the node is in a heap.
  [[nodiscard]] bool armed() const noexcept { return heap_index != npos; }
};

/// Pending timers ordered by (deadline, seq): an intrusive binary min-heap over an array of
/// `timer_node*`, each node remembering its index so it can be cancelled in O(log n).
///
/// Stands in for a hierarchical timing wheel (Varghese & Lauck 1987, as in Tokio's time
/// driver). Like Go's runtime timers (a 4-ary heap per P), a heap is chosen for O(log n)
/// cancel and exact ordering, here including FIFO among equal deadlines. The heap never
/// allocates per node; its array grows like a std::vector.
///
/// Thread-safety: none. The runtime guards a timer_heap with a mutex; every member must be
/// called with that mutex held.
class timer_heap {
public:
  timer_heap() = default;
  timer_heap(const timer_heap&) = delete;
  timer_heap& operator=(const timer_heap&) = delete;

  /// Arms `node`: assigns its `seq` from the heap's counter and inserts it by (deadline, seq).
  /// @param node @pre not armed, `deadline` and `fire_fn_` set; must outlive its time here.
  /// @throws std::bad_alloc if the array must grow and cannot; then nothing changed (strong
  ///         guarantee).
  /// Complexity: O(log n), amortised O(1) array growth.
  void insert(timer_node* node) {
    nodes_.push_back(node); // the only step that may throw: nothing changed yet
    node->seq = next_seq_++;
    node->heap_index = nodes_.size() - 1;
    sift_up(node->heap_index);
  }

  /// Disarms `node` if it is armed (cancelling a sleep or timeout).
  /// @returns true if it was armed and is now removed; false if it was not in the heap
  ///          (already fired or never inserted).
  /// @pre if armed, it is armed in *this* heap.
  /// Complexity: O(log n).
  bool remove(timer_node* node) noexcept {
    if (!node->armed()) {
      return false;
    }
    erase_at(node->heap_index);
    return true;
  }

  /// Takes out one expired node: the earliest by (deadline, seq) if its deadline <= `now`.
  /// @param now the current time of the steady clock.
  /// @returns the node, now disarmed (the caller fires it, usually after releasing the
  ///          mutex), or null if none has expired.
  /// Complexity: O(log n).
  [[nodiscard]] timer_node* pop_expired(std::chrono::steady_clock::time_point now) noexcept {
    if (nodes_.empty() || nodes_.front()->deadline > now) {
      return nullptr;
    }
    timer_node* const node = nodes_.front();
    erase_at(0);
    return node;
  }

  /// The earliest deadline, or nullopt if no timer is armed. Complexity: O(1).
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point>
  next_deadline() const noexcept {
    if (nodes_.empty()) {
      return std::nullopt;
    }
    return nodes_.front()->deadline;
  }

  /// Number of armed timers. Complexity: O(1).
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }

  /// Whether no timer is armed. Complexity: O(1).
  [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }

private:
  // Invariant: for every i > 0, !before(nodes_[i], nodes_[(i - 1) / 2]), and
  // nodes_[i]->heap_index == i. Nodes outside the heap have heap_index == npos.

  static bool before(const timer_node* a, const timer_node* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
  }

  void place(timer_node* node, std::size_t index) noexcept {
    nodes_[index] = node;
    node->heap_index = index;
  }

  void sift_up(std::size_t index) noexcept {
    timer_node* const node = nodes_[index];
    while (index > 0) {
      const std::size_t parent = (index - 1) / 2;
      if (!before(node, nodes_[parent])) {
        break;
      }
      place(nodes_[parent], index);
      index = parent;
    }
    place(node, index);
  }

  void sift_down(std::size_t index) noexcept {
    timer_node* const node = nodes_[index];
    const std::size_t n = nodes_.size();
    for (;;) {
      std::size_t child = 2 * index + 1;
      if (child >= n) {
        break;
      }
      if (child + 1 < n && before(nodes_[child + 1], nodes_[child])) {
        ++child;
      }
      if (!before(nodes_[child], node)) {
        break;
      }
      place(nodes_[child], index);
      index = child;
    }
    place(node, index);
  }

  // Removes nodes_[index]: the last node fills the hole and sifts whichever way it must.
  void erase_at(std::size_t index) noexcept {
    timer_node* const removed = nodes_[index];
    timer_node* const last = nodes_.back();
    nodes_.pop_back();
    removed->heap_index = timer_node::npos;
    if (last == removed) {
      return;
    }
    place(last, index);
    if (index > 0 && before(last, nodes_[(index - 1) / 2])) {
      sift_up(index);
    } else {
      sift_down(index);
    }
  }

  std::vector<timer_node*> nodes_;
  std::uint64_t next_seq_ = 0;
};

} // namespace bastion::detail
