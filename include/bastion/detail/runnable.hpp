// bastion/detail/runnable.hpp: the intrusive header of everything a worker can run.
//
// Internal: run queues, the injector and the blocking pool hold pointers to this header
// and never allocate per item. A lightproc embeds it (see bastion/detail/proc.hpp).
#pragma once

namespace bastion::detail {

/// How the executor enters a runnable: poll it, or drop it at shutdown.
enum class run_mode : bool {
  poll,   ///< run (poll) the unit once
  cancel, ///< the executor shut down with the unit still queued
};

/// The schedulable unit as the executor sees it: an intrusive link and one entry point
/// (one function for both entries keeps every proc 8 bytes smaller).
///
/// Thread-safety: a runnable is owned by exactly one queue (or one worker) at a time; the
/// queue that holds it may write `next_`, nobody else touches it while it is queued.
struct runnable {
  /// Intrusive link, used only while the runnable sits in the injector (or another
  /// intrusive list). Local run queues store the pointer in a ring and ignore this field.
  runnable* next_ = nullptr;

  /// The entry point. With run_mode::poll it runs (polls) the unit once on the calling
  /// worker; it never throws: a proc catches what its body throws and reports it through its
  /// join handle. With run_mode::cancel the executor shut down with this unit still queued:
  /// the unit reports "cancelled" to whoever waits on it and releases the queue's reference.
  void (*entry_)(runnable*, run_mode) noexcept = nullptr;

  /// Runs the unit once. @pre the caller took it out of a queue.
  void run() noexcept { entry_(this, run_mode::poll); }
  /// Drops the unit at shutdown, reporting it cancelled. @pre the caller took it out of a queue.
  void cancel() noexcept { entry_(this, run_mode::cancel); }
};

} // namespace bastion::detail
