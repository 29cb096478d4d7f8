// bastion/config.hpp: compiler and platform switches shared by every bastion header.
#pragma once

/// Defined to 1 when the translation unit is built with ThreadSanitizer.
#if defined(__SANITIZE_THREAD__)
#  define BASTION_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define BASTION_TSAN 1
#  endif
#endif
#ifndef BASTION_TSAN
#  define BASTION_TSAN 0
#endif

/// Defined to 1 when the translation unit is built with AddressSanitizer.
#if defined(__SANITIZE_ADDRESS__)
#  define BASTION_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define BASTION_ASAN 1
#  endif
#endif
#ifndef BASTION_ASAN
#  define BASTION_ASAN 0
#endif

/// Keeps a function out of line; used for thread-local accessors so that a coroutine or a
/// fiber resumed on another thread never reuses a cached thread-local address.
#define BASTION_NOINLINE __attribute__((noinline))
