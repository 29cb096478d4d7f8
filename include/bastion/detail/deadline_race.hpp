// bastion/detail/deadline_race.hpp: the race between an event and a deadline that every
// timed awaiter (timeout, a reply with a deadline, recv_for) runs. Internal.
#pragma once

#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_entry.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace bastion::detail {

/// Shared by a join registration and a timer: the first of the two to fire wakes the proc,
/// the other only releases its reference (so a late wake can never resume the proc at some
/// later, unrelated suspension point).
struct race_cell : wake_target {
  std::atomic<std::uint32_t> refs{1};
  std::atomic<bool> fired{false};
  waker target;

  race_cell() noexcept {
    wake_fn_ = [](wake_target* t, wake_mode m) noexcept {
      auto* c = static_cast<race_cell*>(t);
      if (m == wake_mode::wake && !c->fired.exchange(true, std::memory_order_acq_rel)) {
        c->target.wake();
      }
      c->release();
    };
  }
  waker make_waker() noexcept {
    refs.fetch_add(1, std::memory_order_relaxed);
    return waker{this};
  }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      delete this;
    }
  }
};

/// One event-or-deadline race for a suspending proc: the event side and a timer both wake
/// the proc through one race_cell, so exactly one of them resumes it and the loser only drops
/// its reference.
///
/// Use: in await_suspend, start(cur) after set_resume_point; publish event_waker() (or
/// event_target() for a slot that adopts a raw wake_target) where the event comes from;
/// arm_timer(...) when the event has not happened yet; call finish() in await_resume and in
/// the destructor (after retracting the event registration where that is possible).
/// Thread-safety: owned by the awaiter; the cell is what other threads touch.
class deadline_race {
public:
  deadline_race() noexcept = default;
  deadline_race(const deadline_race&) = delete;
  deadline_race& operator=(const deadline_race&) = delete;
  ~deadline_race() { finish(); }

  /// Starts the race for `cur` (whose resume point is already set).
  void start(proc_header* cur) {
    cell_ = new race_cell;
    cell_->target = cur->make_waker();
  }
  /// A waker for the event side (takes one more reference on the cell).
  waker event_waker() noexcept { return cell_->make_waker(); }
  /// The cell with one more reference taken, for slots that adopt a raw wake_target.
  race_cell* event_target() noexcept {
    cell_->refs.fetch_add(1, std::memory_order_relaxed);
    return cell_;
  }
  /// Arms the deadline on `rt`'s timer heap.
  void arm_timer(runtime_impl* rt, std::chrono::steady_clock::time_point deadline) {
    entry_.deadline = deadline;
    entry_.w = cell_->make_waker();
    rt_ = rt;
    timer_insert(rt_, &entry_);
  }
  /// Ends the race: disarms the timer and makes any later wake harmless. Idempotent.
  void finish() noexcept {
    if (rt_ != nullptr) {
      timer_remove(rt_, &entry_);
      rt_ = nullptr;
    }
    if (cell_ != nullptr) {
      // Whoever flips `fired` first owns `target`: a late winner wakes (harmlessly) a
      // proc that has moved on only if it won before this point, never after.
      if (!cell_->fired.exchange(true, std::memory_order_acq_rel)) {
        cell_->target.reset();
      }
      cell_->release();
      cell_ = nullptr;
    }
  }
  /// True between start() and finish().
  [[nodiscard]] bool started() const noexcept { return cell_ != nullptr; }

private:
  race_cell* cell_ = nullptr;
  timer_entry entry_;
  runtime_impl* rt_ = nullptr;
};

} // namespace bastion::detail
