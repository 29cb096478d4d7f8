// bastion/detail/waker_slot.hpp: a single-waiter parking spot whose waker changes hands with
// one atomic exchange (mailbox consumer, reply futures). Internal.
#pragma once

#include <bastion/detail/proc.hpp>

#include <atomic>

namespace bastion::detail {

/// Holds at most one waker reference as a raw pointer, so that the party that exchanges it
/// out owns it: nobody else can touch it afterwards (no lock, no torn move of a waker object).
///
/// Protocol (a Dekker pair, hence seq_cst): the waiter publish()es, then re-checks its
/// condition; the notifier makes the condition true, then take()s. Either the waiter sees the
/// condition or the notifier sees the waker. A waiter that stops waiting calls retract(): when
/// it gets the waker back nobody will wake it; when it gets null a wake is already on its way.
/// Thread-safety: safe from any thread; at most one waiter publishes at a time.
class waker_slot {
public:
  waker_slot() noexcept = default;
  waker_slot(const waker_slot&) = delete;
  waker_slot& operator=(const waker_slot&) = delete;
  ~waker_slot() { waker{slot_.exchange(nullptr, std::memory_order_acquire)}.reset(); }

  /// Parks the current proc (takes a reference). @pre called from await_suspend.
  void publish(proc_header* p) noexcept {
    p->add_ref();
    store(static_cast<wake_target*>(p));
  }
  /// Parks `t`, adopting one reference the caller took on it. Drops any earlier waker.
  void store(wake_target* t) noexcept {
    waker{slot_.exchange(t, std::memory_order_seq_cst)}.reset();
  }
  /// Takes the waker out (empty when none). The notifier side.
  [[nodiscard]] waker take() noexcept {
    if (slot_.load(std::memory_order_seq_cst) == nullptr) {
      return waker{};
    }
    return waker{slot_.exchange(nullptr, std::memory_order_seq_cst)};
  }
  /// Takes the waker back: true when it was still there (and is dropped), false when a
  /// notifier took it (its wake is coming).
  bool retract() noexcept {
    waker w{slot_.exchange(nullptr, std::memory_order_seq_cst)};
    return static_cast<bool>(w);
  }

  /// Takes the waker back only when it is still `mine` (the target this waiter stored): true
  /// when it was (and is dropped). A later waiter's waker is left alone, so a waiter torn
  /// down late (its proc was cancelled) cannot strand the next one.
  bool retract_if(wake_target* mine) noexcept {
    wake_target* expected = mine;
    if (slot_.compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst)) {
      waker{mine}.reset();
      return true;
    }
    return false;
  }

private:
  std::atomic<wake_target*> slot_{nullptr};
};

} // namespace bastion::detail
