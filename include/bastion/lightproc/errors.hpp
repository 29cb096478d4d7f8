// bastion/lightproc/errors.hpp: the errors a join handle reports when a proc did not
// produce a value (cancelled, rejected at spawn, timed out).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace bastion {

/// Base of the errors bastion itself raises about a proc's fate. The proc's own exceptions
/// are rethrown as they were, never wrapped.
class proc_error : public std::runtime_error {
public:
  /// @param what the message; @param pid the proc concerned (0 when none was assigned).
  proc_error(const std::string& what, std::uint64_t pid)
      : std::runtime_error(what)
      , pid_(pid) {}
  /// The pid of the proc the error is about.
  [[nodiscard]] std::uint64_t pid() const noexcept { return pid_; }

private:
  std::uint64_t pid_;
};

/// The proc was cancelled (join_handle::cancel(), or the runtime shut down before it ended):
/// its frame was destroyed and it produced no value.
class proc_cancelled : public proc_error {
public:
  explicit proc_cancelled(std::uint64_t pid)
      : proc_error("bastion: proc " + std::to_string(pid) + " was cancelled", pid) {}
};

/// The proc was never started: it was spawned on a runtime that had already shut down.
class proc_rejected : public proc_error {
public:
  explicit proc_rejected(std::uint64_t pid)
      : proc_error(
            "bastion: proc " + std::to_string(pid) + " was rejected: the runtime is shut down",
            pid) {}
};

/// An awaited operation did not finish before its deadline (bastion::timeout).
class timed_out : public std::runtime_error {
public:
  timed_out()
      : std::runtime_error("bastion: operation timed out") {}
};

} // namespace bastion
