// bastion/detail/runnable.hpp: the intrusive header of everything a worker can run.
//
// Internal: run queues, the injector and the blocking pool hold pointers to this header
// and never allocate per item. A lightproc embeds it (see bastion/detail/proc.hpp).
#pragma once

namespace bastion::detail {

/// The schedulable unit as the executor sees it: an intrusive link and two entry points.
///
/// Thread-safety: a runnable is owned by exactly one queue (or one worker) at a time; the
/// queue that holds it may write `next_`, nobody else touches it while it is queued.
struct runnable {
  /// Intrusive link, used only while the runnable sits in the injector (or another
  /// intrusive list). Local run queues store the pointer in a ring and ignore this field.
  runnable* next_ = nullptr;

  /// Runs (polls) the unit once on the calling worker. Never throws: a proc catches what
  /// its body throws and reports it through its join handle.
  void (*run_fn_)(runnable*) noexcept = nullptr;

  /// Called instead of run_fn_ when the executor shuts down with this unit still queued:
  /// the unit reports "cancelled" to whoever waits on it and releases the queue's reference.
  void (*cancel_fn_)(runnable*) noexcept = nullptr;

  /// Runs the unit once. @pre the caller took it out of a queue.
  void run() noexcept { run_fn_(this); }
  /// Drops the unit at shutdown, reporting it cancelled. @pre the caller took it out of a queue.
  void cancel() noexcept { cancel_fn_(this); }
};

} // namespace bastion::detail
