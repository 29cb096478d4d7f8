// bastion/actor/restart.hpp: how a supervisor reacts to a failed child: the supervision
// strategy (one_for_one, one_for_all, rest_for_one), the restart policy (always, never,
// tries(n)), the backoff between restarts, the restart intensity, and the failure a restart
// callback receives.
//
// Source of the semantics: Erlang/OTP's supervisor behaviour (strategies, intensity and
// escalation) and Rust Bastion (policies and backoff).
#pragma once

#include <bastion/actor/message.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <typeinfo>

namespace bastion {

/// Which children a supervisor restarts when one fails (Erlang/OTP's restart strategies).
enum class supervision_strategy : std::uint8_t {
  one_for_one,  ///< only the failed child
  one_for_all,  ///< every child of the supervisor (child supervisors restart their subtree)
  rest_for_one, ///< the failed child and every child started after it
};

/// Shorthands: `s.strategy(bastion::one_for_all)`.
inline constexpr supervision_strategy one_for_one = supervision_strategy::one_for_one;
inline constexpr supervision_strategy one_for_all = supervision_strategy::one_for_all;
inline constexpr supervision_strategy rest_for_one = supervision_strategy::rest_for_one;

/// Whether a failed child is restarted (Rust Bastion's RestartPolicy). Counted per child:
/// tries(n) allows n restarts of that child over its whole life.
/// Thread-safety: a plain value.
class restart_policy {
public:
  /// Always restart (the default).
  static restart_policy always() noexcept { return restart_policy{kind::always, 0}; }
  /// Never restart: a failed child stays stopped (its after_stop runs).
  static restart_policy never() noexcept { return restart_policy{kind::never, 0}; }
  /// At most `n` restarts of each child; the next failure leaves it stopped.
  static restart_policy tries(std::size_t n) noexcept { return restart_policy{kind::tries, n}; }

  /// True when a child that has been restarted `restarts` times may be restarted again.
  [[nodiscard]] bool allows(std::size_t restarts) const noexcept {
    switch (kind_) {
    case kind::always:
      return true;
    case kind::never:
      return false;
    case kind::tries:
      return restarts < n_;
    }
    return false;
  }

private:
  enum class kind : std::uint8_t { always, never, tries };
  restart_policy(kind k, std::size_t n) noexcept
      : kind_(k)
      , n_(n) {}
  kind kind_;
  std::size_t n_;
};

/// The delay before a restart (Rust Bastion's ActorRestartStrategy). `restarts` is how many
/// times the failed child was restarted before (0 for its first restart), counted since its
/// backoff last started over (restart_strategy::backoff_reset; by default over its whole life).
/// Thread-safety: a plain value.
class backoff {
public:
  /// No delay (the default).
  static backoff immediate() noexcept { return backoff{kind::immediate, {}, 1.0, {}}; }
  /// delay = timeout × (1 + restarts).
  static backoff linear(std::chrono::milliseconds timeout) noexcept {
    return backoff{kind::linear, timeout, 1.0, {}};
  }
  /// delay = timeout × multiplier^restarts, capped by `max`. Throws std::invalid_argument
  /// naming "multiplier" when multiplier < 1.
  static backoff exponential(
      std::chrono::milliseconds timeout,
      double multiplier,
      std::chrono::milliseconds max = std::chrono::hours{1}) {
    if (!(multiplier >= 1.0)) {
      throw std::invalid_argument("bastion::backoff::exponential: multiplier must be >= 1");
    }
    return backoff{kind::exponential, timeout, multiplier, max};
  }

