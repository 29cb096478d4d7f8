// bastion/log.hpp: the "bastion" spdlog logger the runtime reports through (restarts,
// failures, dead letters, pinning problems), quiet (warnings and up) by default.
#pragma once

#include <spdlog/common.h>
#include <spdlog/logger.h>

namespace bastion {

/// The "bastion" logger (stderr, registered with spdlog). Created on first use with level
/// `warn`, or the level named by the environment variable BASTION_LOG (trace, debug, info,
/// warn, err, critical, off). Safe from any thread.
spdlog::logger& logger();

/// Sets the level of the "bastion" logger. Safe from any thread.
void set_log_level(spdlog::level::level_enum level);

} // namespace bastion
