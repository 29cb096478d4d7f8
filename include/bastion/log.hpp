// bastion/log.hpp: the "bastion" spdlog logger the runtime reports through (restarts,
// failures, dead letters, pinning problems), quiet (warnings and up) by default.
#pragma once

#include <string_view>

namespace spdlog {
class logger;
} // namespace spdlog

namespace bastion {

/// The "bastion" logger (stderr, registered with spdlog). Created on first use with level
/// `warn`, or the level named by the environment variable BASTION_LOG (trace, debug, info,
/// warn, err, critical, off). Include <spdlog/spdlog.h> to log through it. Safe from any
/// thread.
spdlog::logger& logger();

/// Sets the level of the "bastion" logger by name (trace, debug, info, warn, err, critical,
/// off). Throws std::invalid_argument naming an unknown level. Safe from any thread.
void set_log_level(std::string_view level);

} // namespace bastion