  /// The delay before the restart that follows `restarts` earlier restarts. O(1).
  [[nodiscard]] std::chrono::milliseconds delay(std::size_t restarts) const noexcept;

private:
  enum class kind : std::uint8_t { immediate, linear, exponential };
  backoff(kind k, std::chrono::milliseconds t, double m, std::chrono::milliseconds max) noexcept
      : kind_(k)
      , timeout_(t)
      , multiplier_(m)
      , max_(max) {}
  kind kind_;
  std::chrono::milliseconds timeout_;
  double multiplier_;
  std::chrono::milliseconds max_;
};

/// A supervisor's restart settings: policy, backoff and intensity.
///
/// Intensity follows Erlang/OTP: when more than `max_restarts` restarts happen within
/// `period`, the supervisor gives up: it stops its children and fails to its own supervisor
/// (escalation). Default: no intensity limit (Rust Bastion's behaviour).
/// Thread-safety: a plain value.
class restart_strategy {
public:
  /// The restart policy (default always()).
  restart_strategy& policy(restart_policy p) noexcept {
    policy_ = p;
    return *this;
  }
  /// The backoff (default immediate()).
  restart_strategy& backoff(bastion::backoff b) noexcept {
    backoff_ = b;
    return *this;
  }
  /// Starts a child's backoff over once it has run for at least `d` (any duration) since its
  /// last start: its next restart waits the first delay again, as after a first failure.
  /// Without it (the default, as Rust Bastion) the backoff counts every restart of the
  /// child's life, so a child that fails now and then ends up waiting the maximum delay.
  /// The restart policy's count (tries(n)) is never reset. Throws std::invalid_argument
  /// naming "backoff_reset" when d <= 0 or d is 24 days or more (kept in 32-bit ms).
  template <class Rep, class Period>
  restart_strategy& backoff_reset(std::chrono::duration<Rep, Period> d) {
    if (d <= d.zero() || d >= std::chrono::hours{24 * 24}) {
      throw std::invalid_argument(
          "bastion::restart_strategy::backoff_reset: the duration must be > 0 and < 24 days");
    }
    backoff_reset_ = std::chrono::ceil<std::chrono::milliseconds>(d);
    return *this;
  }
  /// At most `max_restarts` restarts within `period` (any duration); one more escalates.
  /// Throws std::invalid_argument naming "period" when period <= 0.
  template <class Rep, class Period>
  restart_strategy& intensity(std::size_t max_restarts, std::chrono::duration<Rep, Period> period) {
    if (period <= period.zero()) {
      throw std::invalid_argument("bastion::restart_strategy::intensity: period must be > 0");
    }
    max_restarts_ = max_restarts;
    period_ = std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
    return *this;
  }

  [[nodiscard]] const restart_policy& policy() const noexcept { return policy_; }
  [[nodiscard]] const bastion::backoff& backoff() const noexcept { return backoff_; }
  /// The run time after which a child's backoff starts over, if set.
  [[nodiscard]] std::optional<std::chrono::milliseconds> backoff_reset() const noexcept {
    return backoff_reset_;
  }
  /// The intensity limit, if one was set.
  [[nodiscard]] std::optional<std::size_t> max_restarts() const noexcept { return max_restarts_; }
  [[nodiscard]] std::chrono::steady_clock::duration period() const noexcept { return period_; }

private:
  restart_policy policy_ = restart_policy::always();
  bastion::backoff backoff_ = bastion::backoff::immediate();
  std::optional<std::size_t> max_restarts_;
  std::optional<std::chrono::milliseconds> backoff_reset_;
  std::chrono::steady_clock::duration period_{std::chrono::seconds{5}};
};

/// What is known about the message an actor was handling (the last one it received through
/// its context) when it failed.
///
/// kind, type and sender are always filled. `envelope`, the message itself, is filled only
/// when the body was handling it through context::handle() when it failed (the context keeps
/// the envelope while the handler runs; see context::handle): then a restart callback can
/// read the payload with value<T>(). It is shared, read-only, by every restart callback of
/// that failure, and destroyed with the last copy of the failure (on the supervisor's proc,
/// after the callbacks), so the new incarnation never sees it again; the rest of the mailbox
/// stays for the new incarnation. Do not keep a failure beyond its system's life.
struct message_info {
  message_kind kind = message_kind::tell;
  const std::type_info* type = &typeid(void); ///< the payload's type (T, also for broadcasts)
  std::uint64_t sender_id = 0;                ///< 0: none
  /// The message being handled, when it was handled through context::handle(); else null.
  std::shared_ptr<const bastion::message> envelope;

  /// The payload type's readable name ("int", "std::string", ...).
  [[nodiscard]] std::string type_name() const { return detail::type_name(*type); }
  /// The payload when `envelope` holds a tell, ask or broadcast of exactly T (see
  /// message::peek); else null. The pointee lives as long as `envelope`. O(1).
  template <class T>
  [[nodiscard]] const T* value() const noexcept {
    return envelope ? envelope->template peek<T>() : nullptr;
  }
};

/// What a restart callback receives: why the child is being restarted.
struct failure {
  /// The exception that escaped the failed child's body (for a supervisor that gave up:
  /// a bastion::supervisor_gave_up). Never null for the failed child itself.
  std::exception_ptr error;
  /// The message the failed child was handling, where there was one (with its payload
  /// when it was handled through context::handle(): see message_info).
  std::optional<message_info> message;
  /// The id of the child that failed (another child's id when this one is restarted as a
  /// sibling under one_for_all / rest_for_one, or because its supervisor restarted).
  std::uint64_t failed_child = 0;

  /// The error's what() ("unknown exception" for a non-std exception, "" when none).
  [[nodiscard]] std::string what() const;
};

/// The error a supervisor fails with when its restart intensity is exceeded (escalation).
class supervisor_gave_up : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace bastion
