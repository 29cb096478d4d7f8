// bastion/lightproc/join_handle.hpp: join_handle<T>, the owner's view of a spawned lightproc:
// await its value, block for it, cancel it, or let it go (detach).
#pragma once

#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>

#include <bastion/detail/proc.hpp>

#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace bastion {

namespace detail {
/// Drives `p` (a proc bound to `drv`) to completion on the calling thread. On a worker
/// thread, the worker keeps running other tasks while it waits, so it cannot deadlock.
void run_inline(proc_header* p, inline_driver& drv);
/// A driver for run_inline.
std::unique_ptr<inline_driver, void (*)(inline_driver*)> make_inline_driver();
/// The runtime of the calling worker or inline-run thread, else the process-wide default
/// runtime (created on first use).
runtime_impl* current_or_default_runtime();

/// Runs `t` to completion on the calling thread (see bastion::run); `rt` serves the timers,
/// spawns and blocking calls the body makes.
template <class T>
T block_on(task<T> t, runtime_impl* rt) {
  auto drv = make_inline_driver();
  auto* p = make_proc(std::move(t), proc_stack{}, true);
  p->driver_ = drv.get();
  p->rt_ = rt;
  run_inline(p, *drv);
  struct release_guard {
    proc_impl<T>* p;
    ~release_guard() { p->drop_join_handle(); }
  } guard{p};
  if (p->load_state() & proc_header::closed) {
    throw proc_cancelled(p->pid());
  }
  return static_cast<T>(p->take_result());
}
} // namespace detail

/// What `join_handle<T>::recover()` yields when the proc produced a value: T itself,
/// std::monostate for void, std::reference_wrapper<U> for U&.
template <class T>
using recovered_t = std::conditional_t<
    std::is_void_v<T>,
    std::monostate,
    std::conditional_t<
        std::is_reference_v<T>,
        std::reference_wrapper<std::remove_reference_t<T>>,
        T>>;

/// The handle `bastion::spawn` returns: the only way to get a proc's value.
///
/// - `co_await std::move(h)` suspends the awaiting proc until the proc ends, then yields its
///   value, rethrows the exception that escaped it, or throws proc_cancelled /
///   proc_rejected. The awaiter resumes on the worker that completed the proc (or the one
///   that picked it up after the wake).
/// - `std::move(h).join()` blocks the calling thread the same way (on a worker thread it keeps
///   the worker running other tasks meanwhile, so it does not deadlock).
/// - `co_await std::move(h).recover()` is the recoverable handle: std::nullopt when the proc
///   failed or was cancelled, never throws.
/// - `h.cancel()` cancels: a proc not yet ended has its frame destroyed at its next
///   scheduling point (locals unwind), and the handle reports proc_cancelled.
/// - Destroying the handle detaches: the proc keeps running, its value is dropped.
///
/// Thread-safety: the handle is one owner; move it between threads, do not share it.
/// cancel(), is_finished() and state() are safe from any thread while the handle lives.
template <class T>
class [[nodiscard]] join_handle {
public:
  join_handle() noexcept = default;
  /// Adopts the join reference of `p` (taken by spawn).
  explicit join_handle(detail::proc_impl<T>* p) noexcept
      : p_(p) {}
  join_handle(join_handle&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)) {}
  join_handle& operator=(join_handle&& o) noexcept {
    if (this != &o) {
      detach();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  join_handle(const join_handle&) = delete;
  join_handle& operator=(const join_handle&) = delete;
  ~join_handle() { detach(); }

  /// True while the handle refers to a proc.
  [[nodiscard]] bool valid() const noexcept { return p_ != nullptr; }
  /// The proc's pid (0 for an empty handle).
  [[nodiscard]] std::uint64_t pid() const noexcept { return p_ ? p_->pid() : 0; }
  /// True once the proc ended (value, exception, cancellation or rejection).
  [[nodiscard]] bool is_finished() const noexcept {
    return p_ && (p_->load_state() & detail::proc_header::complete);
  }
  /// A snapshot of the proc's lifecycle state. @pre valid().
  [[nodiscard]] proc_state state() const noexcept {
    const auto s = p_->load_state();
    using h = detail::proc_header;
    if (s & h::complete) {
      return (s & h::closed) ? proc_state::closed : proc_state::completed;
    }
    if (s & h::running) {
      return proc_state::running;
    }
    return (s & h::scheduled) ? proc_state::scheduled : proc_state::suspended;
  }

  /// Requests cancellation; see the class comment. No effect on a proc that already ended.
  /// Safe from any thread. @pre valid().
  void cancel() noexcept { p_->request_cancel(); }

  /// The proc (internal: used by combinators such as bastion::timeout).
  [[nodiscard]] detail::proc_impl<T>* proc() const noexcept { return p_; }

  /// Lets the proc run on without an owner. The handle becomes empty.
  void detach() noexcept {
    if (auto* p = std::exchange(p_, nullptr)) {
      p->drop_join_handle();
    }
  }

  /// Awaits the proc's end; see the class comment. Throws std::logic_error when awaited
  /// outside a bastion proc (use join() there). @pre valid().
  auto operator co_await() && { return join_operation<false>{std::move(*this)}; }

  /// The recoverable handle: awaiting it yields std::optional<recovered_t<T>>, empty when
  /// the proc failed, was cancelled or rejected. @pre valid().
  auto recover() && { return join_operation<true>{std::move(*this)}; }

  /// Blocks the calling thread until the proc ends; returns its value or throws like
  /// co_await. @pre valid().
  T join() && {
    auto run_join = [](join_handle h) -> task<T> {
      co_return co_await std::move(h);
    };
    auto* rt = p_ ? p_->rt_ : nullptr;
    return detail::block_on(
        run_join(std::move(*this)), rt ? rt : detail::current_or_default_runtime());
  }

private:
  template <bool Recover>
  class join_operation {
  public:
    explicit join_operation(join_handle h) noexcept
        : h_(std::move(h)) {}
    join_operation(const join_operation&) = delete;
    join_operation& operator=(const join_operation&) = delete;

    [[nodiscard]] bool await_ready() const noexcept {
      if (!h_.p_) {
        return true; // await_resume reports the misuse
      }
      return (h_.p_->load_state() & detail::proc_header::complete) != 0;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      auto* cur = detail::current_proc();
      if (cur == nullptr) {
        throw std::logic_error(
            "bastion::join_handle: co_await outside a bastion proc; use join() instead");
      }
      cur->set_resume_point(h);
      return h_.p_->register_join_waiter(cur->make_waker());
    }
    decltype(auto) await_resume() {
      if (!h_.p_) {
        throw std::logic_error("bastion::join_handle: awaiting an empty handle");
      }
      if constexpr (Recover) {
        using R = std::optional<recovered_t<T>>;
        if (h_.p_->load_state() & detail::proc_header::closed) {
          return R{};
        }
        try {
          if constexpr (std::is_void_v<T>) {
            h_.p_->take_result();
            return R{std::monostate{}};
          } else {
            return R{h_.p_->take_result()};
          }
        } catch (...) {
          return R{};
        }
      } else {
        const auto s = h_.p_->load_state();
        if (s & detail::proc_header::rejected) {
          throw proc_rejected(h_.pid());
        }
        if (s & detail::proc_header::closed) {
          throw proc_cancelled(h_.pid());
        }
        return static_cast<T>(h_.p_->take_result());
      }
    }

  private:
    join_handle h_;
  };

  detail::proc_impl<T>* p_ = nullptr;
};

} // namespace bastion
