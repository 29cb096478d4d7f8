// bastion/lightproc/this_proc.hpp: what a running proc can ask about itself (pid, stack).
#pragma once

#include <bastion/lightproc/proc_stack.hpp>

#include <bastion/detail/proc.hpp>

#include <cstdint>
#include <stdexcept>

namespace bastion::this_proc {

/// True when called from inside a bastion proc (a spawned task, a fiber, or run()'s task).
[[nodiscard]] inline bool inside() noexcept {
  return detail::current_proc() != nullptr;
}

/// The stack (pid, typed state, callbacks) of the proc calling it. Only that proc may use
/// the reference. Throws std::logic_error outside a proc.
[[nodiscard]] inline proc_stack& stack() {
  auto* p = detail::current_proc();
  if (p == nullptr) {
    throw std::logic_error("bastion::this_proc::stack: called outside a bastion proc");
  }
  return p->stack();
}

/// The pid of the proc calling it. Throws std::logic_error outside a proc.
[[nodiscard]] inline std::uint64_t pid() {
  return stack().pid();
}

} // namespace bastion::this_proc
