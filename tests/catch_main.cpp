// tests/catch_main.cpp: Catch2's main(), compiled once and linked into every test executable.
#define CATCH_CONFIG_MAIN // NOLINT(readability-identifier-naming): Catch2's switch
#include <catch2/catch.hpp>
