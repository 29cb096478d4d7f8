# tests/install/run.cmake: the install_consumer test (cmake -P).
#
# Installs the bastion build in BUILD_DIR into WORK_DIR/prefix, then configures, builds and
# runs the consumer project in CONSUMER_SOURCE_DIR against that prefix with the same
# generator, compiler, build type and flags. Any failing step fails the test.
#
# Variables (-D): BUILD_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR, MAKE_PROGRAM,
# CXX_COMPILER, BUILD_TYPE, CXX_FLAGS, EXE_LINKER_FLAGS.
cmake_minimum_required(VERSION 3.25)

foreach(required BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: -D${required}=... is missing")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(config_args)
if(BUILD_TYPE)
  set(config_args --config "${BUILD_TYPE}")
endif()

function(step what)
  message(STATUS "install_consumer: ${what}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
endfunction()

step("install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}"
     ${config_args})

step(
  "configure the consumer"
  "${CMAKE_COMMAND}"
  -S "${CONSUMER_SOURCE_DIR}"
  -B "${consumer_build}"
  -G "${GENERATOR}"
  "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  # Only the installed copy may satisfy find_package(bastion), not the build tree.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)

step("build the consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" ${config_args})

step("run the consumer" "${consumer_build}/bastion_consumer")
