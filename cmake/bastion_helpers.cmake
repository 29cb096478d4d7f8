# CMake helpers for bastion's own build. Not installed.

# bastion_target_options(<target>): the settings every target bastion builds for itself gets
# (the library, tests, examples, benchmarks). All PRIVATE: a consumer of bastion::bastion
# inherits none of them.
#
# - warnings: -Wall -Wextra -Wpedantic, plus -Werror when BASTION_WERROR is ON;
# - BASTION_SANITIZER_ADDRESS or BASTION_SANITIZER_THREAD when BASTION_SANITIZER says so, for
#   code that must know (e.g. a stress test that scales down under TSan). The sanitizer flags
#   themselves come from the presets (CMAKE_CXX_FLAGS and the linker flags).
function(bastion_target_options target)
  target_compile_options(
    ${target} PRIVATE -Wall -Wextra -Wpedantic $<$<BOOL:${BASTION_WERROR}>:-Werror>)
  if(BASTION_SANITIZER STREQUAL "address")
    target_compile_definitions(${target} PRIVATE BASTION_SANITIZER_ADDRESS=1)
  elseif(BASTION_SANITIZER STREQUAL "thread")
    target_compile_definitions(${target} PRIVATE BASTION_SANITIZER_THREAD=1)
  endif()
endfunction()

# bastion_add_subfolders(): add_subdirectory() for each direct subfolder of the current source
# folder that has a CMakeLists.txt (e.g. examples/kv_server/). The glob is CONFIGURE_DEPENDS, so
# a new subfolder is picked up by the next build. A subfolder's build files go to <name>.build/,
# and an executable named like its subfolder lands in the current build folder itself, next to
# the single-file ones: examples/kv_server/ builds build/<preset>/examples/kv_server.
function(bastion_add_subfolders)
  file(GLOB cmake_lists CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/*/CMakeLists.txt")
  foreach(cmake_list IN LISTS cmake_lists)
    get_filename_component(folder "${cmake_list}" DIRECTORY)
    get_filename_component(name "${folder}" NAME)
    # Build folders made before this layout have <name>/ where the executable now goes.
    if(IS_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}/${name}")
      message(STATUS "bastion: removing ${CMAKE_CURRENT_BINARY_DIR}/${name}/ (older layout)")
      file(REMOVE_RECURSE "${CMAKE_CURRENT_BINARY_DIR}/${name}")
    endif()
    add_subdirectory("${folder}" "${CMAKE_CURRENT_BINARY_DIR}/${name}.build")
    if(TARGET ${name})
      get_target_property(target_dir ${name} SOURCE_DIR)
      if(target_dir STREQUAL folder)
        set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                 "${CMAKE_CURRENT_BINARY_DIR}")
      endif()
    endif()
  endforeach()
endfunction()
