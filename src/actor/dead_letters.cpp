// src/actor/dead_letters.cpp: bastion::dead_letters (bastion/actor/dead_letters.hpp).
#include <bastion/actor/dead_letters.hpp>
#include <bastion/log.hpp>

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace bastion {

std::string_view to_string(dead_letter_reason r) noexcept {
  switch (r) {
  case dead_letter_reason::unknown_target:
    return "unknown_target";
  case dead_letter_reason::stopped_target:
    return "stopped_target";
  case dead_letter_reason::mailbox_full:
    return "mailbox_full";
  case dead_letter_reason::dropped_oldest:
    return "dropped_oldest";
  case dead_letter_reason::unanswered_ask:
    return "unanswered_ask";
  }
  return "unknown";
}

namespace {
std::string_view kind_name(message_kind k) noexcept {
  switch (k) {
  case message_kind::tell:
    return "tell";
  case message_kind::ask:
    return "ask";
  case message_kind::broadcast:
    return "broadcast";
  }
  return "?";
}
} // namespace

void dead_letters::record(message&& m, dead_letter_reason r) noexcept {
  counts_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  message local = std::move(m);
  try {
    auto& log = logger();
    if (log.should_log(spdlog::level::debug) && local) {
      log.debug(
          "dead letter ({}): {} of {} from sender {}",
          to_string(r),
          kind_name(local.kind()),
          detail::type_name(local.type()),
          local.sender_id());
    }
    std::shared_ptr<const handler> h;
    {
      std::lock_guard lock(mu_);
      h = handler_;
    }
    if (h && *h) {
      (*h)(std::move(local), r);
    }
  } catch (const std::exception& e) {
    logger().error("dead letters: the handler threw: {}", e.what());
  } catch (...) {
    logger().error("dead letters: the handler threw a non-std exception");
  }
}

void dead_letters::set_handler(handler h) {
  auto p = h ? std::make_shared<const handler>(std::move(h)) : nullptr;
  std::lock_guard lock(mu_);
  handler_ = std::move(p);
}

dead_letters& dead_letters::global() noexcept {
  static dead_letters sink;
  return sink;
}

namespace detail {
void record_unanswered(dead_letters& sink, message&& m) noexcept {
  sink.record(std::move(m), dead_letter_reason::unanswered_ask);
}
} // namespace detail

} // namespace bastion
