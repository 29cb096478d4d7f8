// src/lightproc/fiber.cpp: the out-of-line half of stackful procs: creating a Boost.Context
// fiber on its own stack, switching in and out of it with AddressSanitizer / ThreadSanitizer
// annotations, unwinding and freeing it, and the thread-local "current fiber".
//
// Switch protocol (both sanitizers want to be told about every change of stack):
//   resumer (resume):   tsan switch to the fiber; asan start(fiber stack); jump;
//                       asan finish — back when the fiber suspends or ends.
//   fiber (suspend):    tsan switch to the resumer; asan start(resumer stack); jump;
//                       asan finish (learns the stack of whoever resumed it: may be another
//                       worker thread than last time).
//   fiber first entry:  asan finish (learns the resumer's stack).
//   fiber end:          parks for good with asan start(nullptr, ...) (its fake stack dies);
//                       the stack is freed later by destroying the parked boost::context::fiber,
//                       whose forced unwind only crosses Boost frames and entry::operator(),
//                       none of them instrumented (see below).
// ThreadSanitizer keeps a shadow call stack per fiber, so every instrumented frame must be
// entered and left on the same TSan fiber. The boost/context headers are therefore compiled
// without sanitizer instrumentation (clang's disable_sanitizer_instrumentation, applied to
// every function they declare), and so is entry::operator(), the only frame that switches
// TSan fibers before returning or being unwound. Boost.Context is included here only, so
// these attributes cannot leak into other translation units.
#include <bastion/config.hpp>

#include <bastion/detail/fiber_context.hpp>
#include <bastion/detail/proc.hpp>

// Standard headers Boost.Context uses, included first so that they stay instrumented.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <ostream>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#if defined(__clang__) && defined(__has_attribute)
#  if __has_attribute(disable_sanitizer_instrumentation)
#    define BASTION_FIBER_UNINSTRUMENTED __attribute__((disable_sanitizer_instrumentation))
#    pragma clang attribute push(                                                                  \
        __attribute__((disable_sanitizer_instrumentation)), apply_to = function)
#    define BASTION_FIBER_POP_ATTRIBUTE 1
#  endif
#endif
#ifndef BASTION_FIBER_UNINSTRUMENTED
#  define BASTION_FIBER_UNINSTRUMENTED
#endif
#include <boost/context/fiber.hpp>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/context/stack_context.hpp>
#ifdef BASTION_FIBER_POP_ATTRIBUTE
#  pragma clang attribute pop
#endif

#if BASTION_ASAN
#  include <sanitizer/common_interface_defs.h>
#endif
#if BASTION_TSAN
#  include <sanitizer/tsan_interface.h>
#endif

namespace bastion::detail {

namespace ctx = boost::context;

namespace {

static_assert(
    sizeof(ctx::fiber) <= sizeof(void*) && alignof(ctx::fiber) <= alignof(void*),
    "fiber_context keeps a boost::context::fiber in pointer-sized storage");

thread_local fiber_context* tl_fiber = nullptr;

/// The boost fiber constructed in `storage`.
ctx::fiber& as_fiber(void* storage) noexcept {
  return *std::launder(static_cast<ctx::fiber*>(storage));
}

/// Sets the fiber running on this thread; returns the previous one.
BASTION_NOINLINE fiber_context* exchange_current_fiber(fiber_context* f) noexcept {
  return std::exchange(tl_fiber, f);
}

} // namespace

fiber_context* fiber_context::current() noexcept {
  return tl_fiber;
}

bool fiber_context::is_current_body() const noexcept {
  return owner_ != nullptr && owner_ == current_proc();
}

/// The stack allocator handed to boost: Boost.Context's fixed-size stacks (with or without a
/// guard page), recording the stack's bounds for the sanitizer annotations.
struct fiber_context::stack_allocator {
  fiber_context* owner;
  std::size_t size;
  bool guard;

  ctx::stack_context allocate() {
    ctx::stack_context sc = guard ? ctx::protected_fixedsize_stack(size).allocate()
                                  : ctx::fixedsize_stack(size).allocate();
    owner->stack_bottom_ = static_cast<const char*>(sc.sp) - sc.size;
    owner->stack_size_ = sc.size;
    return sc;
  }
  void deallocate(ctx::stack_context& sc) noexcept {
    if (guard) {
      ctx::protected_fixedsize_stack(size).deallocate(sc);
    } else {
      ctx::fixedsize_stack(size).deallocate(sc);
    }
  }
};

/// The function the fiber starts in. Not instrumented: it switches TSan fibers before it is
/// unwound (see the file comment).
struct fiber_context::entry {
  fiber_context* self;

