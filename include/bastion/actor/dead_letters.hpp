// bastion/actor/dead_letters.hpp: where undeliverable messages go (counted, logged at debug
// level, passed to an optional user handler): nothing vanishes silently.
#pragma once

#include <bastion/actor/message.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>

namespace bastion {

/// Why a message could not be delivered.
enum class dead_letter_reason : std::uint8_t {
  unknown_target, ///< no actor has the address
  stopped_target, ///< the target's mailbox is closed
  mailbox_full,   ///< bounded mailbox with overflow_policy::reject (or a send abandoned while full)
  dropped_oldest, ///< pushed out of a bounded mailbox by a newer message (drop_oldest)
  unanswered_ask, ///< an ask dropped by its handler without a reply
};

/// The reason's name ("unknown_target", ...).
std::string_view to_string(dead_letter_reason r) noexcept;

/// A dead-letter sink: counts each undeliverable message per reason, logs it at debug level
/// through bastion::logger(), then hands it to the user handler if one is set. The message is
/// destroyed afterwards unless the handler moved it away (an ask then tells its asker no_reply).
///
/// Thread-safety: every member is safe from any thread. The handler may run on any thread,
/// concurrently with itself; it must not call set_handler() on the same sink.
class dead_letters {
public:
  /// The user handler: sees each dead letter and its reason; may move the message away.
  using handler = std::function<void(message&&, dead_letter_reason)>;

  dead_letters() = default;
  dead_letters(const dead_letters&) = delete;
  dead_letters& operator=(const dead_letters&) = delete;

  /// Accounts for `m` (see the class comment). A handler's exception is caught and logged.
  /// Complexity: O(1) plus the handler; takes a mutex briefly to read the handler.
  void record(message&& m, dead_letter_reason r) noexcept;

  /// Sets (or, with an empty function, clears) the handler.
  void set_handler(handler h);

  /// Number of dead letters recorded so far, in all.
  [[nodiscard]] std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) {
      n += c.load(std::memory_order_relaxed);
    }
    return n;
  }
  /// Number of dead letters recorded so far for `r`.
  [[nodiscard]] std::uint64_t count(dead_letter_reason r) const noexcept {
    return counts_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
  }

  /// The process-wide sink mailboxes use unless given another.
  static dead_letters& global() noexcept;

private:
  std::array<std::atomic<std::uint64_t>, 5> counts_{};
  std::mutex mu_;
  std::shared_ptr<const handler> handler_;
};

} // namespace bastion
