// bastion/actor/resizer.hpp: bastion::resizer, the auto-scaling policy of a children group
// (between a lower and an upper bound, driven by the average mailbox size), evaluated by the
// group's supervisor on every heartbeat tick. After Rust Bastion's OptimalSizeExploringResizer.
// See docs/routing.md.
#pragma once

#include <cstddef>
#include <stdexcept>

namespace bastion {

/// A threshold on the average mailbox size of a group's members: built by writing
/// `bastion::avg_mailbox > 8.0` or `bastion::avg_mailbox < 1.0`.
struct mailbox_threshold {
  double value = 0.0;
  bool above = true; ///< true: "average > value"; false: "average < value"
};

/// The placeholder of `avg_mailbox > k` / `avg_mailbox < k` (messages per member).
struct avg_mailbox_t {
  friend constexpr mailbox_threshold operator>(avg_mailbox_t, double k) noexcept {
    return {k, true};
  }
  friend constexpr mailbox_threshold operator<(avg_mailbox_t, double k) noexcept {
    return {k, false};
  }
};
/// See avg_mailbox_t: `resizer{}.upscale_when(bastion::avg_mailbox > 8)`.
inline constexpr avg_mailbox_t avg_mailbox{};

/// How a group scales. On each heartbeat tick its supervisor computes the average mailbox
/// size `avg` over the running members (n of them), then:
/// - n < lower: starts members up to lower (e.g. after members finished);
/// - avg > upscale threshold and n < upper: starts max(1, round(n × upscale_rate)) members,
///   capped so that n never exceeds upper;
/// - avg < downscale threshold and n > lower: stops max(1, round(n × downscale_rate)) idle
///   members (empty mailbox), newest first, capped so that n never drops below lower. They are
///   removed from routing first, then stopped gracefully (after_stop runs).
/// The bounds always hold for members the resizer starts or stops; the group's redundancy
/// is clamped into [lower, upper].
/// Thread-safety: a plain value. Setters throw std::invalid_argument on bad values.
class resizer {
public:
  /// Fewest members (default 1; at least 1). Raises upper to `n` when it is below.
  resizer& lower(std::size_t n) {
    if (n < 1) {
      throw std::invalid_argument("bastion::resizer: lower must be at least 1");
    }
    lower_ = n;
    if (upper_ < n) {
      upper_ = n;
    }
    return *this;
  }
  /// Most members (default 8; at least lower, else std::invalid_argument).
  resizer& upper(std::size_t n) {
    if (n < lower_) {
      throw std::invalid_argument("bastion::resizer: upper must be at least lower");
    }
    upper_ = n;
    return *this;
  }
  /// Grow when the average mailbox size (messages per member) passes `t` (default > 4).
  resizer& upscale_when(mailbox_threshold t) noexcept {
    up_ = t.value;
    return *this;
  }
  /// Shrink when the average mailbox size is under `t` (default < 1, i.e. mostly idle).
  resizer& downscale_when(mailbox_threshold t) noexcept {
    down_ = t.value;
    return *this;
  }
  /// Fraction of the current size started per upscale tick (default 0.5; > 0).
  resizer& upscale_rate(double r) {
    if (!(r > 0.0)) {
      throw std::invalid_argument("bastion::resizer: upscale_rate must be positive");
    }
    up_rate_ = r;
    return *this;
  }
  /// Fraction of the current size stopped per downscale tick (default 0.25; > 0).
  resizer& downscale_rate(double r) {
    if (!(r > 0.0)) {
      throw std::invalid_argument("bastion::resizer: downscale_rate must be positive");
    }
    down_rate_ = r;
    return *this;
  }

  [[nodiscard]] std::size_t lower() const noexcept { return lower_; }
  [[nodiscard]] std::size_t upper() const noexcept { return upper_; }
  [[nodiscard]] double upscale_threshold() const noexcept { return up_; }
  [[nodiscard]] double downscale_threshold() const noexcept { return down_; }
  [[nodiscard]] double upscale_rate() const noexcept { return up_rate_; }
  [[nodiscard]] double downscale_rate() const noexcept { return down_rate_; }
  /// `n` clamped into [lower, upper].
  [[nodiscard]] std::size_t clamp(std::size_t n) const noexcept {
    return n < lower_ ? lower_ : (n > upper_ ? upper_ : n);
  }

private:
  std::size_t lower_ = 1;
  std::size_t upper_ = 8;
  double up_ = 4.0;
  double down_ = 1.0;
  double up_rate_ = 0.5;
  double down_rate_ = 0.25;
};

} // namespace bastion