  BASTION_FIBER_UNINSTRUMENTED ctx::fiber operator()(ctx::fiber&& resumer) const {
    fiber_context& f = *self;
    as_fiber(f.caller_storage()) = std::move(resumer);
#if BASTION_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &f.caller_bottom_, &f.caller_size_);
#endif
    if (!f.unwinding_) {
      try {
        f.run();
      } catch (const fiber_unwind&) { // NOLINT(bugprone-empty-catch): the unwinding is done
      }
    }
    f.state_ = state::finished;
    f.request_ = nullptr;
#if BASTION_TSAN
    __tsan_switch_to_fiber(f.tsan_caller_, 0);
#endif
#if BASTION_ASAN
    __sanitizer_start_switch_fiber(nullptr, f.caller_bottom_, f.caller_size_);
#endif
    ctx::fiber& back = as_fiber(f.caller_storage());
    back = std::move(back).resume(); // parked for good: release() unwinds it from here
    std::terminate();                // never resumed again
  }
};

fiber_context::fiber_context(std::size_t stack_size, bool guard_page) {
  ::new (caller_storage()) ctx::fiber();
#if BASTION_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
  try {
    ::new (fiber_storage()) ctx::fiber(
        std::allocator_arg,
        stack_allocator{.owner = this, .size = stack_size, .guard = guard_page},
        entry{this});
  } catch (...) {
    as_fiber(caller_storage()).~fiber();
#if BASTION_TSAN
    __tsan_destroy_fiber(tsan_fiber_);
#endif
    throw;
  }
  has_fiber_ = true;
}

fiber_context::~fiber_context() {
  release();
  as_fiber(caller_storage()).~fiber();
#if BASTION_TSAN
  __tsan_destroy_fiber(tsan_fiber_);
#endif
}

void fiber_context::resume() noexcept {
  fiber_context* prev = exchange_current_fiber(this);
  owner_ = unwinding_ ? nullptr : current_proc(); // unwinding: in_fiber() is false
  state_ = state::running;
  request_ = nullptr;
#if BASTION_TSAN
  tsan_caller_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
#if BASTION_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, stack_bottom_, stack_size_);
#endif
  ctx::fiber& f = as_fiber(fiber_storage());
  f = std::move(f).resume();
#if BASTION_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  exchange_current_fiber(prev);
}

void fiber_context::suspend(fiber_request* r) {
  if (unwinding_) {
    throw fiber_unwind{};
  }
  request_ = r;
  state_ = state::suspended;
#if BASTION_TSAN
  __tsan_switch_to_fiber(tsan_caller_, 0);
#endif
#if BASTION_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, caller_bottom_, caller_size_);
#endif
  ctx::fiber& back = as_fiber(caller_storage());
  back = std::move(back).resume();
#if BASTION_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &caller_bottom_, &caller_size_);
#endif
  if (unwinding_) {
    throw fiber_unwind{};
  }
}

void fiber_context::release() noexcept {
  if (state_ == state::suspended) {
    // Resume it once more: suspend() throws fiber_unwind at the parked point, the body's
    // frames unwind on this thread, and the fiber parks at its end.
    unwinding_ = true;
    resume();
  }
  destroy_parked_fiber();
}

void fiber_context::destroy_parked_fiber() noexcept {
  if (!has_fiber_) {
    return;
  }
  has_fiber_ = false;
  state_ = state::finished;
  ctx::fiber& f = as_fiber(fiber_storage());
  if (f) {
    // Parked at its end (or never started): destroying the boost fiber jumps onto its stack,
    // unwinds the Boost frames with forced_unwind, and frees the stack from this one.
#if BASTION_TSAN
    void* self_tsan = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
#if BASTION_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, stack_bottom_, stack_size_);
#endif
    {
      ctx::fiber doomed = std::move(f);
    }
#if BASTION_ASAN
    // The fiber side of that round trip could not annotate itself: say on its behalf that
    // it arrived and left for good, then that this stack is current again.
    const void* own_bottom = nullptr;
    std::size_t own_size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &own_bottom, &own_size);
    __sanitizer_start_switch_fiber(nullptr, own_bottom, own_size);
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
#if BASTION_TSAN
    __tsan_switch_to_fiber(self_tsan, 0);
#endif
  }
  f.~fiber(); // NOLINT(bugprone-use-after-move): destroys the (empty) moved-from object
}

} // namespace bastion::detail
