// bastion/detail/timer_entry.hpp: a timer as the runtime arms it: a heap node plus the
// waker to wake when the deadline passes. Internal.
#pragma once

#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_heap.hpp>

#include <chrono>

namespace bastion::detail {

/// A heap node that owns a waker. The runtime moves the waker out under its timer lock when
/// the deadline passes, and wakes it after unlocking; a disarm (timer_remove) under the same
/// lock therefore either gets the waker back or finds it gone, never a half-fired entry.
struct timer_entry : timer_node {
  waker w;
};

/// Arms `e` (deadline and waker set by the caller) on `rt`'s timer heap; wakes a parked
/// worker when it becomes the earliest deadline. Safe from any thread.
void timer_insert(runtime_impl* rt, timer_entry* e);
/// Disarms `e`; true when it was still armed (its waker is then dropped). Safe from any
/// thread. O(log n).
bool timer_remove(runtime_impl* rt, timer_entry* e) noexcept;

} // namespace bastion::detail
