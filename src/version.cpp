// src/version.cpp: bastion::version_string(), the version the library was built as.
#include <bastion/version.hpp>

#include <string_view>

#ifndef BASTION_VERSION_STRING
#  error "BASTION_VERSION_STRING must be defined by the build (see the top CMakeLists.txt)"
#endif

namespace bastion {

std::string_view version_string() noexcept {
  return BASTION_VERSION_STRING;
}

} // namespace bastion
