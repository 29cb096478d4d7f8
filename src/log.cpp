// src/log.cpp: the "bastion" logger.
#include <bastion/log.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

namespace bastion {

spdlog::logger& logger() {
  static const std::shared_ptr<spdlog::logger> instance = [] {
    auto existing = spdlog::get("bastion");
    if (existing) {
      return existing;
    }
    auto l = spdlog::stderr_color_mt("bastion");
    l->set_level(spdlog::level::warn);
    if (const char* env = std::getenv("BASTION_LOG")) {
      l->set_level(spdlog::level::from_str(env));
    }
    return l;
  }();
  return *instance;
}

void set_log_level(std::string_view level) {
  const std::string name(level);
  const auto lvl = spdlog::level::from_str(name);
  if (lvl == spdlog::level::off && name != "off") {
    throw std::invalid_argument("bastion::set_log_level: unknown level '" + name + "'");
  }
  logger().set_level(lvl);
}

} // namespace bastion
