# Findhwloc.cmake: finds hwloc (Portable Hardware Locality) through pkg-config.
#
# Provides the IMPORTED target hwloc::hwloc and sets hwloc_FOUND and hwloc_VERSION.
# bastion installs this module beside bastionConfig.cmake so that consumers find hwloc the
# same way the build did.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_hwloc QUIET IMPORTED_TARGET hwloc)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(
  hwloc
  REQUIRED_VARS PC_hwloc_LINK_LIBRARIES
  VERSION_VAR PC_hwloc_VERSION
  REASON_FAILURE_MESSAGE "needs pkg-config and hwloc.pc (Debian: pkg-config libhwloc-dev)")

if(hwloc_FOUND)
  set(hwloc_VERSION ${PC_hwloc_VERSION})
  if(NOT TARGET hwloc::hwloc)
    add_library(hwloc::hwloc INTERFACE IMPORTED)
    target_link_libraries(hwloc::hwloc INTERFACE PkgConfig::PC_hwloc)
  endif()
endif()
