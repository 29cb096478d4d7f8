// src/actor/restart.cpp: the arithmetic of bastion/actor/restart.hpp: backoff delays and
// the text of a failure.
#include <bastion/actor/restart.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <string>

namespace bastion {

std::chrono::milliseconds backoff::delay(std::size_t restarts) const noexcept {
  switch (kind_) {
  case kind::immediate:
    return std::chrono::milliseconds{0};
  case kind::linear:
    return timeout_ * static_cast<std::chrono::milliseconds::rep>(restarts + 1);
  case kind::exponential: {
    const double d = static_cast<double>(timeout_.count())
                     * std::pow(multiplier_, static_cast<double>(restarts));
    const auto cap = static_cast<double>(max_.count());
    return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(std::min(d, cap))};
  }
  }
  return std::chrono::milliseconds{0};
}

std::string failure::what() const {
  if (!error) {
    return {};
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

} // namespace bastion
