// bastion/version.hpp: the version of the bastion library the program is linked with.
#pragma once

#include <string_view>

namespace bastion {

/// The version of the linked bastion library, "MAJOR.MINOR.PATCH" (e.g. "0.1.0").
///
/// Safe from any thread; never throws. The string has static storage duration.
/// Source: set from `project(bastion VERSION ...)` in the top CMakeLists.txt.
[[nodiscard]] std::string_view version_string() noexcept;

} // namespace bastion
