// examples/kv_server/tests/unit_main.cpp: Catch2's main() for kv_server_unit.
#define CATCH_CONFIG_MAIN // NOLINT(readability-identifier-naming): Catch2's switch
#include <catch2/catch.hpp>
